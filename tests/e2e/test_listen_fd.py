"""``ocpi-hub serve --listen-fd N``: a socket the caller bound and listens on (systemd socket activation, a
supervisor, a test that bound port 0) is served as it is, by either server, and "hub ready" comes at once with its
real port."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from registry.keys import RegistryKeys
from tests.support.processes import hub_env, ocpi_hub_executable, poll, stop_process

pytestmark = pytest.mark.e2e


def log_line(log: Path, message: str) -> dict[str, object] | None:
    for raw in log.read_bytes().splitlines():
        if raw.startswith(b"{") and f'"{message}"'.encode() in raw:
            line: dict[str, object] = json.loads(raw)
            return line
    return None


def ready_line(log: Path) -> dict[str, object] | None:
    return log_line(log, "hub ready")


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_an_inherited_socket_is_served_and_ready_is_logged_with_its_port(
    server: str, tmp_path: Path, redis_url: str, keys: RegistryKeys, client: httpx.AsyncClient
) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))  # port 0: the kernel's choice, no race with another test
    listener.listen(64)
    port = listener.getsockname()[1]
    env = hub_env(key_prefix=keys.prefix, redis_url=redis_url, server=server)
    log = tmp_path / "hub.log"
    started = time.monotonic()
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            ocpi_hub_executable(),
            "serve",
            "--listen-fd",
            str(listener.fileno()),
            "--port",
            "1",  # what the settings say is not what the inherited socket is: the line must report the socket's
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
    listener.close()  # the hub holds its own copy now
    try:

        async def ready() -> bool:
            return ready_line(log) is not None

        # Well under the 30 s a probe of host:port would wait before giving up (hub/app.py READY_WAIT).
        await poll(ready, 15.0, "the hub ready line", since=started)
        line = ready_line(log)
        assert line is not None and line["port"] == port, line
        # The public URL (versions, the registry's record of it) names the port served, not the settings' one.
        started_line = log_line(log, "hub started")
        assert started_line is not None and started_line["public_url"] == f"http://127.0.0.1:{port}", started_line
        reply = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert reply.status_code == 200
    finally:
        await stop_process(process)


async def test_port_0_serves_a_free_port_and_says_which(
    tmp_path: Path, redis_url: str, keys: RegistryKeys, client: httpx.AsyncClient
) -> None:
    env = hub_env(key_prefix=keys.prefix, redis_url=redis_url)
    log = tmp_path / "hub.log"
    started = time.monotonic()
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            ocpi_hub_executable(),
            *("serve", "--port", "0"),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:

        async def ready() -> bool:
            return ready_line(log) is not None

        await poll(ready, 15.0, "the hub ready line", since=started)
        line = ready_line(log)
        assert line is not None
        port = line["port"]
        assert isinstance(port, int) and port > 0, line
        started_line = log_line(log, "hub started")
        assert started_line is not None and started_line["public_url"] == f"http://127.0.0.1:{port}", started_line
        assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    finally:
        await stop_process(process)
