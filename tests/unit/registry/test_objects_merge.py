"""registry/objects.py pure logic: addresses, validation and merges, as a Receiver applies pushes (no Redis)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from registry.objects import (
    Address,
    ApplyResult,
    InvalidPushError,
    Level,
    Merged,
    Outcome,
    PageQuery,
    address_of,
    check_identity,
    check_method,
    decode_object,
    extract,
    last_updated_of,
    merge,
    microseconds,
)
from routing.datetimes import parse_datetime
from routing.model import ModuleID, PartyKey

T1, T2, T3 = "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "2024-01-01T12:00:00Z"


def location() -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "ABC",
        "id": "LOC1",
        "name": "Gent Zuid",
        "evses": [
            {
                "uid": "E1",
                "status": "AVAILABLE",
                "connectors": [{"id": "1", "standard": "IEC_62196_T2", "last_updated": T1}],
                "last_updated": T1,
            }
        ],
        "last_updated": T2,
    }


def addr(*segments: str, module: ModuleID = ModuleID.LOCATIONS, token_type: str | None = None) -> Address:
    return address_of(module, segments, token_type)


def merged(result: Merged | ApplyResult) -> Merged:
    assert isinstance(result, Merged), result
    return result


def at(text: str) -> datetime:
    return parse_datetime(text)


# -- addresses ------------------------------------------------------------------------------------------------


def test_address_levels_and_owner_upper_cased() -> None:
    assert addr("nl", "abc", "LOC1").level is Level.OBJECT
    evse = addr("NL", "ABC", "LOC1", "E1")
    assert evse.level is Level.EVSE
    assert evse.evse_uid == "E1"
    connector = addr("NL", "ABC", "LOC1", "E1", "2")
    assert connector.level is Level.CONNECTOR
    assert connector.connector_id == "2"
    assert addr("nl", "abc", "LOC1").owner == PartyKey("NL", "ABC")


def test_member_is_owner_and_upper_cased_id_segments_are_percent_decoded() -> None:
    address = addr("NL", "ABC", "loc%201")
    assert address.object_id == "loc 1"
    assert address.member == "NL:ABC:LOC 1"


def test_token_address_carries_the_type_defaulting_to_rfid() -> None:
    rfid = addr("NL", "ABC", "0123abc", module=ModuleID.TOKENS)
    assert rfid.token_type == "RFID"
    assert rfid.member == "NL:ABC:RFID:0123ABC"
    app = addr("NL", "ABC", "0123abc", module=ModuleID.TOKENS, token_type="APP_USER")
    assert app.member == "NL:ABC:APP_USER:0123ABC"


@pytest.mark.parametrize(
    ("module", "segments", "token_type"),
    [
        (ModuleID.LOCATIONS, ("NL", "ABC"), None),  # too few
        (ModuleID.LOCATIONS, ("NL", "ABC", "L", "E", "C", "X"), None),  # too many
        (ModuleID.TARIFFS, ("NL", "ABC", "T1", "X"), None),  # tariffs have no nested objects
        (ModuleID.TOKENS, ("NL", "ABC", "U1", "X"), None),
        (ModuleID.LOCATIONS, ("NLD", "ABC", "L"), None),  # malformed country code
        (ModuleID.LOCATIONS, ("NL", "AB", "L"), None),  # malformed party id
        (ModuleID.LOCATIONS, ("NL", "ABC", "x" * 37), None),  # CiString(36)
        (ModuleID.LOCATIONS, ("NL", "ABC", ""), None),
        (ModuleID.LOCATIONS, ("NL", "ABC", "L%0A1"), None),  # control character
        (ModuleID.LOCATIONS, ("NL", "ABC", "L%C3%A9"), None),  # not ASCII
        (ModuleID.TOKENS, ("NL", "ABC", "U1"), "BADGE"),  # not a TokenType
        (ModuleID.SESSIONS, ("NL", "ABC", "S1"), None),  # not stored
    ],
)
def test_malformed_addresses_are_invalid(module: ModuleID, segments: tuple[str, ...], token_type: str | None) -> None:
    with pytest.raises(InvalidPushError):
        address_of(module, segments, token_type)


@pytest.mark.parametrize(
    ("module", "segments", "method"),
    [
        (ModuleID.TARIFFS, ("NL", "ABC", "T1"), "PATCH"),  # mod_tariffs §11.2.2: PATCH n/a
        (ModuleID.TOKENS, ("NL", "ABC", "U1"), "DELETE"),  # mod_tokens §12.2.1: tokens cannot be removed
        (ModuleID.LOCATIONS, ("NL", "ABC", "L1"), "DELETE"),  # mod_locations §8.2.2: use PATCH status=REMOVED
        (ModuleID.LOCATIONS, ("NL", "ABC", "L1"), "POST"),
        (ModuleID.TARIFFS, ("NL", "ABC", "T1"), "GET"),
    ],
)
def test_wrong_methods_are_invalid(module: ModuleID, segments: tuple[str, ...], method: str) -> None:
    with pytest.raises(InvalidPushError):
        check_method(address_of(module, segments, None), method)


def test_allowed_methods_pass() -> None:
    check_method(addr("NL", "ABC", "L1", "E1", "C1"), "PATCH")
    check_method(addr("NL", "ABC", "T1", module=ModuleID.TARIFFS), "DELETE")
    check_method(addr("NL", "ABC", "U1", module=ModuleID.TOKENS), "PATCH")


# -- bodies ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"null", b"{"])
def test_bodies_that_are_not_json_objects_are_invalid(body: bytes) -> None:
    with pytest.raises(InvalidPushError):
        decode_object(body)


@pytest.mark.parametrize("value", [None, 17, "yesterday", "2024-01-01T10:00:00+00:00", "2024-01-01"])
def test_missing_or_unparseable_last_updated_is_invalid(value: object) -> None:
    obj = {} if value is None else {"last_updated": value}
    with pytest.raises(InvalidPushError):
        last_updated_of(obj)


def test_last_updated_forms_compare_as_instants() -> None:
    assert last_updated_of({"last_updated": "2024-01-01T10:00:00Z"}) == last_updated_of(
        {"last_updated": "2024-01-01T10:00:00.000"}
    )


def test_microseconds_are_exact_for_five_fraction_digits() -> None:
    # string(25) without "Z" leaves room for five fraction digits: milliseconds would merge these two.
    a, b = at("2024-01-01T10:00:00.12345"), at("2024-01-01T10:00:00.12346")
    assert microseconds(b) - microseconds(a) == 10
    assert microseconds(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1_000_000


def test_put_requires_ids_and_owner_matching_the_url() -> None:
    whole = location()
    check_identity(addr("nl", "abc", "loc1"), "PUT", whole)  # CiStrings compare case-insensitively
    for field in ("id", "country_code", "party_id"):
        partial = {k: v for k, v in whole.items() if k != field}
        with pytest.raises(InvalidPushError, match=f"{field} is missing"):
            check_identity(addr("NL", "ABC", "LOC1"), "PUT", partial)
    with pytest.raises(InvalidPushError, match="id in the body differs"):
        check_identity(addr("NL", "ABC", "LOC2"), "PUT", whole)
    with pytest.raises(InvalidPushError, match="party_id in the body differs"):
        check_identity(addr("NL", "XYZ", "LOC1"), "PUT", whole)


def test_nested_put_checks_the_nested_id_only() -> None:
    check_identity(addr("NL", "ABC", "LOC1", "E1"), "PUT", {"uid": "e1", "last_updated": T1})
    with pytest.raises(InvalidPushError, match="uid is missing"):
        check_identity(addr("NL", "ABC", "LOC1", "E1"), "PUT", {"last_updated": T1})
    with pytest.raises(InvalidPushError, match="id in the body differs"):
        check_identity(addr("NL", "ABC", "LOC1", "E1", "1"), "PUT", {"id": "2", "last_updated": T1})


def test_patch_may_leave_ids_out_but_not_contradict_them() -> None:
    check_identity(addr("NL", "ABC", "LOC1"), "PATCH", {"name": "x", "last_updated": T1})
    with pytest.raises(InvalidPushError):
        check_identity(addr("NL", "ABC", "LOC1"), "PATCH", {"id": "LOC2", "last_updated": T1})
    with pytest.raises(InvalidPushError):
        check_identity(addr("NL", "ABC", "LOC1"), "PATCH", {"country_code": "DE", "last_updated": T1})


def test_token_type_in_the_body_must_match_the_url() -> None:
    token = {"country_code": "NL", "party_id": "ABC", "uid": "U1", "type": "RFID", "last_updated": T1}
    check_identity(addr("NL", "ABC", "U1", module=ModuleID.TOKENS), "PUT", token)
    with pytest.raises(InvalidPushError, match="type in the body differs"):
        check_identity(addr("NL", "ABC", "U1", module=ModuleID.TOKENS, token_type="APP_USER"), "PUT", token)
    with pytest.raises(InvalidPushError, match="type is missing"):
        check_identity(
            addr("NL", "ABC", "U1", module=ModuleID.TOKENS), "PUT", {k: v for k, v in token.items() if k != "type"}
        )


def test_page_query_bounds() -> None:
    with pytest.raises(ValueError, match="limit"):
        PageQuery(limit=0)
    with pytest.raises(ValueError, match="limit"):
        PageQuery(limit=100_000)
    with pytest.raises(ValueError, match="negative"):
        PageQuery(offset=-1)
    with pytest.raises(ValueError, match="aware"):
        PageQuery(date_from=datetime(2024, 1, 1))  # naive on purpose


# -- merges ---------------------------------------------------------------------------------------------------


def test_patch_replaces_present_top_level_fields_and_keeps_the_rest_in_order() -> None:
    stored = location()
    patch = {"name": "Interparking", "last_updated": T3}
    result = merged(merge(stored, addr("NL", "ABC", "LOC1"), "PATCH", patch, at(T3)))
    assert list(result.document) == list(stored)
    assert result.document["name"] == "Interparking"
    assert result.document["evses"] == stored["evses"]
    assert result.document["last_updated"] == T3
    assert result.last_updated == at(T3)


def test_patch_older_than_the_stored_object_is_stale_and_equal_applies() -> None:
    stored = location()
    older = merge(stored, addr("NL", "ABC", "LOC1"), "PATCH", {"name": "x", "last_updated": T1}, at(T1))
    assert older == ApplyResult(Outcome.STALE)
    same = merge(stored, addr("NL", "ABC", "LOC1"), "PATCH", {"name": "x", "last_updated": T2}, at(T2))
    assert merged(same).document["name"] == "x"


def test_staleness_compares_instants_not_strings() -> None:
    stored = {**location(), "last_updated": "2024-01-01T11:00:00.000Z"}
    patch = {"name": "x", "last_updated": "2024-01-01T11:00:00Z"}
    assert isinstance(merge(stored, addr("NL", "ABC", "LOC1"), "PATCH", patch, at(patch["last_updated"])), Merged)


def test_evse_patch_merges_into_the_evse_and_moves_the_location_forward_with_the_senders_value() -> None:
    stored = location()
    sent = "2024-01-01T13:00:00.5Z"
    patch = {"status": "CHARGING", "last_updated": sent}
    result = merged(merge(stored, addr("NL", "ABC", "LOC1", "E1"), "PATCH", patch, at(sent)))
    evse = result.document["evses"][0]
    assert evse["status"] == "CHARGING"
    assert evse["connectors"] == stored["evses"][0]["connectors"]
    assert evse["last_updated"] == sent
    assert result.document["last_updated"] == sent  # the sender's text, not a re-formatted one
    assert result.last_updated == at(sent)


def test_parent_last_updated_never_moves_back() -> None:
    stored = location()  # Location T2, EVSE T1
    patch = {"status": "CHARGING", "last_updated": "2024-01-01T10:30:00Z"}  # newer than the EVSE, older than it
    result = merged(merge(stored, addr("NL", "ABC", "LOC1", "E1"), "PATCH", patch, at(patch["last_updated"])))
    assert result.document["evses"][0]["last_updated"] == "2024-01-01T10:30:00Z"
    assert result.document["last_updated"] == T2
    assert result.last_updated == at(T2)


def test_evse_put_replaces_in_place_or_appends() -> None:
    stored = location()
    replacement = {"uid": "e1", "status": "BLOCKED", "last_updated": T3}  # uid compared case-insensitively
    result = merged(merge(stored, addr("NL", "ABC", "LOC1", "E1"), "PUT", replacement, at(T3)))
    assert result.document["evses"] == [replacement]
    added = {"uid": "E2", "status": "AVAILABLE", "last_updated": T3}
    result = merged(merge(stored, addr("NL", "ABC", "LOC1", "E2"), "PUT", added, at(T3)))
    assert [e["uid"] for e in result.document["evses"]] == ["E1", "E2"]
    assert result.document["last_updated"] == T3


def test_evse_put_into_a_location_without_evses_creates_the_list() -> None:
    stored = {k: v for k, v in location().items() if k != "evses"}
    evse = {"uid": "E9", "last_updated": T3}
    result = merged(merge(stored, addr("NL", "ABC", "LOC1", "E9"), "PUT", evse, at(T3)))
    assert result.document["evses"] == [evse]


def test_connector_put_and_patch_move_evse_and_location_forward() -> None:
    stored = location()
    connector = {"id": "2", "standard": "CHADEMO", "last_updated": T3}
    result = merged(merge(stored, addr("NL", "ABC", "LOC1", "E1", "2"), "PUT", connector, at(T3)))
    evse = result.document["evses"][0]
    assert [c["id"] for c in evse["connectors"]] == ["1", "2"]
    assert evse["last_updated"] == T3
    assert result.document["last_updated"] == T3
    patch = {"tariff_ids": ["15"], "last_updated": T3}
    result = merged(merge(stored, addr("NL", "ABC", "LOC1", "E1", "1"), "PATCH", patch, at(T3)))
    assert result.document["evses"][0]["connectors"][0] == {
        "id": "1",
        "standard": "IEC_62196_T2",
        "last_updated": T3,
        "tariff_ids": ["15"],
    }


def test_nested_staleness_is_judged_at_the_addressed_level() -> None:
    stored = location()  # connector 1 at T1
    older = {"status": "x", "last_updated": "2024-01-01T09:00:00Z"}
    assert merge(stored, addr("NL", "ABC", "LOC1", "E1", "1"), "PATCH", older, at(older["last_updated"])) == (
        ApplyResult(Outcome.STALE)
    )
    assert merge(stored, addr("NL", "ABC", "LOC1", "E1"), "PUT", {"uid": "E1", **older}, at(older["last_updated"])) == (
        ApplyResult(Outcome.STALE)
    )


def test_unknown_nested_objects() -> None:
    stored = location()
    patch = {"status": "x", "last_updated": T3}
    unknown_evse = merge(stored, addr("NL", "ABC", "LOC1", "E9"), "PATCH", patch, at(T3))
    assert isinstance(unknown_evse, ApplyResult)
    assert unknown_evse.outcome is Outcome.UNKNOWN
    unknown_connector = merge(stored, addr("NL", "ABC", "LOC1", "E1", "9"), "PATCH", patch, at(T3))
    assert isinstance(unknown_connector, ApplyResult)
    assert unknown_connector.outcome is Outcome.UNKNOWN
    orphan = merge(stored, addr("NL", "ABC", "LOC1", "E9", "1"), "PUT", {"id": "1", "last_updated": T3}, at(T3))
    assert isinstance(orphan, ApplyResult)
    assert orphan.outcome is Outcome.INVALID


def test_merge_leaves_the_stored_document_alone() -> None:
    stored = location()
    before = copy.deepcopy(stored)
    merge(stored, addr("NL", "ABC", "LOC1", "E1", "1"), "PATCH", {"format": "CABLE", "last_updated": T3}, at(T3))
    merge(stored, addr("NL", "ABC", "LOC1", "E1"), "PUT", {"uid": "E1", "last_updated": T3}, at(T3))
    merge(stored, addr("NL", "ABC", "LOC1"), "PATCH", {"name": "x", "last_updated": T3}, at(T3))
    assert stored == before


def test_extract_finds_nested_objects() -> None:
    stored = location()
    assert extract(stored, addr("NL", "ABC", "LOC1")) is stored
    assert extract(stored, addr("NL", "ABC", "LOC1", "e1")) == stored["evses"][0]
    assert extract(stored, addr("NL", "ABC", "LOC1", "E1", "1")) == stored["evses"][0]["connectors"][0]
    assert extract(stored, addr("NL", "ABC", "LOC1", "E2")) is None
    assert extract(stored, addr("NL", "ABC", "LOC1", "E1", "7")) is None


def test_merged_documents_serialise_in_key_order() -> None:
    stored = location()
    result = merged(merge(stored, addr("NL", "ABC", "LOC1"), "PATCH", {"name": "x", "last_updated": T3}, at(T3)))
    assert orjson.dumps(result.document).startswith(b'{"country_code":"NL","party_id":"ABC","id":"LOC1","name":"x"')
