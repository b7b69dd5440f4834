"""registry/trace.py, the pure parts: the record codec, query values dropped, what counts as an error."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from registry.trace import TraceKind, TraceRecord, decode_record, encode_record, strip_query_values
from routing.model import PartyKey

RECORD = TraceRecord(
    time=1_717_000_000.123,
    kind=TraceKind.REQUEST,
    correlation_id="corr-1",
    request_id="req-in",
    request_id_out="req-out",
    from_party=PartyKey("NL", "ABC"),
    to_party=PartyKey("DE", "XYZ"),
    platform="p1",
    module="locations",
    interface="SENDER",
    method="GET",
    path="/ocpi/2.2.1/sender/locations",
    status=200,
    ocpi_status=1000,
    outcome="ok",
    latency_ms=12.345,
    attempts=1,
    pid=4242,
)


def stored(record: TraceRecord) -> bytes:
    """What Redis hands back: the record's JSON line."""
    return encode_record(record)


@pytest.mark.parametrize(
    "record",
    [
        RECORD,
        replace(RECORD, from_party=None, to_party=None, status=None, ocpi_status=None, outcome="timeout"),
        TraceRecord(time=1.5, kind=TraceKind.LIVENESS),
    ],
)
def test_round_trip(record: TraceRecord) -> None:
    assert decode_record(stored(record)) == record


def test_a_record_is_the_line_the_hub_logs() -> None:
    # The hot path encodes one JSON line for the log and the trace alike (hub/logs.py event, hub/proxy.py).
    line = orjson.loads(encode_record(RECORD))
    assert line["time"] == "2024-05-29T16:26:40.123Z"
    assert (line["from"], line["to"], line["latency_ms"], line["status"]) == ("NL:ABC", "DE:XYZ", 12.345, 200)
    access = {"time": "2024-05-29T16:26:40.123Z", "level": "info", "logger": "ocpihub.access", "message": "routed"}
    assert decode_record(orjson.dumps(access | line)) == RECORD
    assert decode_record(b"not json") is None


@pytest.mark.parametrize(
    ("path", "stored_path"),
    [
        ("/ocpi/2.2.1/sender/locations", "/ocpi/2.2.1/sender/locations"),
        ("/ocpi/2.2.1/sender/locations?offset=10&limit=50", "/ocpi/2.2.1/sender/locations?offset=&limit="),
        ("/x?date_from=2024-01-01T00:00:00Z&date_from=x", "/x?date_from=&date_from="),
        ("/x?flag", "/x?flag="),
        ("/x?", "/x"),
        ("/x?a=1#frag", "/x?a="),
    ],
)
def test_query_values_are_dropped_keys_kept(path: str, stored_path: str) -> None:
    assert strip_query_values(path) == stored_path
    assert orjson.loads(encode_record(replace(RECORD, path=path)))["path"] == stored_path


@pytest.mark.parametrize(
    ("changes", "failed"),
    [
        ({}, False),
        ({"outcome": ""}, False),
        ({"outcome": "timeout", "status": None}, True),
        ({"status": 404}, True),
        ({"ocpi_status": 2001}, True),
        ({"outcome": "unknown_receiver", "ocpi_status": 4001}, True),
    ],
)
def test_what_counts_as_an_error(changes: dict[str, object], failed: bool) -> None:
    assert replace(RECORD, **changes).failed is failed  # type: ignore[arg-type]  # replace() takes any field


def test_a_copy_without_an_http_answer_has_no_status() -> None:
    # hub/broadcast.py logs status 0 for a copy that got no answer: "no HTTP answer", not a "0xx" class.
    line = orjson.loads(encode_record(RECORD))
    line["status"] = 0
    decoded = decode_record(orjson.dumps(line))
    assert decoded is not None and decoded.status is None
