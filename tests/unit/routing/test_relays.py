"""routing/relays.py: signed relay tokens — round trip, every tampering refused, expiry, keys, origins, URL length."""

from __future__ import annotations

import base64
import hmac
import string
import struct
from dataclasses import replace
from typing import Final

import pytest

from routing.model import FUNCTIONAL_MODULES, ModuleID, PartyKey
from routing.paths import RELAY_PREFIX
from routing.relays import MODULE_NUMBERS, TOKEN_LENGTH, RelayGrant, origin_tag, sign, verify
from routing.table import NO_KEYS, Platform, SigningKeys
from tests.unit.routing.builders import party, platform

CPO = platform("cpo", ["NL:CPO:CPO"], origin="https://ocpi.cpo.example.com")
EMSP = platform("emsp", ["DE:EMS:EMSP"], origin="http://emsp.example.com:8080")
PLATFORMS: Final = {CPO.id: CPO, EMSP.id: EMSP}
KEYS: Final = SigningKeys(3, {3: b"k" * 32})
NOW: Final = 1_800_000_000
PATH: Final = "/ocpi/2.2.1/locations/sender"
CPO_PARTY: Final = party("NL:CPO")
EMSP_PARTY: Final = party("DE:EMS")


def token_for(
    keys: SigningKeys = KEYS,
    *,
    target: Platform = CPO,
    allowed: Platform = EMSP,
    module: ModuleID = ModuleID.LOCATIONS,
    origin: str = "https://ocpi.cpo.example.com",
    path: str = PATH,
    to_party: PartyKey | None = CPO_PARTY,
    from_party: PartyKey | None = EMSP_PARTY,
    expires: int = NOW + 900,
) -> str:
    token = sign(
        keys,
        target_platform=target.id,
        allowed_platform=allowed.id,
        module=module,
        origin=origin,
        path=path,
        to_party=to_party,
        from_party=from_party,
        expires=expires,
    )
    assert token is not None
    return token


def check(rest: str, keys: SigningKeys = KEYS, platforms: dict[str, Platform] = PLATFORMS, now: float = NOW) -> bool:
    return verify(keys, rest, platforms, now) is not None


# -- round trip ------------------------------------------------------------------------------------------------


def test_a_signed_token_verifies_back_to_what_it_stands_for() -> None:
    token = token_for()
    assert len(token) == TOKEN_LENGTH
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")  # URL-safe, no padding
    assert verify(KEYS, token + PATH, PLATFORMS, NOW) == RelayGrant(
        platform_id=CPO.id,
        allowed_id=EMSP.id,
        module=ModuleID.LOCATIONS,
        target="https://ocpi.cpo.example.com" + PATH,
        to_party=CPO_PARTY,
        from_party=EMSP_PARTY,
    )


@pytest.mark.parametrize("module", FUNCTIONAL_MODULES)
def test_every_functional_module_survives_the_round_trip(module: ModuleID) -> None:
    grant = verify(KEYS, token_for(module=module) + PATH, PLATFORMS, NOW)
    assert grant is not None
    assert grant.module is module


def test_missing_routing_parties_survive_the_round_trip_as_none() -> None:
    grant = verify(KEYS, token_for(to_party=None, from_party=None) + PATH, PLATFORMS, NOW)
    assert grant is not None
    assert (grant.to_party, grant.from_party) == (None, None)


@pytest.mark.parametrize(
    "path", ["/", "/ocpi/cdrs/NL/CPO/CDR%201", "/a/b/c/d/e/f/g", "/p;x=1", "/ocpi/2.2.1/commands/START_SESSION/42"]
)
def test_the_target_path_is_kept_exactly(path: str) -> None:
    grant = verify(KEYS, token_for(path=path) + path, PLATFORMS, NOW)
    assert grant is not None
    assert grant.target == "https://ocpi.cpo.example.com" + path


def test_the_target_keeps_the_scheme_and_port_the_platform_registered() -> None:
    origin = "http://emsp.example.com:8080"
    grant = verify(KEYS, token_for(target=EMSP, allowed=CPO, origin=origin, path="/cb") + "/cb", PLATFORMS, NOW)
    assert grant is not None
    assert grant.target == "http://emsp.example.com:8080/cb"


def test_sign_gives_nothing_until_a_key_is_loaded() -> None:
    assert (
        sign(
            NO_KEYS,
            target_platform=CPO.id,
            allowed_platform=EMSP.id,
            module=ModuleID.CDRS,
            origin="https://ocpi.cpo.example.com",
            path="/",
            to_party=None,
            from_party=None,
            expires=NOW,
        )
        is None
    )


# -- tampering -------------------------------------------------------------------------------------------------


def flip(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by another URL-safe base64 character."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    other = alphabet[(alphabet.index(text[index]) + 1) % len(alphabet)]
    return text[:index] + other + text[index + 1 :]


@pytest.mark.parametrize("index", range(TOKEN_LENGTH))
def test_changing_any_character_of_the_token_is_refused(index: int) -> None:
    token = token_for()
    assert check(token + PATH)
    assert not check(flip(token, index) + PATH)


HEADER = struct.Struct(">BI8s8sB5s5s4s")
FIELDS = ("kid", "expires", "target", "allowed", "module", "to", "from", "origin")


def reforged(token: str, field: str, value: object) -> str:
    """The token with one header field rewritten and the original tag kept (what a forger can do)."""
    raw = base64.urlsafe_b64decode(token)
    values = list(HEADER.unpack(raw[: HEADER.size]))
    values[FIELDS.index(field)] = value
    return base64.urlsafe_b64encode(HEADER.pack(*values) + raw[HEADER.size :]).decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires", NOW + 10 * 365 * 86_400),  # live longer
        ("target", bytes.fromhex(EMSP.id)),  # point at another platform
        ("allowed", bytes.fromhex(CPO.id)),  # hand it to another platform
        ("module", MODULE_NUMBERS.index(ModuleID.COMMANDS)),
        ("to", b"NLXXX"),
        ("from", b"DEXXX"),
        ("origin", origin_tag("http://emsp.example.com:8080")),
    ],
)
def test_rewriting_any_header_field_under_the_old_tag_is_refused(field: str, value: object) -> None:
    token = token_for()
    assert check(token + PATH)
    assert not check(reforged(token, field, value) + PATH)


def test_naming_another_accepted_key_id_is_refused() -> None:
    keys = SigningKeys(3, {3: b"k" * 32, 4: b"o" * 32})
    token = token_for(keys)
    assert not check(reforged(token, "kid", 4) + PATH, keys)


@pytest.mark.parametrize(
    "path",
    [
        PATH + "/",
        PATH + "x",
        PATH.upper(),
        "/ocpi/2.2.1/locations/receiver",
        "/ocpi/2.2.1/locations/sender/../../credentials",
        PATH[:-1],
        "/",
    ],
)
def test_any_other_path_after_the_token_is_refused(path: str) -> None:
    assert not check(token_for() + path)


def test_the_query_is_outside_the_signature() -> None:
    # verify() is given the path only; the proxy appends the request's query to the target (readable filters).
    assert check(token_for() + PATH)


@pytest.mark.parametrize(
    "rest",
    [
        "",
        "short",
        "x" * TOKEN_LENGTH,  # nothing after the token
        "x" * TOKEN_LENGTH + "/",
        "=" * TOKEN_LENGTH + "/",
        "!" * TOKEN_LENGTH + "/",
        "A" * (TOKEN_LENGTH - 4) + "====" + "/",  # decodes to fewer bytes
        "é" * TOKEN_LENGTH + "/",
    ],
)
def test_malformed_tokens_are_refused_without_an_error(rest: str) -> None:
    assert not check(rest)


def test_a_token_without_the_slash_after_it_is_refused() -> None:
    token = token_for(path="/")
    assert check(token + "/")
    assert not check(token + "x/")
    assert not check(token)


def test_a_module_number_beyond_the_table_is_refused_even_when_signed() -> None:
    token = token_for()
    raw = base64.urlsafe_b64decode(token)
    values = list(HEADER.unpack(raw[: HEADER.size]))
    values[FIELDS.index("module")] = len(MODULE_NUMBERS)
    header = HEADER.pack(*values)
    tag = hmac.digest(b"k" * 32, header + PATH.encode(), "sha256")[:12]
    forged = base64.urlsafe_b64encode(header + tag).decode()
    assert not check(forged + PATH)


# -- expiry, keys, origins -------------------------------------------------------------------------------------


def test_a_token_is_valid_up_to_its_expiry_second_and_not_after() -> None:
    token = token_for(expires=NOW)
    assert check(token + PATH, now=NOW - 1)
    assert check(token + PATH, now=NOW)
    assert not check(token + PATH, now=NOW + 0.001)
    assert not check(token + PATH, now=NOW + 86_400)


def test_a_token_of_a_key_that_is_rotated_out_is_refused() -> None:
    token = token_for(SigningKeys(3, {3: b"k" * 32}))
    rotated = SigningKeys(4, {3: b"k" * 32, 4: b"n" * 32})
    assert check(token + PATH, rotated)  # the previous key is still accepted after a rotation
    assert not check(token + PATH, SigningKeys(4, {4: b"n" * 32}))  # until it is dropped
    assert not check(token + PATH, SigningKeys(3, {3: b"x" * 32}))  # same id, another secret
    assert not check(token + PATH, NO_KEYS)


def test_a_new_token_is_signed_with_the_current_key() -> None:
    rotated = SigningKeys(4, {3: b"k" * 32, 4: b"n" * 32})
    token = token_for(rotated)
    assert check(token + PATH, SigningKeys(4, {4: b"n" * 32}))
    assert not check(token + PATH, SigningKeys(3, {3: b"k" * 32}))


def test_a_token_for_a_platform_that_is_gone_is_refused() -> None:
    token = token_for()
    assert not check(token + PATH, platforms={EMSP.id: EMSP})


def test_a_token_for_an_origin_the_platform_no_longer_has_is_refused() -> None:
    token = token_for()
    moved = platform("cpo", ["NL:CPO:CPO"], origin="https://new-host.cpo.example.com")
    assert moved.id == CPO.id
    assert not check(token + PATH, platforms={CPO.id: moved})


def test_a_token_for_the_same_host_in_another_scheme_or_port_is_refused() -> None:
    # Origins are compared as the hub signs them: scheme and host[:port] lower case (hub/relay.py split_origin).
    for origin in ("http://ocpi.cpo.example.com", "https://ocpi.cpo.example.com:8443", "https://OCPI.cpo.example.com"):
        assert not check(token_for(origin=origin) + PATH), origin


def test_a_token_stays_valid_while_the_platform_keeps_the_origin_among_others() -> None:
    token = token_for()
    widened = replace(CPO, versions_url="https://versions.elsewhere.example.com/ocpi/versions")
    assert set(widened.authorities) == {"ocpi.cpo.example.com", "versions.elsewhere.example.com"}
    assert check(token + PATH, platforms={CPO.id: widened})


# -- stability -------------------------------------------------------------------------------------------------


def test_module_numbers_never_change() -> None:
    # Tokens in flight carry these numbers: append new modules at the end, never reorder or remove one.
    assert MODULE_NUMBERS == (
        ModuleID.CDRS,
        ModuleID.CHARGINGPROFILES,
        ModuleID.COMMANDS,
        ModuleID.LOCATIONS,
        ModuleID.SESSIONS,
        ModuleID.TARIFFS,
        ModuleID.TOKENS,
    )
    assert set(FUNCTIONAL_MODULES) <= set(MODULE_NUMBERS)


def test_a_token_signed_today_still_verifies_with_the_same_key_and_platform() -> None:
    # A fixed token: fails when the token layout, the tag or the module numbering changes.
    token = token_for(module=ModuleID.TARIFFS, expires=2_000_000_000)
    assert token == token_for(module=ModuleID.TARIFFS, expires=2_000_000_000)
    raw = base64.urlsafe_b64decode(token)
    assert raw[0] == 3  # key id first
    assert struct.unpack(">I", raw[1:5]) == (2_000_000_000,)
    assert raw[21] == 5  # tariffs is module number 5


# -- URL length: OCPI's URL type is string(255) (types §16) -------------------------------------------------------

#: A plausible public hub URL (not a short one).
HUB_BASE: Final = "https://ocpi-hub.roaming.example.com"


@pytest.mark.parametrize(
    ("what", "path", "query"),
    [
        ("pagination Link", "/ocpi/cpo/2.2.1/locations", "offset=1000&limit=100"),
        (
            "pagination Link with both date filters",
            "/ocpi/cpo/2.2.1/sessions",
            "date_from=2026-01-01T00:00:00Z&date_to=2026-02-01T00:00:00Z&offset=50&limit=50",
        ),
        ("CDR Location (CiString(36) id)", "/ocpi/emsp/2.2.1/cdrs/NL/CPO/" + "C" * 36, ""),
        ("response_url (a UUID)", "/ocpi/emsp/2.2.1/commands/START_SESSION/0b3c5f1e-8f2a-4e0c-9c6d-3f1a2b4c5d6e", ""),
        ("chargingprofiles response_url", "/ocpi/emsp/2.2.1/chargingprofiles/result/" + "S" * 36, ""),
    ],
)
def test_relay_urls_for_realistic_targets_fit_in_an_ocpi_url(what: str, path: str, query: str) -> None:
    token = token_for(path=path)
    url = HUB_BASE + RELAY_PREFIX + token + path + (f"?{query}" if query else "")
    assert len(url) < 255, f"{what}: {len(url)} characters"
    assert check(token + path)
    # The relay adds the same fixed cost to every URL: the hub part and the token.
    assert len(url) - len(path) - len(query) <= len(HUB_BASE) + len(RELAY_PREFIX) + TOKEN_LENGTH + 1
