"""URLs the hub stands in for: pagination ``Link``, the CDR POST ``Location`` and ``response_url`` (digest §2.10).

Owns: rewriting them as they pass into signed relay URLs (routing/relays.py) — the receiver's query stays
readable outside the signed part, and following one needs the requester's token only (its routing headers are
restored when it leaves them out) — and reading a relay URL back when it is used. Nothing is stored: any
replica reads any relay URL, also while Redis is unreachable. Relay ids handed out by release 0.1 (kept in Redis
with a TTL) are still read until they expire. A URL that points anywhere but the owning platform's registered
hosts is never relayed (the hub follows relays with that platform's token: no request forgery).
Must not: do I/O except that legacy read; parse an answer body except where the receiver's own URL is unusable
and the hub has to rebuild it (noted with a warning).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

import orjson

from registry.store import REGISTRY_ERRORS, PartyStore
from routing import errors
from routing.datetimes import parse_datetime
from routing.model import InterfaceRole, ModuleID, PartyKey
from routing.paths import RELAY_PREFIX
from routing.relays import RelayGrant, sign, verify
from routing.table import Direct, Platform, RoutingTable, split_origin

log = logging.getLogger("ocpihub.relay")

#: Length of a relay id of release 0.1 (``secrets.token_urlsafe(24)``).
_LEGACY_ID_LENGTH: Final = 32

#: Links expire on a multiple of up to this many seconds (rounded up; never more than 1/60 of the Link TTL), so
#: one signature serves a crawl's every page.
LINK_EXPIRY_STEP: Final = 60
#: Signed Link bases remembered at most (the set is emptied when full, and every expiry step).
_LINKS_KEPT: Final = 4096


class Relays:
    """Rewrites and reads relay URLs for one process."""

    def __init__(
        self,
        table: Callable[[], RoutingTable],
        store: PartyStore,
        base_url: str,
        *,
        link_ttl: int,
        callback_ttl: int,
    ) -> None:
        self.table = table
        self.store = store
        self.base_url = base_url
        self.relay_base = base_url + RELAY_PREFIX
        self.link_ttl = link_ttl
        self.callback_ttl = callback_ttl
        #: Link relay URLs already signed (see _link_base), for one table and one expiry bucket.
        self._links: dict[tuple[object, ...], str | None] = {}
        self._links_table: RoutingTable | None = None
        self._links_expires = 0
        self._link_step = min(max(link_ttl // 60, 1), LINK_EXPIRY_STEP)

    # -- reading -----------------------------------------------------------------------------------------------

    async def read(self, rest: str) -> RelayGrant | None:
        """What the relay URL ``RELAY_PREFIX + rest`` stands for; None when it is unknown, expired or forged."""
        table = self.table()
        grant = verify(table.signing, rest, table.platforms, time.time())
        if grant is not None or len(rest.rstrip("/")) != _LEGACY_ID_LENGTH:
            return grant
        try:
            legacy = await self.store.legacy_relay(rest.rstrip("/"))
        except REGISTRY_ERRORS:
            return None
        if legacy is None:
            return None
        return RelayGrant(
            legacy.platform, legacy.allowed, legacy.module, legacy.target, legacy.to_party, legacy.from_party
        )

    # -- making ------------------------------------------------------------------------------------------------

    def relay_url(
        self,
        owner: Platform,
        allowed: str,
        module: ModuleID,
        url: str,
        to_party: PartyKey | None,
        from_party: PartyKey | None,
        ttl: int,
    ) -> str | None:
        """A signed hub URL standing for ``url`` (which must be on ``owner``'s hosts), usable by ``allowed`` only."""
        local = owner.local_url(url)
        if local is None:
            log.warning(
                "URL not on the platform's own hosts: not relayed",
                extra={"fields": {"platform": owner.id, "module": module.value}},
            )
            return None
        return self._signed(owner, allowed, module, local, to_party, from_party, ttl)

    def _signed(
        self,
        owner: Platform,
        allowed: str,
        module: ModuleID,
        local: str,
        to_party: PartyKey | None,
        from_party: PartyKey | None,
        ttl: int,
        expires: int | None = None,
    ) -> str | None:
        """``relay_url`` for a URL already made local (``Platform.local_url``); valid ``ttl`` s from now, or until
        ``expires`` when given."""
        scheme, authority = split_origin(local)
        origin = f"{scheme}://{authority}"
        rest = local[len(origin) :]
        path, _, query = rest.partition("?")
        path = path.split("#", 1)[0] or "/"
        token = sign(
            self.table().signing,
            target_platform=owner.id,
            allowed_platform=allowed,
            module=module,
            origin=origin,
            path=path,
            to_party=to_party,
            from_party=from_party,
            expires=int(time.time()) + ttl if expires is None else expires,
        )
        if token is None:
            log.warning("no relay signing key loaded yet: URL not relayed")
            return None
        return f"{self.relay_base}{token}{path}" + (f"?{query}" if query else "")

    def link(
        self,
        value: bytes,
        route: Direct,
        module: ModuleID,
        role: InterfaceRole | None,
        request_query: bytes,
        total: int | None,
        body: bytes | None,
    ) -> bytes | None:
        """The requester's ``Link`` for a receiver's ``Link`` (transport_and_format §4.1.4.1 "Paginated Response"):
        a relay URL whose query is the receiver's own, readable and unchanged.

        A Link that does not point under the receiver's endpoint for the module is not one it can serve (seen in
        the wild: enum names in the path); when X-Total-Count says more pages follow, the hub rebuilds it from
        the request's own query with ``offset`` advanced by the page's size. ``role`` is None on a relayed page.
        """
        text = value.decode("latin-1")
        opening, closing = text.find("<"), text.find(">")
        target = text[opening + 1 : closing] if 0 <= opening < closing else ""
        params = text[closing + 1 :] if closing >= 0 else '; rel="next"'
        if target:
            # Every page of a crawl has the same Link but for its query: the signed part is made once per list,
            # requester and expiry bucket, and the query (checked as local_url would) is appended as it came.
            base, _, query = target.partition("?")
            if not query or (query.isascii() and query.isprintable() and " " not in query and "\\" not in query):
                relayed = self._link_base(base, route, module, role)
                if relayed is not None:
                    return f"<{relayed}{'?' if query else ''}{query}>{params}".encode("latin-1")
        local = route.receiver.local_url(target) if target else None
        if local is None or not self._under_endpoint(local, route.receiver, module, role):
            rebuilt = self._next_page(route.receiver, module, role, request_query, total, body)
            if rebuilt is not None:
                log.warning(
                    "receiver's Link unusable: the hub made the next-page Link itself",
                    extra={"fields": {"platform": route.receiver.id, "module": module.value}},
                )
                local, params = route.receiver.local_url(rebuilt), '; rel="next"'
        if local is None:
            return None
        relayed = self._signed(
            route.receiver, route.caller.platform.id, module, local, route.to_party, route.sender, self.link_ttl
        )
        return None if relayed is None else f"<{relayed}>{params}".encode("latin-1")

    def _link_base(self, base: str, route: Direct, module: ModuleID, role: InterfaceRole | None) -> str | None:
        """The relay URL (without query) for a Link target without query, when it lies under the receiver's
        endpoint for the module; None otherwise. Remembered for the table, requester and expiry bucket it was
        made for: a Link's expiry is rounded up to a step of ``link_ttl / 60`` (at most LINK_EXPIRY_STEP s)."""
        table = self.table()
        now = int(time.time())
        expires = now + self.link_ttl + (-(now + self.link_ttl)) % self._link_step
        if table is not self._links_table or expires != self._links_expires or len(self._links) >= _LINKS_KEPT:
            self._links.clear()
            self._links_table, self._links_expires = table, expires
        key = (route.receiver.id, route.caller.platform.id, module, role, route.to_party, route.sender, base)
        if key in self._links:
            return self._links[key]
        local = route.receiver.local_url(base)
        relayed = None
        if local is not None and self._under_endpoint(local, route.receiver, module, role):
            relayed = self._signed(
                route.receiver, route.caller.platform.id, module, local, route.to_party, route.sender, 0, expires
            )
        self._links[key] = relayed
        return relayed

    def missing_link(
        self,
        route: Direct,
        module: ModuleID,
        role: InterfaceRole | None,
        request_query: bytes,
        total: int,
        body: bytes | None,
    ) -> bytes | None:
        """A receiver said more pages follow (X-Total-Count) but gave no Link: the hub makes one (never silently
        no Link while pages remain)."""
        rebuilt = self._next_page(route.receiver, module, role, request_query, total, body)
        if rebuilt is None:
            return None
        log.warning(
            "receiver gave no Link while pages remain: the hub made the next-page Link itself",
            extra={"fields": {"platform": route.receiver.id, "module": module.value}},
        )
        relayed = self.relay_url(
            route.receiver, route.caller.platform.id, module, rebuilt, route.to_party, route.sender, self.link_ttl
        )
        return None if relayed is None else f'<{relayed}>; rel="next"'.encode("latin-1")

    @staticmethod
    def _endpoints(receiver: Platform, module: ModuleID, role: InterfaceRole | None) -> list[str]:
        roles = (role,) if role is not None else (InterfaceRole.SENDER, InterfaceRole.RECEIVER)
        return [e for e in (receiver.endpoints.get((module, r)) for r in roles) if e is not None]

    def _under_endpoint(self, url: str, receiver: Platform, module: ModuleID, role: InterfaceRole | None) -> bool:
        for endpoint in self._endpoints(receiver, module, role):
            # Registered endpoints are nearly always local already; local_url only when the plain one differs.
            if _under(url, endpoint.rstrip("/")):
                return True
            local = receiver.local_url(endpoint)
            if local is not None and local != endpoint and _under(url, local.rstrip("/")):
                return True
        return False

    def _next_page(
        self,
        receiver: Platform,
        module: ModuleID,
        role: InterfaceRole | None,
        request_query: bytes,
        total: int | None,
        body: bytes | None,
    ) -> str | None:
        """The receiver's URL of the page after this one, from the request's query and the page's size."""
        endpoints = self._endpoints(receiver, module, role)
        if total is None or body is None or not endpoints:
            return None
        pairs = parse_qsl(request_query.decode("latin-1"), keep_blank_values=True)
        query = dict(pairs)
        try:
            offset = int(query.get("offset", "0"))
        except ValueError:
            return None
        if "limit" in query and query["limit"].isdigit() and offset + int(query["limit"]) >= total:
            return None  # the last page by its own numbers: nothing to rebuild, and no body to read
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list) or not data:
            return None
        following = offset + len(data)
        if following >= total:
            return None
        rebuilt = [(k, v) for k, v in pairs if k != "offset"] + [("offset", str(following))]
        if "limit" not in query:
            rebuilt.append(("limit", str(len(data))))
        return f"{endpoints[0]}?{urlencode(rebuilt)}"

    def location(self, value: bytes, route: Direct, request_body: bytes) -> bytes | None:
        """The CDR POST ``Location`` (mod_cdrs §10.2.2.2) as the CPO can use it: a relay to the eMSP's URL; when
        that URL is not usable, one rebuilt from the eMSP's cdrs endpoint and the CDR's id."""
        receiver = route.receiver
        url = value.decode("latin-1")
        endpoint = receiver.endpoints.get((ModuleID.CDRS, InterfaceRole.RECEIVER))
        local = receiver.local_url(url)
        if endpoint is not None and (local is None or not local.startswith(endpoint.rstrip("/") + "/")):
            cdr_id = _json_field(request_body, "id")
            if cdr_id is not None:
                log.warning(
                    "receiver's CDR Location unusable: rebuilt from its cdrs endpoint and the CDR id",
                    extra={"fields": {"platform": receiver.id}},
                )
                url = endpoint.rstrip("/") + "/" + quote(cdr_id, safe="")
        relayed = self.relay_url(
            receiver, route.caller.platform.id, ModuleID.CDRS, url, route.to_party, route.sender, self.callback_ttl
        )
        return None if relayed is None else relayed.encode("latin-1")

    # -- response_url (commands, charging profiles): the receiver calls the sender back through the hub ----------

    def callback(self, url: str, route: Direct, module: ModuleID, ttl: int) -> str:
        relayed = self.relay_url(
            route.caller.platform, route.receiver.id, module, url, route.sender, route.to_party, ttl
        )
        if relayed is None:
            raise errors.InvalidParametersError("response_url must be an http(s) URL on your own platform's host")
        return relayed

    def rewrite_response_url(
        self, method: str, body: bytes, query: bytes, route: Direct, module: ModuleID
    ) -> tuple[bytes, bytes]:
        """Point ``response_url`` at the hub so the CPO's result comes back through it (digest §2.10)."""
        if method in ("GET", "DELETE"):
            # Charging profiles GET/DELETE carry it in the query (mod_charging_profiles §14.4.1).
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            if not any(k == "response_url" for k, _ in pairs):
                return body, query
            rewritten = [
                (k, self.callback(v, route, module, self.callback_ttl) if k == "response_url" else v) for k, v in pairs
            ]
            return body, urlencode(rewritten).encode("latin-1")
        if method not in ("POST", "PUT") or not body:
            return body, query
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise errors.MalformedBodyError("the request body is not valid JSON") from None
        original = document.get("response_url") if isinstance(document, dict) else None
        if not isinstance(original, str):
            return body, query  # the receiver answers 2001 itself
        relayed = self.callback(original, route, module, self._callback_ttl(document))
        old, new = orjson.dumps(original), orjson.dumps(relayed)
        if body.count(old) == 1:
            return body.replace(old, new), query  # every other byte stays as the sender wrote it
        document["response_url"] = relayed
        return orjson.dumps(document), query

    def _callback_ttl(self, document: dict[str, Any]) -> int:
        # A RESERVE_NOW response_url may be called again until the reservation expires (mod_commands §13.1).
        ttl = self.callback_ttl
        expiry = document.get("expiry_date")
        if isinstance(expiry, str):
            try:
                remaining = (parse_datetime(expiry) - datetime.now(UTC)).total_seconds()
            except ValueError:
                return ttl
            ttl = max(ttl, int(remaining) + ttl)
        return ttl


def _json_field(body: bytes, name: str) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) and value.isascii() and value.isprintable() and "/" not in value else None


def _under(url: str, base: str) -> bool:
    return url.startswith(base) and url[len(base) : len(base) + 1] in ("", "/", "?")
