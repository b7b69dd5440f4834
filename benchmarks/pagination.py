"""Paginated list GETs (issue "Paginated lists at full speed"): the requests, and a check before any load that
each path really paginates.

The eMSP GETs the CPO's Locations list, ``GET .../locations?offset=0&limit=PAGE_LIMIT``: straight at the stub
party (``/ocpi/2.2.1/locations/sender``), through the naive proxy (same path; it passes the stub's Link
through untouched, so that Link still names the stub), and through the hub (``/ocpi/2.2.1/sender/locations``
with OCPI-to = NL/CPO), which rewrites the Link into a signed relay URL (hub/relay.py, routing/relays.py: an
HMAC, nothing stored). The stub answers ``PAGE_LIMIT`` small Locations (~300 B each), ``X-Total-Count``,
``X-Limit`` and a next-page Link to itself (benchmarks/stub_party.py).

``check`` GETs one page each way, makes sure the answer has ``PAGE_LIMIT`` items and the pagination headers,
that the hub's Link is a relay URL on the hub, and follows it once (the next page must come back through the
hub). benchmarks/run.py measures the requests under load in its interleaved rounds.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from benchmarks.load import Request
from benchmarks.stub_party import TOTAL_COUNT
from benchmarks.topology import CPO, EMSP, Routed, routed_headers
from routing.paths import RELAY_PREFIX

PAGE_LIMIT: Final = 10
STUB_PATH: Final = f"/ocpi/2.2.1/locations/sender?offset=0&limit={PAGE_LIMIT}"
HUB_PATH: Final = f"/ocpi/2.2.1/sender/locations?offset=0&limit={PAGE_LIMIT}"


def stub_request(base: str) -> Request:
    """The list GET at the stub's own path (``base``: the stub or the naive proxy in front of it)."""
    return Request("GET", base + STUB_PATH, {})


def hub_request(routed: Routed) -> Request:
    """The eMSP's list GET through the hub, to the CPO."""
    return Request("GET", routed.hub_url + HUB_PATH, routed_headers(routed.emsp_token, CPO, EMSP))


def _link_target(value: str) -> str:
    opening, closing = value.find("<"), value.find(">")
    return value[opening + 1 : closing] if 0 <= opening < closing else ""


def _page(reply: httpx.Response, what: str) -> tuple[list[Any], str]:
    items = reply.json().get("data") if reply.status_code == 200 else None
    if not isinstance(items, list) or len(items) != PAGE_LIMIT:
        raise RuntimeError(f"{what}: HTTP {reply.status_code}, not a page of {PAGE_LIMIT}: {reply.text[:300]}")
    if reply.headers.get("x-total-count") != str(TOTAL_COUNT) or reply.headers.get("x-limit") != str(PAGE_LIMIT):
        raise RuntimeError(f"{what}: X-Total-Count/X-Limit missing: {dict(reply.headers)}")
    return items, _link_target(reply.headers.get("link", ""))


async def check(naive: Request, hub: Request, routed: Routed) -> dict[str, Any]:
    """One page through the naive proxy and through the hub, and the hub's Link followed once."""
    async with httpx.AsyncClient(timeout=30) as client:
        _, naive_link = _page(await client.get(naive.url), "naive proxy paginated GET")
        _, hub_link = _page(await client.get(hub.url, headers=hub.headers), "hub paginated GET")
        if not hub_link.startswith(routed.hub_url + RELAY_PREFIX):
            raise RuntimeError(f"the hub's Link is not a relay URL on the hub: {hub_link!r}")
        following, _ = _page(await client.get(hub_link, headers=hub.headers), "hub relay Link followed")
    return {
        "page_limit": PAGE_LIMIT,
        "naive_link": naive_link.split("/ocpi", 1)[-1],
        "hub_link_length": len(hub_link),
        "hub_link_followed_first_id": following[0].get("id"),
    }
