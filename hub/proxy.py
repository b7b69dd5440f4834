"""The hot path: a functional-module request in, the receiver's answer streamed back.

Owns: the per-request sequence — parse headers, authenticate against the snapshot, check the sender, resolve
the receiver (or accept a broadcast), forward with a new Authorization and X-Request-ID, stream the answer
back with the sender's X-Request-ID — and the URL rewrites a hub must do so nothing bypasses it: pagination
``Link``, the CDR POST ``Location`` and ``response_url`` of commands and charging profiles (digest §2.10),
through relay ids kept in Redis with a TTL. Also serves those relay URLs.
Must not: parse forwarded bodies (except the two response_url rewrites the spec forces), await Redis for a
plain routed request, or render an envelope itself (hub/envelope.py does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.types import Receive, Scope, Send

from hub import logs
from hub.broadcast import Broadcaster
from hub.envelope import envelope, render_error, send_bytes
from hub.runtime import Runtime, new_request_id
from routing import errors
from routing import headers as h
from routing.datetimes import parse_datetime
from routing.model import FUNCTIONAL_MODULES, ConnectionStatus, InterfaceRole, ModuleID, PartyKey
from routing.paths import RELAY_PREFIX, check_suffix, join_url
from routing.table import Caller, Platform

log = logging.getLogger("ocpihub.access")

#: Receiver response headers not passed back: hop-by-hop ones, and the ones the hub sets itself.
_DROPPED_RESPONSE: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"proxy-connection",
        b"upgrade",
        b"trailer",
        b"date",
        b"server",
        h.X_REQUEST_ID,
        h.X_CORRELATION_ID,
    }
)

_OUTCOME: Final[tuple[tuple[type[errors.OcpiError], str], ...]] = (
    (errors.UnauthorizedError, "refused"),
    (errors.ForbiddenError, "refused"),
    (errors.UnknownReceiverError, "unknown_receiver"),
    (errors.ForwardTimeoutError, "timeout"),
    (errors.ReceiverUnreachableError, "unreachable"),
    (errors.ClientError, "client_error"),
    (errors.InvalidParametersError, "client_error"),
)


def outcome_of(error: errors.OcpiError) -> str:
    for cls, outcome in _OUTCOME:
        if isinstance(error, cls):
            return outcome
    return "server_error"


class ClientDisconnectedError(Exception):
    """The sender went away before its body arrived."""


async def read_body(receive: Receive, declared: int | None, limit: int) -> bytes:
    """The request body, refused early when it is declared or turns out larger than ``limit``.

    Bodies are read whole (OCPI objects are small) and never parsed; the answer is what streams.
    """
    if declared is not None and declared > limit:
        raise errors.BodyTooLargeError(f"request body larger than {limit} bytes")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnectedError
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise errors.BodyTooLargeError(f"request body larger than {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.BodyTooLargeError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class Exchange:
    """What one request's log line, metrics and error answer need."""

    __slots__ = (
        "correlation_id",
        "from_party",
        "interface",
        "method",
        "module",
        "ocpi_status",
        "outcome",
        "request_id",
        "request_id_out",
        "start",
        "started",
        "status",
        "to_party",
    )

    def __init__(self, method: str, module: str, interface: str) -> None:
        self.method = method
        self.module = module
        self.interface = interface
        self.request_id: bytes = b""
        self.correlation_id: bytes = b""
        self.request_id_out: bytes = b""
        self.from_party: PartyKey | None = None
        self.to_party: PartyKey | None = None
        self.status = 0
        self.ocpi_status = 0
        self.outcome = ""
        self.started = False
        self.start = time.perf_counter()


class Proxy:
    """Routes functional-module requests and relay URLs for one process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.broadcaster = Broadcaster(rt)
        self.hub_from = h.routing_headers("from", rt.hub)
        self.timeouts = {m: rt.settings.timeout_for(m.value) for m in FUNCTIONAL_MODULES}
        self.relay_base = rt.base_url + RELAY_PREFIX
        self.max_body = rt.settings.max_body_size

    # -- entry points --------------------------------------------------------------------------------------

    async def module_request(
        self, scope: Scope, receive: Receive, send: Send, module: ModuleID, role: InterfaceRole, suffix: str
    ) -> None:
        ex = Exchange(scope["method"], module.value, role.value)
        await self._run(ex, send, self._route(ex, scope, receive, send, module, role, suffix))

    async def relay_request(self, scope: Scope, receive: Receive, send: Send, relay_id: str) -> None:
        """A rewritten Link / Location / response_url being used: only by the party it was made for."""
        ex = Exchange(scope["method"], "relay", "none")
        await self._run(ex, send, self._relay(ex, scope, receive, send, relay_id))

    async def _run(self, ex: Exchange, send: Send, work: Coroutine[Any, Any, None]) -> None:
        """Every request's frame: typed errors become envelopes, anything else a 3000; always accounted."""
        try:
            await work
        except errors.OcpiError as error:
            await self._fail(ex, send, error)
        except ClientDisconnectedError:
            ex.status, ex.outcome = 499, "client_error"
        except Exception:
            log.exception("unexpected failure", extra={"correlation_id": ex.correlation_id.decode("ascii", "replace")})
            await self._fail(ex, send, errors.ServerError("internal error"))
            raise
        finally:
            self._account(ex)

    async def _route(
        self,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        module: ModuleID,
        role: InterfaceRole,
        suffix: str,
    ) -> None:
        parsed = self._begin(ex, scope)
        table = self.rt.holder.table
        caller = table.authenticate_header(parsed.authorization)
        self.rt.seen[caller.platform.id] = time.time()
        parsed.check()
        check_suffix(suffix)
        sender = ex.from_party = table.check_sender(caller, parsed.from_party)
        ex.to_party = parsed.to_party
        if parsed.to_party == table.hub:
            await self._broadcast(ex, scope, receive, send, caller, sender, parsed, module, role, suffix)
            return
        route = table.resolve(parsed.to_party, module, role)
        body = await read_body(receive, parsed.content_length, self.max_body)
        query: bytes = scope["query_string"]
        context = _RelayContext(caller.platform.id, route.receiver.id, parsed.to_party, sender, module)
        if role is InterfaceRole.RECEIVER and module in (ModuleID.COMMANDS, ModuleID.CHARGINGPROFILES):
            body, query = await self._rewrite_response_url(ex.method, body, query, context)
        out = self._outbound_headers(ex, parsed.passthrough, parsed.correlation_id, route.receiver)
        url = join_url(route.endpoint, suffix, query)
        await self._forward(ex, send, url, out, body, self.timeouts[module], context)

    async def _relay(self, ex: Exchange, scope: Scope, receive: Receive, send: Send, relay_id: str) -> None:
        parsed = self._begin(ex, scope)
        table = self.rt.holder.table
        caller = table.authenticate_header(parsed.authorization)
        self.rt.seen[caller.platform.id] = time.time()
        parsed.check()
        table.admit(caller)
        if parsed.from_party is not None:
            ex.from_party = table.check_sender(caller, parsed.from_party)
        mapping = await self.rt.store.get_relay(relay_id) if "/" not in relay_id else None
        if mapping is None or mapping["allowed"] != caller.platform.id:
            # One answer for unknown, expired and someone else's: a relay id reveals nothing.
            raise errors.NotFoundError("unknown or expired relay URL")
        target = table.platforms.get(mapping["platform"])
        if target is None or target.status is not ConnectionStatus.CONNECTED:
            raise errors.ReceiverUnreachableError("the party behind this URL is not connected")
        module = ModuleID(mapping["module"])
        passthrough = parsed.passthrough
        ex.to_party = parsed.to_party
        if parsed.to_party is None:
            # The original exchange's routing headers, for a client that does not repeat them.
            ex.to_party = PartyKey.parse(mapping["to"])
            passthrough = [*passthrough, *h.routing_headers("to", ex.to_party)]
            if parsed.from_party is None:
                ex.from_party = PartyKey.parse(mapping["from"])
                passthrough += h.routing_headers("from", ex.from_party)
        body = await read_body(receive, parsed.content_length, self.max_body)
        out = self._outbound_headers(ex, passthrough, parsed.correlation_id, target)
        context = _RelayContext(caller.platform.id, target.id, ex.to_party, ex.from_party, module)
        await self._forward(ex, send, mapping["target"], out, body, self.timeouts[module], context)

    # -- steps ---------------------------------------------------------------------------------------------

    def _begin(self, ex: Exchange, scope: Scope) -> h.RequestHeaders:
        parsed = h.read_request_headers(scope["headers"])
        ex.request_id = parsed.request_id or new_request_id()
        ex.correlation_id = parsed.correlation_id or new_request_id()
        return parsed

    def _outbound_headers(
        self,
        ex: Exchange,
        passthrough: list[tuple[bytes, bytes]],
        correlation_id: bytes | None,
        receiver: Platform,
    ) -> list[tuple[bytes, bytes]]:
        # Routing headers pass unchanged; Authorization is the receiver's own token in its own form; the
        # X-Request-ID is new and the X-Correlation-ID kept, or created when the sender sent none (§4.2).
        ex.request_id_out = new_request_id()
        out = [*passthrough, (h.AUTHORIZATION, receiver.auth_header), (h.X_REQUEST_ID, ex.request_id_out)]
        if correlation_id is None:
            out.append((h.X_CORRELATION_ID, ex.correlation_id))
        return out

    async def _broadcast(
        self,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        caller: Caller,
        sender: PartyKey,
        parsed: h.RequestHeaders,
        module: ModuleID,
        role: InterfaceRole,
        suffix: str,
    ) -> None:
        decision = self.rt.holder.table.broadcast(caller, sender, module, role, scope["method"], suffix)
        body = await read_body(receive, parsed.content_length, self.max_body)
        try:
            orjson.loads(body)  # the hub answers this push itself: invalid JSON is its 400 (status_codes §5)
        except orjson.JSONDecodeError:
            raise errors.MalformedBodyError("the request body is not valid JSON") from None
        # The sender gets its answer now; the fan-out runs on (§4.1.8.3 diagram: RESPONSE before the copies).
        ex.status, ex.ocpi_status = 200, 1000
        await send_bytes(
            send, 200, envelope(1000, f"accepted for {len(decision.recipients)} recipients"), self._own_headers(ex)
        )
        self.broadcaster.start(
            decision,
            module,
            scope["method"],
            suffix,
            scope["query_string"],
            body,
            parsed.passthrough,
            ex.correlation_id,
        )

    async def _forward(
        self,
        ex: Exchange,
        send: Send,
        url: str,
        out: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        context: _RelayContext,
    ) -> None:
        async with self.rt.outbound.open(ex.method, url, out, body or None, timeout) as upstream:
            self.rt.metrics.latency[ex.module].observe(time.perf_counter() - ex.start)
            response_headers = await self._response_headers(ex, upstream.headers, context)
            ex.status = upstream.status
            await send({"type": "http.response.start", "status": upstream.status, "headers": response_headers})
            ex.started = True
            whole = upstream.whole_body()
            if whole is not None:  # already complete: one write instead of a stream
                await send({"type": "http.response.body", "body": whole})
                return
            async for chunk in upstream.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _response_headers(
        self, ex: Exchange, raw: list[tuple[bytes, bytes]], context: _RelayContext
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for name, value in raw:
            lower = name.lower()
            if lower in _DROPPED_RESPONSE:
                continue
            if lower == h.LINK:
                relayed = await self._relay_link(value, context)
                if relayed is None:
                    continue  # a link the sender could not follow through the hub is no link
                value = relayed
            elif lower == h.LOCATION and context.module is ModuleID.CDRS:
                relayed = await self._relay_url(value.decode("latin-1"), context, reverse=False)
                if relayed is None:
                    continue
                value = relayed
            out.append((lower, value))
        # The requester's own ids come back, whatever the receiver echoed (transport_and_format §4.2).
        out.append((h.X_REQUEST_ID, ex.request_id))
        out.append((h.X_CORRELATION_ID, ex.correlation_id))
        return out

    # -- relays --------------------------------------------------------------------------------------------

    async def _relay_url(self, url: str, context: _RelayContext, *, reverse: bool, ttl: int = 0) -> bytes | None:
        """A hub URL standing for ``url``: for the sender (Link, Location) or, reversed, for the receiver.

        None when ``url`` is not an http(s) URL on a host of the platform it belongs to: the hub follows relay
        URLs with that platform's own token, so it must never be pointed anywhere else (no request forgery).
        """
        owner = self.rt.holder.table.platforms.get(context.sender if reverse else context.receiver)
        if owner is None or not owner.owns_url(url):
            fields = {"platform": owner.id if owner else None, "module": context.module.value}
            log.warning("URL not on the platform's own hosts: not relayed", extra={"fields": fields})
            return None
        mapping: dict[str, Any] = {
            "target": url,
            "platform": context.sender if reverse else context.receiver,
            "allowed": context.receiver if reverse else context.sender,
            "to": str(context.from_party if reverse else context.to_party),
            "from": str(context.to_party if reverse else context.from_party),
            "module": context.module.value,
        }
        relay_id = await self.rt.store.put_relay(mapping, ttl or self.rt.settings.callback_ttl)
        return (self.relay_base + relay_id).encode("ascii")

    async def _relay_link(self, value: bytes, context: _RelayContext) -> bytes | None:
        # Link: <https://receiver/...?offset=50&limit=50>; rel="next"  (transport_and_format §4.1.4.1)
        text = value.decode("latin-1")
        opening, closing = text.find("<"), text.find(">")
        if opening < 0 or closing < opening:
            return None
        ttl = self.rt.settings.link_ttl
        relay = await self._relay_url(text[opening + 1 : closing], context, reverse=False, ttl=ttl)
        if relay is None:
            return None
        return f"{text[:opening]}<{relay.decode('ascii')}>{text[closing + 1 :]}".encode("latin-1")

    async def _rewrite_response_url(
        self, method: str, body: bytes, query: bytes, context: _RelayContext
    ) -> tuple[bytes, bytes]:
        """Point ``response_url`` at the hub so the CPO's result comes back through it (digest §2.10)."""
        if method in ("GET", "DELETE"):
            # Charging profiles GET/DELETE carry it in the query (mod_charging_profiles §14.4.1).
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            if not any(k == "response_url" for k, _ in pairs):
                return body, query
            rewritten = []
            for key, value in pairs:
                if key == "response_url":
                    value = self._callback(await self._relay_url(value, context, reverse=True))
                rewritten.append((key, value))
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
        ttl = self._callback_ttl(document)
        relay = self._callback(await self._relay_url(original, context, reverse=True, ttl=ttl))
        old, new = orjson.dumps(original), orjson.dumps(relay)
        if body.count(old) == 1:
            return body.replace(old, new), query  # every other byte stays as the sender wrote it
        document["response_url"] = relay
        return orjson.dumps(document), query

    @staticmethod
    def _callback(relay: bytes | None) -> str:
        if relay is None:
            raise errors.InvalidParametersError("response_url must be an http(s) URL on your own platform's host")
        return relay.decode("ascii")

    def _callback_ttl(self, document: dict[str, Any]) -> int:
        # A RESERVE_NOW response_url may be called again until the reservation expires (mod_commands §13.1).
        ttl = self.rt.settings.callback_ttl
        expiry = document.get("expiry_date")
        if isinstance(expiry, str):
            try:
                remaining = (parse_datetime(expiry) - datetime.now(UTC)).total_seconds()
            except ValueError:
                return ttl
            ttl = max(ttl, int(remaining) + ttl)
        return ttl

    # -- answers -------------------------------------------------------------------------------------------

    def _own_headers(self, ex: Exchange) -> list[tuple[bytes, bytes]]:
        # Hub-made answers on functional modules: TO = the requester, FROM = the hub (digest §8.19).
        out = [(h.X_REQUEST_ID, ex.request_id), (h.X_CORRELATION_ID, ex.correlation_id)]
        if ex.from_party is not None:
            out += [*h.routing_headers("to", ex.from_party), *self.hub_from]
        return out

    async def _fail(self, ex: Exchange, send: Send, error: errors.OcpiError) -> None:
        ex.ocpi_status = error.ocpi_status
        ex.outcome = outcome_of(error)
        if ex.started:
            # Headers are gone; all that is honest now is to cut the response short.
            log.warning(
                "receiver failed mid-response",
                extra={"correlation_id": ex.correlation_id.decode("ascii"), "error": error.message},
            )
            raise error
        status, body = render_error(error)
        ex.status = status
        await send_bytes(send, status, body, self._own_headers(ex))

    def _account(self, ex: Exchange) -> None:
        elapsed = time.perf_counter() - ex.start
        outcome = ex.outcome
        if not outcome:
            outcome = "server_error" if ex.status >= 500 else "client_error" if ex.status >= 400 else "ok"
        module = ex.module if ex.module in _MODULE_LABELS else "relay"
        self.rt.metrics.requests[(module, ex.interface, outcome)].inc()
        logs.event(
            log,
            "routed",
            {
                "event": "request",
                "correlation_id": ex.correlation_id.decode("ascii", "replace"),
                "request_id": ex.request_id.decode("ascii", "replace"),
                "request_id_out": ex.request_id_out.decode("ascii") or None,
                "from": str(ex.from_party) if ex.from_party else None,
                "to": str(ex.to_party) if ex.to_party else None,
                "module": ex.module,
                "interface": ex.interface,
                "method": ex.method,
                "status": ex.status,
                "ocpi_status": ex.ocpi_status or None,
                "outcome": outcome,
                "latency_ms": round(elapsed * 1000, 3),
            },
        )


_MODULE_LABELS: Final = frozenset(m.value for m in FUNCTIONAL_MODULES)


class _RelayContext:
    """Who an exchange was between, for relay URLs made from it."""

    __slots__ = ("from_party", "module", "receiver", "sender", "to_party")

    def __init__(
        self, sender: str, receiver: str, to_party: PartyKey | None, from_party: PartyKey | None, module: ModuleID
    ) -> None:
        self.sender = sender
        self.receiver = receiver
        self.to_party = to_party
        self.from_party = from_party
        self.module = module
