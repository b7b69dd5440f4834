"""registry/codec.py: PlatformRecord and ClientInfo to JSON and back."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from registry.codec import (
    ClientInfo,
    EndpointRecord,
    PlatformRecord,
    RateLimit,
    decode_clientinfo,
    decode_platform,
    encode_clientinfo,
    encode_platform,
)
from routing.model import ConnectionStatus, PartyKey, PartyRole, Role, TokenForm

MINIMAL = PlatformRecord(
    id="p1",
    name="Minimal",
    roles=(PartyRole.parse("NL:ABC:CPO"),),
    status=ConnectionStatus.PLANNED,
    registered=False,
    created="2024-01-01T00:00:00.000Z",
    status_since="2024-01-01T00:00:00.000Z",
)

FULL = PlatformRecord(
    id="p2",
    name="Full \u2013 ünïcode",
    roles=(PartyRole.parse("NL:ABC:CPO"), PartyRole.parse("NL:ABC:EMSP"), PartyRole.parse("DE:XYZ:OTHER")),
    status=ConnectionStatus.CONNECTED,
    registered=True,
    created="2024-01-01T00:00:00.000Z",
    status_since="2024-02-03T04:05:06.789Z",
    versions_url="https://p2.example.com/ocpi/versions",
    version="2.2.1",
    endpoints=(
        EndpointRecord("locations", "SENDER", "https://p2.example.com/ocpi/2.2.1/locations"),
        EndpointRecord("tokens", "RECEIVER", "https://p2.example.com/ocpi/2.2.1/tokens/"),
        EndpointRecord("credentials", "SENDER", "https://p2.example.com/ocpi/2.2.1/credentials"),
    ),
    token_b="token-b-clear",
    token_form=TokenForm.RAW,
    accept_digests=("ab" * 32, "cd" * 32),
    business_details={"name": "Full", "website": "https://p2.example.com", "logo": {"url": "x", "width": 10}},
    endpoint_overrides=(EndpointRecord("tokens", "SENDER", "https://p2.example.com/override/tokens"),),
    rate_limit=RateLimit(rps=2.5, burst=20),
)


@pytest.mark.parametrize("record", [MINIMAL, FULL])
def test_platform_round_trip(record: PlatformRecord) -> None:
    raw = encode_platform(record)
    assert isinstance(raw, bytes)
    assert decode_platform(raw) == record
    assert decode_platform(raw.decode()) == record


@pytest.mark.parametrize("status", list(ConnectionStatus))
@pytest.mark.parametrize("form", list(TokenForm))
def test_platform_round_trip_of_every_status_and_token_form(status: ConnectionStatus, form: TokenForm) -> None:
    record = replace(FULL, status=status, token_form=form)
    decoded = decode_platform(encode_platform(record))
    assert decoded.status is status
    assert decoded.token_form is form


def test_platform_roles_are_stored_as_fields() -> None:
    data = orjson.loads(encode_platform(FULL))
    assert data["roles"][1] == {"country_code": "NL", "party_id": "ABC", "role": "EMSP"}
    assert data["status"] == "CONNECTED"
    assert data["token_form"] == "RAW"


def test_platform_optional_fields_default_when_absent() -> None:
    data = orjson.loads(encode_platform(FULL))
    optional = ("versions_url", "version", "endpoints", "token_b", "token_form", "accept_digests", "business_details")
    for key in (*optional, "endpoint_overrides", "rate_limit"):
        del data[key]
    decoded = decode_platform(orjson.dumps(data))
    assert decoded == replace(
        MINIMAL,
        id="p2",
        name=FULL.name,
        roles=FULL.roles,
        status=FULL.status,
        registered=True,
        status_since=FULL.status_since,
    )
    assert decoded.token_form is TokenForm.BASE64


def test_decoded_platform_has_typed_values() -> None:
    decoded = decode_platform(encode_platform(FULL))
    assert all(isinstance(r, PartyRole) for r in decoded.roles)
    assert decoded.roles[2].party == PartyKey("DE", "XYZ")
    assert decoded.roles[2].role is Role.OTHER
    assert all(isinstance(e, EndpointRecord) for e in decoded.endpoints)
    assert isinstance(decoded.accept_digests, tuple)


INFO = ClientInfo(
    party=PartyKey("NL", "ABC"),
    role=Role.EMSP,
    status=ConnectionStatus.OFFLINE,
    last_updated="2024-02-03T04:05:06.789Z",
)


@pytest.mark.parametrize("status", list(ConnectionStatus))
@pytest.mark.parametrize("role", [Role.CPO, Role.EMSP, Role.NSP, Role.OTHER])
def test_clientinfo_round_trip(status: ConnectionStatus, role: Role) -> None:
    info = ClientInfo(PartyKey("NL", "ABC"), role, status, "2024-02-03T04:05:06.789Z")
    raw = encode_clientinfo(info)
    assert decode_clientinfo(raw) == info
    assert decode_clientinfo(raw.decode()) == info


def test_clientinfo_wire_shape_and_key() -> None:
    assert orjson.loads(encode_clientinfo(INFO)) == {
        "party_id": "ABC",
        "country_code": "NL",
        "role": "EMSP",
        "status": "OFFLINE",
        "last_updated": "2024-02-03T04:05:06.789Z",
    }
    assert INFO.key == "NL:ABC:EMSP"


def test_overrides_and_rate_limit_are_stored_as_fields() -> None:
    data = orjson.loads(encode_platform(FULL))
    assert data["endpoint_overrides"] == [
        {"identifier": "tokens", "role": "SENDER", "url": "https://p2.example.com/override/tokens"}
    ]
    assert data["rate_limit"] == {"rps": 2.5, "burst": 20}
    assert orjson.loads(encode_platform(MINIMAL))["rate_limit"] is None


def test_a_record_written_before_overrides_existed_decodes_without_them() -> None:
    data = orjson.loads(encode_platform(FULL))
    del data["endpoint_overrides"], data["rate_limit"]
    decoded = decode_platform(orjson.dumps(data))
    assert decoded.endpoint_overrides == ()
    assert decoded.rate_limit is None


@pytest.mark.parametrize(
    ("rps", "burst"), [(0, 1), (-1.0, 5), (float("inf"), 5), (float("nan"), 5), (1.0, 0), (1.0, -3), (1.0, True)]
)
def test_rate_limit_refuses_values_that_would_refuse_everything_or_never_refill(rps: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit(rps=rps, burst=burst)


def test_rate_limit_accepts_fractions_of_a_request_per_second() -> None:
    assert RateLimit(rps=0.5, burst=1).rps == 0.5
