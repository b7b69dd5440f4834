"""routing/datetimes.py: OCPI DateTime text (types §16.2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from routing.datetimes import format_datetime, parse_datetime

SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC), "2015-06-29T20:39:09.000Z"),
        (datetime(2015, 6, 29, 20, 39, 9, 123456, tzinfo=UTC), "2015-06-29T20:39:09.123Z"),
        (datetime(2015, 6, 29, 20, 39, 9, 999999, tzinfo=UTC), "2015-06-29T20:39:09.999Z"),
        (datetime(2015, 6, 29, 20, 39, 9, 1000, tzinfo=UTC), "2015-06-29T20:39:09.001Z"),
        (datetime(2015, 6, 29, 22, 39, 9, 5000, tzinfo=timezone(timedelta(hours=2))), "2015-06-29T20:39:09.005Z"),
        (datetime(2015, 6, 29, 23, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2015-06-30T04:00:00.000Z"),
    ],
)
def test_format_datetime(moment: datetime, expected: str) -> None:
    text = format_datetime(moment)
    assert text == expected
    assert SHAPE.fullmatch(text)
    assert len(text) <= 25


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-06-29T20:39:09Z", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T20:39:09", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2016-12-29T17:45:09.2Z", datetime(2016, 12, 29, 17, 45, 9, 200000, tzinfo=UTC)),
        ("2016-12-29T17:45:09.2", datetime(2016, 12, 29, 17, 45, 9, 200000, tzinfo=UTC)),
        ("2018-01-01T01:08:01.123Z", datetime(2018, 1, 1, 1, 8, 1, 123000, tzinfo=UTC)),
    ],
)
def test_parse_datetime_accepts_the_spec_forms(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2015-06-29T20:39:09+00:00",
        "2015-06-29T20:39:09.123+00:00",
        "2015-06-29T20:39:09+01:00",
        "2015-06-29T20:39:09-05:00",
        "2015-06-29T20:39:09+0000",
        "2015-06-29T20:39:09ZZ",
        "2015-06-29T20:39:09.1234567Z",
        "2015-06-29T20:39Z",
        "2015-06-29",
        "2015-06-29T25:39:09Z",
        "2015-13-29T20:39:09Z",
        "not a datetime at all",
        "",
    ],
)
def test_parse_datetime_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"OCPI DateTime|Invalid|invalid|out of range|must be"):
        parse_datetime(text)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2015, 6, 29, 20, 39, 9, 123000, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
    ],
)
def test_format_then_parse_round_trips_at_millisecond_precision(moment: datetime) -> None:
    assert parse_datetime(format_datetime(moment)) == moment
