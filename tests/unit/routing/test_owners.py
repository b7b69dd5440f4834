"""routing/owners.py: the owner index's vocabulary — key spelling, bounds and facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from routing.model import PartyKey
from routing.owners import MAX_KEY_LENGTH, OwnerFact, OwnerKind, index_field, token_key, valid_key

EMSP = PartyKey("DE", "EMS")


def test_kinds_are_spelled_as_stored() -> None:
    # Part of every index key in Redis: renaming one orphans what the index has learnt.
    assert [k.value for k in OwnerKind] == ["token", "location", "session_cpo", "session_emsp", "reservation"]


@pytest.mark.parametrize(
    ("uid", "token_type", "key"),
    [
        ("04a1b2c3", "RFID", "RFID:04A1B2C3"),
        ("abc", "app_user", "APP_USER:ABC"),
        ("X:Y", "RFID", "RFID:X:Y"),
    ],
)
def test_a_token_is_named_by_type_and_uid_upper_cased(uid: str, token_type: str, key: str) -> None:
    assert token_key(uid, token_type) == key


def test_the_same_token_in_other_letter_cases_has_one_key() -> None:
    assert token_key("abc", "rfid") == token_key("ABC", "RFID") == token_key("AbC", "RfId")


def test_ids_compare_case_insensitively() -> None:
    assert index_field("loc-1a") == index_field("LOC-1A") == "LOC-1A"


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("", False),
        ("A", True),
        ("A" * MAX_KEY_LENGTH, True),
        ("A" * (MAX_KEY_LENGTH + 1), False),
        ("LOC 1", True),
        ("LOC\t1", False),
        ("LOC\n1", False),
        ("LOC\x7f", False),
        ("LOCÉ", False),
    ],
)
def test_valid_keys_are_1_to_64_printable_ascii_characters(key: str, valid: bool) -> None:
    assert valid_key(key) is valid


def test_the_longest_token_key_fits() -> None:
    assert valid_key(token_key("U" * 36, "AD_HOC_USER"))  # uid is CiString(36); AD_HOC_USER the longest type


@pytest.mark.parametrize("key", ["", "K" * (MAX_KEY_LENGTH + 1), "a\nb"])
def test_a_fact_with_an_unusable_key_cannot_be_made(key: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        OwnerFact(OwnerKind.LOCATION, key, EMSP)


def test_a_reservation_expiry_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        OwnerFact(OwnerKind.RESERVATION, "R1", EMSP, datetime(2026, 1, 1))  # naive on purpose
    fact = OwnerFact(OwnerKind.RESERVATION, "R1", EMSP, datetime(2026, 1, 1, tzinfo=UTC))
    assert fact.expires_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_equal_facts_are_one_fact() -> None:
    # The learner keeps a set of recent facts: equal facts must hash alike, different owners must not be equal.
    a = OwnerFact(OwnerKind.LOCATION, "LOC1", EMSP)
    assert {a, OwnerFact(OwnerKind.LOCATION, "LOC1", EMSP)} == {a}
    assert a != OwnerFact(OwnerKind.LOCATION, "LOC1", PartyKey("NL", "CPO"))
    assert a != OwnerFact(OwnerKind.SESSION_CPO, "LOC1", EMSP)
