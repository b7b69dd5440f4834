"""routing/openroute.py: where a request without OCPI-to-* goes (every shape the module names), and what directly
routed traffic teaches the owner index."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from routing.errors import InvalidParametersError, MalformedBodyError, UnknownReceiverError
from routing.model import InterfaceRole, ModuleID, PartyKey
from routing.openroute import Lookup, Named, destination, learned
from routing.owners import MAX_KEY_LENGTH, OwnerFact, OwnerKind

SENDER, RECEIVER = InterfaceRole.SENDER, InterfaceRole.RECEIVER
EMSP = PartyKey("DE", "EMS")
CPO = PartyKey("NL", "CPO")


def body(**fields: object) -> bytes:
    return orjson.dumps(fields)


# -- destination: tokens authorize (mod_tokens §12.2.1) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "query", "key"),
    [
        ("/04A1B2C3/authorize", b"", "RFID:04A1B2C3"),  # type defaults to RFID
        ("/04a1b2c3/authorize", b"", "RFID:04A1B2C3"),  # CiString: compared upper-cased
        ("/04A1B2C3/authorize", b"type=APP_USER", "APP_USER:04A1B2C3"),
        ("/04A1B2C3/authorize", b"foo=1&type=AD_HOC_USER", "AD_HOC_USER:04A1B2C3"),
        ("/04A1B2C3/authorize", b"type=", "RFID:04A1B2C3"),  # empty: the default
        ("/TOK%201/authorize", b"", "RFID:TOK 1"),  # percent-encoded uid decoded
    ],
)
def test_token_authorize_goes_to_the_emsp_owning_the_token(suffix: str, query: bytes, key: str) -> None:
    assert destination(ModuleID.TOKENS, SENDER, "POST", suffix, query, b"") == Lookup(OwnerKind.TOKEN, key)


def test_token_authorize_body_is_not_read() -> None:
    # A LocationReferences body (or none at all) does not matter for where it goes.
    assert destination(ModuleID.TOKENS, SENDER, "POST", "/T1/authorize", b"", b"{not json") == Lookup(
        OwnerKind.TOKEN, "RFID:T1"
    )


@pytest.mark.parametrize("uid", ["U" * 65, "T%0A1", "%C3%A9"])
def test_token_authorize_with_an_unusable_uid_is_2001(uid: str) -> None:
    with pytest.raises(InvalidParametersError, match="token_uid"):
        destination(ModuleID.TOKENS, SENDER, "POST", f"/{uid}/authorize", b"", b"")


def test_the_longest_spec_token_key_fits_the_index() -> None:
    # uid is CiString(36) and AD_HOC_USER the longest TokenType: the key stays within what the index holds.
    found = destination(ModuleID.TOKENS, SENDER, "POST", "/" + "U" * 36 + "/authorize", b"type=AD_HOC_USER", b"")
    assert isinstance(found, Lookup)
    assert len(found.key) <= MAX_KEY_LENGTH


# -- destination: commands (mod_commands §13.3.1) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "document", "expected"),
    [
        ("START_SESSION", {"location_id": "LOC1", "token": {}}, Lookup(OwnerKind.LOCATION, "LOC1")),
        ("RESERVE_NOW", {"location_id": "LOC2"}, Lookup(OwnerKind.LOCATION, "LOC2")),
        ("UNLOCK_CONNECTOR", {"location_id": "LOC3", "evse_uid": "E1"}, Lookup(OwnerKind.LOCATION, "LOC3")),
        ("STOP_SESSION", {"session_id": "S1"}, Lookup(OwnerKind.SESSION_CPO, "S1")),
        ("CANCEL_RESERVATION", {"reservation_id": "R1"}, Lookup(OwnerKind.RESERVATION, "R1")),
        ("start_session", {"location_id": "LOC1"}, Lookup(OwnerKind.LOCATION, "LOC1")),
    ],
)
def test_commands_go_to_the_cpo_owning_what_they_name(
    command: str, document: dict[str, object], expected: Lookup
) -> None:
    assert destination(ModuleID.COMMANDS, RECEIVER, "POST", f"/{command}", b"", orjson.dumps(document)) == expected


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe"])
def test_a_command_whose_body_is_not_json_is_2001_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedBodyError) as caught:
        destination(ModuleID.COMMANDS, RECEIVER, "POST", "/START_SESSION", b"", raw)
    assert caught.value.ocpi_status == 2001


@pytest.mark.parametrize("raw", [b"[]", b'"LOC1"', b"42", b"null"])
def test_a_command_whose_body_is_not_an_object_is_2001_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedBodyError, match="JSON object"):
        destination(ModuleID.COMMANDS, RECEIVER, "POST", "/START_SESSION", b"", raw)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"location_id": None},
        {"location_id": 7},
        {"location_id": ""},
        {"location_id": "L" * 65},
        {"location_id": "L\n"},
    ],
)
def test_a_command_without_a_usable_id_is_2001(document: dict[str, object]) -> None:
    with pytest.raises(InvalidParametersError, match="location_id"):
        destination(ModuleID.COMMANDS, RECEIVER, "POST", "/START_SESSION", b"", orjson.dumps(document))


# -- destination: sessions and CDRs (mod_sessions §9.2.2, mod_cdrs §10.2.2) ----------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_session_naming_its_emsp_in_cdr_token_goes_there(method: str) -> None:
    document = body(id="S1", cdr_token={"country_code": "de", "party_id": "ems", "uid": "T1"})
    assert destination(ModuleID.SESSIONS, RECEIVER, method, "/NL/CPO/S1", b"", document) == Named(EMSP)


def test_a_session_patch_without_cdr_token_goes_to_the_emsp_that_got_its_put() -> None:
    assert destination(ModuleID.SESSIONS, RECEIVER, "PATCH", "/NL/CPO/S1", b"", body(kwh=1.5)) == Lookup(
        OwnerKind.SESSION_EMSP, "S1"
    )


@pytest.mark.parametrize(
    "cdr_token",
    [None, "DE:EMS", {"country_code": "DE"}, {"country_code": "D1", "party_id": "EMS"}, {"country_code": 49}],
)
def test_a_session_put_without_a_usable_cdr_token_is_2001(cdr_token: object) -> None:
    document = body(id="S1") if cdr_token is None else body(id="S1", cdr_token=cdr_token)
    with pytest.raises(InvalidParametersError, match="cdr_token"):
        destination(ModuleID.SESSIONS, RECEIVER, "PUT", "/NL/CPO/S1", b"", document)


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_session_push_with_a_malformed_body_is_2001(method: str) -> None:
    with pytest.raises(MalformedBodyError):
        destination(ModuleID.SESSIONS, RECEIVER, method, "/NL/CPO/S1", b"", b"{oops")


def test_a_cdr_goes_to_the_emsp_of_its_cdr_token() -> None:
    document = body(id="CDR1", cdr_token={"country_code": "DE", "party_id": "EMS"})
    assert destination(ModuleID.CDRS, RECEIVER, "POST", "", b"", document) == Named(EMSP)


def test_a_cdr_without_cdr_token_is_2001_and_a_malformed_one_too() -> None:
    with pytest.raises(InvalidParametersError, match="cdr_token"):
        destination(ModuleID.CDRS, RECEIVER, "POST", "", b"", body(id="CDR1"))
    with pytest.raises(MalformedBodyError):
        destination(ModuleID.CDRS, RECEIVER, "POST", "", b"", b"[")


# -- destination: charging profiles and locations ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_charging_profile_goes_to_the_cpo_of_its_session(method: str) -> None:
    assert destination(ModuleID.CHARGINGPROFILES, RECEIVER, method, "/S1", b"", b"") == Lookup(
        OwnerKind.SESSION_CPO, "S1"
    )


@pytest.mark.parametrize("suffix", ["/LOC1", "/LOC1/EVSE1", "/LOC1/EVSE1/1"])
def test_a_location_get_goes_to_the_cpo_owning_it(suffix: str) -> None:
    assert destination(ModuleID.LOCATIONS, SENDER, "GET", suffix, b"", b"") == Lookup(OwnerKind.LOCATION, "LOC1")


# -- destination: everything else is 4001, nothing forwarded ----------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "role", "method", "suffix"),
    [
        (ModuleID.TOKENS, SENDER, "GET", "/T1/authorize"),
        (ModuleID.TOKENS, SENDER, "POST", "/T1"),
        (ModuleID.TOKENS, SENDER, "POST", "/T1/authorize/x"),
        (ModuleID.TOKENS, SENDER, "GET", ""),  # a list GET: whose list?
        (ModuleID.TOKENS, RECEIVER, "POST", "/T1/authorize"),
        (ModuleID.COMMANDS, RECEIVER, "POST", "/SELF_DESTRUCT"),
        (ModuleID.COMMANDS, RECEIVER, "POST", "/START_SESSION/42"),  # a command result goes to a response_url
        (ModuleID.COMMANDS, RECEIVER, "GET", "/START_SESSION"),
        (ModuleID.COMMANDS, SENDER, "POST", "/START_SESSION"),
        (ModuleID.SESSIONS, RECEIVER, "PUT", "/NL/CPO"),
        (ModuleID.SESSIONS, RECEIVER, "GET", "/NL/CPO/S1"),
        (ModuleID.SESSIONS, SENDER, "GET", ""),
        (ModuleID.CDRS, RECEIVER, "POST", "/NL/CPO/CDR1"),
        (ModuleID.CDRS, RECEIVER, "GET", "/CDR1"),
        (ModuleID.CDRS, SENDER, "GET", ""),
        (ModuleID.CHARGINGPROFILES, RECEIVER, "PUT", "/S1/extra"),
        (ModuleID.CHARGINGPROFILES, RECEIVER, "PUT", ""),
        (ModuleID.CHARGINGPROFILES, SENDER, "POST", "/S1"),
        (ModuleID.LOCATIONS, SENDER, "GET", ""),
        (ModuleID.LOCATIONS, SENDER, "GET", "/LOC1/EVSE1/1/x"),
        (ModuleID.LOCATIONS, SENDER, "POST", "/LOC1"),
        (ModuleID.LOCATIONS, RECEIVER, "GET", "/NL/CPO/LOC1"),
        (ModuleID.TARIFFS, SENDER, "GET", ""),
        (ModuleID.TARIFFS, RECEIVER, "GET", "/NL/CPO/T1"),
    ],
)
def test_a_shape_the_hub_cannot_place_is_4001(module: ModuleID, role: InterfaceRole, method: str, suffix: str) -> None:
    with pytest.raises(UnknownReceiverError, match="send OCPI-to") as caught:
        destination(module, role, method, suffix, b"", body(location_id="L", session_id="S"))
    assert caught.value.ocpi_status == 4001


def test_a_shape_it_cannot_place_is_4001_before_the_body_is_read() -> None:
    with pytest.raises(UnknownReceiverError):
        destination(ModuleID.COMMANDS, RECEIVER, "POST", "/SELF_DESTRUCT", b"", b"{not json")


# -- learned: what directly routed traffic teaches -------------------------------------------------------------------


def teach(
    module: ModuleID, method: str, suffix: str, raw: bytes = b"{}", query: bytes = b"", role: InterfaceRole = RECEIVER
) -> tuple[OwnerFact, ...]:
    return learned(module, role, method, suffix, query, EMSP, raw)


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_token_push_teaches_its_owner(method: str) -> None:
    assert teach(ModuleID.TOKENS, method, "/de/ems/t1") == (OwnerFact(OwnerKind.TOKEN, "RFID:T1", EMSP),)
    assert teach(ModuleID.TOKENS, method, "/DE/EMS/T1", query=b"type=APP_USER") == (
        OwnerFact(OwnerKind.TOKEN, "APP_USER:T1", EMSP),
    )


@pytest.mark.parametrize("suffix", ["/NL/CPO/LOC1", "/NL/CPO/LOC1/EVSE1", "/NL/CPO/LOC1/EVSE1/1"])
def test_a_location_push_teaches_its_cpo(suffix: str) -> None:
    assert teach(ModuleID.LOCATIONS, "PUT", suffix) == (OwnerFact(OwnerKind.LOCATION, "LOC1", CPO),)


def test_a_session_push_teaches_its_cpo_and_the_emsp_it_went_to() -> None:
    assert teach(ModuleID.SESSIONS, "PUT", "/NL/CPO/S1") == (
        OwnerFact(OwnerKind.SESSION_CPO, "S1", CPO),
        OwnerFact(OwnerKind.SESSION_EMSP, "S1", EMSP),
    )


def test_a_reserve_now_teaches_who_got_the_reservation_until_when() -> None:
    document = body(reservation_id="R1", expiry_date="2026-05-01T12:00:00Z", location_id="LOC1")
    to_cpo = learned(ModuleID.COMMANDS, RECEIVER, "POST", "/RESERVE_NOW", b"", CPO, document)
    assert to_cpo == (OwnerFact(OwnerKind.RESERVATION, "R1", CPO, datetime(2026, 5, 1, 12, tzinfo=UTC)),)


@pytest.mark.parametrize("expiry", [None, "tomorrow", 1_700_000_000])
def test_a_reserve_now_with_an_unusable_expiry_still_teaches_the_reservation(expiry: object) -> None:
    document = body(reservation_id="R1", expiry_date=expiry)
    assert teach(ModuleID.COMMANDS, "POST", "/RESERVE_NOW", document) == (
        OwnerFact(OwnerKind.RESERVATION, "R1", EMSP, None),
    )


@pytest.mark.parametrize(
    ("module", "method", "suffix", "raw", "role"),
    [
        (ModuleID.LOCATIONS, "GET", "/NL/CPO/LOC1", b"", RECEIVER),
        (ModuleID.LOCATIONS, "DELETE", "/NL/CPO/LOC1", b"", RECEIVER),
        (ModuleID.LOCATIONS, "PUT", "/NL/CPO/LOC1", b"{}", SENDER),
        (ModuleID.LOCATIONS, "PUT", "/NL/CPO", b"{}", RECEIVER),
        (ModuleID.LOCATIONS, "PUT", "/N1/CPO/LOC1", b"{}", RECEIVER),  # not a country code
        (ModuleID.LOCATIONS, "PUT", "/NL/CP/LOC1", b"{}", RECEIVER),  # not a party id
        (ModuleID.LOCATIONS, "PUT", "/NL/CPO/" + "L" * 65, b"{}", RECEIVER),  # id too long for the index
        (ModuleID.TOKENS, "PUT", "/DE/EMS/" + "T" * 60, b"{}", RECEIVER),  # type + uid too long
        (ModuleID.TARIFFS, "PUT", "/NL/CPO/T1", b"{}", RECEIVER),
        (ModuleID.CDRS, "POST", "", b"{}", RECEIVER),
        (ModuleID.CHARGINGPROFILES, "PUT", "/S1", b"{}", RECEIVER),
        (ModuleID.COMMANDS, "POST", "/START_SESSION", b'{"location_id":"L"}', RECEIVER),
        (ModuleID.COMMANDS, "POST", "/RESERVE_NOW", b"{not json", RECEIVER),  # the receiver answers it itself
        (ModuleID.COMMANDS, "POST", "/RESERVE_NOW", b"[]", RECEIVER),
        (ModuleID.COMMANDS, "POST", "/RESERVE_NOW", b'{"reservation_id": 7}', RECEIVER),
        (ModuleID.COMMANDS, "POST", "/RESERVE_NOW", b'{"reservation_id": ""}', RECEIVER),
    ],
)
def test_everything_else_teaches_nothing_and_never_fails(
    module: ModuleID, method: str, suffix: str, raw: bytes, role: InterfaceRole
) -> None:
    assert teach(module, method, suffix, raw, role=role) == ()
