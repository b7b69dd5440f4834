"""OCPI DateTime text (types §16.2): UTC, RFC 3339, at most 25 characters, ``Z`` or no zone.

Must not: read the clock; callers pass the instant in.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_datetime(moment: datetime) -> str:
    """``2015-06-29T20:39:09.123Z`` (milliseconds, always UTC)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_datetime(text: str) -> datetime:
    """An OCPI DateTime → aware UTC datetime; ValueError for other shapes (``+00:00`` is not OCPI)."""
    if not 19 <= len(text) <= 25 or "+" in text[10:] or text[10:].count("-"):
        raise ValueError(f"not an OCPI DateTime: {text!r}")
    body = text[:-1] if text.endswith("Z") else text
    parsed = datetime.fromisoformat(body)
    if parsed.tzinfo is not None:
        raise ValueError(f"not an OCPI DateTime: {text!r}")
    return parsed.replace(tzinfo=UTC)
