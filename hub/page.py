"""The operator's page on the admin listener: what the hub's people look at, read-only.

Owns: ``page_routes(services)`` — the routes hub/admin.py serves beside /metrics:

- ``GET /`` — one HTML page rendered on the server (it works without JavaScript): this process and the registry
  (snapshot version, registry reachable, last sync, who holds the scheduler lease), every party of the routing
  snapshot with its platform, roles, ConnectionStatus, registration, endpoint count and last sign of life, its
  messages and errors over the last ``WINDOW_SECONDS``, the recent refusals and failures (newest first), and a
  GET form that finds one message's journey by correlation or request id (``?id=``); ``?party=`` filters parties;
- ``GET /live`` — the page's changing parts only, which its small script (``/static/page.js``, vanilla, no build
  step, nothing from a CDN) fetches every ``REFRESH_SECONDS`` and swaps in: one renderer for both;
- ``GET /api/overview`` and ``GET /api/trace?id=`` — the same facts as JSON, for scripts.

Traffic comes from ONE bounded newest-first scan of the message-tracking stream (registry/trace.py layout) per
``SCAN_TTL`` seconds, shared by every viewer of this process, aggregated per party — never a scan per party. A
party's count is the records naming it (sender or receiver) plus the hub's calls to its platform that name no
party (ClientInfo pushes, liveness checks); whether a record is an error is ``TraceRecord.failed``'s decision. Reads
go through registry/ (``TraceLog.scan``, ``PartyStore.last_seen_of`` for the rows shown, ``lease_holder``).

Access. The admin listener's bearer token (``admin_token``, hub/admin.py) guards these routes like /metrics. A
``?token=`` in the URL is deliberately not accepted: a token in a URL lands in browser history, bookmarks, proxy
and access logs and screenshots, and the same token opens /metrics. With a token set, reach the page through a
reverse proxy (or an SSH tunnel to one) that adds ``Authorization: Bearer …``, or read ``/api/overview`` with
curl; every URL the page uses is relative, so the page works under a proxy's path prefix too.

Must not: change anything; show a secret — tokens, token digests, authorization headers, token B, party URLs,
query values or bodies never reach this module's output (trace records hold none: registry/trace.py); emit
anything from outside unescaped (party names, paths and ids are html-escaped, URLs percent-encoded); load
anything from another origin (a strict Content-Security-Policy says so to the browser).
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub import __version__
from hub.control import Services
from hub.runtime import Runtime
from registry.store import REGISTRY_ERRORS
from registry.trace import TraceKind, TraceLog, TraceRecord, decode_record, record_json
from routing.headers import MAX_ID_LENGTH
from routing.model import ConnectionStatus
from routing.table import Platform, RoutingTable

#: The traffic window: messages and errors per party over the last five minutes.
WINDOW_SECONDS: Final = 300
#: Trace records one overview scan reads at most (newest first): at ~580 bytes a record, ~12 MB from Redis and a
#: few tens of ms of decoding. Past it the page says how much time its counts cover.
SCAN_LIMIT: Final = 20_000
#: Seconds an overview scan is reused: many open pages cost one scan, not one each.
SCAN_TTL: Final = 2.0
#: Records a search by id reads at most (newest first), each of its at most two passes (registry/trace.py).
SEARCH_SCAN_LIMIT: Final = 200_000
#: Longest wait for one Redis read (the client retries a lost connection within 1.5 s) and for a search.
REDIS_TIMEOUT: Final = 3.0
SEARCH_TIMEOUT: Final = 10.0
#: Party rows on the page at most (filter with ``?party=`` to see others), failures listed at most.
MAX_PARTIES: Final = 1_000
MAX_FAILURES: Final = 50
#: Seconds between the script's refreshes of the live parts.
REFRESH_SECONDS: Final = 5
#: Longest ``?party=`` filter.
MAX_FILTER: Final = 100

_HTML: Final = "text/html; charset=utf-8"
_JSON: Final = "application/json"
#: Nothing but this origin's own files; no inline script or style; forms submit here only; never in a frame.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}
#: A small favicon inline, so the browser asks the hub for no /favicon.ico.
_FAVICON: Final = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Ccircle cx='8' cy='8' r='7' fill='%23176b87'/%3E%3Cpath d='M9 2 4 9h4l-1 5 5-7H8z' fill='%23fff'/%3E%3C/svg%3E"
)


# -- what the page shows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartyTraffic:
    messages: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class TrafficScan:
    """One newest-first pass over the trace stream, summed per party."""

    #: Start of the window asked for, and how far back the records read reach (later than ``since`` when the scan
    #: stopped at ``SCAN_LIMIT``: the counts then cover less time).
    since: float
    covered_since: float
    truncated: bool
    messages: int
    errors: int
    #: ``CC:PID`` → its messages as sender or receiver.
    by_party: Mapping[str, PartyTraffic]
    #: Platform id → the hub's calls that name a platform but no party (ClientInfo pushes, liveness checks).
    by_platform: Mapping[str, PartyTraffic]
    #: Refusals and failures, newest first.
    failures: tuple[TraceRecord, ...]


@dataclass(frozen=True, slots=True)
class PartyRow:
    party: str
    roles: tuple[str, ...]
    platform_id: str
    platform: str
    status: ConnectionStatus
    registered: bool
    endpoints: int
    status_since: float
    last_seen: float | None
    traffic: PartyTraffic


@dataclass(frozen=True, slots=True)
class Overview:
    now: float
    hub: str
    pid: int
    snapshot_version: int
    snapshot_loaded: bool
    registry_reachable: bool
    last_sync: float
    #: "this process", "another process", "nobody" or "unknown" (the registry could not be asked).
    lease: str
    tracking: bool
    status_counts: Mapping[str, int]
    parties_total: int
    #: Parties matching the filter (all without one); ``rows`` holds at most ``MAX_PARTIES`` of them.
    matching: int
    party_filter: str
    rows: tuple[PartyRow, ...]
    #: None when the trace stream could not be read (``traffic_problem`` says why).
    traffic: TrafficScan | None
    traffic_problem: str


@dataclass(frozen=True, slots=True)
class Search:
    """A search by id: what was asked, what was found (oldest first), and a problem to tell ("" when none)."""

    message_id: str
    records: tuple[TraceRecord, ...]
    problem: str = ""


# -- reading -----------------------------------------------------------------------------------------------------


async def scan_traffic(rt: Runtime, now: float) -> TrafficScan:
    """One bounded newest-first read of the trace stream over the last ``WINDOW_SECONDS``, summed per party.

    Only ``orjson.loads`` per line (about 1 µs; a full ``decode_record`` costs ~12 µs); failures are decoded whole.
    Whether a record is an error is ``TraceRecord.failed``'s decision, not a second copy of it here."""
    since = now - WINDOW_SECONDS
    counts: dict[str, list[int]] = {}
    platform_counts: dict[str, list[int]] = {}
    failures: list[TraceRecord] = []
    seen = messages = errors = 0
    oldest = now
    trace = TraceLog(rt.store.redis, rt.store.keys)
    async with asyncio.timeout(REDIS_TIMEOUT * 10):
        # Entry ids are the time of the batch write, at or after every record in it: reading entries newer than the
        # window's start misses no record inside it.
        async for line in trace.scan(int(since * 1000), SCAN_LIMIT):
            seen += 1
            moment, parties, platform, failed = _glance(line)
            if moment < since:
                continue
            oldest = min(oldest, moment)
            messages += 1
            errors += failed
            for party in parties:
                tally = counts.setdefault(party, [0, 0])
                tally[0] += 1
                tally[1] += failed
            if platform:
                tally = platform_counts.setdefault(platform, [0, 0])
                tally[0] += 1
                tally[1] += failed
            if failed and len(failures) < MAX_FAILURES:
                record = decode_record(line)
                if record is not None:
                    failures.append(record)
    truncated = seen >= SCAN_LIMIT
    return TrafficScan(
        since=since,
        covered_since=oldest if truncated else since,
        truncated=truncated,
        messages=messages,
        errors=errors,
        by_party={party: PartyTraffic(n, e) for party, (n, e) in counts.items()},
        by_platform={platform: PartyTraffic(n, e) for platform, (n, e) in platform_counts.items()},
        failures=tuple(failures),
    )


def _glance(line: bytes) -> tuple[float, tuple[str, ...], str, bool]:
    """(epoch seconds, parties named, platform id when no party is named, failed) of one stored line; time 0 for a
    line that is not a trace record."""
    try:
        data = orjson.loads(line)
        moment = datetime.fromisoformat(data["time"]).timestamp()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0, (), "", False
    parties = tuple({p for p in (data.get("from"), data.get("to")) if isinstance(p, str) and p})
    platform = data.get("platform")
    platform = platform if not parties and isinstance(platform, str) else ""
    status, ocpi_status, outcome = data.get("status"), data.get("ocpi_status"), data.get("outcome")
    probe = TraceRecord(
        time=moment,
        kind=TraceKind.REQUEST,
        status=status if isinstance(status, int) else None,
        ocpi_status=ocpi_status if isinstance(ocpi_status, int) else None,
        outcome=outcome if isinstance(outcome, str) else "",
    )
    return moment, parties, platform, probe.failed


async def lease_holder(rt: Runtime) -> str:
    """Who runs the scheduler: this process, another one (the lease holds ``pid:uuid``), or nobody."""
    if rt.leader:
        return "this process"
    async with asyncio.timeout(REDIS_TIMEOUT):
        holder = await rt.store.lease_holder()
    return "another process" if holder else "nobody"


async def last_seen(rt: Runtime, platform_ids: list[str]) -> dict[str, float]:
    """Last sign of life of some platforms: the registry's (flushed every second by each process) or this process's
    own newer one. One HMGET for the rows shown, not the whole hash."""
    async with asyncio.timeout(REDIS_TIMEOUT):
        seen = await rt.store.last_seen_of(platform_ids)
    for platform_id in platform_ids:
        local = rt.seen.get(platform_id)
        if local is not None and local > seen.get(platform_id, 0.0):
            seen[platform_id] = local
    return seen


@dataclass(frozen=True, slots=True)
class Listing:
    """The parties of one routing snapshot under one filter (kept while the snapshot is current)."""

    table: RoutingTable
    party_filter: str
    total: int
    #: ConnectionStatus → parties in it.
    status_counts: Mapping[str, int]
    #: The matching ``(CC:PID, platform)`` pairs, sorted by party.
    matching: list[tuple[str, Platform]]


def list_parties(table: RoutingTable, party_filter: str) -> Listing:
    """Every party of the snapshot, or those whose ``CC:PID``, platform name or status contain ``party_filter``."""
    wanted = party_filter.casefold()
    counts = {status.value: 0 for status in ConnectionStatus}
    total = 0
    matching: list[tuple[str, Platform]] = []
    for platform in table.platforms.values():
        counts[platform.status.value] += len(platform.parties)
        for party in platform.parties:
            total += 1
            text = str(party)
            if not wanted or wanted in f"{text} {platform.name} {platform.status.value}".casefold():
                matching.append((text, platform))
    matching.sort(key=lambda pair: pair[0])
    return Listing(table, party_filter, total, counts, matching)


def valid_id(text: str) -> str | None:
    """A message id as the hub stores them (printable ASCII, at most MAX_ID_LENGTH), else None."""
    text = text.strip()
    if not text or len(text) > MAX_ID_LENGTH or not text.isascii() or not text.isprintable():
        return None
    return text


# -- the routes --------------------------------------------------------------------------------------------------


class OperatorPage:
    """The page's handlers for one hub process; ``services`` answers None until the lifespan has started."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self.services = services
        self._scan: tuple[float, TrafficScan | None, str, str] | None = None
        self._scan_lock = asyncio.Lock()
        self._search_lock = asyncio.Lock()
        #: The last listing: rebuilt only when the snapshot or the filter changes (O(parties) with a sort).
        self._listing: Listing | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.page, methods=["GET"]),
            Route("/live", self.live, methods=["GET"]),
            Route("/api/overview", self.api_overview, methods=["GET"]),
            Route("/api/trace", self.api_trace, methods=["GET"]),
            Route(f"/static/{STYLESHEET_NAME}", self.stylesheet, methods=["GET"]),
            Route(f"/static/{SCRIPT_NAME}", self.script, methods=["GET"]),
        ]

    # -- handlers

    async def page(self, request: Request) -> Response:
        rt = self._runtime()
        if rt is None:
            return _starting(html_page=True)
        overview = await self.overview(rt, _filter(request))
        asked = request.query_params.get("id")
        search = None if asked is None else await self.search(rt, asked)
        return Response(render_page(overview, search), media_type=_HTML, headers=_HEADERS)

    async def live(self, request: Request) -> Response:
        rt = self._runtime()
        if rt is None:
            return _starting(html_page=True)
        overview = await self.overview(rt, _filter(request))
        return Response(render_live(overview), media_type=_HTML, headers=_HEADERS)

    async def api_overview(self, request: Request) -> Response:
        rt = self._runtime()
        if rt is None:
            return _starting(html_page=False)
        overview = await self.overview(rt, _filter(request))
        return Response(orjson.dumps(overview_json(overview)), media_type=_JSON, headers=_HEADERS)

    async def api_trace(self, request: Request) -> Response:
        rt = self._runtime()
        if rt is None:
            return _starting(html_page=False)
        search = await self.search(rt, request.query_params.get("id", ""))
        body: dict[str, Any] = {"id": search.message_id, "records": [record_json(r) for r in search.records]}
        status = 200
        if search.problem:
            body["problem"] = search.problem
            status = 503 if search.message_id else 400  # the registry failed, or the id was not one
        return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=_HEADERS)

    async def stylesheet(self, _request: Request) -> Response:
        return Response(STYLESHEET, media_type="text/css; charset=utf-8", headers=_STATIC_HEADERS)

    async def script(self, _request: Request) -> Response:
        return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=_STATIC_HEADERS)

    # -- gathering

    def _runtime(self) -> Runtime | None:
        services = self.services()
        return None if services is None else services.runtime

    async def overview(self, rt: Runtime, party_filter: str) -> Overview:
        now = time.time()
        scan, scan_problem, lease = await self._shared(rt, now)
        table = rt.holder.table
        listing = self._listing
        if listing is None or listing.table is not table or listing.party_filter != party_filter:
            listing = self._listing = list_parties(table, party_filter)
        shown = listing.matching[:MAX_PARTIES]
        try:
            seen = await last_seen(rt, sorted({platform.id for _, platform in shown}))
        except REGISTRY_ERRORS:
            seen = dict(rt.seen)
        by_party = scan.by_party if scan is not None else {}
        by_platform = scan.by_platform if scan is not None else {}
        rows = tuple(
            PartyRow(
                party=party,
                roles=tuple(sorted(r.role.value for r in platform.roles if str(r.party) == party)),
                platform_id=platform.id,
                platform=platform.name,
                status=platform.status,
                registered=platform.registered,
                endpoints=len(platform.endpoints),
                status_since=platform.status_since,
                last_seen=seen.get(platform.id),
                traffic=_plus(by_party.get(party), by_platform.get(platform.id)),
            )
            for party, platform in shown
        )
        holder = rt.holder
        return Overview(
            now=now,
            hub=str(rt.hub),
            pid=os.getpid(),
            snapshot_version=table.version,
            snapshot_loaded=holder.loaded,
            registry_reachable=holder.reachable,
            last_sync=holder.synced_at,
            lease=lease,
            tracking=rt.tracker is not None,
            status_counts=listing.status_counts,
            parties_total=listing.total,
            matching=len(listing.matching),
            party_filter=party_filter,
            rows=rows,
            traffic=scan,
            traffic_problem=scan_problem,
        )

    async def _shared(self, rt: Runtime, now: float) -> tuple[TrafficScan | None, str, str]:
        """The traffic scan and the lease holder, read at most once per ``SCAN_TTL`` for every viewer."""
        async with self._scan_lock:
            cached = self._scan
            if cached is not None and now - cached[0] < SCAN_TTL:
                return cached[1], cached[2], cached[3]
            scan: TrafficScan | None = None
            problem = ""
            try:
                scan = await scan_traffic(rt, now)
            except REGISTRY_ERRORS as exc:
                problem = _unreachable(exc)
            try:
                lease = await lease_holder(rt)
            except REGISTRY_ERRORS:
                lease = "unknown"
            self._scan = (time.time(), scan, problem, lease)
            return scan, problem, lease

    async def search(self, rt: Runtime, asked: str) -> Search:
        message_id = valid_id(asked)
        if message_id is None:
            return Search("", (), f"not an id: give a correlation or request id (printable, ≤ {MAX_ID_LENGTH})")
        trace = TraceLog(rt.store.redis, rt.store.keys)
        try:
            async with self._search_lock, asyncio.timeout(SEARCH_TIMEOUT):
                records = await trace.journey(message_id, scan_limit=SEARCH_SCAN_LIMIT)
        except REGISTRY_ERRORS as exc:
            return Search(message_id, (), _unreachable(exc))
        return Search(message_id, tuple(records))


def _plus(*parts: PartyTraffic | None) -> PartyTraffic:
    """A party's traffic: the messages naming it, plus the hub's calls to its platform (pushes, liveness checks)."""
    found = [part for part in parts if part is not None]
    return PartyTraffic(sum(p.messages for p in found), sum(p.errors for p in found))


def page_routes(services: Callable[[], Services | None]) -> list[BaseRoute]:
    """The operator's page and its JSON, for ``admin_app(..., extra_routes=...)``."""
    return OperatorPage(services).routes()


def _filter(request: Request) -> str:
    return " ".join(request.query_params.get("party", "").split())[:MAX_FILTER]


def _unreachable(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the registry did not answer in time"
    return "the registry is unreachable"


def _starting(*, html_page: bool) -> Response:
    headers = _HEADERS | {"Retry-After": "1"}
    if html_page:
        body = _document("ocpi-hub", "<main><h1>ocpi-hub</h1><p>The hub is starting; reload in a moment.</p></main>")
        return Response(body, status_code=503, media_type=_HTML, headers=headers)
    return Response(b'{"error":"the hub is starting"}', status_code=503, media_type=_JSON, headers=headers)


# -- JSON --------------------------------------------------------------------------------------------------------


def overview_json(o: Overview) -> dict[str, Any]:
    traffic: dict[str, Any] | None = None
    if o.traffic is not None:
        t = o.traffic
        traffic = {
            "window_seconds": WINDOW_SECONDS,
            "since": _iso(t.since),
            "covered_since": _iso(t.covered_since),
            "truncated": t.truncated,
            "messages": t.messages,
            "errors": t.errors,
            "error_rate": _rate(t.errors, t.messages),
        }
    return {
        "generated_at": _iso(o.now),
        "hub": {
            "party": o.hub,
            "version": __version__,
            "pid": o.pid,
            "snapshot_version": o.snapshot_version,
            "snapshot_loaded": o.snapshot_loaded,
            "registry": "reachable" if o.registry_reachable else "unreachable",
            "last_sync": _iso(o.last_sync) if o.last_sync else None,
            "scheduler_lease": o.lease,
            "tracking": o.tracking,
        },
        "parties_by_status": dict(o.status_counts),
        "parties_total": o.parties_total,
        "parties_matching": o.matching,
        "filter": o.party_filter or None,
        "parties": [
            {
                "party": row.party,
                "roles": list(row.roles),
                "platform_id": row.platform_id,
                "platform": row.platform,
                "status": row.status.value,
                "registered": row.registered,
                "endpoints": row.endpoints,
                "status_since": _iso(row.status_since) if row.status_since else None,
                "last_seen": _iso(row.last_seen) if row.last_seen else None,
                "messages": row.traffic.messages,
                "errors": row.traffic.errors,
                "error_rate": _rate(row.traffic.errors, row.traffic.messages),
            }
            for row in o.rows
        ],
        "traffic": traffic,
        "traffic_problem": o.traffic_problem or None,
        "failures": [record_json(r) for r in (o.traffic.failures if o.traffic is not None else ())],
    }


def _rate(errors: int, total: int) -> float | None:
    return round(errors / total, 4) if total else None


# -- HTML --------------------------------------------------------------------------------------------------------


#: What an empty cell shows (an en dash).
_DASH: Final = "\u2013"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _moment(epoch: float) -> str:
    """An exact UTC moment to the millisecond (a journey's steps are often within one second)."""
    stamp = datetime.fromtimestamp(epoch, UTC)
    text = stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    return f'<time datetime="{stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")}">{text}</time>'


def _time(epoch: float | None, now: float) -> str:
    """A ``<time>`` showing how long ago, with the exact UTC moment as its title."""
    if not epoch:
        return '<span class="none">never</span>'
    moment = _iso(epoch)
    return f'<time datetime="{moment}" title="{moment}">{_ago(now - epoch)}</time>'


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "just now"
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _percent(errors: int, total: int) -> str:
    if not total:
        return f'<span class="none">{_DASH}</span>'
    rate = 100 * errors / total
    text = f"{rate:.1f}\u00a0%" if rate < 10 else f"{rate:.0f}\u00a0%"
    return f'<span class="bad">{text}</span>' if errors else text


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n"
        f'<link rel="icon" href="{_FAVICON}">\n'
        f'<link rel="stylesheet" href="static/{STYLESHEET_NAME}?v={_ASSETS_VERSION}">\n'
        f'<script src="static/{SCRIPT_NAME}?v={_ASSETS_VERSION}" defer></script>\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def render_page(o: Overview, search: Search | None) -> str:
    value = _e(search.message_id) if search is not None else ""
    body = f"""<header>
<h1>ocpi-hub <span class="muted">{_e(o.hub)}</span></h1>
<p class="controls"><button type="button" id="pause" aria-pressed="false" hidden>Pause updates</button>
<span id="refresh-problem" role="status" aria-live="polite"></span></p>
</header>
<main id="live-root" data-refresh="{REFRESH_SECONDS}">
<section aria-labelledby="search-heading">
<h2 id="search-heading">Find a message</h2>
<form method="get" action="." role="search" class="inline">
<label for="message-id">Correlation or request id</label>
<input id="message-id" name="id" type="search" value="{value}" maxlength="{MAX_ID_LENGTH}" required
 autocomplete="off" spellcheck="false">
<button type="submit">Show its journey</button>
</form>
{render_search(search, o.now) if search is not None else ""}
</section>
{_render_status(o)}
<section aria-labelledby="parties-heading">
<h2 id="parties-heading">Parties</h2>
<form method="get" action="." class="inline">
<label for="party-filter">Filter by party, name or status</label>
<input id="party-filter" name="party" type="search" value="{_e(o.party_filter)}" maxlength="{MAX_FILTER}"
 autocomplete="off" spellcheck="false">
<button type="submit">Filter</button>{' <a href=".">Show all</a>' if o.party_filter else ""}
</form>
{_render_parties(o)}
</section>
<section aria-labelledby="failures-heading">
<h2 id="failures-heading">Recent refusals and failures</h2>
{_render_failures(o)}
</section>
<noscript><p class="muted">Without JavaScript this page does not update itself: reload it.</p></noscript>
</main>"""
    return _document(f"{o.hub} · ocpi-hub operator", body)


def render_live(o: Overview) -> str:
    """The parts the page's script swaps in (each an element with the same id as on the page)."""
    return _document("ocpi-hub live", "\n".join((_render_status(o), _render_parties(o), _render_failures(o))))


def _render_status(o: Overview) -> str:
    registry = (
        '<span class="ok">reachable</span>'
        if o.registry_reachable
        else '<span class="bad">unreachable</span> (routing goes on from the last snapshot)'
    )
    loaded = "" if o.snapshot_loaded else ' <span class="bad">(not loaded yet)</span>'
    lease = {
        "this process": f"this process (pid {o.pid})",
        "another process": "another process",
        "nobody": '<span class="bad">nobody</span> (a process takes it within the lease time)',
    }.get(o.lease, '<span class="bad">unknown</span> (the registry did not answer)')
    statuses = ", ".join(f"{_e(status)} {count:,}" for status, count in o.status_counts.items())
    return f"""<section id="hub-status" aria-labelledby="status-heading" data-live>
<h2 id="status-heading">This hub</h2>
<dl class="facts">
<dt>Updated</dt><dd>{_time(o.now, o.now)} by process {o.pid} (ocpi-hub {_e(__version__)})</dd>
<dt>Registry</dt><dd>{registry}</dd>
<dt>Routing snapshot</dt><dd>version {o.snapshot_version:,}{loaded}; last in sync {_time(o.last_sync, o.now)}</dd>
<dt>Scheduler lease</dt><dd>{lease}</dd>
<dt>Parties</dt><dd>{o.parties_total:,} ({statuses})</dd>
<dt>Traffic, last {WINDOW_SECONDS // 60} min</dt><dd>{_render_traffic_total(o)}</dd>
</dl>
</section>"""


def _render_traffic_total(o: Overview) -> str:
    if o.traffic is None:
        return f'<span class="bad">unavailable</span>: {_e(o.traffic_problem)}'
    t = o.traffic
    text = f"{t.messages:,} messages, {t.errors:,} errors ({_percent(t.errors, t.messages)})"
    if t.truncated:
        text += (
            f' — <span class="warn">only the newest {SCAN_LIMIT:,} records were read; they cover the last '
            f"{_ago(o.now - t.covered_since).removesuffix(' ago')}</span>"
        )
    if not o.tracking:
        text += " — message tracking is off in this process (trace_max_records = 0)"
    return text


def _render_parties(o: Overview) -> str:
    window = f"{WINDOW_SECONDS // 60} min"
    if not o.rows:
        if o.party_filter:
            empty = f"No party matches “{_e(o.party_filter)}”."
        else:
            empty = "No party is declared yet: add one with <code>ocpi-hub registry add</code>."
        return f'<div id="parties" data-live><p>{empty}</p></div>'
    shown = len(o.rows)
    note = ""
    if shown < o.matching:
        note = f'<p class="warn">Showing the first {shown:,} of {o.matching:,} parties: filter to see others.</p>'
    elif o.party_filter:
        note = f"<p>{o.matching:,} of {o.parties_total:,} parties match.</p>"
    rows = []
    for row in o.rows:
        status = row.status.value
        rows.append(
            "<tr>"
            f'<th scope="row">{_e(row.party)}</th>'
            f"<td>{_e(', '.join(row.roles))}</td>"
            f'<td>{_e(row.platform)}<br><span class="muted id">{_e(row.platform_id)}</span></td>'
            f'<td><span class="status status-{_e(status.lower())}">{_e(status)}</span></td>'
            f"<td>{'yes' if row.registered else 'no'}</td>"
            f'<td class="num">{row.endpoints}</td>'
            f"<td>{_time(row.status_since, o.now)}</td>"
            f"<td>{_time(row.last_seen, o.now)}</td>"
            f'<td class="num">{row.traffic.messages:,}</td>'
            f'<td class="num">{row.traffic.errors:,}</td>'
            f'<td class="num">{_percent(row.traffic.errors, row.traffic.messages)}</td>'
            "</tr>"
        )
    return f"""<div id="parties" data-live>{note}
<div class="scroll"><table>
<caption>Parties in the routing snapshot, with their messages over the last {window}</caption>
<thead><tr><th scope="col">Party</th><th scope="col">Roles</th><th scope="col">Platform</th>
<th scope="col">Status</th><th scope="col">Registered</th><th scope="col">Endpoints</th>
<th scope="col">Status since</th><th scope="col">Last seen</th><th scope="col">Messages ({window})</th>
<th scope="col">Errors</th><th scope="col">Error rate</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table></div></div>"""


def _render_failures(o: Overview) -> str:
    if o.traffic is None:
        return f'<div id="failures" data-live><p class="bad">Unavailable: {_e(o.traffic_problem)}.</p></div>'
    failures = o.traffic.failures
    if not failures:
        return (
            f'<div id="failures" data-live><p>No refusal or failure in the last {WINDOW_SECONDS // 60} minutes.'
            "</p></div>"
        )
    caption = f"Refusals and failures of the last {WINDOW_SECONDS // 60} minutes, newest first (at most {MAX_FAILURES})"
    return f'<div id="failures" data-live>{_records_table(failures, o.now, caption)}</div>'


def render_search(search: Search, now: float) -> str:
    if not search.message_id:
        return f'<div id="search-result"><p class="bad" role="alert">{_e(search.problem)}</p></div>'
    if search.problem:
        return f'<div id="search-result"><p class="bad" role="alert">{_e(search.problem)}; try again.</p></div>'
    if not search.records:
        return (
            f'<div id="search-result"><p role="status">No message with id <code>{_e(search.message_id)}</code> '
            f"among the newest {SEARCH_SCAN_LIMIT:,} records (records are kept for a limited time).</p></div>"
        )
    count = len(search.records)
    caption = f"Journey of {search.message_id}: {count} record{'' if count == 1 else 's'}, oldest first"
    return f'<div id="search-result">{_records_table(search.records, now, caption, journey=True)}</div>'


def _records_table(records: Iterable[TraceRecord], now: float, caption: str, *, journey: bool = False) -> str:
    rows = []
    for r in records:
        if r.from_party is None and r.to_party is None and r.platform:
            route = f'hub → platform <span class="id">{_e(r.platform)}</span>'
        else:
            route = f"{_e(r.from_party or _DASH)} → {_e(r.to_party or _DASH)}"
        asked = " ".join(part for part in (r.method, r.path) if part) or r.module or _DASH
        answer = f"{_DASH if r.status is None else r.status} / {_DASH if r.ocpi_status is None else r.ocpi_status}"
        outcome = r.outcome or _DASH
        outcome_html = f'<span class="bad">{_e(outcome)}</span>' if r.failed else _e(outcome)
        ids = [_id_link(r.request_id, "in")]
        if r.request_id_out:
            ids.append(_id_link(r.request_id_out, "out"))
        if r.correlation_id:
            ids.append(_id_link(r.correlation_id, "flow"))
        when = _moment(r.time) if journey else _time(r.time, now)
        rows.append(
            "<tr>"
            f"<td>{when}</td>"
            f"<td>{_e(r.kind.value)}</td>"
            f"<td>{route}</td>"
            f'<td class="path">{_e(asked)}</td>'
            f"<td>{_e(answer)}</td>"
            f"<td>{outcome_html}</td>"
            f'<td class="num">{r.latency_ms:.1f}</td>'
            f'<td class="num">{r.pid or _DASH}</td>'
            f'<td class="ids">{"<br>".join(i for i in ids if i)}</td>'
            "</tr>"
        )
    return f"""<div class="scroll"><table>
<caption>{_e(caption)}</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Kind</th><th scope="col">From → to</th>
<th scope="col">Request</th><th scope="col">HTTP / OCPI status</th><th scope="col">Outcome</th>
<th scope="col">Latency (ms)</th><th scope="col">Process</th><th scope="col">Ids</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table></div>"""


def _id_link(message_id: str, label: str) -> str:
    if not message_id:
        return ""
    href = "?id=" + quote(message_id, safe="")
    return f'<span class="muted">{label}</span> <a href="{_e(href)}">{_e(message_id)}</a>'


# -- static files ------------------------------------------------------------------------------------------------

STYLESHEET_NAME: Final = "page.css"
SCRIPT_NAME: Final = "page.js"

STYLESHEET: Final = b"""
:root { color-scheme: light dark; --fg: #1b1f23; --bg: #fff; --muted: #5a6470; --line: #d5dae0; --zebra: #f4f6f8;
  --ok: #12652b; --bad: #a4161a; --warn: #7a4d00; --accent: #176b87; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e9ec; --bg: #15181c; --muted: #a2acb6; --line: #39414a; --zebra: #1d2227;
    --ok: #6fd38b; --bad: #ff8a8a; --warn: #f3c468; --accent: #7cc6e0; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 110rem; padding: 0 1rem 2rem; font: 15px/1.45 system-ui, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 1rem;
  border-bottom: 2px solid var(--accent); }
h1 { font-size: 1.5rem; margin: 0.8rem 0 0.5rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 0.5rem; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.muted, .none { color: var(--muted); }
.ok { color: var(--ok); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); }
.id { font-size: 0.85em; font-family: ui-monospace, monospace; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1.2rem; margin: 0; }
.facts dt { font-weight: 600; }
.facts dd { margin: 0; }
form.inline { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem; margin: 0.5rem 0; }
input, button { font: inherit; padding: 0.3rem 0.5rem; }
input[type=search] { min-width: 22rem; max-width: 100%; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0; }
caption { text-align: left; color: var(--muted); padding: 0.2rem 0; }
th, td { text-align: left; vertical-align: top; padding: 0.3rem 0.6rem; border-bottom: 1px solid var(--line); }
thead th { border-bottom: 2px solid var(--line); white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
time { white-space: nowrap; }
td.path, td.ids { font-family: ui-monospace, monospace; font-size: 0.9em; word-break: break-all; }
.status { font-weight: 600; font-size: 0.85em; letter-spacing: 0.02em; }
.status-connected { color: var(--ok); }
.status-offline, .status-suspended { color: var(--bad); }
.status-planned { color: var(--warn); }
#refresh-problem { color: var(--bad); }
"""

SCRIPT: Final = b"""// ocpi-hub operator page: swaps in the live parts from ./live every few seconds (it works without).
(() => {
  "use strict";
  const root = document.getElementById("live-root");
  if (!root || !window.fetch || !window.DOMParser) return;
  const seconds = Math.max(2, Number(root.dataset.refresh) || 5);
  const problem = document.getElementById("refresh-problem");
  const pause = document.getElementById("pause");
  const filter = new URLSearchParams(location.search).get("party");
  const url = "live" + (filter ? "?" + new URLSearchParams({ party: filter }) : "");
  let paused = false;
  let busy = false;

  async function refresh() {
    if (paused || busy || document.hidden) return;
    busy = true;
    try {
      const options = { cache: "no-store", credentials: "same-origin", headers: { Accept: "text/html" } };
      const answer = await fetch(url, options);
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const part of document.querySelectorAll("[data-live]")) {
        const next = fresh.getElementById(part.id);
        // A part holding the keyboard focus waits for the next round rather than lose the focus.
        if (next && !part.contains(document.activeElement)) part.replaceWith(document.adoptNode(next));
      }
      problem.textContent = "";
    } catch (error) {
      problem.textContent = "Updates are failing (" + error.message + "): showing what arrived last.";
    } finally {
      busy = false;
    }
  }

  pause.hidden = false;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume updates" : "Pause updates";
    refresh();
  });
  document.addEventListener("visibilitychange", refresh);
  setInterval(refresh, seconds * 1000);
})();
"""

#: Asset URLs carry a digest of both files, so browsers may keep them as long as they like.
_ASSETS_VERSION: Final = hashlib.sha256(STYLESHEET + SCRIPT).hexdigest()[:12]
_STATIC_HEADERS: Final = {
    "Cache-Control": "public, max-age=86400, immutable",
    "X-Content-Type-Options": "nosniff",
}
