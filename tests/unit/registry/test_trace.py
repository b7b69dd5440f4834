"""registry/trace.py, the pure parts: the record codec, query values dropped, what counts as an error."""

from __future__ import annotations

from dataclasses import replace

import pytest

from registry.trace import FIELDS, TraceKind, TraceRecord, decode_record, encode_record, strip_query_values
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


def stored(record: TraceRecord) -> dict[bytes, bytes]:
    """What Redis hands back for an entry: every field as bytes."""
    return {str(k).encode(): str(v).encode() for k, v in encode_record(record).items()}


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


def test_every_entry_has_the_same_fields_in_the_same_order() -> None:
    # Redis keeps a stream node's field names once only when every entry has the same ones (memory per record).
    assert tuple(encode_record(RECORD)) == FIELDS
    assert tuple(encode_record(TraceRecord(time=0.0, kind=TraceKind.RELAY))) == FIELDS


def test_numbers_are_stored_as_integers() -> None:
    encoded = encode_record(RECORD)
    assert encoded["time_ms"] == 1_717_000_000_123
    assert encoded["latency_us"] == 12_345
    assert all(isinstance(encoded[k], int) for k in ("time_ms", "latency_us", "attempts", "pid", "status"))


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
    assert encode_record(replace(RECORD, path=path))["path"] == stored_path


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
