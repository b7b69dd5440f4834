"""The only place an OCPI envelope becomes bytes (transport_and_format §4.1.7), and an OcpiError a response.

Owns: the envelope shape (data?, status_code, status_message?, timestamp), the table OcpiError → HTTP status,
and sending a whole small response over raw ASGI.
Must not: decide anything about routing; callers raise typed errors and this renders them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from starlette.types import Scope, Send

from routing import errors
from routing.datetimes import format_datetime

_MISSING: Final = object()

#: HTTP status per error class; the most specific class in the MRO wins. Hub 4xxx errors go with HTTP 200:
#: the request was authenticated, valid and addressed an existing endpoint, so it reached the OCPI layer and
#: status_codes §5 forbids an HTTP error status (digest §1.4 GAP, decided here).
HTTP_STATUS: Final[Mapping[type[errors.OcpiError], int]] = {
    errors.OcpiError: 500,
    errors.ClientError: 400,
    errors.InvalidParametersError: 400,
    errors.MalformedBodyError: 400,
    errors.BodyTooLargeError: 413,
    errors.UnauthorizedError: 401,
    errors.ForbiddenError: 403,
    errors.NotFoundError: 404,
    errors.UnknownObjectError: 404,
    errors.MethodNotAllowedError: 405,
    errors.RateLimitedError: 429,
    errors.ServerError: 500,
    errors.ServiceUnavailableError: 503,
    errors.ClientApiError: 200,
    errors.UnsupportedVersionError: 200,
    errors.NoMatchingEndpointsError: 200,
    errors.HubError: 200,
}

JSON_HEADER: Final = (b"content-type", b"application/json")
#: The ASGI extensions the hub's server protocol offers (hub/http/server.py), spelled once here where the app's
#: answers are sent: a whole response in one write, ``await respond(status, headers, body)`` with headers that do
#: not frame the message; and cutting a connection mid-answer, ``abort()``.
RESPOND: Final = "ocpihub.respond"
ABORT: Final = "ocpihub.abort"
Respond = Callable[[int, list[tuple[bytes, bytes]], bytes], Awaitable[None]]


def now_text() -> str:
    return format_datetime(datetime.now(UTC))


def envelope(status_code: int, message: str | None = None, data: Any = _MISSING) -> bytes:
    """Envelope bytes; ``data`` is left out when not given (the 2.2.1-d2 NOTE advises leaving it unset)."""
    body: dict[str, Any] = {}
    if data is not _MISSING:
        body["data"] = data
    body["status_code"] = status_code
    if message is not None:
        body["status_message"] = message
    body["timestamp"] = now_text()
    return orjson.dumps(body)


def envelope_json(data: bytes, status_code: int = 1000) -> bytes:
    """A success envelope around ``data`` that is JSON already (stored objects go out byte for byte)."""
    return b"".join(
        (
            b'{"data":',
            data,
            b',"status_code":',
            str(status_code).encode(),
            b',"timestamp":"',
            now_text().encode(),
            b'"}',
        )
    )


def http_status(error: errors.OcpiError) -> int:
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def render_error(error: errors.OcpiError) -> tuple[int, bytes]:
    """(HTTP status, envelope bytes) for a typed error."""
    return http_status(error), envelope(error.ocpi_status, error.message)


async def send_bytes(scope: Scope, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A complete JSON response (``send_whole``)."""
    headers.append(JSON_HEADER)
    await send_whole(scope, send, status, headers, body)


async def send_whole(scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """A complete response framed by its Content-Length: in one write where the server offers it (hub/http/server.py
    ``ocpihub.respond``), else in two ASGI messages. ``headers`` must not frame the message themselves."""
    respond = respond_of(scope)
    if respond is not None:
        await respond(status, headers, body)
        return
    if status >= 200 and status not in (204, 304) and scope.get("method") != "HEAD":
        headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def respond_of(scope: Scope) -> Respond | None:
    """The server's whole-response extension (``ocpihub.respond``), when it runs under the hub's own protocol."""
    extensions = scope.get("extensions")
    return extensions.get(RESPOND) if extensions else None
