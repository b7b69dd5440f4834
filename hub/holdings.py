"""What the hub holds and answers itself: its store of broadcast data (GET All via Hub) and its owner index.

Owns: applying an accepted broadcast push to the store (registry/objects.py) and counting the result; serving
GET All via Hub (transport_and_format §4.1.8.5/§4.1.8.7) as the paginating server — ``offset``, ``limit`` up to
``get_all_limit``, ``date_from`` inclusive / ``date_to`` exclusive, ``X-Total-Count``, ``X-Limit``, a ``Link`` that
keeps the filters (plus the hub's ``after`` cursor, so a crawl during updates neither skips nor repeats an
unchanged object) — and single stored objects; batching what routed traffic teaches the owner index and writing
it off the hot path (``OwnerLearner``).
Must not: parse or change stored objects (they go out byte for byte), or be awaited by a directly routed request.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Final
from urllib.parse import parse_qsl, urlencode

from hub.envelope import envelope_json
from registry.objects import ApplyResult, ObjectPush, ObjectStore, PageQuery
from registry.objects import Outcome as StoreOutcome
from registry.owners import OwnerIndex
from registry.store import REGISTRY_ERRORS
from routing import errors
from routing import headers as h
from routing.datetimes import parse_datetime
from routing.model import InterfaceRole, ModuleID
from routing.owners import OwnerFact
from routing.paths import module_url_path

log = logging.getLogger("ocpihub.store")

#: Facts waiting to be written at most; past it new ones are dropped (and counted): the index is a routing aid.
MAX_PENDING_FACTS: Final = 10_000
#: Facts remembered as written lately (each a few hundred bytes): repeats of these cost nothing.
MAX_RECENT_FACTS: Final = 100_000
LEARN_INTERVAL: Final = 0.5
#: Parameters of a GET All page the hub reads; the hub's own cursor rides along in its Link.
_PAGE_PARAMS: Final = frozenset({"offset", "limit", "date_from", "date_to", "after"})
#: The answer for a stored object that is not there: 2003 Unknown Location, 2004 Unknown Token (status_codes §5.2).
_UNKNOWN: Final = {
    ModuleID.LOCATIONS: errors.UnknownLocationError,
    ModuleID.TOKENS: errors.UnknownTokenError,
    ModuleID.TARIFFS: errors.UnknownObjectError,
}


class Holdings:
    """The hub's store of broadcast objects and its owner index, as the proxy and the broadcaster use them."""

    def __init__(self, objects: ObjectStore, owners: OwnerIndex, base_url: str, max_limit: int) -> None:
        self.objects = objects
        self.owners = owners
        self.base_url = base_url
        self.max_limit = max_limit

    # -- broadcast pushes in -----------------------------------------------------------------------------------

    async def apply(self, module: ModuleID, method: str, suffix: str, query: bytes, body: bytes) -> StoreOutcome | None:
        """Apply one accepted broadcast push; None when the store could not be reached (the fan-out goes on)."""
        push = ObjectPush(module, method, tuple(suffix.split("/")[1:]), _token_type(query), body)
        try:
            result: ApplyResult = await self.objects.apply(push)
        except REGISTRY_ERRORS as exc:
            log.warning("broadcast push not stored: the store is unreachable: %s", exc)
            return None
        if result.outcome in (StoreOutcome.INVALID, StoreOutcome.UNKNOWN):
            log.warning(
                "broadcast push not stored",
                extra={"fields": {"module": module.value, "outcome": result.outcome.value, "reason": result.reason}},
            )
        return result.outcome

    # -- GET addressed to the hub ----------------------------------------------------------------------------

    async def page(self, module: ModuleID, query: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """A GET All page: the envelope bytes (stored objects verbatim) and its pagination headers."""
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        params = dict(pairs)
        try:
            limit = min(int(params.get("limit", str(self.max_limit))), self.max_limit)
            offset = int(params.get("offset", "0"))
            after = int(params["after"]) if "after" in params else None
            page_query = PageQuery(
                date_from=_moment(params.get("date_from")),
                date_to=_moment(params.get("date_to")),
                offset=offset,
                limit=limit,
                after=after,
            )
        except ValueError as exc:
            raise errors.InvalidParametersError(f"invalid pagination parameter: {exc}") from None
        page = await self.objects.page(module, page_query)
        headers = [(h.X_TOTAL_COUNT, str(page.total).encode()), (h.X_LIMIT, str(limit).encode())]
        if page.next_after is not None:
            # The next page keeps every filter of this one (transport_and_format §4.1.4.1 "Link").
            kept = [(k, v) for k, v in pairs if k not in _PAGE_PARAMS or k in ("date_from", "date_to")]
            kept += [("offset", str(page.next_offset)), ("limit", str(limit)), ("after", str(page.next_after))]
            url = f"{self.base_url}{module_url_path(module, InterfaceRole.SENDER)}?{urlencode(kept)}"
            headers.append((h.LINK, f'<{url}>; rel="next"'.encode("latin-1")))
        return envelope_json(b"[" + b",".join(page.items) + b"]"), headers

    async def one(self, module: ModuleID, suffix: str, query: bytes) -> bytes:
        """One stored object (``/{cc}/{pid}/{id}[/{evse_uid}[/{connector_id}]]``), or 2003/2004 with HTTP 404."""
        stored = await self.objects.get(module, suffix.split("/")[1:], _token_type(query))
        if stored is None:
            raise _UNKNOWN[module](f"the hub holds no such {module.value} object")
        return envelope_json(stored)


def _token_type(query: bytes) -> str | None:
    for key, value in parse_qsl(query.decode("latin-1")):
        if key == "type" and value:
            return value
    return None


def _moment(text: str | None) -> datetime | None:
    return None if text is None else parse_datetime(text)


class OwnerLearner:
    """What routed traffic teaches the owner index, collected on the hot path and written in batches.

    A fact learnt lately is not written again (the same location or session is pushed over and over): a bounded
    set of recent facts is remembered per process, emptied when it is full (sessions are re-learnt at most
    once per fill, well inside their 30-day life)."""

    def __init__(self, owners: OwnerIndex) -> None:
        self.owners = owners
        self.pending: list[OwnerFact] = []
        self.recent: set[OwnerFact] = set()
        self.dropped = 0

    def note(self, facts: tuple[OwnerFact, ...]) -> None:
        """Keep new facts for the next write (never awaits)."""
        for fact in facts:
            if fact in self.recent:
                continue
            if len(self.pending) >= MAX_PENDING_FACTS:
                self.dropped += 1
                continue
            if len(self.recent) >= MAX_RECENT_FACTS:
                self.recent.clear()
            self.recent.add(fact)
            self.pending.append(fact)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LEARN_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        facts, self.pending = self.pending, []
        try:
            await self.owners.learn(facts)
        except REGISTRY_ERRORS as exc:
            self.recent.difference_update(facts)  # not written: learnt again when seen again
            self.dropped += len(facts)
            log.warning("owner index not updated (the store is unreachable): %s", exc)
