"""The one outbound HTTP client of a hub process: forwarding requests to parties, and control-plane calls.

Owns: the pooled keep-alive client (created in the lifespan, closed on shutdown), explicit connect/total
timeouts, per-receiver connection limits, and mapping transport failures to OCPI errors: timeout → 4002,
refused/reset/unresolvable → 4003 (status_codes §5.4).
Must not: decide where a request goes, or parse forwarded bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from routing.errors import ClientApiError, ForwardTimeoutError, ReceiverUnreachableError

Body = bytes | AsyncIterable[bytes] | None


@dataclass(frozen=True, slots=True)
class JsonReply:
    """A control-plane call's answer: HTTP status, parsed JSON (None when it was not JSON) and headers."""

    status: int
    data: Any
    content_type: str


class Upstream:
    """A receiver's answer being streamed back."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: tuple[tuple[bytes, bytes], ...] = response.raw_headers

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()


class Outbound:
    """Pooled outbound HTTP for one process."""

    def __init__(self, *, max_connections: int, per_host: int, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=per_host, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # bodies pass byte for byte, Content-Encoding included
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )
        self._connector = connector

    @property
    def connections_in_use(self) -> int:
        return sum(len(v) for v in self._connector._acquired_per_host.values())  # aiohttp exposes no public count

    async def close(self) -> None:
        await self._session.close()

    def _timeout(self, total: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total, connect=min(self.connect_timeout, total))

    @asynccontextmanager
    async def open(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: Body, timeout: float
    ) -> AsyncIterator[Upstream]:
        """Send a request and yield the response for streaming; OCPI errors on transport failures."""
        request_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        try:
            async with self._session.request(
                method,
                url,
                headers=request_headers,  # a list of pairs keeps repeated headers
                data=body,
                timeout=self._timeout(timeout),
                allow_redirects=False,
                compress=None,
            ) as response:
                yield Upstream(response)
        except TimeoutError as exc:
            raise ForwardTimeoutError(f"the receiver did not answer within {timeout:g} s") from exc
        except aiohttp.ServerTimeoutError as exc:
            raise ForwardTimeoutError(f"the receiver did not answer within {timeout:g} s") from exc
        except (aiohttp.ClientConnectionError, aiohttp.InvalidURL, aiohttp.ClientPayloadError) as exc:
            raise ReceiverUnreachableError(f"the receiver could not be reached: {type(exc).__name__}") from exc

    async def call_json(
        self, method: str, url: str, authorization: bytes, *, body: Any = None, timeout: float = 10.0
    ) -> JsonReply:
        """A control-plane call (versions, details, credentials, ClientInfo); 3001 when it fails in transport."""
        headers = {"Authorization": authorization.decode("latin-1"), "Accept": "application/json"}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, url, headers=headers, data=data, timeout=self._timeout(timeout), allow_redirects=False
            ) as response:
                raw = await response.read()
                content_type = response.headers.get("Content-Type", "")
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise ClientApiError(f"{method} {url} failed: {type(exc).__name__}") from exc
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        return JsonReply(response.status, parsed, content_type)


async def gather_limited(limit: int, jobs: list[Any]) -> list[Any]:
    """Run coroutines with at most ``limit`` in flight; results in order, exceptions returned, not raised."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Any) -> Any:
        async with semaphore:
            return await job

    return await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)
