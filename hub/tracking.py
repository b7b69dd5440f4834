"""Message tracking in a hub process: trace records collected on the hot path, written to Redis in batches.

Owns: ``Tracker`` — ``record()`` appends to an in-memory list and never awaits, blocks or touches Redis (past
``max_pending`` waiting records it drops the record and counts it); ``run()`` writes the batch every
``interval`` seconds through registry/trace.py (one pipeline per batch), and ``flush()`` writes what is left at
shutdown. A registry outage costs the records of that batch (counted as dropped), never a request.
Must not: build records (the proxy does), format or log per record, or retry a failed batch (a batch kept for
later would grow without bound through a long outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final, Protocol

from registry.store import REGISTRY_ERRORS
from registry.trace import TraceRecord

log = logging.getLogger("ocpihub.tracking")

#: Seconds between batch writes.
FLUSH_INTERVAL: Final = 0.5
#: Records waiting at most; more than this are dropped (a worker at 10k req/s fills it in a second: 0.5 s of
#: records plus one slow write fit).
MAX_PENDING: Final = 10_000
#: Records per pipeline: bounds one write's size and the time Redis spends on it.
WRITE_BATCH: Final = 1_000


class TraceSink(Protocol):
    """Where batches go (registry/trace.py ``TraceLog``; a list in tests)."""

    async def write(self, records: Sequence[TraceRecord | bytes]) -> None: ...


class Tracker:
    """Collects trace records without waiting, and writes them in batches."""

    def __init__(self, sink: TraceSink, *, max_pending: int = MAX_PENDING, interval: float = FLUSH_INTERVAL) -> None:
        self.sink = sink
        self.max_pending = max_pending
        self.interval = interval
        self.pending: list[TraceRecord | bytes] = []
        #: Records dropped: more than ``max_pending`` waiting, or their batch could not be written.
        self.dropped = 0
        self.written = 0
        self._failing = False

    def record(self, record: TraceRecord | bytes) -> None:
        """Keep one record (or the JSON line the hub logged for it) for the next batch (O(1), never awaits)."""
        if len(self.pending) >= self.max_pending:
            self.dropped += 1
            return
        self.pending.append(record)

    async def run(self) -> None:
        """Write a batch every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Write every waiting record now (also at shutdown); a failure drops the batch and logs once per outage."""
        batch, self.pending = self.pending, []
        for start in range(0, len(batch), WRITE_BATCH):
            chunk = batch[start : start + WRITE_BATCH]
            try:
                await self.sink.write(chunk)
            except REGISTRY_ERRORS as exc:
                self.dropped += len(batch) - start
                if not self._failing:
                    log.warning("trace records dropped: registry unreachable: %s", exc)
                self._failing = True
                return
            self.written += len(chunk)
        if batch:
            self._failing = False
