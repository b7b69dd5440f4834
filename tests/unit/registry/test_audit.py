"""registry/audit.py, the pure parts: actors, the diff of two records (never a secret), the event codec."""

from __future__ import annotations

from dataclasses import fields, replace

import orjson
import pytest

from registry.audit import HUB, Actor, AuditEvent, Change, decode_event, diff, encode_event, platform_event
from registry.codec import EndpointRecord, PlatformRecord, RateLimit
from routing.model import ConnectionStatus, PartyKey, PartyRole, TokenForm

TOKEN_B = "token-b-secret-value"
DIGEST = "ab" * 32

BEFORE = PlatformRecord(
    id="p1",
    name="One",
    roles=(PartyRole.parse("NL:ABC:CPO"), PartyRole.parse("NL:ABC:EMSP")),
    status=ConnectionStatus.PLANNED,
    registered=False,
    created="2024-01-01T00:00:00.000Z",
    status_since="2024-01-01T00:00:00.000Z",
    accept_digests=(DIGEST,),
)
AFTER = replace(
    BEFORE,
    status=ConnectionStatus.CONNECTED,
    registered=True,
    status_since="2024-01-02T00:00:00.000Z",
    versions_url="https://p1.example.com/versions",
    version="2.2.1",
    endpoints=(EndpointRecord("locations", "SENDER", "https://p1.example.com/locations"),),
    token_b=TOKEN_B,
    token_form=TokenForm.RAW,
    accept_digests=("cd" * 32,),
)


def test_diff_names_the_changed_fields_before_and_after() -> None:
    changes = {c.field: (c.before, c.after) for c in diff(BEFORE, AFTER)}
    assert changes == {
        "status": ("PLANNED", "CONNECTED"),
        "registered": (False, True),
        "versions_url": ("", "https://p1.example.com/versions"),
        "version": ("", "2.2.1"),
        "token_form": ("BASE64", "RAW"),
        "endpoints": ([], [{"identifier": "locations", "role": "SENDER", "url": "https://p1.example.com/locations"}]),
    }


def test_diff_never_carries_a_token_or_a_digest() -> None:
    for before, after in ((BEFORE, AFTER), (None, AFTER), (AFTER, None)):
        text = orjson.dumps([(c.field, c.before, c.after) for c in diff(before, after)]).decode()
        assert TOKEN_B not in text
        assert DIGEST not in text
        assert "cd" * 32 not in text
        assert "token_b" not in text and "accept_digests" not in text


def test_diff_of_a_change_of_secrets_only_is_empty() -> None:
    assert diff(BEFORE, replace(BEFORE, token_b="new", accept_digests=())) == ()


def test_diff_covers_every_visible_field_of_the_record() -> None:
    hidden = {"id", "token_b", "accept_digests", "created", "status_since", "roles"}
    visible = {f.name for f in fields(PlatformRecord)} - hidden
    shown = {c.field for c in diff(None, _everything_set())}
    assert shown == (visible | {"parties"})


def _everything_set() -> PlatformRecord:
    return replace(
        AFTER,
        business_details={"name": "One"},
        endpoint_overrides=(EndpointRecord("tokens", "SENDER", "https://o.example.com/t"),),
        rate_limit=RateLimit(1.0, 2),
    )


def test_diff_of_a_new_record_omits_fields_empty_on_both_sides() -> None:
    shown = {c.field for c in diff(None, BEFORE)}
    assert shown == {"name", "parties", "status", "registered", "token_form"}


def test_diff_shows_overrides_and_rate_limits() -> None:
    after = replace(
        BEFORE,
        endpoint_overrides=(EndpointRecord("tokens", "SENDER", "https://o.example.com/t"),),
        rate_limit=RateLimit(2.0, 5),
    )
    changes = {c.field: (c.before, c.after) for c in diff(BEFORE, after)}
    assert changes == {
        "endpoint_overrides": ([], [{"identifier": "tokens", "role": "SENDER", "url": "https://o.example.com/t"}]),
        "rate_limit": (None, {"rps": 2.0, "burst": 5}),
    }


@pytest.mark.parametrize(
    "actor",
    [
        Actor.cli("alice", "ops-1"),
        Actor.of_platform("p1", [PartyKey("NL", "ABC"), PartyKey("DE", "XYZ"), PartyKey("NL", "ABC")]),
        HUB,
    ],
)
def test_event_round_trip(actor: Actor) -> None:
    event = platform_event("2024-01-02T00:00:00.000Z", actor, "register", BEFORE, AFTER)
    decoded = decode_event(encode_event(event), "1-0")
    assert decoded == replace(event, id="1-0")


def test_actor_text_and_json() -> None:
    assert str(Actor.cli("alice", "ops-1")) == "cli alice@ops-1"
    platform = Actor.of_platform("p1", [PartyKey("NL", "ABC"), PartyKey("DE", "XYZ")])
    assert str(platform) == "platform p1 (DE:XYZ,NL:ABC)"
    assert platform.to_json() == {"kind": "platform", "platform": "p1", "party": "DE:XYZ,NL:ABC"}
    assert str(HUB) == "hub"
    assert HUB.to_json() == {"kind": "hub"}


def test_event_names_its_parties_in_any_role() -> None:
    event = platform_event("2024-01-02T00:00:00.000Z", HUB, "suspend", BEFORE, AFTER)
    assert event.parties == ("NL:ABC:CPO", "NL:ABC:EMSP")
    assert event.names(PartyKey("NL", "ABC"))
    assert not event.names(PartyKey("NL", "ABD"))


def test_relay_key_event_names_no_platform() -> None:
    event = AuditEvent("2024-01-02T00:00:00.000Z", HUB, "relay-key", "", (), (Change("relay_key", None, 1),))
    assert decode_event(encode_event(event)) == event
    assert not event.names(PartyKey("NL", "ABC"))
