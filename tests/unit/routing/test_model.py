"""routing/model.py: PartyKey and PartyRole parsing (CiStrings, upper-cased once)."""

from __future__ import annotations

import pytest

from routing.model import PARTY_ROLES, PartyKey, PartyRole, Role, valid_country_code, valid_party_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NL:ABC", PartyKey("NL", "ABC")),
        ("nl:abc", PartyKey("NL", "ABC")),
        ("Nl:aB1", PartyKey("NL", "AB1")),
        ("  de:123 ", PartyKey("DE", "123")),
    ],
)
def test_party_key_parse(text: str, expected: PartyKey) -> None:
    assert PartyKey.parse(text) == expected


def test_party_key_str_round_trips() -> None:
    key = PartyKey("NL", "ABC")
    assert str(key) == "NL:ABC"
    assert PartyKey.parse(str(key)) == key


@pytest.mark.parametrize(
    "text", ["", "XX", "NL", "NL:", ":ABC", "NL:AB", "NL:ABCD", "N:ABC", "NLD:ABC", "N1:ABC", "NL:A-C", "NL:ABC:CPO"]
)
def test_party_key_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="malformed party"):
        PartyKey.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nl:abc:cpo", PartyRole(PartyKey("NL", "ABC"), Role.CPO)),
        ("NL:ABC:CPO", PartyRole(PartyKey("NL", "ABC"), Role.CPO)),
        ("de:xyz:emsp", PartyRole(PartyKey("DE", "XYZ"), Role.EMSP)),
        (" be:a1b:Other ", PartyRole(PartyKey("BE", "A1B"), Role.OTHER)),
    ],
)
def test_party_role_parse(text: str, expected: PartyRole) -> None:
    assert PartyRole.parse(text) == expected


@pytest.mark.parametrize("role", PARTY_ROLES)
def test_party_role_parse_accepts_every_party_role(role: Role) -> None:
    parsed = PartyRole.parse(f"nl:abc:{role.value.lower()}")
    assert parsed.role is role
    assert str(parsed) == f"NL:ABC:{role.value}"


@pytest.mark.parametrize(
    "text", ["", "XX", "NL:AB", "NL:ABC", "NL:ABCD:CPO", "NL:ABC:HUB", "NL:ABC:FOO", "N1:ABC:CPO", "NL:ABC:CPO:X"]
)
def test_party_role_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="malformed party"):
        PartyRole.parse(text)


def test_hub_is_not_a_party_role() -> None:
    assert Role.HUB not in PARTY_ROLES


@pytest.mark.parametrize(("value", "ok"), [("NL", True), ("nl", False), ("N1", False), ("NLD", False), ("", False)])
def test_valid_country_code(value: str, ok: bool) -> None:
    assert valid_country_code(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("ABC", True), ("A1B", True), ("123", True), ("abc", False), ("AB", False), ("ABC\n", False)]
)
def test_valid_party_id(value: str, ok: bool) -> None:
    assert valid_party_id(value) is ok
