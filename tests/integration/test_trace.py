"""Message tracking against a real Redis: the bounded trace stream, finding a journey, a party's traffic, the
Tracker's batches (never blocking, dropping and counting past its bound, surviving an outage), and the CLI."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from hub.tracking import Tracker
from registry.audit import stream_entries
from registry.connection import connect
from registry.keys import RegistryKeys
from registry.store import PartyStore
from registry.trace import LINES_PER_ENTRY, TraceKind, TraceLog, TraceRecord
from routing.model import PartyKey, PartyRole
from tests.support.hubs import TEST_ACTOR
from tests.support.processes import Completed, hub_env, run_ocpi_hub
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration

ABC, XYZ, OTH = PartyKey("NL", "ABC"), PartyKey("DE", "XYZ"), PartyKey("BE", "OTH")
NOW = time.time()


def request(n: int, **changes: object) -> TraceRecord:
    base = TraceRecord(
        time=round(NOW - 60 + n / 1000, 3),  # stored to the millisecond
        kind=TraceKind.REQUEST,
        correlation_id=f"corr-{n}",
        request_id=f"in-{n}",
        request_id_out=f"out-{n}",
        from_party=ABC,
        to_party=XYZ,
        platform="p-abc",
        module="locations",
        interface="SENDER",
        method="GET",
        path="/ocpi/2.2.1/sender/locations",
        status=200,
        ocpi_status=1000,
        outcome="ok",
        latency_ms=3.5,
        attempts=1,
        pid=100,
    )
    return replace(base, **changes)  # type: ignore[arg-type]  # replace() takes any field


@pytest.fixture
def trace_log(redis: Redis, keys: RegistryKeys) -> TraceLog:
    return TraceLog(redis, keys)


async def test_find_by_any_of_its_ids_and_the_journey_by_correlation(trace_log: TraceLog) -> None:
    journey = [
        request(1, correlation_id="c-1", request_id="r-in", request_id_out="r-out", pid=101),
        request(2, kind=TraceKind.BROADCAST_COPY, correlation_id="c-1", request_id="r-in", request_id_out="b-1"),
        request(3, kind=TraceKind.BROADCAST_COPY, correlation_id="c-1", request_id="r-in", request_id_out="b-2"),
        request(4, kind=TraceKind.RELAY, correlation_id="c-1", request_id="r-cb", request_id_out="r-cb-out", pid=102),
    ]
    noise = [request(n) for n in range(10, 30)]
    await trace_log.write([*noise[:10], journey[2], journey[0], *noise[10:], journey[3], journey[1]])
    assert await trace_log.find("c-1") == journey
    assert await trace_log.find("r-in") == journey[:3]
    assert await trace_log.find("b-2") == [journey[2]]
    assert await trace_log.find("r-cb-out") == [journey[3]]
    # A request id leads to the whole journey, in time order, across processes (pids).
    assert await trace_log.journey("b-2") == journey
    assert await trace_log.journey("r-cb") == journey
    assert await trace_log.find("nothing") == []
    assert await trace_log.journey("") == []


async def test_query_values_never_reach_redis(trace_log: TraceLog, redis: Redis, keys: RegistryKeys) -> None:
    await trace_log.write([request(1, path="/ocpi/2.2.1/sender/tokens?date_from=2024-01-01&secret=abc123")])
    raw = b"".join(v for _, fields in stream_entries(await redis.xrange(keys.trace())) for v in fields.values())
    assert b"abc123" not in raw and b"2024-01-01" not in raw
    (found,) = await trace_log.find("corr-1")
    assert found.path == "/ocpi/2.2.1/sender/tokens?date_from=&secret="


async def test_the_stream_is_bounded_by_count_and_by_age(redis: Redis, keys: RegistryKeys) -> None:
    by_count = TraceLog(redis, keys, max_records=2 * LINES_PER_ENTRY, max_age_seconds=86_400)
    for n in range(300):
        await by_count.write([request(n)])  # one entry per write at this trickle
    # An exact MAXLEN: max_records // LINES_PER_ENTRY entries, never a stream node (100 entries) more.
    assert await redis.xlen(keys.trace()) == 2
    await redis.delete(keys.trace())
    # Records older than the age bound go (MINID ~, on the records' own ids): write 300 "old" ones by id.
    for n in range(300):
        await redis.xadd(keys.trace(), {"x": n}, id=f"{1_000 + n}-0")
    by_age = TraceLog(redis, keys, max_records=1_000_000, max_age_seconds=60)
    await by_age.write([request(1)])
    assert await redis.xlen(keys.trace()) <= 101


async def test_a_write_is_one_xadd_per_batch_of_lines_and_one_xtrim(redis_url: str, keys: RegistryKeys) -> None:
    from tests.integration.test_store_contract import redis_proxy

    async with redis_proxy(redis_url) as proxy, connect(proxy.url) as client:
        await client.ping()
        proxy.commands.clear()
        await TraceLog(client, keys).write([request(n) for n in range(2 * LINES_PER_ENTRY + 1)])
        assert proxy.commands == [b"XADD"] * 3 + [b"XTRIM"]
    async with connect(redis_url) as client:
        await client.delete(keys.trace())


async def test_traffic_counts_a_partys_messages_as_sender_or_receiver(trace_log: TraceLog) -> None:
    records = [
        request(1),
        request(2, from_party=XYZ, to_party=ABC, module="tokens", interface="RECEIVER", method="POST"),
        request(3, status=None, ocpi_status=None, outcome="timeout", module="commands"),
        request(4, status=200, ocpi_status=2001, outcome="client_error"),
        request(5, status=404, ocpi_status=None, outcome="client_error", module="sessions"),
        request(6, from_party=OTH, to_party=XYZ),  # not ABC's
        request(7, time=NOW - 7_200, outcome="timeout"),  # before --since
        request(8, kind=TraceKind.LIVENESS, from_party=None, to_party=ABC, module="", status=200, outcome="ok"),
    ]
    await trace_log.write(records)
    summary = await trace_log.traffic(ABC, int((NOW - 3_600) * 1000))
    assert summary.total == 6
    assert summary.by_module == {"locations": 2, "tokens": 1, "commands": 1, "sessions": 1, "-": 1}
    assert summary.by_outcome == {"ok": 3, "client_error": 2, "timeout": 1}
    assert summary.by_status_class == {"2xx": 4, "4xx": 1, "none": 1}
    assert summary.errors == 3
    assert [r.request_id for r in summary.recent_errors] == ["in-5", "in-4", "in-3"]  # newest first
    assert not summary.truncated
    assert (await trace_log.traffic(OTH, 0)).total == 1
    bounded = await trace_log.traffic(ABC, 0, scan_limit=3)
    assert bounded.truncated and bounded.total <= 3


class Sink:
    """A TraceSink that keeps batches, and can be told to fail like an unreachable registry."""

    def __init__(self) -> None:
        self.batches: list[list[TraceRecord]] = []
        self.failing = False
        self.written = asyncio.Event()

    async def write(self, records: Sequence[TraceRecord | bytes]) -> None:
        if self.failing:
            raise ConnectionError("registry unreachable")
        self.batches.append([r for r in records if isinstance(r, TraceRecord)])
        self.written.set()


async def test_tracker_record_never_waits_and_drops_past_its_bound() -> None:
    sink = Sink()
    tracker = Tracker(sink, max_pending=5)
    for n in range(8):
        tracker.record(request(n))  # a plain call: nothing to await
    assert (len(tracker.pending), tracker.dropped) == (5, 3)
    await tracker.flush()
    assert [len(b) for b in sink.batches] == [5]
    assert (tracker.pending, tracker.written) == ([], 5)


async def test_tracker_run_writes_batches_every_interval_and_flush_writes_the_rest() -> None:
    sink = Sink()
    tracker = Tracker(sink, interval=0.05)
    task = asyncio.ensure_future(tracker.run())
    try:
        tracker.record(request(1))
        tracker.record(request(2))
        await asyncio.wait_for(sink.written.wait(), 2)
        assert [r.request_id for r in sink.batches[0]] == ["in-1", "in-2"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    tracker.record(request(3))
    await tracker.flush()  # shutdown
    assert [r.request_id for b in sink.batches for r in b] == ["in-1", "in-2", "in-3"]


async def test_tracker_survives_an_outage_dropping_and_counting_that_batch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ocpihub.tracking")
    sink = Sink()
    tracker = Tracker(sink)
    sink.failing = True
    for round_ in range(3):
        tracker.record(request(round_))
        await tracker.flush()  # no exception: tracking must never take the hub down
    assert tracker.dropped == 3
    assert len([r for r in caplog.records if r.name == "ocpihub.tracking"]) == 1  # once per outage
    sink.failing = False
    tracker.record(request(9))
    await tracker.flush()
    assert [r.request_id for b in sink.batches for r in b] == ["in-9"]


async def test_tracker_writes_large_backlogs_in_bounded_pipelines(trace_log: TraceLog, redis: Redis) -> None:
    tracker = Tracker(trace_log)
    for n in range(2_500):
        tracker.record(request(n))
    await tracker.flush()
    assert tracker.written == 2_500
    entries = stream_entries(await redis.xrange(trace_log.keys.trace()))
    assert sum(int(fields[b"n"]) for _, fields in entries) == 2_500


async def test_tracker_on_a_registry_that_is_down_loses_only_the_batch(keys: RegistryKeys) -> None:
    async with connect(f"redis://127.0.0.1:{free_port()}/0") as client:
        tracker = Tracker(TraceLog(client, keys))
        tracker.record(request(1))
        await tracker.flush()
        assert tracker.dropped == 1


# -- CLI ----------------------------------------------------------------------------------------------------------


async def cli(redis_url: str, keys: RegistryKeys, *args: str) -> Completed:
    return await run_ocpi_hub(*args, "--redis-url", redis_url, env=hub_env(key_prefix=keys.prefix))


async def test_trace_command_shows_the_journey_in_time_order(
    trace_log: TraceLog, redis_url: str, keys: RegistryKeys
) -> None:
    journey = [
        request(1, correlation_id="c-9", request_id="r-9", request_id_out="o-9", pid=201, path="/x?offset=5&limit=1"),
        request(
            2, kind=TraceKind.BROADCAST_COPY, correlation_id="c-9", request_id="r-9", request_id_out="b-9", pid=202
        ),
    ]
    await trace_log.write([journey[1], request(50), journey[0]])
    result = await cli(redis_url, keys, "trace", "r-9", "--json")
    assert result.returncode == 0, str(result)
    shown = result.json()
    assert [(r["kind"], r["request_id_out"], r["pid"]) for r in shown] == [
        ("request", "o-9", 201),
        ("broadcast_copy", "b-9", 202),
    ]
    assert shown[0]["time"].endswith("Z") and shown[0]["from"] == "NL:ABC" and shown[0]["to"] == "DE:XYZ"
    assert shown[0]["path"] == "/x?offset=&limit="
    plain = await run_ocpi_hub("trace", "--redis-url", redis_url, "c-9", env=hub_env(key_prefix=keys.prefix))
    assert plain.returncode == 0, str(plain)
    lines = plain.stdout.splitlines()
    assert len(lines) == 2 and "request" in lines[0] and "broadcast_copy" in lines[1] and "pid 202" in lines[1]
    missing = await cli(redis_url, keys, "trace", "no-such-id")
    assert missing.returncode != 0 and len(missing.stderr_lines) == 1 and not missing.stdout


async def test_registry_traffic_command(
    trace_log: TraceLog, store: PartyStore, redis_url: str, keys: RegistryKeys
) -> None:
    await store.declare([PartyRole.parse("NL:ABC:CPO")], "abc", actor=TEST_ACTOR)
    await trace_log.write(
        [request(1), request(2, status=502, outcome="unreachable", ocpi_status=None, request_id="bad-1")]
    )
    shown = (await cli(redis_url, keys, "registry", "traffic", "NL:ABC:CPO", "--json")).json()
    assert shown["party"] == "NL:ABC" and shown["total"] == 2 and shown["errors"] == 1
    assert shown["by_outcome"] == {"ok": 1, "unreachable": 1}
    assert [e["request_id"] for e in shown["recent_errors"]] == ["bad-1"]
    plain = await cli(redis_url, keys, "registry", "traffic", "NL:ABC", "--since", "2h")
    assert plain.returncode == 0, str(plain)
    assert "2 messages" in plain.stdout and "1 errors" in plain.stdout and "bad-1" in plain.stdout
    none = (await cli(redis_url, keys, "registry", "traffic", "NL:ABC", "--since", "30s", "--json")).json()
    assert none["total"] == 0
