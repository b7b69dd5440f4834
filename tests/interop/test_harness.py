"""The interop harness on its own: real extrawest-ocpi parties talking to each other, no hub.

These prove that the party venv builds, that a party starts on a handed-over socket and stops by its PID, and that
the control API seeds, records, registers, pushes and sends as the library does. They also pin the library's wire
behaviour that hub tests rely on (trailing slashes, lower-cased CiStrings, its Link and Location headers).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.interop.harness import LibraryParty, PartyFactory, token_header
from tests.interop.venv import InteropUnavailableError, build_venv
from tests.support.fake_party import FakeParty
from tests.support.processes import pid_alive

pytestmark = pytest.mark.e2e

T0 = "2026-01-01T00:00:00Z"
CDR_TOKEN = {"country_code": "BE", "party_id": "EMP", "uid": "TOK1", "type": "RFID", "contract_id": "BE-EMP-C1"}


def location(ident: str, last_updated: str = T0) -> dict[str, Any]:
    connector = {
        "id": "1",
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 16,
        "last_updated": last_updated,
    }
    evse = {"uid": "EVSE1", "evse_id": "NL*CPO*E1", "status": "AVAILABLE", "connectors": [connector]}
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": ident,
        "publish": True,
        "address": "Stationsplein 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.089", "longitude": "5.110"},
        "time_zone": "Europe/Amsterdam",
        "evses": [evse | {"last_updated": last_updated}],
        "last_updated": last_updated,
    }


def token(uid: str = "TOK1") -> dict[str, Any]:
    return CDR_TOKEN | {"uid": uid, "issuer": "EMP", "valid": True, "whitelist": "ALLOWED", "last_updated": T0}


def cdr(ident: str = "CDR1") -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": ident,
        "start_date_time": T0,
        "end_date_time": "2026-01-01T01:00:00Z",
        "cdr_token": CDR_TOKEN,
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": "LOC1",
            "address": "Stationsplein 1",
            "city": "Utrecht",
            "country": "NLD",
            "coordinates": {"latitude": "52.089", "longitude": "5.110"},
            "evse_id": "NL*CPO*E1",
            "connector_id": "1",
            "connector_standard": "IEC_62196_T2",
            "connector_format": "SOCKET",
            "connector_power_type": "AC_3_PHASE",
        },
        "currency": "EUR",
        "charging_periods": [{"start_date_time": T0, "dimensions": [{"type": "ENERGY", "volume": 11.5}]}],
        "total_cost": {"excl_vat": 3.45},
        "total_energy": 11.5,
        "total_time": 1.0,
        "last_updated": T0,
    }


async def get_json(url: str, token: str, **params: str | int) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        return await client.get(url, params=params, headers={"Authorization": token_header(token)})


async def test_party_publishes_versions_and_details_the_library_way(
    library_cpo: PartyFactory, library_emsp: PartyFactory
) -> None:
    async with library_cpo() as cpo, library_emsp() as emsp:
        versions = await get_json(cpo.versions_url, cpo.token_a)
        assert versions.status_code == 200, cpo.log_tail()
        assert versions.json()["data"] == [{"version": "2.2.1", "url": cpo.details_url}]

        cpo_endpoints = {(e["identifier"], e["role"]): e["url"] for e in await endpoints(cpo)}
        assert cpo_endpoints == {
            ("credentials", "RECEIVER"): cpo.module_url("credentials"),
            ("locations", "SENDER"): cpo.module_url("locations"),
            ("sessions", "SENDER"): cpo.module_url("sessions"),
            ("cdrs", "SENDER"): cpo.module_url("cdrs"),
            ("tariffs", "SENDER"): cpo.module_url("tariffs"),
            ("tokens", "RECEIVER"): cpo.module_url("tokens"),
            ("hubclientinfo", "RECEIVER"): cpo.module_url("hubclientinfo"),
            ("chargingprofiles", "RECEIVER"): cpo.module_url("chargingprofiles"),
        }  # no commands: the CPO serves /ocpi/cpo/2.2.1/commands/{command} but does not publish it
        assert cpo.module_url("locations").endswith("/ocpi/cpo/2.2.1/locations/")
        emsp_endpoints = {(e["identifier"], e["role"]) for e in await endpoints(emsp)}
        assert ("commands", "SENDER") in emsp_endpoints
        assert ("tokens", "SENDER") in emsp_endpoints

        # Token A opens versions and details only; module endpoints want a token C, in base64.
        refused = await get_json(cpo.module_url("locations"), cpo.token_a)
        assert refused.status_code == 403
        assert refused.json() == {"detail": "Your authorization token is invalid."}

        seen = await cpo.control.received()
        assert [(r.method, r.path, r.status) for r in seen[:2]] == [
            ("GET", "/ocpi/versions", 200),
            ("GET", "/ocpi/2.2.1/details", 200),
        ]


async def endpoints(party: LibraryParty) -> list[dict[str, str]]:
    reply = await get_json(party.details_url, party.token_a)
    assert reply.status_code == 200, party.log_tail()
    data: list[dict[str, str]] = reply.json()["data"]["endpoints"]
    return data


async def test_emsp_reads_the_cpo_locations_page_by_page(library_cpo: PartyFactory, library_emsp: PartyFactory) -> None:
    async with library_cpo() as cpo, library_emsp() as emsp:
        # The eMSP registers at the CPO: its own client code, the library's credentials server on the CPO.
        registration = await emsp.control.register(cpo.versions_url, cpo.token_a)
        assert registration.ok, (registration, cpo.log_tail())
        assert registration.peer_token is not None
        assert (await cpo.control.info()).token_a is None  # token A is single use
        theirs = orjson_roles(registration.body)
        assert theirs == [("CPO", "nl", "cpo")]  # the library lower-cases CiStrings (CI_STRING_LOWERCASE_PREFERENCE)

        await cpo.control.seed("locations", *(location(f"LOC{i}", f"2026-01-0{i + 1}T00:00:00Z") for i in range(5)))

        pages: list[list[str]] = []
        for offset in (0, 2, 4):
            page = await get_json(cpo.module_url("locations"), registration.peer_token, offset=offset, limit=2)
            assert page.status_code == 200, page.text
            assert page.json()["status_code"] == 1000
            assert page.headers["x-total-count"] == "5"
            assert page.headers["x-limit"] == "2"
            pages.append([loc["id"] for loc in page.json()["data"]])
            link = page.headers["link"]
            if offset < 4:
                # The library's own Link: https, always /cpo/, enum names on Python 3.11, None filters.
                assert link == (
                    f"<https://127.0.0.1:{cpo.port}/ocpi/cpo/VersionNumber.v_2_2_1/ModuleID.locations/"
                    f'?date_from=None&date_to=None&offset={offset + 2}&limit=2>; rel="next"'
                )
            else:
                assert link == ""  # present but empty on the last page
        assert pages == [["loc0", "loc1"], ["loc2", "loc3"], ["loc4"]]

        later = await get_json(cpo.module_url("locations"), registration.peer_token, date_from="2026-01-04T00:00:00Z")
        assert [loc["id"] for loc in later.json()["data"]] == ["loc3", "loc4"]

        one = await get_json(cpo.module_url("locations") + "LOC1", registration.peer_token)
        assert [loc["id"] for loc in one.json()["data"]] == ["loc1"]  # a list of one, not the object
        unknown = await get_json(cpo.module_url("locations") + "NOPE", registration.peer_token)
        assert (unknown.status_code, unknown.json()) == (404, {"detail": "Object not found."})


def orjson_roles(body: str) -> list[tuple[str, str, str]]:
    data = httpx.Response(200, content=body.encode()).json()["data"]
    return [(r["role"], r["country_code"], r["party_id"]) for r in data["roles"]]


async def test_cpo_push_lands_in_the_emsp_store(library_cpo: PartyFactory, library_emsp: PartyFactory) -> None:
    async with library_cpo() as cpo, library_emsp() as emsp:
        # The CPO registers at the eMSP with the eMSP's token A (the eMSP is the library's credentials server).
        registration = await cpo.control.register(emsp.versions_url, emsp.token_a)
        assert registration.ok, (registration, emsp.log_tail())
        await cpo.control.seed("locations", location("LOC1"))
        await cpo.control.seed("cdrs", cdr())

        pushed = await cpo.control.push("locations", "LOC1")
        assert pushed.ok, pushed
        details, put = pushed.sent
        assert (details.method, details.url) == ("GET", emsp.details_url)
        assert (put.method, put.url, put.status) == ("PUT", emsp.module_url("locations") + "NL/CPO/LOC1", 200)
        assert put.header("authorization") == token_header(registration.peer_token or "")
        assert put.header("ocpi-to-country-code") is None and put.header("x-request-id") is None
        assert [(loc["id"], loc["country_code"]) for loc in await emsp.control.store("locations")] == [("loc1", "nl")]
        landed = await emsp.control.wait_received(lambda r: r.method == "PUT", what="the location PUT")
        assert landed.path == "/ocpi/emsp/2.2.1/locations/NL/CPO/LOC1"
        assert landed.json["id"] == "loc1"

        patched = await cpo.control.patch_evse(("NL", "CPO", "LOC1"), "EVSE1", {"status": "CHARGING"})
        assert (patched.status, patched.sent_body) == (200, {"status": "CHARGING"}), patched
        (stored,) = await emsp.control.store("locations")
        assert [e["status"] for e in stored["evses"]] == ["CHARGING"]

        pushed = await cpo.control.push("cdrs", "CDR1")
        assert pushed.ok, pushed
        post = pushed.sent[-1]
        assert (post.method, post.url, post.status) == ("POST", emsp.module_url("cdrs"), 200)
        assert pushed.result["receiver_responses"][0]["response"]["location"] == (
            f"https://127.0.0.1:{emsp.port}/ocpi/emsp/VersionNumber.v_2_2_1/ModuleID.cdrs/cdr1"
        )
        assert [c["id"] for c in await emsp.control.store("cdrs")] == ["cdr1"]


async def test_library_push_appends_country_party_and_id_without_a_slash(library_cpo: PartyFactory) -> None:
    # A receiver whose published endpoint has no trailing slash (as the hub's do) gets ``…/receiverNL/CPO/LOC1``:
    # py_ocpi/core/push.py client_url is f"{base_url}{COUNTRY_CODE}/{PARTY_ID}/{object_id}".
    receiver = FakeParty([("BE", "EMP", "EMSP")], name="plain receiver")
    async with receiver.running(), library_cpo() as cpo:
        await cpo.control.seed("locations", location("LOC1"))
        pushed = await cpo.control.push(
            "locations", "LOC1", endpoints_url=receiver.base_url + "/ocpi/2.2.1", token=receiver.token_b
        )
        assert pushed.ok, pushed
        assert pushed.sent[-1].url == receiver.endpoint_url("locations", "RECEIVER") + "NL/CPO/LOC1"
        (put,) = [r for r in receiver.received if r.method == "PUT"]
        assert put.path == "/ocpi/2.2.1/locations/receiverNL/CPO/LOC1"
        assert put.headers["authorization"] == token_header(receiver.token_b)
        assert not any(name.startswith("ocpi-") or name.startswith("x-") for name in put.headers)


async def test_command_result_goes_to_the_response_url_as_given(
    library_cpo: PartyFactory, library_emsp: PartyFactory
) -> None:
    async with library_cpo() as cpo, library_emsp() as emsp:
        registration = await emsp.control.register(cpo.versions_url, cpo.token_a)
        assert registration.ok, registration
        await cpo.control.seed("locations", location("LOC1"))
        await cpo.control.configure(command_result={"result": "ACCEPTED"})
        response_url = emsp.module_url("commands") + "CMD-42"

        answer = await emsp.control.command(
            "START_SESSION",
            {"response_url": response_url, "token": token(), "location_id": "LOC1", "evse_uid": "EVSE1"},
            url=cpo.module_url("commands"),
        )
        assert answer.status == 200, answer
        assert answer.json["data"] == [{"result": "ACCEPTED", "timeout": 30, "message": []}]

        callback = await cpo.control.wait_sent(lambda s: s.url == response_url, what="the command result")
        assert (callback.method, callback.status, callback.json) == ("POST", 200, {"result": "ACCEPTED", "message": []})
        assert callback.header("authorization") == token_header(registration.token_b or "")
        assert await emsp.control.store("command_results") == {"CMD-42": [{"result": "ACCEPTED", "message": []}]}

        unknown = await emsp.control.command(
            "START_SESSION",
            {"response_url": response_url, "token": token(), "location_id": "NOPE"},
            url=cpo.module_url("commands"),
        )
        assert (unknown.status, unknown.json["status_code"]) == (200, 2003)


async def test_real_time_authorization_and_token_push(library_cpo: PartyFactory, library_emsp: PartyFactory) -> None:
    async with library_cpo() as cpo, library_emsp() as emsp:
        registration = await cpo.control.register(emsp.versions_url, emsp.token_a)
        assert registration.ok, registration
        await emsp.control.seed("tokens", token("TOK1"))
        await emsp.control.configure(authorize_allowed="BLOCKED", authorization_reference="AUTH1")

        answer = await cpo.control.authorize("TOK1", location={"location_id": "LOC1", "evse_uids": ["EVSE1"]})
        assert answer.status == 200, answer
        (info,) = answer.json["data"]
        assert (info["allowed"], info["token"]["uid"], info["authorization_reference"]) == ("BLOCKED", "tok1", "auth1")
        assert info["location"] == {"location_id": "loc1", "evse_uids": ["evse1"]}
        unknown = await cpo.control.authorize("NOPE")
        assert unknown.status == 404

        pushed = await emsp.control.push("tokens", "TOK1")  # the eMSP's peer is the CPO that registered with it
        assert pushed.ok, pushed
        assert pushed.sent[-1].url == cpo.module_url("tokens") + "BE/EMP/TOK1"  # no ?type=
        assert [t["uid"] for t in await cpo.control.store("tokens")] == ["tok1"]


async def test_party_is_stopped_by_its_pid(library_emsp: PartyFactory, tmp_path: Path) -> None:
    async with library_emsp("DE", "ABC", env={"CI_STRING_LOWERCASE_PREFERENCE": "false"}) as emsp:
        info = await emsp.control.info()
        assert (info.role, info.country_code, info.party_id, info.pid) == ("EMSP", "DE", "ABC", emsp.pid)
        # A party may register with itself: its client code against its own (library) credentials server.
        registration = await emsp.control.register(emsp.versions_url, emsp.token_a)
        assert registration.ok, (registration, emsp.log_tail())
        assert orjson_roles(registration.body) == [("EMSP", "DE", "ABC")]  # upper-cased with the preference off
        pid = emsp.pid
    assert emsp.process.returncode is not None
    assert not pid_alive(pid)
    assert emsp.log.parent == tmp_path and emsp.log.exists()


@pytest.mark.timeout(120)
async def test_an_uninstallable_requirement_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InteropUnavailableError, match="pip install"):
        await asyncio.to_thread(build_venv, tmp_path / "venv", ("extrawest-ocpi===not a version",), 90.0)
    assert not (tmp_path / "venv").exists()
