"""The operator's page on the admin listener (issue: the operator's cockpit, point 4): parties and their status,
traffic and errors per party, recent failures, the scheduler lease and the snapshot, and a search by id — rendered
on the server, refreshed by a little script, never a secret in it; over plain HTTP and in a real headless Chromium
(Debian's, driven by Playwright; never a browser Playwright downloads)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hub import page as page_module
from registry.store import PartyStore
from registry.trace import TraceKind, TraceLog, TraceRecord
from routing.model import PartyKey, PartyRole
from tests.support.fake_party import FakeParty, wait_until
from tests.support.hubs import TEST_ACTOR, HubFactory, RunningHub, connect_party

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.e2e

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")

#: Debian's Chromium (apt-get install chromium); Playwright's own browser download is not used.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Every browser step waits at most this long (ms); the page refreshes its live parts every 5 s.
STEP_MS = 10_000
#: Longest wait for a change to show up in an open page: one refresh period plus the scan cache, with margin.
REFRESH_MS = 15_000


def secrets_of(*parties: FakeParty, extra: tuple[str, ...] = ()) -> list[str]:
    """Every token of these parties in every form the hub might hold it: plain, base64, SHA-256 digest."""
    found: list[str] = []
    for token in (*(t for p in parties for t in (p.token_b, p.hub_token, p.token_a_for_hub)), *extra):
        found += [token, base64.b64encode(token.encode()).decode(), hashlib.sha256(token.encode()).hexdigest()]
    return [s for s in found if s]


async def flushed(hub: RunningHub) -> None:
    runtime = hub.app.runtime
    assert runtime is not None and runtime.tracker is not None
    await runtime.tracker.flush()


async def test_the_page_on_plain_http(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> None:
    cpo = FakeParty([("NL", "CPO", "CPO")], name="ABC Charging")
    emsp = FakeParty([("BE", "EMP", "EMSP")], name="EMP <b>Mobility</b> & co")
    async with cpo.running(), emsp.running():
        await connect_party(store, hub, cpo)
        await connect_party(store, hub, emsp)
        _, token_a = await store.declare([PartyRole.parse("DE:PLN:CPO")], "Planned GmbH", actor=TEST_ACTOR)
        await hub.synced(store)
        for n in range(3):
            headers = emsp.headers_to(CPO) | {"X-Request-ID": f"ok-{n}"}
            answer = await client.get(hub.url("/ocpi/2.2.1/sender/locations?limit=5&secret=s3cr3t"), headers=headers)
            assert answer.json()["status_code"] == 1000
        refused = await client.get(
            hub.url("/ocpi/2.2.1/sender/locations"), headers=emsp.headers_to(("FR", "NOP")) | {"X-Request-ID": "nop-1"}
        )
        assert refused.json()["status_code"] == 4001
        await flushed(hub)

        page = await client.get(hub.admin_url("/"))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        text = page.text
        assert '<th scope="row">DE:PLN</th>' in text and "PLANNED" in text  # declared with the CLI's store write
        assert '<th scope="row">NL:CPO</th>' in text and "CONNECTED" in text
        assert "EMP &lt;b&gt;Mobility&lt;/b&gt; &amp; co" in text and "<b>Mobility</b>" not in text  # escaped
        assert "Scheduler lease" in text and "Routing snapshot" in text
        assert 'rel="icon" href="data:' in text  # no /favicon.ico request, so no 404 in the console
        # No secret anywhere the page or its JSON can show.
        overview = await client.get(hub.admin_url("/api/overview"))
        live = await client.get(hub.admin_url("/live"))
        journey = await client.get(hub.admin_url("/?id=ok-0"))
        trace = await client.get(hub.admin_url("/api/trace"), params={"id": "ok-0"})
        for reply in (page, overview, live, journey, trace):
            assert reply.status_code == 200, reply.text
            for secret in (*secrets_of(cpo, emsp, extra=(token_a,)), "s3cr3t"):
                assert secret not in reply.text, f"a secret on {reply.url}"

        data = overview.json()
        parties = {p["party"]: p for p in data["parties"]}
        assert parties["DE:PLN"]["status"] == "PLANNED" and parties["DE:PLN"]["registered"] is False
        assert parties["NL:CPO"]["status"] == "CONNECTED" and parties["NL:CPO"]["endpoints"] > 0
        # Messages naming the party, plus the hub's calls to its platform (ClientInfo pushes: how many depends on
        # when the scheduler ran, and they all succeed here).
        cpo_row, emsp_row, planned_row = parties["NL:CPO"], parties["BE:EMP"], parties["DE:PLN"]
        assert cpo_row["messages"] >= 3 and cpo_row["errors"] == 0 and cpo_row["error_rate"] == 0
        assert emsp_row["messages"] >= 4 and emsp_row["errors"] == 1
        assert emsp_row["error_rate"] == round(1 / emsp_row["messages"], 4)
        assert (planned_row["messages"], planned_row["errors"], planned_row["error_rate"]) == (0, 0, None)
        assert data["hub"]["registry"] == "reachable"
        assert data["hub"]["snapshot_version"] == await store.version()
        assert [f["request_id"] for f in data["failures"]] == ["nop-1"]
        assert data["failures"][0]["ocpi_status"] == 4001
        assert "nop-1" in text  # the refusal is listed on the page too, with a link to its journey
        assert 'href="?id=nop-1"' in text

        found = trace.json()["records"]
        assert [(r["kind"], r["from"], r["to"], r["request_id"]) for r in found] == [
            ("request", "BE:EMP", "NL:CPO", "ok-0")
        ]
        assert "Journey of ok-0: 1 record," in journey.text
        assert "/ocpi/2.2.1/sender/locations?limit=&amp;secret=" in journey.text  # query keys only

        filtered = (await client.get(hub.admin_url("/api/overview"), params={"party": "planned"})).json()
        assert [p["party"] for p in filtered["parties"]] == ["DE:PLN"]
        hostile = await client.get(hub.admin_url("/"), params={"id": "<script>alert(1)</script>", "party": '"><x>'})
        assert "<script>alert(1)" not in hostile.text and '"><x>' not in hostile.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile.text
        bad = await client.get(hub.admin_url("/api/trace"), params={"id": "\x01"})
        assert bad.status_code == 400

    # The page is the operator's: the public OCPI port does not serve it.
    for path in ("/", "/live", "/api/overview", "/api/trace?id=ok-0"):
        assert (await client.get(hub.url(path))).status_code == 404


async def test_the_admin_token_guards_the_page(hub_factory: HubFactory, client: httpx.AsyncClient) -> None:
    token = "s3cret-admin"
    async with hub_factory(admin_token=token) as running:
        for path in ("/", "/live", "/api/overview", "/api/trace?id=x", "/static/page.js"):
            assert (await client.get(running.admin_url(path))).status_code == 401, path
        # A token in the URL is not accepted (it would end up in history and logs): the header only.
        assert (await client.get(running.admin_url(f"/?token={token}"))).status_code == 401
        wrong = await client.get(running.admin_url("/"), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        allowed = await client.get(running.admin_url("/"), headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200
        assert token not in allowed.text
        # Every URL the page uses is relative: a reverse proxy adding the header serves it under any prefix.
        assert 'src="static/page.js' in allowed.text and 'href="static/page.css' in allowed.text
        assert 'action="."' in allowed.text


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's headless Chromium under Playwright, closed whatever happens; a clear failure when either is missing."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install playwright (never `playwright install`)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: apt-get install -y chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            await browser.close()


async def test_the_page_in_a_browser(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> None:
    cpo = FakeParty([("NL", "CPO", "CPO")], name="ABC Charging")
    emsp = FakeParty([("BE", "EMP", "EMSP")], name="EMP Mobility")
    admin = urlsplit(hub.admin_url("/"))
    async with cpo.running(), emsp.running(), asyncio.timeout(50), chromium() as browser:
        await connect_party(store, hub, cpo)
        await connect_party(store, hub, emsp)
        await hub.synced(store)

        context = await browser.new_context()
        context.set_default_timeout(STEP_MS)
        elsewhere: list[str] = []

        async def loopback_only(route: Any) -> None:
            # Nothing leaves this machine: only the hub's admin listener may be asked for anything.
            if urlsplit(route.request.url).netloc == admin.netloc:
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort()

        await context.route("**/*", loopback_only)
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        await page.goto(hub.admin_url("/"), wait_until="load")
        await page.locator("#parties th", has_text="NL:CPO").wait_for()
        assert await page.title() == "ZZ:HUB · ocpi-hub operator"
        await page.evaluate("window.notReloaded = true")

        # A party declared with the CLI's store write shows up without a reload: the script refreshes the page.
        started = time.monotonic()
        await store.declare([PartyRole.parse("DE:NEW:CPO")], "Newcomer", actor=TEST_ACTOR)
        row = page.locator("#parties tr", has=page.locator("th", has_text="DE:NEW"))
        await row.wait_for(timeout=REFRESH_MS)
        appeared = time.monotonic() - started
        assert "PLANNED" in await row.inner_text()
        assert await page.evaluate("window.notReloaded === true"), "the page was reloaded instead of refreshed"

        # A routed request is found by its id through the page's form, with its trace.
        request_id = "browser-req-42"
        headers = emsp.headers_to(CPO) | {"X-Request-ID": request_id}
        answer = await client.get(hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
        assert answer.json()["status_code"] == 1000
        await flushed(hub)
        await page.get_by_label("Correlation or request id").fill(request_id)
        await page.get_by_role("button", name="Show its journey").click()
        result = page.locator("#search-result")
        await result.locator("caption", has_text=f"Journey of {request_id}").wait_for()
        trace = await result.inner_text()
        assert "request" in trace and "BE:EMP → NL:CPO" in trace and "/ocpi/2.2.1/sender/locations" in trace
        assert "\tok\t" in trace and "200 / " in trace  # HTTP status and outcome (bodies, OCPI status: not read)
        assert page.url.endswith(f"/?id={request_id}")

        # Without JavaScript the same page is all there: the parties, and the search by its GET form.
        plain = await browser.new_context(java_script_enabled=False)
        try:
            plain.set_default_timeout(STEP_MS)
            await plain.route("**/*", loopback_only)
            static = await plain.new_page()
            await static.goto(hub.admin_url("/"))
            assert await static.locator("#parties th", has_text="DE:NEW").count() == 1
            await static.get_by_label("Correlation or request id").fill(request_id)
            await static.get_by_label("Correlation or request id").press("Enter")
            await static.locator("#search-result caption", has_text=f"Journey of {request_id}").wait_for()
        finally:
            await plain.close()

        await context.close()
        assert problems == [], problems
        assert elsewhere == [], elsewhere
        assert appeared < REFRESH_MS / 1000


async def test_the_page_before_the_first_party(hub: RunningHub, client: httpx.AsyncClient) -> None:
    runtime = hub.app.runtime
    assert runtime is not None
    await wait_until(lambda: runtime.leader, 5.0, "the scheduler lease")
    page = await client.get(hub.admin_url("/"))
    assert page.status_code == 200
    assert "No party is declared yet" in page.text
    assert f"this process (pid {os.getpid()})" in page.text
    data = (await client.get(hub.admin_url("/api/overview"))).json()
    assert data["parties"] == [] and data["hub"]["scheduler_lease"] == "this process"


async def test_traffic_counts_one_bounded_scan(
    hub: RunningHub, store: PartyStore, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, _ = await store.declare([PartyRole.parse("DE:AAA:CPO")], "Aaa", actor=TEST_ACTOR)
    await hub.synced(store)
    now = time.time()
    aaa, other = PartyKey("DE", "AAA"), PartyKey("FR", "BBB")
    lines = [
        TraceRecord(now - 400, TraceKind.REQUEST, request_id="too-old", from_party=aaa, to_party=other, status=500),
        TraceRecord(now - 5, TraceKind.REQUEST, request_id="r1", from_party=aaa, to_party=other, status=200),
        TraceRecord(now - 4, TraceKind.REFUSAL, request_id="r2", from_party=other, to_party=aaa, ocpi_status=4003),
        # The hub's own call to the platform names no party: it counts for the platform's parties.
        TraceRecord(now - 3, TraceKind.LIVENESS, platform=record.id, method="GET", outcome="unreachable"),
    ]
    await TraceLog(store.redis, store.keys).write(lines)
    data = (await client.get(hub.admin_url("/api/overview"))).json()
    row = next(p for p in data["parties"] if p["party"] == "DE:AAA")
    assert (row["messages"], row["errors"]) == (3, 2)  # the record older than the window is left out
    assert (data["traffic"]["messages"], data["traffic"]["errors"], data["traffic"]["truncated"]) == (3, 2, False)
    assert [f["kind"] for f in data["failures"]] == ["liveness", "refusal"]  # newest first

    # Past its bound the scan stops and says how much time its counts cover.
    monkeypatch.setattr(page_module, "SCAN_LIMIT", 2)
    monkeypatch.setattr(page_module, "SCAN_TTL", 0.0)
    data = (await client.get(hub.admin_url("/api/overview"))).json()
    assert data["traffic"]["truncated"] is True and data["traffic"]["messages"] == 2
    assert data["traffic"]["covered_since"] > data["traffic"]["since"]
    assert "only the newest 2 records were read" in (await client.get(hub.admin_url("/"))).text


async def test_the_page_when_the_registry_fails(
    hub: RunningHub, store: PartyStore, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.declare([PartyRole.parse("DE:AAA:CPO")], "Aaa", actor=TEST_ACTOR)
    await hub.synced(store)

    async def unreachable(*_args: object, **_kwargs: object) -> None:
        raise RedisConnectionError("connection refused")

    # Every Redis read of the page fails; the routing snapshot is still there, and so is the page.
    monkeypatch.setattr(page_module, "scan_traffic", unreachable)
    monkeypatch.setattr(page_module, "lease_holder", unreachable)
    monkeypatch.setattr(page_module, "last_seen", unreachable)
    monkeypatch.setattr(TraceLog, "journey", unreachable)
    page = await client.get(hub.admin_url("/?id=some-id"))
    assert page.status_code == 200
    assert '<th scope="row">DE:AAA</th>' in page.text
    assert "the registry is unreachable" in page.text
    assert "unknown</span> (the registry did not answer)" in page.text
    data = (await client.get(hub.admin_url("/api/overview"))).json()
    assert data["traffic"] is None and data["traffic_problem"] == "the registry is unreachable"
    assert data["hub"]["scheduler_lease"] in ("unknown", "this process")
    assert (await client.get(hub.admin_url("/api/trace?id=x"))).status_code == 503
