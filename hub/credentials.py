"""The credentials module (credentials §7) in both directions, and the version endpoints the hub serves.

Owns: the party-initiated handshake (token A → fetch the party's versions and 2.2.1 details with its token B →
store its endpoints → answer with a fresh token C and only the hub's HUB role), PUT (re-fetch, rotate),
DELETE (unregister), GET; the hub-initiated handshake behind ``ocpi-hub registry connect``; and the hub's own
versions list and version details (versions §6).
Must not: route functional modules, or write Redis except through registry/store.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from hub.http.client import JsonReply, Outbound
from hub.http.policy import NetworkPolicy, PartyUrlError, check_literal, parse_party_url, resolve
from hub.identity import HubIdentity
from registry.audit import Actor
from registry.codec import EndpointRecord, Handshake, PlatformRecord
from registry.store import PartyStore, StaleTokenError, new_token
from routing import errors
from routing.headers import authorization_value
from routing.model import InterfaceRole, ModuleID, PartyRole, Role, TokenForm
from routing.paths import VERSION
from routing.table import Caller, token_digest

log = logging.getLogger("ocpihub.credentials")

#: Endpoints a party must publish for each of its roles, else the registration is refused with 3003.
#: Every platform implements credentials (§7.2); pull is the mandatory model (transport_and_format §4.1.3),
#: so a CPO publishes its Locations Sender and an eMSP its Tokens Sender.
REQUIRED_ENDPOINTS: Final[Mapping[Role, tuple[tuple[ModuleID, InterfaceRole | None], ...]]] = {
    Role.CPO: ((ModuleID.CREDENTIALS, None), (ModuleID.LOCATIONS, InterfaceRole.SENDER)),
    Role.EMSP: ((ModuleID.CREDENTIALS, None), (ModuleID.TOKENS, InterfaceRole.SENDER)),
}
DEFAULT_REQUIRED: Final = ((ModuleID.CREDENTIALS, None),)
MAX_TOKEN_LENGTH: Final = 64
#: Failed registrations allowed with one token A per window (seconds); past it HTTP 429 until the window ends.
MAX_FAILED_REGISTRATIONS: Final = 5
FAILED_REGISTRATION_WINDOW: Final = 600


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """A Credentials object received from a party (credentials §7.3.1)."""

    token: str
    url: str
    roles: tuple[PartyRole, ...]
    business_details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PeerDetails:
    """What the handshake learnt from a party's versions and 2.2.1 details."""

    versions_url: str
    version: str
    endpoints: tuple[EndpointRecord, ...]

    def handshake(self, credentials: PeerCredentials, form: TokenForm) -> Handshake:
        """What a completed handshake stores about the party (registry/store.py apply_credentials)."""
        return Handshake(
            versions_url=self.versions_url,
            version=self.version,
            endpoints=self.endpoints,
            token_b=credentials.token,
            token_form=form,
            business_details=credentials.business_details,
        )

    def url_of(self, module: ModuleID) -> str | None:
        return next((e.url for e in self.endpoints if e.identifier == module.value), None)


def parse_credentials(raw: bytes | Any) -> PeerCredentials:
    """A Credentials JSON object → PeerCredentials; MalformedBodyError (HTTP 400, 2001) for anything else."""
    try:
        data = orjson.loads(raw) if isinstance(raw, bytes | bytearray) else raw
    except orjson.JSONDecodeError:
        raise errors.MalformedBodyError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise errors.MalformedBodyError("Credentials must be a JSON object")
    token, url, roles = data.get("token"), data.get("url"), data.get("roles")
    problems = []
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH or not _printable_token(token):
        problems.append("token must be 1 to 64 printable non-whitespace ASCII characters")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 255:
        problems.append("url must be the http(s) URL of the versions endpoint")
    parsed_roles: list[PartyRole] = []
    details: dict[str, Any] = {}
    if not isinstance(roles, list) or not roles:
        problems.append("roles must be a non-empty list of CredentialsRole")
    else:
        for entry in roles:
            try:
                role = PartyRole.parse(f"{entry['country_code']}:{entry['party_id']}:{entry['role']}")
            except (KeyError, TypeError, ValueError):
                problems.append("each role needs role, party_id (3) and country_code (2)")
                break
            parsed_roles.append(role)
            if isinstance(entry.get("business_details"), dict):
                details[str(role)] = entry["business_details"]
    if problems:
        raise errors.MalformedBodyError("invalid Credentials: " + "; ".join(problems))
    return PeerCredentials(str(token), str(url), tuple(parsed_roles), details)


def _printable_token(token: str) -> bool:
    return all("\x21" <= ch <= "\x7e" for ch in token)


def _envelope_data(reply: JsonReply, what: str) -> Any:
    """The ``data`` of a successful OCPI answer; 3001 when the answer is not one."""
    body = reply.data
    if reply.status != 200 or not isinstance(body, dict) or body.get("status_code") != 1000 or "data" not in body:
        shown = body.get("status_code") if isinstance(body, dict) else reply.content_type or "no JSON"
        raise errors.ClientApiError(f"{what} did not give an OCPI answer (HTTP {reply.status}, {shown})")
    return body["data"]


async def check_party_url(url: str, what: str, policy: NetworkPolicy) -> None:
    """2001 unless ``url`` is an http(s) URL the hub may call: valid host and port, no control characters, resolving
    to public addresses only (or the operator's allowed networks). The message says what to fix and never what is
    listening where: refused, unresolvable and private addresses read alike (hub/http/policy.py)."""
    try:
        parsed = parse_party_url(url)
        check_literal(parsed, policy)
        await resolve(parsed, policy)
    except PartyUrlError as exc:
        raise errors.InvalidParametersError(f"{what}: {exc}") from None


async def fetch_peer(
    outbound: Outbound, versions_url: str, authorization: bytes, timeout: float, policy: NetworkPolicy
) -> PeerDetails:
    """GET the party's versions, pick 2.2.1, GET its details (credentials §7.1.1 step 4), all within ``timeout``;
    every URL checked against the party network policy first (2001 naming the one to fix)."""
    await check_party_url(versions_url, "url (versions)", policy)
    try:
        details = await _fetch_peer(outbound, versions_url, authorization, timeout, policy)
    except TimeoutError:
        raise errors.ClientApiError(f"the party's versions and details did not arrive within {timeout:g} s") from None
    for endpoint in details.endpoints:
        await check_party_url(endpoint.url, f"endpoint {endpoint.identifier} {endpoint.role}", policy)
    return details


async def _get(outbound: Outbound, url: str, authorization: bytes, timeout: float, what: str) -> JsonReply:
    try:
        return await outbound.call_json("GET", url, authorization, timeout=timeout)
    except errors.ClientApiError as exc:
        # The operator's log has the cause; the party only learns that the call failed (no port scanning).
        log.info("credentials: %s not fetched: %s", what, exc.message)
        raise errors.ClientApiError(f"the hub could not fetch {what} at {url}: no OCPI answer") from None


async def _fetch_peer(
    outbound: Outbound, versions_url: str, authorization: bytes, timeout: float, policy: NetworkPolicy
) -> PeerDetails:
    async with asyncio.timeout(timeout):
        reply = await _get(outbound, versions_url, authorization, timeout, "the versions")
        versions = _envelope_data(reply, "the versions endpoint")
        if not isinstance(versions, list):
            raise errors.ClientApiError("the versions endpoint did not list versions")
        urls = [v.get("url") for v in versions if isinstance(v, dict) and v.get("version") == VERSION]
        if not urls or not isinstance(urls[0], str):
            raise errors.UnsupportedVersionError(f"the party does not offer OCPI {VERSION}")
        await check_party_url(urls[0], f"url of version {VERSION}", policy)
        reply = await _get(outbound, urls[0], authorization, timeout, "the version details")
        details = _envelope_data(reply, "the version details endpoint")
    raw_endpoints = details.get("endpoints") if isinstance(details, dict) else None
    if not isinstance(raw_endpoints, list):
        raise errors.ClientApiError("the version details have no endpoints")
    endpoints = tuple(
        EndpointRecord(str(e["identifier"]), str(e["role"]), str(e["url"]))
        for e in raw_endpoints
        if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("identifier", "role", "url"))
    )
    return PeerDetails(versions_url, VERSION, endpoints)


def check_endpoints(roles: tuple[PartyRole, ...], details: PeerDetails) -> None:
    """3003 when a role lacks an endpoint it needs (credentials §7.1.6)."""
    published = {(e.identifier.lower(), e.role.upper()) for e in details.endpoints}
    published_modules = {e.identifier.lower() for e in details.endpoints}
    for party_role in roles:
        for module, role in REQUIRED_ENDPOINTS.get(party_role.role, DEFAULT_REQUIRED):
            present = module.value in published_modules if role is None else (module.value, role.value) in published
            if not present:
                needed = module.value if role is None else f"{module.value} {role.value}"
                raise errors.NoMatchingEndpointsError(f"{party_role} must publish a {needed} endpoint")


def _same_roles(declared: frozenset[PartyRole], offered: tuple[PartyRole, ...]) -> None:
    if declared != frozenset(offered):
        want = ", ".join(sorted(map(str, declared)))
        raise errors.InvalidParametersError(f"credentials roles differ from the parties declared for it: {want}")


class CredentialsService:
    """Credentials GET/POST/PUT/DELETE for authenticated callers."""

    def __init__(
        self,
        store: PartyStore,
        outbound: Outbound,
        identity: HubIdentity,
        timeout: float,
        on_change: Callable[[str], Awaitable[None]],
    ) -> None:
        self.store = store
        self.outbound = outbound
        self.identity = identity
        self.timeout = timeout
        self.on_change = on_change

    def get(self, caller: Caller) -> dict[str, Any]:
        return self.identity.credentials(caller.token.decode("ascii"))

    async def register(self, caller: Caller, body: bytes, *, update: bool) -> tuple[PlatformRecord, dict[str, Any]]:
        """POST (update=False) or PUT (update=True); 405 when the caller's state does not allow it (§7.2)."""
        if update and not caller.registered:
            raise errors.MethodNotAllowedError("PUT needs a registered platform; register with POST first")
        if not update and caller.registered:
            raise errors.MethodNotAllowedError("already registered: use PUT to update or DELETE to unregister")
        if not update:
            # A token A is a key to the hub's outbound client: its failed registrations are limited, so nobody
            # probes addresses or ports through the handshake.
            failures, left = await self.store.registration_failures(caller.digest)
            if failures >= MAX_FAILED_REGISTRATIONS:
                raise errors.RateLimitedError(
                    f"too many failed registrations with this token; try again in {left} s", float(max(left, 1))
                )
        try:
            offered = parse_credentials(body)
            _same_roles(caller.platform.roles, offered.roles)
            # Call the party back in the token form it used with us (transport_and_format §4.1.2 NOTE).
            authorization = authorization_value(offered.token, caller.form is TokenForm.BASE64)
            details = await fetch_peer(self.outbound, offered.url, authorization, self.timeout, self.outbound.policy)
            check_endpoints(offered.roles, details)
        except errors.OcpiError:
            if not update:
                await self.store.note_registration_failure(caller.digest, FAILED_REGISTRATION_WINDOW)
            raise
        token_c = new_token()
        try:
            record = await self.store.apply_credentials(
                caller.platform.id,
                caller.digest,
                registered_before=update,
                handshake=details.handshake(offered, caller.form),
                token_c=token_c,
                actor=Actor.of_platform(caller.platform.id, caller.platform.parties),
            )
        except StaleTokenError as exc:
            raise errors.UnauthorizedError(str(exc)) from None
        await self.on_change(record.id)
        return record, self.identity.credentials(token_c)

    async def unregister(self, caller: Caller) -> None:
        if not caller.registered:
            raise errors.MethodNotAllowedError("not registered")
        await self.store.unregister(
            caller.platform.id, actor=Actor.of_platform(caller.platform.id, caller.platform.parties)
        )
        await self.on_change(caller.platform.id)


async def connect(
    store: PartyStore,
    outbound: Outbound,
    identity: HubIdentity,
    *,
    versions_url: str,
    token_a: str,
    roles: tuple[PartyRole, ...],
    name: str,
    timeout: float,
    hub_ready_timeout: float = 5.0,
    own: Outbound | None = None,
    actor: Actor,
) -> PlatformRecord:
    """Hub-initiated registration (credentials §7.1.1 with the hub as Sender); nothing is kept if it fails.

    ``outbound`` calls the party (under the party network policy); ``own`` calls the hub's own public URL, which
    the operator configured and may well be a private address (default: ``outbound``)."""
    await check_party_url(versions_url, "--versions-url", outbound.policy)  # before anything is declared
    record, token_for_party = await store.declare(roles, name, announce=False, actor=actor)
    try:
        await _wait_for_hub(own or outbound, identity, token_for_party, hub_ready_timeout)
        their_a = authorization_value(token_a, True)
        details = await fetch_peer(outbound, versions_url, their_a, timeout, outbound.policy)
        check_endpoints(roles, details)
        credentials_url = details.url_of(ModuleID.CREDENTIALS)
        if credentials_url is None:
            raise errors.NoMatchingEndpointsError("the party publishes no credentials endpoint")
        reply = await outbound.call_json(
            "POST", credentials_url, their_a, body=identity.credentials(token_for_party), timeout=timeout
        )
        theirs = parse_credentials(_envelope_data(reply, "the credentials POST"))
        _same_roles(frozenset(roles), theirs.roles)
        return await store.apply_credentials(
            record.id,
            token_digest(token_for_party.encode()),
            registered_before=False,
            handshake=details.handshake(theirs, TokenForm.BASE64),
            token_c=token_for_party,
            actor=actor,
        )
    except BaseException:
        await store.discard(record.id, actor=actor)
        raise


async def _wait_for_hub(outbound: Outbound, identity: HubIdentity, token: str, timeout: float) -> None:
    """The party will call the hub back with ``token`` during our POST: wait until a running hub accepts it."""
    deadline = asyncio.get_running_loop().time() + timeout
    authorization = authorization_value(token, True)
    while True:
        try:
            reply = await outbound.call_json("GET", identity.versions_url, authorization, timeout=1.0)
            if reply.status == 200:
                return
        except errors.ClientApiError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise errors.ServerError(f"no running hub accepted the new platform at {identity.versions_url}")
        await asyncio.sleep(0.05)
