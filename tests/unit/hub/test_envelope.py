"""hub/envelope.py: envelope bytes and the OcpiError → HTTP status table."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from hub.envelope import envelope, http_status, render_error
from routing import errors
from routing.datetimes import parse_datetime

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def parse(body: bytes) -> dict[str, Any]:
    data = orjson.loads(body)
    assert isinstance(data, dict)
    return data


def test_envelope_without_data_leaves_it_out() -> None:
    body = parse(envelope(1000))
    assert set(body) == {"status_code", "timestamp"}
    assert body["status_code"] == 1000


def test_envelope_with_none_data_keeps_it() -> None:
    body = parse(envelope(1000, data=None))
    assert "data" in body
    assert body["data"] is None


@pytest.mark.parametrize("data", [[], {}, [{"id": "LOC1"}], {"token": "abc", "valid": True}, "text", 0])
def test_envelope_with_data(data: object) -> None:
    body = parse(envelope(1000, "ok", data=data))
    assert body["data"] == data
    assert body["status_message"] == "ok"
    assert body["status_code"] == 1000


def test_status_message_only_when_given() -> None:
    assert "status_message" not in parse(envelope(2001))
    assert parse(envelope(2001, "bad"))["status_message"] == "bad"


def test_envelope_timestamp_is_an_ocpi_datetime_of_now() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    stamp = parse(envelope(1000))["timestamp"]
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert isinstance(stamp, str)
    assert TIMESTAMP.fullmatch(stamp)
    assert len(stamp) <= 25
    assert before <= parse_datetime(stamp) <= after


def test_envelope_is_compact_json_bytes() -> None:
    raw = envelope(1000, data={"a": 1})
    assert isinstance(raw, bytes)
    assert raw.startswith(b'{"data":{"a":1},"status_code":1000,')


STATUSES: list[tuple[type[errors.OcpiError], int, int]] = [
    (errors.OcpiError, 500, 3000),
    (errors.ClientError, 400, 2000),
    (errors.InvalidParametersError, 400, 2001),
    (errors.MalformedBodyError, 400, 2001),
    (errors.BodyTooLargeError, 413, 2001),
    (errors.UnauthorizedError, 401, 2000),
    (errors.ForbiddenError, 403, 2000),
    (errors.NotFoundError, 404, 2000),
    (errors.MethodNotAllowedError, 405, 2000),
    (errors.UnknownObjectError, 404, 2000),
    (errors.UnknownLocationError, 404, 2003),
    (errors.UnknownTokenError, 404, 2004),
    (errors.RateLimitedError, 429, 2000),
    (errors.ServerError, 500, 3000),
    (errors.ServiceUnavailableError, 503, 3000),
    (errors.ClientApiError, 200, 3001),
    (errors.UnsupportedVersionError, 200, 3002),
    (errors.NoMatchingEndpointsError, 200, 3003),
    (errors.HubError, 200, 4000),
    (errors.UnknownReceiverError, 200, 4001),
    (errors.ForwardTimeoutError, 200, 4002),
    (errors.ReceiverUnreachableError, 200, 4003),
    (errors.ReceiverSuspendedError, 200, 4003),
    (errors.ReceiverOfflineError, 200, 4003),
    (errors.ReceiverPlannedError, 200, 4003),
    (errors.NoEndpointError, 200, 4003),
    (errors.OverloadedError, 200, 4003),
]


@pytest.mark.parametrize(("error_class", "status", "ocpi_status"), STATUSES)
def test_error_statuses(error_class: type[errors.OcpiError], status: int, ocpi_status: int) -> None:
    error = errors.RateLimitedError("boom", 1.0) if error_class is errors.RateLimitedError else error_class("boom")
    assert http_status(error) == status
    assert error.ocpi_status == ocpi_status
    http, raw = render_error(error)
    assert http == status
    body = parse(raw)
    assert body["status_code"] == ocpi_status
    assert body["status_message"] == "boom"
    assert "data" not in body


def test_every_error_class_is_in_the_status_table_above() -> None:
    classes = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.OcpiError)}
    assert classes == {c for c, _, _ in STATUSES}


def test_subclass_of_a_mapped_error_inherits_its_status() -> None:
    class Custom(errors.ReceiverUnreachableError):
        pass

    class Unmapped(errors.BodyTooLargeError):
        pass

    assert http_status(Custom("x")) == 200
    assert http_status(Unmapped("x")) == 413
