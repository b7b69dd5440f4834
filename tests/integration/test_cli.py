"""``ocpi-hub registry`` and ``ocpi-hub serve --config`` as real subprocesses, on the session's Redis (the test's
key prefix through OCPI_HUB_KEY_PREFIX) and, where a hub is needed, an in-process hub on loopback.

The contract is /work/shared/operator-interface.md, "Registry CLI": every command exits non-zero with a one-line
reason on bad input and changes nothing; a change reaches every running hub within one second.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyRole
from routing.table import token_digest
from tests.support.fake_party import FakeParty, token_header
from tests.support.hubs import RunningHub, connect_party, parties
from tests.support.processes import Completed, hub_env, poll, run_ocpi_hub
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration

PROPAGATION = 1.0  # seconds a CLI change may take to reach a running hub (operator-interface.md)


@dataclass(frozen=True, slots=True)
class RegistryCli:
    """``ocpi-hub registry --redis-url URL [GROUP_OPTIONS] ARGS`` with this test's key prefix."""

    redis_url: str
    prefix: str

    async def __call__(self, *args: str, group: tuple[str, ...] = (), redis_url: str | None = None) -> Completed:
        url = redis_url or self.redis_url
        env = hub_env(key_prefix=self.prefix)
        return await run_ocpi_hub("registry", "--redis-url", url, *group, *args, env=env)


@pytest.fixture
def cli(redis_url: str, keys: RegistryKeys) -> RegistryCli:
    return RegistryCli(redis_url, keys.prefix)


def ok(result: Completed) -> Completed:
    assert result.returncode == 0, str(result)
    return result


def refused(result: Completed) -> str:
    """A refusal as the contract wants it: non-zero exit, exactly one line on stderr, no traceback; that line."""
    assert result.returncode != 0, str(result)
    assert len(result.stderr_lines) == 1, str(result)
    assert "Traceback" not in result.stderr, str(result)
    assert not result.stdout.strip(), str(result)  # nothing a script could mistake for a result
    return result.stderr_lines[0]


async def prefix_keys(store: PartyStore) -> list[bytes]:
    """Every key this test's prefix owns (they share one hash tag)."""
    pattern = "{" + store.keys.prefix.rstrip(":") + "}:*"
    return sorted([key async for key in store.redis.scan_iter(match=pattern)])


async def registry_state(store: PartyStore) -> dict[str, Any]:
    """Everything a registry write touches, for before/after comparisons."""
    k = store.keys
    return {
        "version": await store.redis.get(k.version()),
        "platforms": await store.redis.hgetall(k.platforms()),
        "parties": await store.redis.hgetall(k.parties()),
        "tokens": await store.redis.hgetall(k.tokens()),
        "clientinfo": await store.redis.hgetall(k.clientinfo()),
        "events": await store.redis.xlen(k.events()),
    }


def table_rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.strip()]


def entry_for(listing: list[dict[str, Any]], party: str) -> dict[str, Any]:
    matches = [e for e in listing if party in e["parties"]]
    assert len(matches) == 1, listing
    return matches[0]


async def status_of(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[int, int | None]:
    """(HTTP status, OCPI status_code) of a GET."""
    reply = await client.get(url, headers=headers)
    try:
        body = reply.json()
    except ValueError:
        return reply.status_code, None
    return reply.status_code, body.get("status_code") if isinstance(body, dict) else None


# -- add: token A and the versions URL ---------------------------------------------------------------------------


async def test_add_prints_token_a_and_the_versions_url_a_running_hub_recorded(
    hub: RunningHub, store: PartyStore, cli: RegistryCli
) -> None:
    result = ok(await cli("add", "--party", "NL:ABC:CPO", "--name", "X", "--json"))
    info = result.json()
    assert {"token_a", "versions_url"} <= info.keys()
    # No --public-url: the URL the running hub recorded (its port is random, so not the 8080 default).
    assert info["versions_url"] == hub.versions_url
    # The token is a live token A: a platform registers with it.
    await hub.synced(store)
    async with FakeParty([("NL", "ABC", "CPO")], name="X").running() as party:
        reply = await party.register(info["versions_url"], info["token_a"])
    assert reply.status_code == 200, reply.text
    assert reply.json()["status_code"] == 1000, reply.text
    record = (await store.platforms())[0]
    assert record.name == "X"
    assert [str(r) for r in record.roles] == ["NL:ABC:CPO"]


async def test_add_plain_output_contains_the_token_a_and_versions_url(
    hub: RunningHub, store: PartyStore, cli: RegistryCli
) -> None:
    result = ok(await cli("add", "--party", "DE:XYZ:EMSP", "--party", "DE:XYZ:CPO"))
    assert hub.versions_url in result.stdout
    tokens = await store.redis.hgetall(store.keys.tokens())
    (platform,) = await store.platforms()
    # Some word of the output is the token whose digest the registry accepts as this platform's token A.
    words = set(re.split(r"\s+", result.stdout))
    accepted = [w for w in words if tokens.get(token_digest(w.encode()).hex().encode()) == f"{platform.id}|A".encode()]
    assert len(accepted) == 1, result.stdout
    assert len(accepted[0]) >= 32


async def test_add_public_url_given_beats_the_recorded_one(
    hub: RunningHub, store: PartyStore, cli: RegistryCli
) -> None:
    flag = ok(await cli("add", "--party", "NL:ONE:CPO", "--json", group=("--public-url", "https://hub.example.com/")))
    assert flag.json()["versions_url"] == "https://hub.example.com/ocpi/versions"
    env = hub_env(key_prefix=cli.prefix, public_url="https://env.example.com:8443")
    by_env = ok(
        await run_ocpi_hub("registry", "--redis-url", cli.redis_url, "add", "--party", "NL:TWO:CPO", "--json", env=env)
    )
    assert by_env.json()["versions_url"] == "https://env.example.com:8443/ocpi/versions"
    # A recorded URL was there to fall back on, and was not used.
    assert await store.public_url() == hub.base_url


# -- the whole life of a platform ----------------------------------------------------------------------------------


async def test_round_trip_add_register_list_show_suspend_resume_remove(
    hub: RunningHub, store: PartyStore, cli: RegistryCli, client: httpx.AsyncClient
) -> None:
    async with parties(
        FakeParty([("NL", "ABC", "CPO")], name="cpo"), FakeParty([("DE", "XYZ", "EMSP")], name="emsp")
    ) as (cpo, emsp):
        info = ok(await cli("add", "--party", "NL:ABC:CPO", "--name", "X", "--json")).json()
        await hub.synced(store)
        reply = await cpo.register(info["versions_url"], info["token_a"])
        assert reply.status_code == 200, reply.text
        assert reply.json()["status_code"] == 1000, reply.text
        token_c = cpo.hub_token
        await connect_party(store, hub, emsp)

        # list (table): one row per party, CONNECTED.
        rows = table_rows(ok(await cli("list")).stdout)
        assert rows[0] == ["PARTY", "ROLE", "STATUS", "PLATFORM", "NAME"]
        abc = [r for r in rows if r[0] == "NL:ABC"]
        assert len(abc) == 1, rows
        assert abc[0][1:3] == ["CPO", "CONNECTED"]
        assert abc[0][-1] == "X"
        # list --json
        listing = ok(await cli("list", "--json")).json()
        assert len(listing) == 2
        entry = entry_for(listing, "NL:ABC:CPO")
        assert entry["status"] == "CONNECTED"
        assert entry["registered"] is True
        # show --json: endpoints, version 2.2.1
        shown = ok(await cli("show", "NL:ABC", "--json")).json()
        assert shown["id"] == entry["id"]
        assert shown["status"] == "CONNECTED"
        assert shown["version"] == "2.2.1"
        assert shown["versions_url"] == cpo.versions_url
        assert shown["parties"] == ["NL:ABC:CPO"]
        endpoints = {(e["identifier"], e["role"]): e["url"] for e in shown["endpoints"]}
        assert endpoints[("locations", "SENDER")] == cpo.endpoint_url("locations", "SENDER")
        assert endpoints[("credentials", "SENDER")] == cpo.base_url + "/ocpi/2.2.1/credentials"

        locations = hub.url("/ocpi/2.2.1/sender/locations")
        assert await status_of(client, locations, cpo.headers_to(emsp.party())) == (200, 1000)
        assert await status_of(client, locations, emsp.headers_to(cpo.party())) == (200, 1000)

        # suspend: traffic from it is refused with 403, to it with 4003, within a second.
        suspended = ok(await cli("suspend", "NL:ABC"))
        assert "SUSPENDED" in suspended.stdout

        async def from_it_refused() -> bool:
            return (await status_of(client, locations, cpo.headers_to(emsp.party())))[0] == 403

        took = await poll(from_it_refused, PROPAGATION, "the suspension to reach the hub", since=suspended.finished)
        assert took <= PROPAGATION
        seen_by_cpo = len(cpo.received)
        assert (await status_of(client, locations, emsp.headers_to(cpo.party())))[1] == 4003
        assert len(cpo.received) == seen_by_cpo  # nothing was forwarded to the suspended platform
        assert entry_for(ok(await cli("list", "--json")).json(), "NL:ABC:CPO")["status"] == "SUSPENDED"
        assert any(r[:3] == ["NL:ABC", "CPO", "SUSPENDED"] for r in table_rows(ok(await cli("list")).stdout))

        # resume: back to CONNECTED, traffic flows again within a second.
        resumed = ok(await cli("resume", "NL:ABC"))
        assert "CONNECTED" in resumed.stdout

        async def flows_again() -> bool:
            return await status_of(client, locations, cpo.headers_to(emsp.party())) == (200, 1000)

        took = await poll(flows_again, PROPAGATION, "the resumption to reach the hub", since=resumed.finished)
        assert took <= PROPAGATION
        assert await status_of(client, locations, emsp.headers_to(cpo.party())) == (200, 1000)
        assert entry_for(ok(await cli("list", "--json")).json(), "NL:ABC:CPO")["status"] == "CONNECTED"

        # remove: token C is refused within a second; the party is unknown afterwards.
        removed = ok(await cli("remove", "NL:ABC"))
        versions = {"Authorization": token_header(token_c)}

        async def token_c_refused() -> bool:
            return (await client.get(hub.versions_url, headers=versions)).status_code == 401

        took = await poll(token_c_refused, PROPAGATION, "token C to be refused", since=removed.finished)
        assert took <= PROPAGATION
        assert (await status_of(client, locations, emsp.headers_to(cpo.party())))[1] == 4001
        assert "NL:ABC" in refused(await cli("show", "NL:ABC"))
        assert [e["parties"] for e in ok(await cli("list", "--json")).json()] == [["DE:XYZ:EMSP"]]
        # The party is free again.
        ok(await cli("add", "--party", "NL:ABC:CPO", "--json"))


# -- bad input: one line, non-zero, nothing changed ----------------------------------------------------------------


@pytest.mark.parametrize(
    "party_args",
    [
        ("--party", "XX"),
        ("--party", "NL:ABC"),
        ("--party", "NL:ABC:KING"),
        ("--party", "NL:TOOLONG:CPO"),
        ("--party", "NL:ABC:HUB"),
        ("--party", "NL:NEW:CPO", "--party", "XX"),
        ("--party", "NL:NEW:CPO", "--party", "nl:new:cpo"),
    ],
    ids=["no-colons", "no-role", "bad-role", "bad-party-id", "hub-role", "one-good-one-bad", "same-twice"],
)
async def test_add_malformed_party_is_one_line_and_stores_nothing(
    store: PartyStore, cli: RegistryCli, party_args: tuple[str, ...]
) -> None:
    line = refused(await cli("add", *party_args, "--json"))
    assert "party" in line.lower()
    assert await prefix_keys(store) == []


async def test_add_same_party_twice_fails_and_leaves_the_first_intact(store: PartyStore, cli: RegistryCli) -> None:
    first = ok(await cli("add", "--party", "NL:ABC:CPO", "--name", "first", "--json")).json()
    before = await registry_state(store)
    line = refused(await cli("add", "--party", "NL:ABC:CPO", "--name", "second", "--json"))
    assert "NL:ABC" in line
    # Also when only one of several parties is taken: the new one is not half-declared.
    line = refused(await cli("add", "--party", "NL:NEW:EMSP", "--party", "NL:ABC:EMSP", "--json"))
    assert "NL:ABC" in line
    assert await registry_state(store) == before
    (record,) = await store.platforms()
    assert record.name == "first"
    grant = before["tokens"][token_digest(first["token_a"].encode()).hex().encode()]
    assert grant == f"{record.id}|A".encode()


@pytest.mark.parametrize("command", ["show", "suspend", "resume", "remove"])
async def test_unknown_party_is_one_line_and_changes_nothing(store: PartyStore, cli: RegistryCli, command: str) -> None:
    await store.declare([PartyRole.parse("NL:ABC:CPO")], "abc")
    before = await registry_state(store)
    line = refused(await cli(command, "ZZ:NOP"))
    assert "ZZ:NOP" in line
    assert await registry_state(store) == before


@pytest.mark.parametrize(("command", "party"), [("suspend", "NL:AB"), ("show", "NLABC"), ("remove", "NL:ABC:CPO:X")])
async def test_malformed_party_argument_is_one_line(
    store: PartyStore, cli: RegistryCli, command: str, party: str
) -> None:
    await store.declare([PartyRole.parse("NL:ABC:CPO")], "abc")
    before = await registry_state(store)
    refused(await cli(command, party))
    assert await registry_state(store) == before


@pytest.mark.parametrize(
    "args", [("add", "--party", "NL:ABC:CPO", "--json"), ("list",), ("suspend", "NL:ABC")], ids=lambda a: a[0]
)
async def test_unreachable_registry_is_one_line_naming_the_registry(
    store: PartyStore, cli: RegistryCli, args: tuple[str, ...]
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    line = refused(await cli(*args, redis_url=closed))
    assert "registry" in line.lower()
    assert await prefix_keys(store) == []


async def test_malformed_redis_url_is_one_line_naming_it(store: PartyStore, cli: RegistryCli) -> None:
    line = refused(await cli("list", redis_url="http://127.0.0.1:6379"))
    assert "redis_url" in line


@pytest.mark.parametrize("args", [("add", "--json"), ("show",)], ids=["add-without-party", "show-without-party"])
async def test_missing_party_is_one_line_and_changes_nothing(
    store: PartyStore, cli: RegistryCli, args: tuple[str, ...]
) -> None:
    # operator-interface.md: "Every command exits non-zero with a one-line reason on bad input".
    line = refused(await cli(*args))
    assert "party" in line.lower()
    assert await prefix_keys(store) == []


# -- serve with a bad config file ----------------------------------------------------------------------------------


async def test_serve_with_bad_config_names_every_bad_key_on_one_line(
    tmp_path: Path, redis_url: str, keys: RegistryKeys
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('port = "x"\nworkers = 0\nnonsense = 1\nserver = "nginx"\nlog_level = "info"\n')
    started = time.monotonic()
    result = await run_ocpi_hub(
        "serve",
        "--config",
        str(config),
        "--redis-url",
        redis_url,
        "--data-dir",
        str(tmp_path / "data"),
        env=hub_env(key_prefix=keys.prefix),
        timeout=15,
        cwd=tmp_path,
    )
    assert time.monotonic() - started < 5, str(result)
    line = refused(result)
    for key in ("port", "workers", "nonsense", "server"):
        assert re.search(rf"\b{key}\b", line), (key, line)
    assert "log_level" not in line  # a good key is not reported
    assert not (tmp_path / "data").exists()  # it started nothing
