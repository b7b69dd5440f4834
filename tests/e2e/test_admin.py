"""The admin listener (issue: operator's cockpit): /metrics apart from the public OCPI port, metrics that work
(no _created series, process and build info, registry and scheduler gauges), an optional bearer token."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.holdings import MAX_PENDING_FACTS
from hub.http.server import REFUSAL_REASONS
from routing.model import PartyKey
from routing.owners import OwnerFact, OwnerKind
from tests.support.fake_party import wait_until
from tests.support.hubs import HubFactory, RunningHub

pytestmark = pytest.mark.e2e


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def test_metrics_are_on_the_admin_listener_only(hub: RunningHub, client: httpx.AsyncClient) -> None:
    public = await client.get(hub.url("/metrics"))
    assert public.status_code == 404  # parties never see the hub's metrics
    admin = await client.get(hub.admin_url("/metrics"))
    assert admin.status_code == 200
    assert admin.headers["content-type"].startswith("text/plain")
    for path in ("/healthz", "/readyz"):
        assert (await client.get(hub.admin_url(path))).status_code == 200


async def test_metrics_that_work(hub: RunningHub, client: httpx.AsyncClient) -> None:
    runtime = hub.app.runtime
    assert runtime is not None
    await wait_until(lambda: runtime.leader, 5.0, "the scheduler lease")
    text = (await client.get(hub.admin_url("/metrics"))).text
    samples = families(text)
    assert not [name for name in samples if name.endswith("_created")]
    assert samples["ocpihub_registry_up"][0][1] == 1
    assert samples["ocpihub_scheduler_leader"][0][1] == 1
    assert samples["ocpihub_registry_last_sync_timestamp_seconds"][0][1] > 0
    labels, value = samples["ocpihub_build_info"][0]
    assert value == 1
    assert set(labels) == {"version", "python_version"}
    assert samples["process_resident_memory_bytes"][0][1] > 0
    assert samples["process_cpu_seconds_total"][0][1] > 0
    # Refusals of the HTTP layer (floods, slow heads, smuggling shapes) are visible, every reason from zero.
    refused = {labels["reason"] for labels, _ in samples["ocpihub_http_refusals_total"]}
    assert refused == set(REFUSAL_REASONS.values())
    outcomes = {labels["outcome"] for labels, _ in samples["ocpihub_requests_total"]}
    # A party's state and a network failure are told apart.
    assert {"receiver_suspended", "receiver_planned", "receiver_offline", "no_endpoint", "unreachable"} <= outcomes


async def test_last_sync_moves_on_a_quiet_registry(hub: RunningHub, client: httpx.AsyncClient) -> None:
    def last_sync(text: str) -> float:
        return families(text)["ocpihub_registry_last_sync_timestamp_seconds"][0][1]

    first = last_sync((await client.get(hub.admin_url("/metrics"))).text)
    runtime = hub.app.runtime
    assert runtime is not None
    # No registry write at all: the snapshot poll alone keeps the freshness signal moving.
    await wait_until(lambda: runtime.holder.synced_at > first + 0.2, 5.0, "a poll of a quiet registry")
    assert last_sync((await client.get(hub.admin_url("/metrics"))).text) > first


async def test_admin_token(hub_factory: HubFactory, client: httpx.AsyncClient) -> None:
    async with hub_factory(admin_token="s3cret-admin") as running:
        refused = await client.get(running.admin_url("/metrics"))
        assert refused.status_code == 401
        wrong = await client.get(running.admin_url("/metrics"), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        allowed = await client.get(running.admin_url("/metrics"), headers={"Authorization": "Bearer s3cret-admin"})
        assert allowed.status_code == 200


async def test_owner_facts_past_the_bound_are_counted_in_metrics(hub: RunningHub, client: httpx.AsyncClient) -> None:
    # The owner index is a routing aid written off the hot path: what cannot wait is dropped, never silently.
    runtime = hub.app.runtime
    assert runtime is not None
    over = 7
    facts = tuple(
        OwnerFact(OwnerKind.TOKEN, f"TOKEN{i}", PartyKey("NL", "EMS")) for i in range(MAX_PENDING_FACTS + over)
    )
    runtime.learner.pending.clear()
    runtime.learner.note(facts)
    samples = families((await client.get(hub.admin_url("/metrics"))).text)
    assert samples["ocpihub_owner_facts_dropped_total"][0][1] == over
