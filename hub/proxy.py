"""The hot path: a functional-module request in, the receiver's answer back.

Owns: running one request — parse its headers, take the routing decision (routing/decision.py), forward with the
receiver's token, a new X-Request-ID and the same X-Correlation-ID, and send the answer back with the
requester's ids and only the headers OCPI defines for an answer — plus serving relay URLs and accounting every
request (log line, metrics, sign of life).
Must not: decide where a request goes (routing/ does), await Redis for a routed request, parse forwarded bodies
(except the response_url rewrite the spec forces, and a receiver's own unusable URL, hub/relay.py), or render an
envelope itself (hub/envelope.py does).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Coroutine
from typing import Any, Final

import orjson
from starlette.types import Receive, Scope, Send

from hub import logs
from hub.broadcast import Broadcaster
from hub.envelope import ABORT, envelope, render_error, send_bytes, send_whole
from hub.ids import new_request_id
from hub.relay import Relays
from hub.runtime import Runtime
from registry.store import REGISTRY_ERRORS
from routing import errors
from routing import headers as h
from routing.decision import GetAll, OpenRoute, StoreGet, decide, decide_relay
from routing.model import FUNCTIONAL_MODULES, InterfaceRole, ModuleID, PartyKey
from routing.openroute import Named, destination, learned
from routing.outcome import Outcome
from routing.paths import RELAY_PREFIX, join_url
from routing.ratelimit import Limiter
from routing.relays import TOKEN_LENGTH
from routing.table import Broadcast, Caller, Direct

log = logging.getLogger("ocpihub.access")

#: The receiver's answer headers a requester gets: what OCPI defines for a response (transport_and_format
#: §4.1.4.1 pagination, §4.1.8 routing, mod_cdrs §10.2.2.2 Location) and what the body's bytes need to be read
#: (Content-Type, Content-Encoding). Everything else — Authorization, Set-Cookie, WWW-Authenticate, Server, Via,
#: X-Powered-By, a receiver's internals — stays behind. X-Request-ID/X-Correlation-ID are the requester's own.
ANSWER_HEADERS: Final = frozenset(
    {
        h.CONTENT_TYPE,
        b"content-encoding",
        h.LINK,
        h.X_TOTAL_COUNT,
        h.X_LIMIT,
        h.LOCATION,
        h.OCPI_TO_COUNTRY_CODE,
        h.OCPI_TO_PARTY_ID,
        h.OCPI_FROM_COUNTRY_CODE,
        h.OCPI_FROM_PARTY_ID,
    }
)
#: Modules whose Receiver requests carry a response_url the receiver will call (digest §2.10).
CALLBACK_MODULES: Final = frozenset({ModuleID.COMMANDS, ModuleID.CHARGINGPROFILES})
#: Metric label of requests that arrive on a relay URL.
RELAY_LABEL: Final = "relay"


def outbound_headers(
    parsed: h.RequestHeaders, route: Direct, request_id: bytes, correlation_id: bytes
) -> list[tuple[bytes, bytes]]:
    """The forwarded request's headers: the requester's, with the receiver's own token in its own form, a new
    X-Request-ID, the X-Correlation-ID kept (or the one the hub made when the sender sent none, §4.2), and the
    routing headers the hub fills in."""
    out = [*parsed.passthrough, (h.AUTHORIZATION, route.receiver.auth_header), (h.X_REQUEST_ID, request_id)]
    if parsed.correlation_id is None:
        out.append((h.X_CORRELATION_ID, correlation_id))
    if route.add_to and route.to_party is not None:
        out += h.to_headers(route.to_party)
    if route.add_from and route.sender is not None:
        out += h.from_headers(route.sender)
    return out


def query_keys(query: bytes) -> str:
    """``?offset=&limit=``: the keys of a query string without its values (which may be personal data)."""
    keys = _QUERY_VALUE.sub(b"=", query).strip(b"&")  # one pass in C: a paginated GET logs this on every page
    return "?" + keys.decode("latin-1") if keys else ""


_QUERY_VALUE: Final = re.compile(rb"=[^&]*")


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
    """One request's record: what its log line, metrics and error answer need (a ``routing.decision.Trail``)."""

    __slots__ = (
        "client",
        "correlation_id",
        "from_party",
        "interface",
        "method",
        "module",
        "ocpi_status",
        "outcome",
        "path",
        "platform_id",
        "query",
        "request_id",
        "request_id_out",
        "start",
        "started",
        "status",
        "to_party",
    )

    def __init__(self, scope: Scope, module: str, interface: str, path: str) -> None:
        self.method: str = scope["method"]
        self.module = module
        self.interface = interface
        #: What the log line and the trace record show: the path, the query's keys (never its values), the client.
        self.path = path
        self.query: bytes = scope["query_string"]
        client = scope.get("client")
        self.client: str | None = client[0] if client else None
        self.platform_id = ""
        self.request_id: bytes = b""
        self.correlation_id: bytes = b""
        self.request_id_out: bytes = b""
        self.from_party: PartyKey | None = None
        self.to_party: PartyKey | None = None
        self.status = 0
        self.ocpi_status = 0
        self.outcome: Outcome | None = None
        self.started = False
        self.start = time.perf_counter()


class Proxy:
    """Routes functional-module requests and relay URLs for one process."""

    def __init__(self, rt: Runtime, relays: Relays) -> None:
        self.rt = rt
        self.relays = relays
        self.broadcaster = Broadcaster(rt)
        self.hub_from = h.from_headers(rt.hub)
        self.timeouts = {m: rt.settings.timeout_for(m.value) for m in FUNCTIONAL_MODULES}
        self.max_body = rt.settings.max_body_size
        self.limiter = Limiter()
        self.buffered_answer = rt.settings.max_buffered_answer

    # -- entry points --------------------------------------------------------------------------------------

    async def module_request(
        self, scope: Scope, receive: Receive, send: Send, module: ModuleID, role: InterfaceRole, suffix: str
    ) -> None:
        ex = Exchange(scope, module.value, role.value, scope["path"])
        await self._run(ex, scope, send, self._route(ex, scope, receive, send, module, role, suffix))

    async def relay_request(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        """A rewritten Link / Location / response_url being used: only by the platform it was made for."""
        # The relay token is a capability: the trail shows the path it leads to, not the token.
        ex = Exchange(scope, RELAY_LABEL, "none", RELAY_PREFIX + "…" + rest[TOKEN_LENGTH:])
        await self._run(ex, scope, send, self._relay(ex, scope, receive, send, rest))

    async def _run(self, ex: Exchange, scope: Scope, send: Send, work: Coroutine[Any, Any, None]) -> None:
        """Every request's frame: typed errors become envelopes, anything else a 3000; always accounted."""
        try:
            await work
        except errors.OcpiError as error:
            await self._fail(ex, scope, send, error)
        except ClientDisconnectedError:
            ex.status, ex.outcome = 499, Outcome.CLIENT_ERROR
        except asyncio.CancelledError:
            # The server's drain time ran out (it cancels what is still running): the requester still gets an
            # OCPI answer it can act on, not a bare 500, and the request ends here instead of being cut.
            if ex.started:
                raise
            await self._fail(ex, scope, send, errors.ServiceUnavailableError("the hub is shutting down; try again"))
        except Exception:
            log.exception("unexpected failure", extra={"correlation_id": ex.correlation_id.decode("ascii", "replace")})
            await self._fail(ex, scope, send, errors.ServerError("internal error"))
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
        decision = decide(self.rt.holder.table, parsed, module, role, ex.method, suffix, ex)
        self._limit(decision.caller)
        query: bytes = scope["query_string"]
        if isinstance(decision, Broadcast):
            await self._broadcast(ex, scope, receive, send, decision, parsed, module, suffix)
            return
        if isinstance(decision, GetAll | StoreGet):
            await self._from_holdings(ex, scope, send, decision, module, suffix, query)
            return
        body = await read_body(receive, parsed.content_length, self.max_body)
        route = decision
        if isinstance(route, OpenRoute):
            route = await self._open_route(ex, route, module, role, suffix, query, body)
        if role is InterfaceRole.RECEIVER:
            facts = learned(module, role, ex.method, suffix, query, route.to_party or self.rt.hub, body)
            if facts:
                self.rt.learner.note(facts)  # written in batches off the hot path
            if module in CALLBACK_MODULES:
                body, query = self.relays.rewrite_response_url(ex.method, body, query, route, module)
        out = self._outbound_headers(ex, parsed, route)
        url = join_url(route.endpoint, suffix, query)
        await self._forward(ex, scope, send, route, module, role, url, out, body, query)

    async def _open_route(
        self,
        ex: Exchange,
        decision: OpenRoute,
        module: ModuleID,
        role: InterfaceRole,
        suffix: str,
        query: bytes,
        body: bytes,
    ) -> Direct:
        """No OCPI-to-*: the receiver is whoever owns what the request addresses (§4.1.8.4, §4.1.8.6 table: the
        hub adds OCPI-to-*, OCPI-from-* goes unchanged). One owner-index lookup; nothing forwarded when unsure."""
        found = destination(module, role, ex.method, suffix, query, body)
        if isinstance(found, Named):
            party = found.party
        else:
            try:
                owners = await self.rt.holdings.owners.owners(found.kind, found.key)
            except REGISTRY_ERRORS:
                raise errors.HubError("the hub cannot look the owner up right now; send OCPI-to-*") from None
            if not owners:
                raise errors.UnknownReceiverError(f"no party is known to own {found.kind.value} {found.key}")
            if len(owners) > 1:
                named = ", ".join(sorted(map(str, owners)))
                raise errors.UnknownReceiverError(
                    f"{found.kind.value} {found.key} is ambiguous (owned by {named}): send OCPI-to-*"
                )
            party = next(iter(owners))
        ex.to_party = party
        direct = self.rt.holder.table.resolve(decision.caller, decision.sender, party, module, role)
        return Direct(
            decision.caller,
            decision.sender,
            party,
            direct.receiver,
            direct.endpoint,
            add_to=True,
            add_from=decision.add_from,
        )

    async def _from_holdings(
        self,
        ex: Exchange,
        scope: Scope,
        send: Send,
        decision: GetAll | StoreGet,
        module: ModuleID,
        suffix: str,
        query: bytes,
    ) -> None:
        """GET addressed to the hub: answered from its store of broadcast data (§4.1.8.5, §4.1.8.7)."""
        holdings = self.rt.holdings
        try:
            if isinstance(decision, GetAll):
                body, extra = await holdings.page(module, query)
            else:
                body, extra = await holdings.one(module, suffix, query), []
        except REGISTRY_ERRORS:
            raise errors.HubError("the hub's store is unreachable right now; try again shortly") from None
        ex.status, ex.ocpi_status = 200, 1000
        await send_bytes(scope, send, 200, body, [*self._own_headers(ex), *extra])

    async def _relay(self, ex: Exchange, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        parsed = self._begin(ex, scope)
        grant = await self.relays.read(rest)
        route = decide_relay(self.rt.holder.table, parsed, grant, ex)
        self._limit(route.caller)
        module = grant.module if grant is not None else ModuleID.CDRS  # decide_relay refused a missing grant
        body = await read_body(receive, parsed.content_length, self.max_body)
        query: bytes = scope["query_string"]
        out = self._outbound_headers(ex, parsed, route)
        url = route.endpoint + (f"?{query.decode('latin-1')}" if query else "")
        await self._forward(ex, scope, send, route, module, None, url, out, body, query)

    # -- steps ---------------------------------------------------------------------------------------------

    def _limit(self, caller: Caller) -> None:
        """The operator's per-platform rate limit (HTTP 429 past it); one attribute test for everyone else."""
        limit = caller.platform.rate_limit
        if limit is not None:
            self.limiter.admit(caller.platform.id, limit, time.monotonic())

    def _begin(self, ex: Exchange, scope: Scope) -> h.RequestHeaders:
        parsed = h.read_request_headers(scope["headers"])
        ex.request_id = parsed.request_id or new_request_id()
        ex.correlation_id = parsed.correlation_id or new_request_id()
        return parsed

    def _outbound_headers(self, ex: Exchange, parsed: h.RequestHeaders, route: Direct) -> list[tuple[bytes, bytes]]:
        ex.request_id_out = new_request_id()
        return outbound_headers(parsed, route, ex.request_id_out, ex.correlation_id)

    async def _broadcast(
        self,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        decision: Broadcast,
        parsed: h.RequestHeaders,
        module: ModuleID,
        suffix: str,
    ) -> None:
        body = await read_body(receive, parsed.content_length, self.max_body)
        if ex.method != "DELETE" or body:
            try:
                orjson.loads(body)  # the hub answers this push itself: invalid JSON is its 400 (status_codes §5)
            except orjson.JSONDecodeError:
                raise errors.MalformedBodyError("the request body is not valid JSON") from None
        # The sender gets its answer now; the fan-out runs on (§4.1.8.3 diagram: RESPONSE before the copies).
        ex.status, ex.ocpi_status = 200, 1000
        await send_bytes(
            scope,
            send,
            200,
            envelope(1000, f"accepted for {len(decision.recipients)} recipients"),
            self._own_headers(ex),
        )
        self.broadcaster.start(
            decision, module, ex.method, suffix, scope["query_string"], body, parsed.passthrough, ex.correlation_id
        )

    async def _forward(
        self,
        ex: Exchange,
        scope: Scope,
        send: Send,
        route: Direct,
        module: ModuleID,
        role: InterfaceRole | None,
        url: str,
        out: list[tuple[bytes, bytes]],
        body: bytes,
        query: bytes,
    ) -> None:
        # The requesting platform is the sender of the pool's fair share (hub/http/pool.py): a flooding platform
        # waits behind its own requests, not in front of everyone else's.
        timeout = self.timeouts[module]
        async with self.rt.outbound.open(ex.method, url, out, body or None, timeout, ex.platform_id) as upstream:
            self.rt.metrics.latency[ex.module].observe(time.perf_counter() - ex.start)
            # Whole answers up to a size are read before the requester sees the head, so a receiver that fails
            # or stalls mid-answer becomes an honest 4002/4003 instead of a truncated 200.
            whole = await upstream.read_whole(self.buffered_answer)
            answer = self._answer_headers(ex, upstream.headers, route, module, role, query, whole, body)
            ex.status = upstream.status
            if whole is not None:
                await send_whole(scope, send, upstream.status, answer, whole)  # framed by its Content-Length
                ex.started = True
                return
            await send({"type": "http.response.start", "status": upstream.status, "headers": answer})
            ex.started = True
            async for chunk in upstream.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    def _answer_headers(
        self,
        ex: Exchange,
        raw: list[tuple[bytes, bytes]],
        route: Direct,
        module: ModuleID,
        role: InterfaceRole | None,
        query: bytes,
        whole: bytes | None,
        body: bytes,
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        link: bytes | None = None
        location: bytes | None = None
        total: int | None = None
        routed = False
        for name, value in raw:
            lower = name.lower()
            if lower not in ANSWER_HEADERS:
                continue
            if lower == h.LINK:
                link = value
                continue
            if lower == h.LOCATION:
                location = value
                continue
            if lower == h.X_TOTAL_COUNT and value.isdigit():
                total = int(value)
            elif lower in h.ROUTING_HEADERS:
                routed = True
            out.append((lower, value))
        if link is not None:
            link = self.relays.link(link, route, module, role, query, total, whole)
        elif total is not None and ex.method == "GET":
            link = self.relays.missing_link(route, module, role, query, total, whole)
        if link is not None:
            out.append((h.LINK, link))
        if location is not None and module is ModuleID.CDRS:
            relayed = self.relays.location(location, route, body)
            if relayed is not None:
                out.append((h.LOCATION, relayed))
        if not routed and route.sender is not None and route.to_party is not None:
            # §4.1.8.6: the answer carries TO = the requester and FROM = the receiver, also when it left them out.
            out += h.to_headers(route.sender)
            out += h.from_headers(route.to_party)
        # The requester's own ids come back, whatever the receiver echoed (transport_and_format §4.2).
        out.append((h.X_REQUEST_ID, ex.request_id))
        out.append((h.X_CORRELATION_ID, ex.correlation_id))
        return out

    # -- answers -------------------------------------------------------------------------------------------

    def _own_headers(self, ex: Exchange) -> list[tuple[bytes, bytes]]:
        # Hub-made answers on functional modules: TO = the requester, FROM = the hub (digest §8.19).
        out = [(h.X_REQUEST_ID, ex.request_id), (h.X_CORRELATION_ID, ex.correlation_id)]
        if ex.from_party is not None:
            out += [*h.to_headers(ex.from_party), *self.hub_from]
        return out

    async def _fail(self, ex: Exchange, scope: Scope, send: Send, error: errors.OcpiError) -> None:
        ex.ocpi_status = error.ocpi_status
        ex.outcome = error.outcome
        if ex.started:
            # The head is gone: all that is honest now is to cut the answer short where the requester sees it
            # (a broken connection, never a complete-looking body), and say so once in the log.
            log.warning(
                "receiver failed mid-answer: connection to the requester aborted",
                extra={"correlation_id": ex.correlation_id.decode("ascii"), "error": error.message},
            )
            abort = scope.get("extensions", {}).get(ABORT)
            if abort is None:
                raise error
            abort()
            await asyncio.sleep(0)  # let the server see the connection end before the app returns
            return
        status, body = render_error(error)
        ex.status = status
        headers = self._own_headers(ex)
        if isinstance(error, errors.RateLimitedError):
            headers.append((b"retry-after", str(max(1, math.ceil(error.retry_after))).encode()))
        await send_bytes(scope, send, status, body, headers)

    def _account(self, ex: Exchange) -> None:
        elapsed = time.perf_counter() - ex.start
        outcome = ex.outcome or Outcome.of_status(ex.status)
        if ex.platform_id:
            self.rt.seen[ex.platform_id] = time.time()
        self.rt.metrics.requests[(ex.module, ex.interface, outcome)].inc()
        forwarded = bool(ex.request_id_out)
        kind = "relay" if ex.module == RELAY_LABEL else "request" if forwarded or outcome is Outcome.OK else "refusal"
        line = logs.event(
            log,
            "routed",
            {
                "event": "request",
                "kind": kind,
                "correlation_id": ex.correlation_id.decode("ascii", "replace"),
                "request_id": ex.request_id.decode("ascii", "replace"),
                "request_id_out": ex.request_id_out.decode("ascii") or None,
                "from": str(ex.from_party) if ex.from_party else None,
                "to": str(ex.to_party) if ex.to_party else None,
                "platform": ex.platform_id or None,
                "client": ex.client,
                "module": ex.module,
                "interface": ex.interface,
                "method": ex.method,
                "path": ex.path + query_keys(ex.query) if ex.query else ex.path,
                "status": ex.status,
                "ocpi_status": ex.ocpi_status or None,
                "outcome": outcome.value,
                "latency_ms": round(elapsed * 1000, 3),
            },
        )
        if self.rt.tracker is not None:
            self.rt.tracker.record(line)
