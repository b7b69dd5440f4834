"""Message tracking (issue: the operator's cockpit): every routed request, refusal, broadcast copy and relayed
callback leaves a record in one Redis stream shared by every hub process, and ``ocpi-hub trace ID`` shows the
whole journey; ``ocpi-hub registry traffic`` sums up a party's traffic. Never a token, a body or a query value."""

from __future__ import annotations

import orjson
import pytest

from registry.store import PartyStore
from tests.support.fake_party import FakeParty, token_header, wait_until
from tests.support.hubs import HubFactory, RunningHub, connect_party
from tests.support.processes import hub_env, run_ocpi_hub

pytestmark = pytest.mark.e2e

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")


async def flushed(*hubs: RunningHub) -> None:
    for hub in hubs:
        await flushed_one(hub)


async def flushed_one(hub: RunningHub) -> None:
    """Fan-outs done and the trace records written: a positive signal instead of a wait."""
    runtime = hub.app.runtime
    assert runtime is not None and runtime.tracker is not None
    await wait_until(lambda: not runtime.tasks.running("broadcast:"), 5, "fan-outs")
    await runtime.tracker.flush()


async def test_a_journey_across_two_hub_processes(
    hub: RunningHub, hub_factory: HubFactory, store: PartyStore, redis_url: str
) -> None:
    import httpx

    cpo = FakeParty([("NL", "CPO", "CPO")], name="cpo")
    emsp = FakeParty([("BE", "EMP", "EMSP")], name="emsp")
    async with cpo.running(), emsp.running(), hub_factory() as other, httpx.AsyncClient(timeout=10) as client:
        await connect_party(store, hub, cpo)
        await connect_party(store, hub, emsp)
        await other.synced(store)
        flow = "flow-7f3a"
        command = {"response_url": emsp.base_url + "/ocpi/2.2.1/commands/sender/START_SESSION/1", "location_id": "L1"}
        headers = emsp.headers_to(CPO) | {"X-Correlation-ID": flow, "X-Request-ID": "req-start"}
        started = await client.post(
            hub.url("/ocpi/2.2.1/receiver/commands/START_SESSION?secret=s3cr3t"),
            headers=headers,
            content=orjson.dumps(command),
        )
        assert started.json()["status_code"] == 1000
        relay = cpo.received[-1].json["response_url"]
        # The CPO answers later, through the other hub process, in the same flow.
        callback_headers = {"Authorization": token_header(cpo.hub_token), "X-Correlation-ID": flow}
        result = await client.post(relay.replace(hub.base_url, other.base_url), headers=callback_headers, json={})
        assert result.status_code == 200
        refused = await client.get(hub.url("/ocpi/2.2.1/sender/locations"), headers=emsp.headers_to(("FR", "NOP")))
        assert refused.json()["status_code"] == 4001
        await flushed(hub, other)

        env = hub_env(key_prefix=store.keys.prefix)
        traced = await run_ocpi_hub("trace", "--redis-url", redis_url, "req-start", "--json", env=env)
        assert traced.returncode == 0, str(traced)
        records = traced.json()
        assert [r["kind"] for r in records] == ["request", "relay"]  # found by request id, then its whole flow
        request, callback = records
        assert (request["from"], request["to"], request["module"], request["method"]) == (
            "BE:EMP",
            "NL:CPO",
            "commands",
            "POST",
        )
        assert request["path"] == "/ocpi/2.2.1/receiver/commands/START_SESSION?secret="
        assert request["request_id_out"]
        assert (callback["from"], callback["to"]) == ("NL:CPO", "BE:EMP")
        text = traced.stdout
        for secret in ("s3cr3t", cpo.hub_token, emsp.hub_token, cpo.token_b):
            assert secret not in text

        refusal = next(
            r
            for r in orjson.loads(
                (
                    await run_ocpi_hub("registry", "--redis-url", redis_url, "traffic", "BE:EMP", "--json", env=env)
                ).stdout
            )["recent_errors"]
        )
        assert refusal["kind"] == "refusal"
        assert refusal["ocpi_status"] == 4001


async def test_broadcast_copies_are_traced(hub: RunningHub, store: PartyStore, redis_url: str) -> None:
    import httpx

    cpo = FakeParty([("NL", "CPO", "CPO")], name="cpo")
    emsps = [FakeParty([("BE", f"EM{n}", "EMSP")], name=f"emsp{n}") for n in range(3)]
    async with cpo.running(), emsps[0].running(), emsps[1].running(), emsps[2].running():
        for party in (cpo, *emsps):
            await connect_party(store, hub, party)
        await hub.synced(store)
        body = {"country_code": "NL", "party_id": "CPO", "id": "L1", "last_updated": "2026-01-01T00:00:00Z"}
        headers = cpo.headers_to(("ZZ", "HUB")) | {"X-Correlation-ID": "bc-1"}
        async with httpx.AsyncClient() as client:
            reply = await client.put(
                hub.url("/ocpi/2.2.1/receiver/locations/NL/CPO/L1"), headers=headers, content=orjson.dumps(body)
            )
        assert reply.json()["status_code"] == 1000
        await flushed(hub)
        traced = await run_ocpi_hub(
            "trace", "bc-1", "--json", "--redis-url", redis_url, env=hub_env(key_prefix=store.keys.prefix)
        )
        kinds = sorted(r["kind"] for r in traced.json())
        assert kinds == ["broadcast_copy"] * 3 + ["request"]
        assert sorted(r["to"] for r in traced.json() if r["kind"] == "broadcast_copy") == ["BE:EM0", "BE:EM1", "BE:EM2"]
