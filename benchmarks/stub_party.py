"""A fast stub OCPI party for load tests: uvloop + httptools, one precomputed answer per request shape.

- A list GET — the path ends at the module's interface, ``/ocpi/2.2.1/{module}/{sender|receiver}``, with or
  without ``?offset=N&limit=M`` — gets a paginated answer (transport_and_format §4.1.4.1): a page of ``limit``
  small Locations (``PAGE_LIMIT`` when absent, at most ``MAX_PAGE_LIMIT``), ``X-Total-Count: TOTAL_COUNT``,
  ``X-Limit``, and, while pages remain, ``Link: <http://127.0.0.1:{port}{path}?offset=N+M&limit=M>; rel="next"``
  (its own URL). Answers are built once per URL and kept (at most ``MAX_CACHED_PAGES``).
- A POST whose path ends in ``/authorize`` gets an AuthorizationInfo, ALLOWED (mod_tokens §12.2.2).
- Anything else gets one fixed 1.5 KB Location envelope.

Run: ``python -m benchmarks.stub_party PORT``. It is deliberately minimal so that it is never the bottleneck.
"""

from __future__ import annotations

import asyncio
import sys
from functools import partial
from typing import Any, Final
from urllib.parse import parse_qsl

import httptools
import orjson
import uvloop

TIMESTAMP: Final = "2026-01-01T00:00:00Z"
LOCATION: Final = {
    "country_code": "NL",
    "party_id": "CPO",
    "id": "LOC1",
    "publish": True,
    "name": "Benchmark Plaza",
    "address": "Stationsplein 1",
    "city": "Amsterdam",
    "postal_code": "1012AB",
    "country": "NLD",
    "coordinates": {"latitude": "52.379189", "longitude": "4.899431"},
    "evses": [
        {
            "uid": f"NL*CPO*E{i}",
            "evse_id": f"NL*CPO*E{i}",
            "status": "AVAILABLE",
            "connectors": [
                {
                    "id": "1",
                    "standard": "IEC_62196_T2",
                    "format": "SOCKET",
                    "power_type": "AC_3_PHASE",
                    "max_voltage": 230,
                    "max_amperage": 32,
                    "last_updated": TIMESTAMP,
                }
            ],
            "last_updated": TIMESTAMP,
        }
        for i in range(4)
    ],
    "time_zone": "Europe/Amsterdam",
    "last_updated": TIMESTAMP,
}
#: Objects per page when the request names no ``limit``, and the most a page holds.
PAGE_LIMIT: Final = 10
MAX_PAGE_LIMIT: Final = 100
#: The list's length, as X-Total-Count says.
TOTAL_COUNT: Final = 10_000
MAX_CACHED_PAGES: Final = 1_024
AUTHORIZATION_INFO: Final = {
    "allowed": "ALLOWED",
    "token": {
        "country_code": "BE",
        "party_id": "EMP",
        "uid": "TOK1",
        "type": "RFID",
        "contract_id": "BE-EMP-C00000001",
        "issuer": "Benchmark eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": TIMESTAMP,
    },
    "authorization_reference": "bench-authorization",
}


def envelope(data: Any) -> bytes:
    return orjson.dumps({"data": data, "status_code": 1000, "timestamp": TIMESTAMP})


def answer(body: bytes, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 200 answer with ``body`` and the header lines ``extra`` (each ending in CRLF)."""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nx-request-id: stub\r\n"
        + extra
        + b"\r\n"
        + body
    )


BODY: Final = envelope(LOCATION)
RESPONSE: Final = answer(BODY)
AUTHORIZE_RESPONSE: Final = answer(envelope(AUTHORIZATION_INFO))


def small_location(index: int) -> dict[str, Any]:
    """A Location without EVSEs (~300 bytes): what a page of a list holds."""
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": f"LOC{index}",
        "publish": True,
        "address": "Stationsplein 1",
        "city": "Amsterdam",
        "country": "NLD",
        "coordinates": {"latitude": "52.379189", "longitude": "4.899431"},
        "time_zone": "Europe/Amsterdam",
        "last_updated": TIMESTAMP,
    }


def _number(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        return default


def page_response(origin: str, path: bytes, query: bytes) -> bytes:
    """The answer to a list GET of ``path`` with ``query`` (see the module docstring)."""
    params = dict(parse_qsl(query.decode("latin-1")))
    offset = max(_number(params, "offset", 0), 0)
    limit = min(max(_number(params, "limit", PAGE_LIMIT), 1), MAX_PAGE_LIMIT)
    count = max(min(limit, TOTAL_COUNT - offset), 0)
    body = envelope([small_location(offset + i) for i in range(count)])
    extra = f"x-total-count: {TOTAL_COUNT}\r\nx-limit: {limit}\r\n"
    if offset + limit < TOTAL_COUNT:
        extra += f'link: <{origin}{path.decode("latin-1")}?offset={offset + limit}&limit={limit}>; rel="next"\r\n'
    return answer(body, extra.encode("latin-1"))


class StubProtocol(asyncio.Protocol):
    def __init__(self, origin: str, pages: dict[bytes, bytes]) -> None:
        self.origin = origin
        self.pages = pages
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.WriteTransport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport: uvloop's does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(self.respond(self.parser.get_method(), self.url))

    def respond(self, method: bytes, url: bytes) -> bytes:
        path, _, query = url.partition(b"?")
        if method == b"GET" and path.endswith((b"/sender", b"/receiver")):
            cached = self.pages.get(url)
            if cached is None:
                if len(self.pages) >= MAX_CACHED_PAGES:
                    self.pages.clear()
                cached = self.pages[url] = page_response(self.origin, path, query)
            return cached
        if method == b"POST" and path.endswith(b"/authorize"):
            return AUTHORIZE_RESPONSE
        return RESPONSE


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    pages: dict[bytes, bytes] = {}
    factory = partial(StubProtocol, f"http://127.0.0.1:{port}", pages)
    server = await loop.create_server(factory, "127.0.0.1", port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
