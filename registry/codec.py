"""Registry records to JSON and back (never pickle).

Owns: ``PlatformRecord`` (with the operator's ``endpoint_overrides`` and ``rate_limit``) and ``ClientInfo`` as
stored in Redis, and their (de)serialisation with orjson.
Must not: talk to Redis or make routing decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.model import ConnectionStatus, ModuleID, PartyKey, PartyRole, Role, TokenForm
from routing.table import SigningKeys

#: The change notice of a relay key change (registry/snapshot.py re-reads the keys); never a platform id.
RELAY_KEYS_NOTICE = "@relay-keys"


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """One entry of a party's version details (versions §6.2.2): kept as the party published it."""

    identifier: str
    role: str
    url: str


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A per-platform rate limit set by the operator: a token bucket of ``burst`` requests refilled at ``rps``."""

    rps: float
    burst: int

    def __post_init__(self) -> None:
        # Checked here so that no caller can store a limit that would refuse everything or never refill.
        if not (isinstance(self.rps, int | float) and not isinstance(self.rps, bool) and 0 < self.rps < float("inf")):
            raise ValueError(f"rate limit: rps must be a positive number, got {self.rps!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"rate limit: burst must be an integer of at least 1, got {self.burst!r}")


@dataclass(frozen=True, slots=True)
class PlatformRecord:
    """A platform that may register, or did: its parties, status, endpoints and tokens."""

    id: str
    name: str
    roles: tuple[PartyRole, ...]
    status: ConnectionStatus
    registered: bool
    created: str
    status_since: str
    versions_url: str = ""
    version: str = ""
    endpoints: tuple[EndpointRecord, ...] = ()
    #: The token the hub sends to this platform (its token B). Kept in clear: the hub must present it.
    token_b: str = ""
    token_form: TokenForm = TokenForm.BASE64
    #: SHA-256 hex digests of the tokens the hub accepts from it (A before registration, C after).
    accept_digests: tuple[str, ...] = ()
    business_details: dict[str, Any] = field(default_factory=dict)
    #: Endpoints the operator set (``registry endpoint``): they win over ``endpoints`` for the same module and
    #: role, and a credentials PUT, which replaces ``endpoints``, keeps them.
    endpoint_overrides: tuple[EndpointRecord, ...] = ()
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a completed credentials handshake stores about a platform (credentials §7.1.1 steps 4-5)."""

    versions_url: str
    version: str
    endpoints: tuple[EndpointRecord, ...]
    token_b: str
    token_form: TokenForm
    business_details: dict[str, Any]


def encode_platform(record: PlatformRecord) -> bytes:
    return orjson.dumps(
        {
            "id": record.id,
            "name": record.name,
            "roles": [
                {"country_code": r.party.country_code, "party_id": r.party.party_id, "role": r.role.value}
                for r in record.roles
            ],
            "status": record.status.value,
            "registered": record.registered,
            "created": record.created,
            "status_since": record.status_since,
            "versions_url": record.versions_url,
            "version": record.version,
            "endpoints": [encode_endpoint(e) for e in record.endpoints],
            "token_b": record.token_b,
            "token_form": record.token_form.value,
            "accept_digests": list(record.accept_digests),
            "business_details": record.business_details,
            "endpoint_overrides": [encode_endpoint(e) for e in record.endpoint_overrides],
            "rate_limit": None if record.rate_limit is None else encode_rate_limit(record.rate_limit),
        }
    )


def encode_endpoint(endpoint: EndpointRecord) -> dict[str, str]:
    return {"identifier": endpoint.identifier, "role": endpoint.role, "url": endpoint.url}


def encode_rate_limit(limit: RateLimit) -> dict[str, float | int]:
    return {"rps": limit.rps, "burst": limit.burst}


def _decode_rate_limit(data: object) -> RateLimit | None:
    if not isinstance(data, dict):
        return None
    return RateLimit(rps=float(data["rps"]), burst=int(data["burst"]))


def decode_platform(raw: bytes | str) -> PlatformRecord:
    data = orjson.loads(raw)
    return PlatformRecord(
        id=data["id"],
        name=data["name"],
        roles=tuple(PartyRole(PartyKey(r["country_code"], r["party_id"]), Role(r["role"])) for r in data["roles"]),
        status=ConnectionStatus(data["status"]),
        registered=bool(data["registered"]),
        created=data["created"],
        status_since=data["status_since"],
        versions_url=data.get("versions_url", ""),
        version=data.get("version", ""),
        endpoints=tuple(EndpointRecord(e["identifier"], e["role"], e["url"]) for e in data.get("endpoints", [])),
        token_b=data.get("token_b", ""),
        token_form=TokenForm(data.get("token_form", TokenForm.BASE64.value)),
        accept_digests=tuple(data.get("accept_digests", [])),
        business_details=data.get("business_details", {}),
        endpoint_overrides=tuple(
            EndpointRecord(e["identifier"], e["role"], e["url"]) for e in data.get("endpoint_overrides", [])
        ),
        rate_limit=_decode_rate_limit(data.get("rate_limit")),
    )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """hubclientinfo §15.4.1: one per party and role."""

    party: PartyKey
    role: Role
    status: ConnectionStatus
    last_updated: str

    @property
    def key(self) -> str:
        return f"{self.party}:{self.role.value}"

    def to_wire(self) -> dict[str, str]:
        return {
            "party_id": self.party.party_id,
            "country_code": self.party.country_code,
            "role": self.role.value,
            "status": self.status.value,
            "last_updated": self.last_updated,
        }


def encode_clientinfo(info: ClientInfo) -> bytes:
    return orjson.dumps(info.to_wire())


def decode_clientinfo(raw: bytes | str) -> ClientInfo:
    data = orjson.loads(raw)
    return ClientInfo(
        party=PartyKey(data["country_code"], data["party_id"]),
        role=Role(data["role"]),
        status=ConnectionStatus(data["status"]),
        last_updated=data["last_updated"],
    )


def decode_relay_keys(raw: Mapping[bytes | str, bytes | str]) -> SigningKeys:
    fields = {_str(k): _str(v) for k, v in raw.items()}
    current = int(fields.get("current", "0"))
    keys = {int(k[1:]): bytes.fromhex(v) for k, v in fields.items() if k.startswith("k") and k[1:].isdigit()}
    return SigningKeys(current if current in keys else 0, keys)


@dataclass(frozen=True, slots=True)
class LegacyRelay:
    """A relay id handed out by release 0.1, stored in Redis: what it stood for."""

    target: str
    platform: str
    allowed: str
    to_party: PartyKey | None
    from_party: PartyKey | None
    module: ModuleID


def decode_legacy_relay(raw: bytes | str) -> LegacyRelay:
    data = orjson.loads(raw)
    return LegacyRelay(
        target=data["target"],
        platform=data["platform"],
        allowed=data["allowed"],
        to_party=_party_or_none(data.get("to")),
        from_party=_party_or_none(data.get("from")),
        module=ModuleID(data["module"]),
    )


def _party_or_none(text: object) -> PartyKey | None:
    # Release 0.1 wrote str(None) for a missing party: that was the defect that lost OCPI-from on a followed page.
    if not isinstance(text, str):
        return None
    try:
        return PartyKey.parse(text)
    except ValueError:
        return None


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
