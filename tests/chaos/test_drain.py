"""Drain (issue "Hold under faults and hostile traffic", point 6.7): a request still running when ``--drain-time``
ends gets an OCPI envelope — HTTP 503 with status_code 3000 — not the server's bare 500, and the process exits 0.

A real ``ocpi-hub serve --drain-time 1``; the receiver holds its answer for 5 s; SIGTERM comes while the request is
at the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import httpx
import pytest
from starlette.responses import Response

from registry.keys import RegistryKeys
from registry.store import PartyStore
from tests.support.chaos import declare, register_at, serving
from tests.support.fake_party import FakeParty, Received, ocpi, wait_until
from tests.support.hubs import parties

pytestmark = pytest.mark.e2e

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")
DRAIN = 1.0
HOLD = 5.0


async def test_a_request_still_running_when_the_drain_time_ends_gets_an_ocpi_503(
    tmp_path: Path, keys: RegistryKeys, store: PartyStore, redis_url: str
) -> None:
    release = asyncio.Event()

    async def holding(_received: Received) -> Response:
        with contextlib.suppress(TimeoutError):  # held for the full 5 s unless released
            await asyncio.wait_for(release.wait(), HOLD)
        return ocpi({"late": True})

    cpo = FakeParty([(*CPO, "CPO")], name="cpo", responder=holding)
    emsp = FakeParty([(*EMSP, "EMSP")], name="emsp")
    async with parties(cpo, emsp), httpx.AsyncClient(timeout=15) as client:
        try:
            async with serving(tmp_path, keys, redis_url, "--drain-time", str(DRAIN)) as hub:
                for party in (cpo, emsp):
                    _, token_a = await declare(store, party)
                    await register_at(hub.versions_url, party, token_a)
                headers = emsp.headers_to(CPO)
                request = asyncio.ensure_future(client.get(hub.url("/ocpi/2.2.1/sender/locations"), headers=headers))
                await wait_until(lambda: bool(cpo.received), 5.0, "the request to reach the receiver")
                signalled = time.monotonic()
                hub.process.send_signal(signal.SIGTERM)
                reply = await request
                answered = time.monotonic() - signalled
                code = await asyncio.wait_for(hub.process.wait(), DRAIN + 5.0)
                exited = time.monotonic() - signalled
        finally:
            release.set()  # the receiver may end its answer now: nobody waits for it any more
    assert reply.status_code == 503, (reply.status_code, reply.text, hub.log_tail())
    body = reply.json()
    assert body["status_code"] == 3000, body
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["x-request-id"] == headers["X-Request-ID"]
    assert answered < DRAIN + 1.0, answered
    assert code == 0, hub.log_tail()
    print(
        f"\ndrain: HTTP 503 + 3000 {answered:.2f} s after SIGTERM (--drain-time {DRAIN:g}); exit 0 after {exited:.2f} s"
    )
