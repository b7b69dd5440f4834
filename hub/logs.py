"""JSON log lines: one per routed request and per control-plane event, keyed by X-Correlation-ID.

Owns: the formatter and the logging set-up of a hub process, and the "hub ready" line (``ready()``, called once
the server listens). Fields come from ``extra=`` (or, for names that LogRecord reserves such as ``module``, from
``extra={"fields": {...}}``); a token or a body is never passed in, so it can never be printed. Lines carry no
terminal colours: uvicorn's ``color_message`` field is dropped and ANSI escapes are removed from text.
Must not: be called with f-strings on the hot path (the formatter does the work only when a line is emitted).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any, Final

import orjson

_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
#: Fields other libraries attach that a JSON line must not carry: uvicorn's copy of the message with terminal colours.
_DROPPED: Final = frozenset({"color_message"})
#: ANSI escape sequences (CSI … final byte, and two-byte ESC sequences): colours a library put in a message.
_ANSI: Final = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")

log = logging.getLogger("ocpihub.server")


class _Clock:
    """UTC timestamps with milliseconds; one strftime per second and one format per millisecond, not per line (a
    busy hub logs several lines a millisecond)."""

    second = -1
    text = ""
    milli = -1
    stamp = ""

    @classmethod
    def format(cls, created: float) -> str:
        milli = int(created * 1000)
        if milli == cls.milli:
            return cls.stamp
        second = milli // 1000
        if second != cls.second:
            cls.second = second
            cls.text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cls.milli = milli
        cls.stamp = f"{cls.text}.{milli - second * 1000:03d}Z"
        return cls.stamp


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _Clock.format(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _plain(record.getMessage()),
        }
        fields = record.__dict__.get("fields")
        if isinstance(fields, dict):
            # Fields whose names LogRecord reserves (``module``) travel nested and are spread here.
            line.update(fields)
        else:
            for key, value in record.__dict__.items():
                if key not in _STANDARD and key not in _DROPPED:
                    line[key] = _plain(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = _plain(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


def _plain(text: str) -> str:
    """``text`` without ANSI escapes (the check first: almost no line has one)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


class BatchingHandler(logging.Handler):
    """Writes formatted lines in batches: one write per ``capacity`` lines or per ``flush()`` (called every
    second by the hub's background task, and at shutdown), instead of one write per line. A WARNING or worse
    is written at once."""

    def __init__(self, fd: int, capacity: int = 256) -> None:
        super().__init__()
        self.fd = fd
        self.capacity = capacity
        self.lines: list[bytes] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record).encode("utf-8", "replace"))
        except Exception:  # logging must never break a request; the stdlib reports it
            self.handleError(record)
            return
        if len(self.lines) >= self.capacity or record.levelno >= logging.WARNING:
            self.flush()

    def append(self, line: bytes) -> None:
        self.lines.append(line)
        if len(self.lines) >= self.capacity:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        self.acquire()
        try:
            lines, self.lines = self.lines, []
            data = b"\n".join(lines) + b"\n"
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError:
            pass  # stderr is gone (closed pipe): nothing sensible is left to do with log lines
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        super().close()


#: Taken at import: workers are spawned (uvicorn, hypercorn), so each imports this module afresh.
_PID: Final = os.getpid()


def event(logger: logging.Logger, message: str, fields: dict[str, Any]) -> bytes:
    """One INFO line per request or delivery, the same JSON the formatter writes; returns that line's bytes (message
    tracking keeps the very same line: hub/tracking.py), built once whether or not INFO is logged.

    When the hub's own batching handler is the only one, the line goes straight to it without a LogRecord — these
    lines are on the hot path. Any other set-up (a test's capture handler, a handler on the logger itself) gets an
    ordinary record.
    """
    line: dict[str, Any] = {
        "time": _Clock.format(time.time()),
        "level": "info",
        "logger": logger.name,
        "message": message,
    }
    fields["pid"] = _PID  # which worker: `ocpi-hub trace` follows a message across processes (callers' own dict)
    line.update(fields)
    # Copied: orjson's own bytes object is a shrunken 1 KiB allocation from the C allocator, and holding a batch of
    # them (the log batch, the tracking batch) costs page faults when they are freed and allocated again; a copy
    # is an ordinary small object (python -m benchmarks.micro, request_log.log_line_us: 8.1 µs a line before, 3.1
    # with the copy and the clock's per-millisecond stamp).
    raw = bytes(memoryview(orjson.dumps(line, default=str)))
    if logger.isEnabledFor(logging.INFO):
        handlers = logging.root.handlers
        if len(handlers) == 1 and type(handlers[0]) is BatchingHandler and not logger.handlers:
            handlers[0].append(raw)
        else:
            logger.info(message, extra={"fields": fields})
    return raw


def ready(port: int, admin_port: int | None) -> None:
    """The "hub ready" line: call it once the server listens (its startup-complete point), not before, so that a
    supervisor or an operator reading the log can trust it. Written at once, not with the next batch."""
    log.info("hub ready", extra={"event": "ready", "port": port, "admin_port": admin_port})
    flush()


def flush() -> None:
    """Write out buffered log lines (the background flush and shutdown call this)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def configure(level: str) -> None:
    # Per-record work the hub never uses: caller lookup (a stack walk), thread and process names.
    logging._srcfile = None  # the logging docs' own advice for speed ("Optimization")
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingHandler(sys.stderr.fileno())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp and redis log transport noise at INFO; the hub logs outcomes itself.
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
