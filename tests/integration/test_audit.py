"""The audit trail against a real Redis and a real hub: every registry change is one event, stored in the same
MULTI/EXEC as the change and logged once it applied, naming who made it; never a secret."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from hub.logs import JsonFormatter
from registry.audit import HUB, Actor, AuditEvent, AuditLog, stream_entries
from registry.codec import EndpointRecord, RateLimit
from registry.connection import connect
from registry.store import PartyStore, PartyTakenError
from routing.model import PartyKey, PartyRole
from routing.paths import CREDENTIALS_PATH
from routing.table import token_digest
from tests.integration.test_store_contract import redis_proxy, registered
from tests.support.fake_party import FakeParty, token_header
from tests.support.hubs import TEST_ACTOR, RunningHub
from tests.support.processes import hub_env, run_ocpi_hub
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration


async def history(store: PartyStore, party: PartyKey | None = None) -> list[AuditEvent]:
    return await AuditLog(store.redis, store.keys).history(party)


async def raw_trail(store: PartyStore) -> bytes:
    return b"\n".join(f[b"e"] for _, f in stream_entries(await store.redis.xrange(store.keys.audit())))


async def test_a_partys_own_credentials_calls_are_audited_as_the_platform_and_never_show_a_token(
    hub: RunningHub, store: PartyStore, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ocpihub.audit")
    async with FakeParty([("NL", "ABC", "CPO")], name="cpo").running() as cpo:
        record, token_a = await store.declare([PartyRole.parse("NL:ABC:CPO")], "cpo", actor=TEST_ACTOR)
        await hub.synced(store)
        assert (await cpo.register(hub.versions_url, token_a)).status_code == 200
        token_c1 = cpo.hub_token
        assert (await cpo.register(hub.versions_url, token_c1, method="PUT")).status_code == 200
        token_c2 = cpo.hub_token
        deleted = await client.delete(hub.url(CREDENTIALS_PATH), headers={"Authorization": token_header(token_c2)})
        assert deleted.status_code == 200, deleted.text
    events = await history(store, PartyKey("NL", "ABC"))
    assert [e.action for e in events] == ["declare", "register", "update", "unregister"]
    assert events[0].actor == TEST_ACTOR
    platform = Actor.of_platform(record.id, [PartyKey("NL", "ABC")])
    assert [e.actor for e in events[1:]] == [platform] * 3
    assert {c.field: c.after for c in events[1].changes}["status"] == "CONNECTED"
    assert {c.field: (c.before, c.after) for c in events[3].changes}["status"] == ("CONNECTED", "SUSPENDED")
    # No token, digest or token B anywhere: not in the stream, not in the log lines.
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records if r.name == "ocpihub.audit")
    stored = await raw_trail(store)
    secrets = [token_a, token_c1, token_c2, cpo.token_b]
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret not in logged
    for secret in secrets:
        assert token_digest(secret.encode()).hex().encode() not in stored
    assert b"token_b" not in stored and b"accept_digests" not in stored


async def test_the_event_is_written_in_the_changes_own_transaction(redis_url: str, store: PartyStore) -> None:
    record, _ = await registered(store)
    async with redis_proxy(redis_url) as proxy, connect(proxy.url) as client:
        proxied = PartyStore(client, store.keys)
        await proxied.ping()
        proxy.commands.clear()
        proxy.raw.clear()
        await proxied.suspend(record.id, actor=TEST_ACTOR)
    multi, exec_ = proxy.commands.index(b"MULTI"), proxy.commands.index(b"EXEC")
    inside = proxy.raw[multi + 1 : exec_]
    audit_key = store.keys.audit().encode()
    platforms_key = store.keys.platforms().encode()
    assert any(audit_key in raw and raw.startswith(b"*") and b"XADD" in raw for raw in inside), proxy.commands
    assert any(platforms_key in raw and b"HSET" in raw for raw in inside), proxy.commands
    assert not any(audit_key in raw for raw in proxy.raw[exec_ + 1 :])


async def test_a_change_that_does_not_apply_leaves_no_event_and_no_log_line(
    store: PartyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ocpihub.audit")
    await store.declare([PartyRole.parse("NL:ABC:CPO")], "first", actor=TEST_ACTOR)
    caplog.clear()
    with pytest.raises(PartyTakenError):
        await store.declare([PartyRole.parse("NL:ABC:EMSP")], "second", actor=TEST_ACTOR)
    assert len(await history(store)) == 1
    assert [r for r in caplog.records if r.name == "ocpihub.audit"] == []


async def test_a_retried_transaction_is_logged_once(
    redis_url: str, store: PartyStore, caplog: pytest.LogCaptureFixture
) -> None:
    record, _ = await registered(store)
    caplog.set_level(logging.INFO, logger="ocpihub.audit")
    async with redis_proxy(redis_url) as proxy, connect(proxy.url) as client:
        proxied = PartyStore(client, store.keys)
        await proxied.ping()
        proxy.faults[b"EXEC"] = ["cut"]
        caplog.clear()
        await proxied.suspend(record.id, actor=TEST_ACTOR)
    lines = [r for r in caplog.records if r.name == "ocpihub.audit"]
    assert len(lines) == 1
    assert [e.action for e in await history(store)][-1] == "suspend"


async def test_every_change_is_one_json_log_line_with_actor_action_and_changes(
    store: PartyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ocpihub.audit")
    record, _ = await registered(store)
    caplog.clear()
    await store.set_endpoint_override(
        record.id, EndpointRecord("tokens", "SENDER", "https://o.example.com/t"), actor=TEST_ACTOR
    )
    await store.set_rate_limit(record.id, RateLimit(4.0, 8), actor=TEST_ACTOR)
    await store.set_liveness(record.id, False, actor=HUB)
    await store.set_liveness(record.id, False, actor=HUB)  # no change: no event, no line
    await store.rotate_relay_key(actor=TEST_ACTOR)
    lines = [orjson.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "ocpihub.audit"]
    assert [line["action"] for line in lines] == ["endpoint", "limit", "liveness", "relay-key"]
    assert all(line["event"] == "audit" and line["message"] == "registry change" for line in lines)
    assert lines[0]["actor"] == {"kind": "cli", "user": "test", "host": "localhost"}
    assert lines[2]["actor"] == {"kind": "hub"}
    assert lines[2]["changes"] == [{"field": "status", "before": "CONNECTED", "after": "OFFLINE"}]
    assert lines[1]["parties"] == ["NL:ABC:CPO"] and lines[1]["platform"] == record.id
    stored = await history(store)
    assert [e.action for e in stored[-4:]] == ["endpoint", "limit", "liveness", "relay-key"]


async def test_history_filters_by_party_and_time_and_lists_newest_last(store: PartyStore) -> None:
    first, _ = await store.declare([PartyRole.parse("NL:ABC:CPO")], "a", actor=TEST_ACTOR)
    second, _ = await store.declare([PartyRole.parse("DE:XYZ:EMSP")], "b", actor=TEST_ACTOR)
    await store.suspend(first.id, actor=TEST_ACTOR)
    every = await history(store)
    assert [(e.platform, e.action) for e in every] == [
        (first.id, "declare"),
        (second.id, "declare"),
        (first.id, "suspend"),
    ]
    assert [e.action for e in await history(store, PartyKey("NL", "ABC"))] == ["declare", "suspend"]
    assert [e.action for e in await history(store, PartyKey("DE", "XYZ"))] == ["declare"]
    since = int(every[-1].id.split("-")[0])
    log = AuditLog(store.redis, store.keys)
    # Entries of the same millisecond as the last one are "since" it too.
    expected = [e.id for e in every if int(e.id.split("-")[0]) >= since]
    assert [e.id for e in await log.history(None, since)] == expected
    assert expected[-1] == every[-1].id
    assert [e.action for e in await log.history(None, None, limit=2)] == ["declare", "suspend"]


async def test_history_reads_past_one_batch(store: PartyStore) -> None:
    record, _ = await store.declare([PartyRole.parse("NL:ABC:CPO")], "a", actor=TEST_ACTOR)
    for i in range(1_100):
        await store.set_rate_limit(record.id, RateLimit(1.0 + i, 1), actor=TEST_ACTOR)
    events = await history(store, PartyKey("NL", "ABC"))
    assert len(events) == 1_101
    assert events[0].action == "declare" and events[-1].changes[0].after == {"rps": 1100.0, "burst": 1}
    assert len({e.id for e in events}) == 1_101


async def test_a_hub_initiated_connect_that_fails_is_audited_as_declared_then_discarded(
    hub: RunningHub, store: PartyStore, redis_url: str
) -> None:
    before = await store.platforms()
    closed = f"http://127.0.0.1:{free_port()}/ocpi/versions"
    args = ("--versions-url", closed, "--token-a", "their-token-a", "--party", "DE:GON:CPO")
    env = hub_env(key_prefix=store.keys.prefix)
    result = await run_ocpi_hub("registry", "--redis-url", redis_url, "connect", *args, env=env)
    assert result.returncode != 0 and len(result.stderr_lines) == 1, str(result)
    assert await store.platforms() == before
    events = await history(store, PartyKey("DE", "GON"))
    assert [e.action for e in events] == ["declare", "discard"]
    assert {e.actor.kind for e in events} == {"cli"}
    assert b"their-token-a" not in await raw_trail(store)
