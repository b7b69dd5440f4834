"""OCPI vocabulary the hub routes with: parties, roles, modules, interface roles, connection statuses.

Owns: the enums as the spec spells them (OCPI 2.2.1 §16.6 Role, §6.2.4 ModuleID, §6.2.3 InterfaceRole,
§15.5.1 ConnectionStatus) and ``PartyKey``. Must not: do I/O or know about Redis or HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Role(StrEnum):
    CPO = "CPO"
    EMSP = "EMSP"
    HUB = "HUB"
    NAP = "NAP"
    NSP = "NSP"
    OTHER = "OTHER"
    SCSP = "SCSP"


class ModuleID(StrEnum):
    CDRS = "cdrs"
    CHARGINGPROFILES = "chargingprofiles"
    COMMANDS = "commands"
    CREDENTIALS = "credentials"
    HUBCLIENTINFO = "hubclientinfo"
    LOCATIONS = "locations"
    SESSIONS = "sessions"
    TARIFFS = "tariffs"
    TOKENS = "tokens"


class InterfaceRole(StrEnum):
    SENDER = "SENDER"
    RECEIVER = "RECEIVER"


class ConnectionStatus(StrEnum):
    CONNECTED = "CONNECTED"
    OFFLINE = "OFFLINE"
    PLANNED = "PLANNED"
    SUSPENDED = "SUSPENDED"


class TokenForm(StrEnum):
    """How a platform writes its token in ``Authorization`` (transport_and_format §4.1.2 NOTE)."""

    BASE64 = "BASE64"
    RAW = "RAW"


#: Functional modules are routed (transport_and_format §4.1.8.2); configuration modules never are.
FUNCTIONAL_MODULES: Final = (
    ModuleID.CDRS,
    ModuleID.CHARGINGPROFILES,
    ModuleID.COMMANDS,
    ModuleID.LOCATIONS,
    ModuleID.SESSIONS,
    ModuleID.TARIFFS,
    ModuleID.TOKENS,
)

#: Roles a party (not the hub) may register with.
PARTY_ROLES: Final = (Role.CPO, Role.EMSP, Role.NAP, Role.NSP, Role.OTHER, Role.SCSP)

_COUNTRY_CODE: Final = re.compile(r"[A-Z]{2}")
_PARTY_ID: Final = re.compile(r"[A-Z0-9]{3}")


def valid_country_code(value: str) -> bool:
    """ISO 3166 alpha-2 shape, already upper-cased (CiString(2))."""
    return _COUNTRY_CODE.fullmatch(value) is not None


def valid_party_id(value: str) -> bool:
    """ISO 15118 party id shape, already upper-cased (CiString(3))."""
    return _PARTY_ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class PartyKey:
    """A party, (country_code, party_id), upper-cased once: CiStrings compare case-insensitively (§16.1)."""

    country_code: str
    party_id: str

    def __str__(self) -> str:
        return f"{self.country_code}:{self.party_id}"

    @classmethod
    def parse(cls, text: str) -> PartyKey:
        """``CC:PID`` → PartyKey; ValueError on any other shape."""
        parts = text.strip().upper().split(":")
        if len(parts) != 2 or not valid_country_code(parts[0]) or not valid_party_id(parts[1]):
            raise ValueError(f"malformed party {text!r}: expected CC:PID, e.g. NL:ABC")
        return cls(parts[0], parts[1])


@dataclass(frozen=True, slots=True)
class PartyRole:
    """One CredentialsRole entry: a party in one role (credentials §7.4.1)."""

    party: PartyKey
    role: Role

    def __str__(self) -> str:
        return f"{self.party}:{self.role}"

    @classmethod
    def parse(cls, text: str) -> PartyRole:
        """``CC:PID:ROLE`` → PartyRole; ValueError on any other shape."""
        head, sep, role = text.strip().upper().rpartition(":")
        if not sep or role not in {r.value for r in PARTY_ROLES}:
            allowed = ", ".join(r.value for r in PARTY_ROLES)
            raise ValueError(f"malformed party {text!r}: expected CC:PID:ROLE with ROLE one of {allowed}")
        return cls(PartyKey.parse(head), Role(role))
