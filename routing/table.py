"""The routing snapshot: an immutable view of the registry that every request is decided against.

Owns: authenticating a token digest to a platform, checking the sender's identity, resolving the receiver
and its endpoint for (module, interface role), and choosing broadcast recipients (transport_and_format
§4.1.8). Every decision is a value or a typed ``OcpiError``.
Must not: do I/O, read clocks, or change after it is built (a refresh builds a new table and swaps it).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from routing.errors import (
    ForbiddenError,
    InvalidParametersError,
    NoEndpointError,
    ReceiverOfflineError,
    ReceiverPlannedError,
    ReceiverSuspendedError,
    ReceiverUnreachableError,
    UnauthorizedError,
    UnknownReceiverError,
)
from routing.headers import TokenCandidates, parse_authorization
from routing.model import ConnectionStatus, InterfaceRole, ModuleID, PartyKey, PartyRole, Role, TokenForm

#: Modules whose data is meant for every other party and so may be broadcast (§4.1.8.3: tokens, locations,
#: tariffs yes; sessions and CDRs are party-specific and possibly personal data; commands and charging
#: profiles address one party by nature).
BROADCAST_MODULES: Final = frozenset({ModuleID.LOCATIONS, ModuleID.TARIFFS, ModuleID.TOKENS})
#: Broadcast is push only: GET SHALL NOT be broadcast (§4.1.8.3). A tariff DELETE is the one push that removes an
#: object (mod_tariffs §11.2.2.4); the hub carries it too, so receivers and the hub's store stay in step.
BROADCAST_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
BROADCAST_DELETE: Final = frozenset({ModuleID.TARIFFS})
#: Who owns the objects of a broadcastable module (each module's "Data owner"; OTHER counts as eMSP-like).
BROADCAST_OWNERS: Final[Mapping[ModuleID, frozenset[Role]]] = {
    ModuleID.LOCATIONS: frozenset({Role.CPO}),
    ModuleID.TARIFFS: frozenset({Role.CPO}),
    ModuleID.TOKENS: frozenset({Role.EMSP, Role.OTHER}),
}
#: "Opposite role" of §4.1.8.3: CPO → eMSP, NSP and OTHER (eMSP-like); eMSP → CPO; OTHER → CPO.
BROADCAST_AUDIENCE: Final[Mapping[Role, frozenset[Role]]] = {
    Role.CPO: frozenset({Role.EMSP, Role.NSP, Role.OTHER}),
    Role.EMSP: frozenset({Role.CPO}),
    Role.OTHER: frozenset({Role.CPO}),
}


#: The 4003 a receiver gets in each status it cannot be forwarded to (the cause is kept for the metrics).
_UNAVAILABLE: Final[Mapping[ConnectionStatus, type[ReceiverUnreachableError]]] = {
    ConnectionStatus.SUSPENDED: ReceiverSuspendedError,
    ConnectionStatus.OFFLINE: ReceiverOfflineError,
    ConnectionStatus.PLANNED: ReceiverPlannedError,
}

#: Bound of the per-snapshot cache of authenticated Authorization values.
MAX_CACHED_CALLERS: Final = 100_000


def token_digest(token: bytes) -> bytes:
    """SHA-256 of a credentials token: the only form in which the hub keeps tokens it accepts."""
    return hashlib.sha256(token).digest()


@dataclass(frozen=True, slots=True)
class Platform:
    """One registered (or declared) platform as the hot path needs it."""

    id: str
    name: str
    roles: frozenset[PartyRole]
    status: ConnectionStatus
    endpoints: Mapping[tuple[ModuleID, InterfaceRole], str]
    auth_header: bytes
    versions_url: str
    registered: bool
    #: When the status last changed (epoch seconds): liveness compares it with the last sign of life.
    status_since: float = 0.0
    #: SHA-256 digests of the tokens the hub accepts from it (for patching the token index on a change).
    digests: tuple[bytes, ...] = ()
    #: The operator's rate limit for its requests: (requests per second, burst), or None.
    rate_limit: tuple[float, int] | None = None
    parties: frozenset[PartyKey] = field(init=False)
    #: host[:port] (lower case) of every URL it registered → the scheme it registered there: where URLs it hands
    #: out may point, and how the hub calls them.
    authorities: Mapping[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parties", frozenset(r.party for r in self.roles))
        authorities: dict[str, str] = {}
        for url in (*self.endpoints.values(), self.versions_url):
            scheme, authority = split_origin(url)
            if authority:
                authorities.setdefault(authority, scheme)
        object.__setattr__(self, "authorities", authorities)

    def local_url(self, url: str) -> str | None:
        """``url`` as the hub may call it: on one of this platform's own hosts and ports, in the scheme registered
        there (a party that writes https:// for the http:// server it registered is still understood), or None
        when it points anywhere else or is not a clean http(s) URL (no request forgery through party URLs)."""
        if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
            return None
        scheme, authority = split_origin(url)
        registered = self.authorities.get(authority) if authority else None
        if registered is None:
            return None
        return url if scheme == registered else registered + url[len(scheme) :]


def split_origin(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of an http(s) URL, both lower case; ("", "") for anything else."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        return "", ""
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if 0 <= found < end:
            end = found
    authority = rest[:end].lower()
    return (scheme, authority) if authority and "@" not in authority else ("", "")


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a token digest opens: a platform, before (token A) or after (token C) registration."""

    platform_id: str
    digest: bytes
    registered: bool


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request's platform, and the token form it used (remembered for calls back to it)."""

    platform: Platform
    registered: bool
    form: TokenForm
    digest: bytes
    #: The plaintext token (credentials GET shows it back to its owner); never in a repr or a log line.
    token: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Direct:
    """Forward to one receiver's endpoint (or, for a relay URL, to the URL it stands for)."""

    caller: Caller
    #: The routing parties: FROM (None only on a relay used without OCPI-from) and TO.
    sender: PartyKey | None
    to_party: PartyKey | None
    receiver: Platform
    endpoint: str
    #: Routing headers the hub adds because the requester left them out (a relay URL followed without them).
    add_to: bool = False
    add_from: bool = False


@dataclass(frozen=True, slots=True)
class Recipient:
    """One copy of a broadcast: the party it is addressed to and the endpoint it goes to."""

    platform: Platform
    party: PartyKey
    endpoint: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Fan a push out to every relevant connected party (§4.1.8.3)."""

    caller: Caller
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The keys hub relay URLs are signed with: the current key's id, and every key still accepted (id → secret)."""

    current: int
    keys: Mapping[int, bytes] = field(repr=False)


NO_KEYS: Final = SigningKeys(0, {})


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """An immutable snapshot of the registry."""

    version: int
    hub: PartyKey
    platforms: Mapping[str, Platform]
    tokens: Mapping[bytes, TokenGrant]
    signing: SigningKeys = NO_KEYS
    #: Derived from ``platforms`` when not given (``patched`` passes it to avoid an O(n) rebuild).
    parties: Mapping[PartyKey, Platform] = field(default_factory=dict)
    #: Authorization header value → Caller, filled as known tokens are seen; dies with this snapshot.
    _callers: dict[bytes, Caller] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.parties and self.platforms:
            object.__setattr__(self, "parties", {party: p for p in self.platforms.values() for party in p.parties})

    def patched(self, version: int, changed: Mapping[str, Platform | None]) -> RoutingTable:
        """A new table with some platforms replaced (or removed, None): O(changed) work plus dict copies."""
        platforms = dict(self.platforms)
        tokens = dict(self.tokens)
        parties = dict(self.parties)
        for platform_id, new in changed.items():
            old = platforms.pop(platform_id, None)
            if old is not None:
                for digest in old.digests:
                    tokens.pop(digest, None)
                for party in old.parties:
                    if parties.get(party) is old:
                        del parties[party]
            if new is not None:
                platforms[platform_id] = new
                for digest in new.digests:
                    tokens[digest] = TokenGrant(platform_id, digest, new.registered)
                for party in new.parties:
                    parties[party] = new
        return RoutingTable(
            version=version, hub=self.hub, platforms=platforms, tokens=tokens, signing=self.signing, parties=parties
        )

    def with_signing(self, version: int, signing: SigningKeys) -> RoutingTable:
        """The same table at a new version with other relay signing keys (the caller cache carries over)."""
        table = replace(self, version=version, signing=signing)
        object.__setattr__(table, "_callers", self._callers)
        return table

    @classmethod
    def empty(cls, hub: PartyKey) -> RoutingTable:
        return cls(version=0, hub=hub, platforms={}, tokens={})

    @classmethod
    def build(
        cls, version: int, hub: PartyKey, platforms: dict[str, Platform], signing: SigningKeys = NO_KEYS
    ) -> RoutingTable:
        """A whole table from its platforms; the token index is derived from their digests."""
        tokens = {d: TokenGrant(p.id, d, p.registered) for p in platforms.values() for d in p.digests}
        return cls(version=version, hub=hub, platforms=platforms, tokens=tokens, signing=signing)

    def authenticate_header(self, value: bytes | None) -> Caller:
        """The caller behind an Authorization header; known values skip decoding and hashing."""
        if value is not None:
            caller = self._callers.get(value)
            if caller is not None:
                return caller
        caller = self.authenticate(parse_authorization(value))
        if value is not None and len(self._callers) < MAX_CACHED_CALLERS:
            self._callers[value] = caller  # only tokens that authenticated: unknown ones cannot fill it
        return caller

    def authenticate(self, candidates: TokenCandidates) -> Caller:
        """The caller behind a token; UnauthorizedError (HTTP 401) when it is unknown (§4.1.2)."""
        for token, form in ((candidates.decoded, TokenForm.BASE64), (candidates.raw, TokenForm.RAW)):
            if token is None:
                continue
            digest = token_digest(token)
            grant = self.tokens.get(digest)
            # The dict lookup compares digests, not tokens; compare_digest keeps the final check constant-time.
            if grant is not None and hmac.compare_digest(grant.digest, digest):
                platform = self.platforms.get(grant.platform_id)
                if platform is not None:
                    return Caller(platform, grant.registered, form, digest, token)
        raise UnauthorizedError("unknown credentials token")

    def admit(self, caller: Caller) -> None:
        """Functional modules: a registered platform (token C) that is not suspended."""
        if not caller.registered:
            # Token A opens only credentials and versions (§4.1.2).
            raise UnauthorizedError("credentials token A is valid for credentials and versions only")
        if caller.platform.status is ConnectionStatus.SUSPENDED:
            raise ForbiddenError("this platform is suspended at the hub")

    def check_sender(self, caller: Caller, from_party: PartyKey | None) -> PartyKey:
        """The OCPI-from party, which must belong to the caller's platform (digest §2.9: no impersonation).

        Missing, it is the platform's only party when it holds exactly one (many implementations, 2.1.1-era ones
        among them, send no routing headers; digest §2.9 GAP: inferred when unambiguous); with several, 2001."""
        self.admit(caller)
        if from_party is None:
            if len(caller.platform.parties) == 1:
                return next(iter(caller.platform.parties))
            raise InvalidParametersError(
                "OCPI-from-country-code and OCPI-from-party-id are required: this platform holds several parties"
            )
        if from_party not in caller.platform.parties:
            raise InvalidParametersError(f"OCPI-from party {from_party} does not belong to this token's platform")
        return from_party

    def resolve(
        self, caller: Caller, sender: PartyKey, to_party: PartyKey, module: ModuleID, role: InterfaceRole
    ) -> Direct:
        """The receiver of a direct request, or the 4xxx error the hub answers without forwarding (§5.4)."""
        receiver = self.parties.get(to_party)
        if receiver is None:
            raise UnknownReceiverError(f"unknown receiver {to_party}")
        if receiver.status is not ConnectionStatus.CONNECTED:
            unavailable = _UNAVAILABLE.get(receiver.status, ReceiverUnreachableError)
            raise unavailable(f"receiver {to_party} is {receiver.status.value}")
        endpoint = receiver.endpoints.get((module, role))
        if endpoint is None:
            raise NoEndpointError(f"receiver {to_party} has no {module.value} {role.value} endpoint")
        return Direct(caller, sender, to_party, receiver, endpoint)

    def broadcast(
        self, caller: Caller, sender: PartyKey, module: ModuleID, role: InterfaceRole, method: str, suffix: str
    ) -> Broadcast:
        """Recipients of a push addressed to the hub itself (§4.1.8.3); 2001 when it may not be broadcast.

        The copies carry FROM = hub, so recipients cannot check who owns the object in the URL: the hub does.
        Only the object's owner may broadcast it — the URL's ``/{country_code}/{party_id}`` is the sender and
        the sender holds the owning role (§4.1.5: locations and tariffs are CPO-owned, tokens eMSP-owned).
        """
        if method not in BROADCAST_METHODS and not (method == "DELETE" and module in BROADCAST_DELETE):
            raise InvalidParametersError(f"{method} cannot be broadcast; only POST, PUT, PATCH (and tariff DELETE) can")
        if module not in BROADCAST_MODULES:
            raise InvalidParametersError(f"{module.value} cannot be broadcast (party-specific data)")
        if role is not InterfaceRole.RECEIVER:
            raise InvalidParametersError("only pushes to Receiver interfaces can be broadcast")
        segments = suffix.split("/")
        if len(segments) < 4 or PartyKey(segments[1].upper(), segments[2].upper()) != sender:
            raise InvalidParametersError(
                f"a broadcast URL must name the sender's own objects: /{sender.country_code}/{sender.party_id}/..."
            )
        audience: set[Role] = set()
        for party_role in caller.platform.roles:
            if party_role.party == sender and party_role.role in BROADCAST_OWNERS[module]:
                audience |= BROADCAST_AUDIENCE.get(party_role.role, frozenset())
        if not audience:
            raise InvalidParametersError(f"{sender} does not own {module.value} objects, so it cannot broadcast them")
        recipients: list[Recipient] = []
        for platform in self.platforms.values():
            if platform.id == caller.platform.id or platform.status is not ConnectionStatus.CONNECTED:
                continue
            endpoint = platform.endpoints.get((module, role))
            if endpoint is None:
                continue
            seen: set[PartyKey] = set()
            for party_role in sorted(platform.roles, key=str):
                if party_role.role in audience and party_role.party not in seen:
                    seen.add(party_role.party)
                    recipients.append(Recipient(platform, party_role.party, endpoint))
        return Broadcast(caller, tuple(recipients))
