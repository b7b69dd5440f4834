"""Message tracking's Redis memory: bytes per kept trace record, and so what ``trace_max_records`` costs.

Run alone: ``python -m benchmarks.tracking [--smoke]``; benchmarks/run.py runs it too and writes the figure to
benchmarks/RESULTS.md.

How: a private redis-server (``tests.support.redis_server.running_redis``); access lines built exactly as the hub
builds them (``hub.logs.event`` with the fields hub/proxy.py logs for a routed request, realistic ids and a
paginated path), written with ``registry.trace.TraceLog.write`` in the batches hub/tracking.py hands it; the
``used_memory`` delta divided by the records written. The stream bounds are set above the count written, so
nothing is trimmed while measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from hub import logs
from registry.keys import RegistryKeys
from registry.trace import LINES_PER_ENTRY, TraceLog
from tests.support.redis_server import running_redis

RECORDS: Final = 100_000
SMOKE_RECORDS: Final = 2_000
#: hub/tracking.py writes what one flush collected; under load that is a few thousand lines.
BATCH: Final = 2_000
#: A logger below INFO's level, so ``event`` only builds the line (as it does when logging is quieter).
_QUIET: Final = logging.getLogger("benchmarks.tracking.quiet")
_QUIET.setLevel(logging.WARNING)
_QUIET.propagate = False


def access_line(i: int) -> bytes:
    """The line hub/proxy.py logs (and tracks) for one routed paginated GET."""
    return logs.event(
        _QUIET,
        "routed",
        {
            "event": "request",
            "kind": "request",
            "correlation_id": str(uuid.uuid4()),
            "request_id": str(uuid.uuid4()),
            "request_id_out": str(uuid.uuid4()),
            "from": "NL*EMS",
            "to": f"DE*C{i % 100:02d}",
            "platform": f"emsp-platform-{i % 7}",
            "client": "203.0.113.7",
            "module": "locations",
            "interface": "SENDER",
            "method": "GET",
            "path": "/ocpi/2.2.1/locations/?date_from&limit&offset",
            "status": 200,
            "ocpi_status": 1000,
            "outcome": "ok",
            "latency_ms": round(3 + (i % 997) / 100, 3),
            "pid": 4242,
        },
    )


async def measure(records: int) -> dict[str, Any]:
    started = time.perf_counter()
    with running_redis() as url:
        redis = Redis.from_url(url)
        try:
            server = await redis.info("server")
            keys = RegistryKeys(f"bench:trace:{uuid.uuid4().hex}:")
            log = TraceLog(redis, keys, max_records=records * 2, max_age_seconds=86_400)
            await log.write([access_line(-1)])  # the stream key itself exists before measuring
            before = int((await redis.info("memory"))["used_memory"])
            line_bytes = 0
            for start in range(0, records, BATCH):
                batch = [access_line(i) for i in range(start, min(records, start + BATCH))]
                line_bytes += sum(len(line) for line in batch)
                await log.write(batch)
            delta = int((await redis.info("memory"))["used_memory"]) - before
            allocator = (await redis.info("memory")).get("mem_allocator", "?")
        finally:
            await redis.aclose()
    per_record = delta / records
    return {
        "redis": f"{server.get('redis_version', '?')} ({allocator})",
        "records": records,
        "lines_per_entry": LINES_PER_ENTRY,
        "line_bytes_avg": round(line_bytes / records),
        "bytes_per_record": round(per_record),
        "mb_per_100000": round(per_record * 100_000 / 2**20, 1),
        "wall_s": round(time.perf_counter() - started, 2),
    }


def run(smoke: bool = False) -> dict[str, Any]:
    return asyncio.run(measure(SMOKE_RECORDS if smoke else RECORDS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    print(orjson.dumps(run(args.smoke), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
