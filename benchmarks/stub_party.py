"""A fast stub OCPI party for load tests: uvloop + httptools, one fixed 1.5 KB Location envelope per request.

Run: ``python -m benchmarks.stub_party PORT``. It is deliberately minimal so that it is never the bottleneck.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

import httptools
import orjson
import uvloop

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
                    "last_updated": "2026-01-01T00:00:00Z",
                }
            ],
            "last_updated": "2026-01-01T00:00:00Z",
        }
        for i in range(4)
    ],
    "time_zone": "Europe/Amsterdam",
    "last_updated": "2026-01-01T00:00:00Z",
}
BODY: Final = orjson.dumps({"data": LOCATION, "status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"})
RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\nx-request-id: stub\r\n\r\n"
    + BODY
)


class StubProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport: uvloop's does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(RESPONSE)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StubProtocol, "127.0.0.1", port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
