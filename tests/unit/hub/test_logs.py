"""hub/logs.py's pure parts: the timestamp of a line, and the bytes ``event`` returns."""

from __future__ import annotations

import logging

import orjson
import pytest

from hub import logs
from hub.logs import _Clock


@pytest.mark.parametrize(
    ("instants", "stamps"),
    [
        # Lines within one millisecond share a stamp; the next millisecond and the next second get their own.
        (
            (1764469491.1231, 1764469491.1239, 1764469491.124, 1764469491.9999, 1764469492.0004),
            (
                "2025-11-30T02:24:51.123Z",
                "2025-11-30T02:24:51.123Z",
                "2025-11-30T02:24:51.124Z",
                "2025-11-30T02:24:51.999Z",
                "2025-11-30T02:24:52.000Z",
            ),
        ),
        # Going back in time (the clock was set) is a new stamp too, not the cached one.
        (
            (1764469492.5, 1764469491.5, 0.0),
            ("2025-11-30T02:24:52.500Z", "2025-11-30T02:24:51.500Z", "1970-01-01T00:00:00.000Z"),
        ),
    ],
)
def test_stamps_are_utc_milliseconds(instants: tuple[float, ...], stamps: tuple[str, ...]) -> None:
    assert tuple(_Clock.format(t) for t in instants) == stamps


def test_event_returns_the_line_it_logs() -> None:
    raw = logs.event(logging.getLogger("ocpihub.test"), "routed", {"status": 200, "path": "/x"})
    assert type(raw) is bytes
    line = orjson.loads(raw)
    assert line["message"] == "routed" and line["status"] == 200 and line["path"] == "/x"
    assert line["level"] == "info" and line["logger"] == "ocpihub.test" and line["time"].endswith("Z")
