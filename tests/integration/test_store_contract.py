"""The registry store's contract against a real Redis: what every caller relies on.

Token A is single-use under a real race; a holder that lost the scheduler lease cannot move the cursor; ``discard``
leaves no trace; what has a TTL or a bound has it; every write bumps the version once and publishes it, and a write
that changes nothing stores nothing; relay signing keys keep the current and the previous key; and the registry's
bad days — a restart, a LOADING server, a connection lost mid-transaction — delay a write instead of failing it or
half-applying it, while errors that would only fail again are not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError, WatchError

from registry.audit import HUB, Actor, AuditEvent, AuditLog, stream_entries
from registry.codec import EndpointRecord, Handshake, PlatformRecord, RateLimit
from registry.connection import RETRIED_ERRORS, connect, retry_policy
from registry.keys import RegistryKeys
from registry.store import PartyStore, StaleTokenError, UnknownPlatformError
from routing.model import ConnectionStatus, PartyRole, TokenForm
from routing.table import token_digest
from tests.support.processes import poll
from tests.support.redis_server import free_port, redis_binary, wait_for_answer

pytestmark = pytest.mark.integration

ACTOR = Actor.cli("contract", "localhost")


def handshake(token_b: str = "token-b", endpoints: tuple[EndpointRecord, ...] = ()) -> Handshake:
    return Handshake(
        versions_url="https://party.example.com/ocpi/versions",
        version="2.2.1",
        endpoints=endpoints
        or (EndpointRecord("credentials", "SENDER", "https://party.example.com/ocpi/2.2.1/credentials"),),
        token_b=token_b,
        token_form=TokenForm.BASE64,
        business_details={"name": "Party"},
    )


async def declared(store: PartyStore, party: str = "NL:ABC:CPO") -> tuple[PlatformRecord, str]:
    return await store.declare([PartyRole.parse(party)], "p", actor=ACTOR)


async def registered(store: PartyStore, party: str = "NL:ABC:CPO") -> tuple[PlatformRecord, str]:
    """A registered platform and its token C."""
    record, token_a = await declared(store, party)
    token_c = f"token-c-{record.id}"
    registered = await store.apply_credentials(
        record.id,
        token_digest(token_a.encode()),
        registered_before=False,
        handshake=handshake(),
        token_c=token_c,
        actor=ACTOR,
    )
    return registered, token_c


async def registry_keys(store: PartyStore) -> dict[str, Any]:
    """Every registry structure a platform lives in (not the version, not the audit trail)."""
    k = store.keys
    return {
        "platforms": await store.redis.hgetall(k.platforms()),
        "parties": await store.redis.hgetall(k.parties()),
        "tokens": await store.redis.hgetall(k.tokens()),
        "clientinfo": await store.redis.hgetall(k.clientinfo()),
        "events": await store.redis.xlen(k.events()),
        "last_seen": await store.redis.hgetall(k.last_seen()),
    }


# -- token A is single-use ----------------------------------------------------------------------------------------


async def test_two_concurrent_registrations_with_one_token_a_exactly_one_wins(
    redis_url: str, keys: RegistryKeys
) -> None:
    # Two clients, two connections: both read the grant before either writes, as two hub workers would.
    async with connect(redis_url) as first, connect(redis_url) as second:
        a, b = PartyStore(first, keys), PartyStore(second, keys)
        for round_ in range(10):
            record, token_a = await declared(a, f"NL:R{round_:02d}:CPO")
            used = token_digest(token_a.encode())

            async def register(
                store: PartyStore, token_c: str, rid: str = record.id, used: bytes = used
            ) -> PlatformRecord:
                return await store.apply_credentials(
                    rid, used, registered_before=False, handshake=handshake(token_c), token_c=token_c, actor=ACTOR
                )

            one, two = f"c-one-{round_}", f"c-two-{round_}"
            results = await asyncio.gather(register(a, one), register(b, two), return_exceptions=True)
            winners = [r for r in results if isinstance(r, PlatformRecord)]
            losers = [r for r in results if isinstance(r, StaleTokenError)]
            assert (len(winners), len(losers)) == (1, 1), results
            # Only the winner's token C is accepted, token A no more.
            grants = await a.redis.hgetall(keys.tokens())
            winner_c = winners[0].token_b  # each caller's handshake carried its token C as token B
            assert grants.get(token_digest(winner_c.encode()).hex().encode()) == f"{record.id}|C".encode()
            loser_c = two if winner_c == one else one
            assert token_digest(loser_c.encode()).hex().encode() not in grants
            assert used.hex().encode() not in grants
            # Exactly one registration in the audit trail.
            events = stream_entries(await a.redis.xrange(keys.audit()))
            registrations = [
                e for _, e in events if b'"action":"register"' in e[b"e"] and record.id.encode() in e[b"e"]
            ]
            assert len(registrations) == 1


async def test_token_a_is_refused_once_used(store: PartyStore) -> None:
    record, token_a = await declared(store)
    used = token_digest(token_a.encode())
    await store.apply_credentials(
        record.id, used, registered_before=False, handshake=handshake(), token_c="c1", actor=ACTOR
    )
    with pytest.raises(StaleTokenError):
        await store.apply_credentials(
            record.id, used, registered_before=False, handshake=handshake(), token_c="c2", actor=ACTOR
        )


# -- scheduler lease: fencing -----------------------------------------------------------------------------------


async def test_a_holder_that_lost_the_lease_cannot_advance_the_cursor(store: PartyStore) -> None:
    assert await store.hold_lease("old", 100)
    assert await store.advance_cursor("old", "1-0", 100)
    assert not await store.hold_lease("new", 1000)  # held by "old"

    async def expired() -> bool:
        return await store.redis.pttl(store.keys.lease()) == -2

    await poll(expired, 2.0, "the lease to expire", interval=0.01)
    assert await store.hold_lease("new", 10_000)
    # The old holder wakes up and tries to record its progress: fenced off, the cursor stays where it was.
    assert not await store.advance_cursor("old", "5-0", 10_000)
    assert await store.events_cursor() == "1-0"
    assert not await store.hold_lease("old", 10_000)
    assert await store.advance_cursor("new", "2-0", 10_000)
    assert await store.events_cursor() == "2-0"
    # Releasing is also fenced: the old holder cannot release the new holder's lease.
    await store.release_lease("old")
    assert await store.redis.get(store.keys.lease()) == b"new"


async def test_the_lease_has_a_ttl_and_each_cursor_step_renews_it(store: PartyStore) -> None:
    assert await store.hold_lease("me", 5_000)
    assert 0 < await store.redis.pttl(store.keys.lease()) <= 5_000
    assert await store.advance_cursor("me", "1-0", 60_000)
    assert 5_000 < await store.redis.pttl(store.keys.lease()) <= 60_000
    await store.release_lease("me")
    assert await store.redis.exists(store.keys.lease()) == 0


# -- discard ------------------------------------------------------------------------------------------------------


async def test_discard_leaves_no_trace_in_the_registry(store: PartyStore) -> None:
    await declared(store, "DE:KEE:CPO")  # another platform, untouched
    before = await registry_keys(store)
    # As the hub-initiated handshake declares: unannounced, so no ClientInfo goes out for it.
    roles = [PartyRole.parse("NL:GON:CPO"), PartyRole.parse("NL:GON:EMSP")]
    record, _ = await store.declare(roles, "g", actor=ACTOR, announce=False)
    await store.touch({record.id: time.time()})
    assert await registry_keys(store) != before
    await store.discard(record.id, actor=ACTOR)
    assert await registry_keys(store) == before
    # The trail keeps both steps: a declaration that was undone is still history.
    actions = [e.action for e in await _history(store) if e.platform == record.id]
    assert actions == ["declare", "discard"]
    # Discarding what is gone is a no-op, not an error.
    version = await store.version()
    await store.discard(record.id, actor=ACTOR)
    assert await store.version() == version


# -- bounds: TTLs and trimmed streams -----------------------------------------------------------------------------


async def test_audit_events_older_than_the_retention_are_trimmed_on_write(redis: Redis, keys: RegistryKeys) -> None:
    store = PartyStore(redis, keys, retention_seconds=60)
    # 250 events of long ago (explicit old stream ids), then one write today.
    for i in range(250):
        await redis.xadd(keys.audit(), {"e": b"{}"}, id=f"{1_000 + i}-0")
    await declared(store)
    # MINID ~ drops whole stream nodes (100 entries each) older than the retention: the two full old nodes went.
    remaining = stream_entries(await redis.xrange(keys.audit()))
    assert len(remaining) <= 51
    assert remaining[-1][1][b"e"] != b"{}"


# -- every write: one version and one notice; no write, no version ------------------------------------------------


@dataclass
class Notices:
    """Change notices heard on the registry's channel."""

    received: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, notice: str) -> None:
        self.received.append(notice)
        self.arrived.set()

    async def wait_for(self, count: int) -> list[str]:
        """The notices once ``count`` have come (bounded: 2 s)."""
        deadline = time.monotonic() + 2
        while len(self.received) < count:
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return list(self.received)


@asynccontextmanager
async def listening(redis_url: str, keys: RegistryKeys) -> AsyncIterator[Notices]:
    notices = Notices()
    async with connect(redis_url) as client:
        pubsub = client.pubsub()
        await pubsub.subscribe(keys.changes())

        async def pump() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    notices.add(message["data"].decode())

        task = asyncio.ensure_future(pump())
        try:
            yield notices
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py


WriteStep = tuple[str, Callable[[PartyStore, str], Awaitable[object]]]

WRITES: list[WriteStep] = [
    ("suspend", lambda s, pid: s.suspend(pid, actor=ACTOR)),
    ("resume", lambda s, pid: s.resume(pid, actor=ACTOR)),
    ("liveness", lambda s, pid: s.set_liveness(pid, False, actor=HUB)),
    ("liveness", lambda s, pid: s.set_liveness(pid, True, actor=HUB)),
    (
        "endpoint",
        lambda s, pid: s.set_endpoint_override(
            pid, EndpointRecord("tokens", "SENDER", "https://o.example.com/tokens"), actor=ACTOR
        ),
    ),
    ("endpoint", lambda s, pid: s.remove_endpoint_override(pid, "tokens", "SENDER", actor=ACTOR)),
    ("limit", lambda s, pid: s.set_rate_limit(pid, RateLimit(5.0, 10), actor=ACTOR)),
    ("limit", lambda s, pid: s.set_rate_limit(pid, None, actor=ACTOR)),
    (
        "update",
        lambda s, pid: s.apply_credentials(
            pid,
            token_digest(f"token-c-{pid}".encode()),
            registered_before=True,
            handshake=handshake("b2"),
            token_c=f"token-c-{pid}",
            actor=ACTOR,
        ),
    ),
    ("unregister", lambda s, pid: s.unregister(pid, actor=ACTOR)),
    ("remove", lambda s, pid: s.remove(pid, actor=ACTOR)),
]


async def test_every_write_bumps_the_version_once_publishes_it_and_is_audited(
    redis_url: str, store: PartyStore
) -> None:
    async with listening(redis_url, store.keys) as notices:
        record, _ = await registered(store)
        pid = record.id
        heard = await notices.wait_for(2)  # declare, register
        assert heard == [f"{pid}|1", f"{pid}|2"]
        assert [e.action for e in await _history(store)] == ["declare", "register"]
        for number, (action, write) in enumerate(WRITES, start=3):
            await write(store, pid)
            assert await store.version() == number, action
            assert (await notices.wait_for(number))[-1] == f"{pid}|{number}", action
            assert (await _history(store))[-1].action == action
        assert len(await _history(store)) == len(WRITES) + 2
        await store.rotate_relay_key(actor=ACTOR)
        assert (await notices.wait_for(len(WRITES) + 3))[-1] == f"@relay-keys|{len(WRITES) + 3}"


async def test_a_write_that_changes_nothing_stores_nothing(store: PartyStore) -> None:
    record, _ = await registered(store)
    await store.suspend(record.id, actor=ACTOR)
    version, trail = await store.version(), len(await _history(store))
    await store.suspend(record.id, actor=ACTOR)  # already suspended
    await store.set_liveness(record.id, True, actor=HUB)  # the operator's status is not the liveness check's
    await store.set_rate_limit(record.id, None, actor=ACTOR)  # had none
    await store.ensure_relay_key()
    await store.ensure_relay_key()  # the second finds the first
    assert await store.version() == version + 1  # only the first key was a change
    assert len(await _history(store)) == trail + 1


async def test_liveness_of_a_connected_party_that_stays_alive_costs_no_version(store: PartyStore) -> None:
    record, _ = await registered(store)
    version = await store.version()
    for _ in range(3):
        assert (await store.set_liveness(record.id, True, actor=HUB)) is not None
    assert await store.version() == version
    assert await store.set_liveness("no-such-platform", False, actor=HUB) is None


async def test_writes_to_a_platform_that_is_gone_change_nothing(store: PartyStore) -> None:
    record, _ = await registered(store)
    await store.remove(record.id, actor=ACTOR)
    before = await registry_keys(store), await store.version()
    for action, write in WRITES:
        try:
            result = await write(store, record.id)
        except (UnknownPlatformError, StaleTokenError):
            continue
        assert (action, result) == ("liveness", None)  # the liveness check's answer for a platform gone meanwhile
    assert (await registry_keys(store), await store.version()) == before


# -- the operator's endpoints and limits survive the party's credentials PUT ----------------------------------------


async def test_credentials_put_replaces_endpoints_and_keeps_overrides_and_rate_limit(store: PartyStore) -> None:
    record, token_c = await registered(store)
    override = EndpointRecord("tokens", "SENDER", "https://operator.example.com/tokens")
    await store.set_endpoint_override(record.id, override, actor=ACTOR)
    await store.set_rate_limit(record.id, RateLimit(3.0, 6), actor=ACTOR)
    published = (EndpointRecord("locations", "SENDER", "https://party.example.com/new/locations"),)
    updated = await store.apply_credentials(
        record.id,
        token_digest(token_c.encode()),
        registered_before=True,
        handshake=handshake("b2", published),
        token_c="c-next",
        actor=Actor.of_platform(record.id, [r.party for r in record.roles]),
    )
    assert updated.endpoints == published
    assert updated.endpoint_overrides == (override,)
    assert updated.rate_limit == RateLimit(3.0, 6)
    assert await store.get(record.id) == updated


async def test_an_override_replaces_the_earlier_one_of_its_module_and_role(store: PartyStore) -> None:
    record, _ = await registered(store)
    first = EndpointRecord("tokens", "SENDER", "https://a.example.com/t")
    other = EndpointRecord("tokens", "RECEIVER", "https://a.example.com/r")
    second = replace(first, url="https://b.example.com/t")
    for endpoint in (first, other, second):
        await store.set_endpoint_override(record.id, endpoint, actor=ACTOR)
    assert (await store.get(record.id) or record).endpoint_overrides == (other, second)


# -- relay signing keys -------------------------------------------------------------------------------------------


async def test_relay_keys_ensure_then_rotate_keeps_the_current_and_the_previous(store: PartyStore) -> None:
    assert (await store.relay_keys()).current == 0
    await store.ensure_relay_key()
    first = await store.relay_keys()
    assert first.current == 1 and set(first.keys) == {1}
    await store.ensure_relay_key()
    assert await store.relay_keys() == first  # ensure never replaces a key
    assert await store.rotate_relay_key(actor=ACTOR) == 2
    second = await store.relay_keys()
    assert second.current == 2 and set(second.keys) == {1, 2}
    assert second.keys[1] == first.keys[1]  # the previous key is kept as it was
    assert await store.rotate_relay_key(actor=ACTOR) == 3
    third = await store.relay_keys()
    assert third.current == 3 and set(third.keys) == {2, 3}  # the one before the previous is dropped
    assert len({third.keys[2], third.keys[3]}) == 2
    # Ids wrap after 255.
    await store.redis.hset(store.keys.relay_keys(), "current", "255")
    await store.redis.hset(store.keys.relay_keys(), "k255", "00" * 32)
    assert await store.rotate_relay_key(actor=ACTOR) == 1
    wrapped = await store.relay_keys()
    assert wrapped.current == 1 and set(wrapped.keys) == {255, 1}
    # The trail has the ids, never a key.
    raw = b"".join(e[b"e"] for _, e in stream_entries(await store.redis.xrange(store.keys.audit())))
    for secret in (*first.keys.values(), *third.keys.values(), *wrapped.keys.values()):
        assert secret.hex().encode() not in raw
    changes = [(e.changes[0].before, e.changes[0].after) for e in await _history(store) if e.action == "relay-key"]
    assert changes == [(None, 1), (1, 2), (2, 3), (255, 1)]


async def test_rotations_from_two_processes_at_once_both_apply(redis_url: str, keys: RegistryKeys) -> None:
    async with connect(redis_url) as first, connect(redis_url) as second:
        a, b = PartyStore(first, keys), PartyStore(second, keys)
        await a.ensure_relay_key()
        ids = await asyncio.gather(a.rotate_relay_key(actor=ACTOR), b.rotate_relay_key(actor=ACTOR))
        assert sorted(ids) == [2, 3]
        final = await a.relay_keys()
        assert final.current == 3 and set(final.keys) == {2, 3}


# -- the registry's bad days --------------------------------------------------------------------------------------


def test_retries_cover_connection_errors_only() -> None:
    policy = retry_policy()
    assert policy.get_retries() == 4  # 5 tries
    for error in RETRIED_ERRORS:
        assert policy._supported_errors and issubclass(error, policy._supported_errors)
    # A WatchError is the transaction's to retry from its reads; a script or command error would only fail again.
    assert not issubclass(WatchError, RETRIED_ERRORS)
    assert not issubclass(ResponseError, RETRIED_ERRORS)


class RedisServer:
    """A redis-server on a fixed loopback port that a test stops and starts again, keeping its data (AOF)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        assert self.process is not None
        wait_for_answer(self.process, self.port, b"PING\r\n", b"+PONG", "redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def restartable_redis() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="ocpi-hub-restart-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        server.wait_ready()
        try:
            yield server
        finally:
            server.stop()


async def test_a_registration_right_after_a_redis_restart_succeeds() -> None:
    keys = RegistryKeys("restart:")
    with restartable_redis() as server:
        async with connect(server.url) as client:
            store = PartyStore(client, keys)
            record, token_a = await declared(store)
            server.stop()
            # Redis comes back 0.3 s later; the registration is already under way (its connections are dead).
            asyncio.get_running_loop().call_later(0.3, server.start)
            started = time.monotonic()
            stored = await store.apply_credentials(
                record.id,
                token_digest(token_a.encode()),
                registered_before=False,
                handshake=handshake(),
                token_c="c-after-restart",
                actor=ACTOR,
            )
            assert time.monotonic() - started < 2.0
            assert stored.registered
            assert (await store.get(record.id)) == stored
            assert [e.action for e in await _history(store)] == ["declare", "register"]


async def test_a_registry_that_stays_down_fails_within_two_seconds() -> None:
    keys = RegistryKeys("down:")
    async with connect(f"redis://127.0.0.1:{free_port()}/0") as client:
        started = time.monotonic()
        with pytest.raises(RETRIED_ERRORS):
            await PartyStore(client, keys).suspend("x", actor=ACTOR)
        assert 1.0 < time.monotonic() - started < 2.5  # 5 tries, 1.5 s of backoff between them


# A loopback proxy in front of Redis that sees each command and can answer it with a fault instead.

Fault = Literal["loading", "error", "cut"]


@dataclass
class RedisProxy:
    """Forwards RESP commands to Redis; ``faults[name]`` lists the faults for the next commands of that name."""

    commands: list[bytes] = field(default_factory=list)
    #: Each command as sent (RESP bytes), in order.
    raw: list[bytes] = field(default_factory=list)
    faults: dict[bytes, list[Fault]] = field(default_factory=dict)
    #: Run just before a fault strikes: what another process does at that moment.
    meanwhile: Callable[[], Awaitable[object]] | None = None
    url: str = ""

    def fault(self, command: bytes) -> Fault | None:
        pending = self.faults.get(command)
        return pending.pop(0) if pending else None


def _take_command(buffer: bytearray) -> tuple[bytes, bytes] | None:
    """The first complete command in ``buffer`` (name upper-cased, and its bytes), removed from it."""
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None
    head = buffer.index(b"\r\n")
    position = head + 2
    name = b""
    for index in range(int(buffer[1:head])):
        line = buffer.find(b"\r\n", position)
        if line < 0:
            return None
        length = int(buffer[position + 1 : line])
        if line + 2 + length + 2 > len(buffer):
            return None
        if index == 0:
            name = bytes(buffer[line + 2 : line + 2 + length]).upper()
        position = line + 2 + length + 2
    raw = bytes(buffer[:position])
    del buffer[:position]
    return name, raw


@asynccontextmanager
async def redis_proxy(redis_url: str) -> AsyncIterator[RedisProxy]:
    target = urlsplit(redis_url)
    proxy = RedisProxy()
    tasks: set[asyncio.Future[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def upstream(client: asyncio.StreamReader, reply: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        while data := await client.read(65536):
            buffer += data
            while (taken := _take_command(buffer)) is not None:
                name, raw = taken
                proxy.commands.append(name)
                proxy.raw.append(raw)
                fault = proxy.fault(name)
                if fault is not None and proxy.meanwhile is not None:
                    await proxy.meanwhile()
                if fault == "cut":  # the connection dies before this command reaches Redis
                    reply.close()
                    server.close()
                    return
                if fault == "loading":
                    reply.write(b"-LOADING Redis is loading the dataset in memory\r\n")
                elif fault == "error":
                    reply.write(b"-ERR injected by the test\r\n")
                else:
                    server.write(raw)
                await server.drain()
        server.close()

    async def downstream(server: asyncio.StreamReader, reply: asyncio.StreamWriter) -> None:
        while data := await server.read(65536):
            reply.write(data)
            await reply.drain()
        reply.close()

    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target.hostname, target.port)
        writers.extend((client_writer, server_writer))
        for job in (upstream(client_reader, client_writer, server_writer), downstream(server_reader, client_writer)):
            task = asyncio.ensure_future(job)
            tasks.add(task)

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    proxy.url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/{target.path.lstrip('/') or 0}"
    try:
        yield proxy
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        await server.wait_closed()


async def test_a_loading_redis_is_waited_for(redis_url: str, store: PartyStore) -> None:
    await declared(store)
    async with redis_proxy(redis_url) as proxy, connect(proxy.url) as client:
        proxied = PartyStore(client, store.keys)
        await proxied.ping()
        proxy.faults[b"HGETALL"] = ["loading", "loading"]
        proxy.commands.clear()
        records = await proxied.platforms()
        assert [r.name for r in records] == ["p"]
        assert proxy.commands.count(b"HGETALL") == 3


async def test_a_connection_lost_mid_transaction_reruns_it_from_its_reads(redis_url: str, store: PartyStore) -> None:
    record, _ = await registered(store)
    version = await store.version()
    async with redis_proxy(redis_url) as proxy, connect(proxy.url) as client:
        proxied = PartyStore(client, store.keys)
        await proxied.ping()
        proxy.commands.clear()
        proxy.faults[b"EXEC"] = ["cut"]  # MULTI and the writes reached Redis, EXEC never did
        suspended = await proxied.suspend(record.id, actor=ACTOR)
        # The transaction ran twice from WATCH and its read; it applied once.
        assert proxy.commands.count(b"WATCH") == 2
        assert proxy.commands.count(b"HGET") == 2
        assert proxy.commands.count(b"EXEC") == 2
    assert suspended.status is ConnectionStatus.SUSPENDED
    assert await store.version() == version + 1
    assert [e.action for e in await _history(store)][-1:] == ["suspend"]
    assert len([e for e in await _history(store) if e.action == "suspend"]) == 1


async def test_a_connection_lost_after_a_watched_read_reruns_the_read(redis_url: str, store: PartyStore) -> None:
    record, _ = await registered(store)
    async with redis_proxy(redis_url) as proxy, connect(proxy.url) as client:
        proxied = PartyStore(client, store.keys)
        await proxied.ping()
        # After the WATCHed read and before the write, another process changes the platform; then the
        # connection dies. Re-sending the queued write would store the stale record read before the change.
        proxy.faults[b"MULTI"] = ["cut"]
        proxy.meanwhile = lambda: store.set_rate_limit(record.id, RateLimit(1.0, 1), actor=ACTOR)
        proxy.commands.clear()
        await proxied.suspend(record.id, actor=ACTOR)
        assert proxy.commands.count(b"HGET") == 2
    final = await store.get(record.id)
    assert final is not None
    # The re-run read the other process's change: nothing it wrote was lost.
    assert final.rate_limit == RateLimit(1.0, 1)
    assert final.status is ConnectionStatus.SUSPENDED


async def test_command_errors_are_not_retried(redis_url: str, store: PartyStore) -> None:
    async with redis_proxy(redis_url) as proxy, connect(proxy.url) as client:
        proxied = PartyStore(client, store.keys)
        await proxied.ping()
        proxy.faults[b"EVAL"] = ["error"]
        proxy.commands.clear()
        with pytest.raises(ResponseError, match="injected"):
            await proxied.hold_lease("me", 1000)
        assert proxy.commands.count(b"EVAL") == 1


async def _history(store: PartyStore) -> list[AuditEvent]:
    return await AuditLog(store.redis, store.keys).history()
