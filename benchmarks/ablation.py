"""A hub whose hostile-traffic checks can be switched off and on again, for one measurement only: what those
checks cost a routed GET, measured on one and the same process.

Issue 12's checks must cost a routed GET at most 5 % (a comparison or a counter each, never a Redis lookup).
Two hub processes differ by several per cent even when configured alike (where their memory and CPU time land),
so ``python -m benchmarks.run`` compares one process with itself: it starts a hub whose ``sitecustomize``
(put on its ``PYTHONPATH`` by ``environment``) calls ``install``, and flips the checks with SIGUSR2 between the
interleaved runs. Switched off, each per-request check on the routed path is replaced by the plain behaviour
underneath it:

- request head limits (size off the wire, request line, header count and line length) and the refusal linger
  (hub/http/server.py): uvicorn's own ``data_received`` and ``on_url``;
- the per-platform rate limit (hub/proxy.py ``Proxy._limit``) and the pool's pending-request caps per origin and
  per sender (hub/http/pool.py ``Pool.admit``/``done``);
- the path suffix check for dot segments, encodings and controls (routing/paths.py ``check_suffix``);
- the request-line guard on outbound URLs (hub/http/client.py) and the answer head limits (hub/http/connection.py).

Checks that cost nothing on a warm keep-alive request are left in place (the address policy runs per new
connection). Never imported by the hub itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httptools
import httpx

from benchmarks.load import Request

#: The variable the generated sitecustomize checks, so that only this hub is changed (not OCPI_HUB_*: those are
#: the hub's settings).
SWITCH = "BENCH_ABLATE_HUB_CHECKS"
_ROOT = Path(__file__).resolve().parent.parent
#: A path suffix only the checks refuse (``..;`` is read as ``..`` by Tomcat-style servers): 2001, HTTP 400.
_REFUSED_SUFFIX = "/..;/LOC1"

#: (owner, attribute, value with the checks, value without) for every replaced attribute; filled by ``install``.
_SWAPS: list[tuple[Any, str, object, object]] = []


@contextmanager
def environment() -> Iterator[dict[str, str]]:
    """Environment additions for a hub process whose checks SIGUSR2 switches (valid while the block runs)."""
    with tempfile.TemporaryDirectory(prefix="ocpihub-ablation-") as directory:
        (Path(directory) / "sitecustomize.py").write_text(
            f"import os\nif os.environ.get({SWITCH!r}) == '1':\n    import benchmarks.ablation\n"
            "    benchmarks.ablation.install()\n"
        )
        path = os.pathsep.join(p for p in (directory, str(_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        yield {"PYTHONPATH": path, SWITCH: "1"}


async def checks_active(request: Request) -> bool:
    """Whether the hub behind ``request`` (a routed GET) refuses what only its checks refuse."""
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.get(request.url + _REFUSED_SUFFIX, headers=request.headers)
    return reply.status_code == 400


async def switch(request: Request, pids: list[int], active: bool, timeout: float = 10.0) -> None:
    """Switch the checks of the hub processes ``pids`` on or off; raise unless ``request`` shows it took."""
    if await checks_active(request) == active:
        return
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    deadline = asyncio.get_running_loop().time() + timeout
    while await checks_active(request) != active:
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the hub's checks could not be switched {'on' if active else 'off'}")
        await asyncio.sleep(0.05)


# -- inside the hub process --------------------------------------------------------------------------------------


def install() -> None:
    """Record both versions of every check, start with the checks on, and switch them on each SIGUSR2."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    import hub.http.client as client
    import hub.http.connection as connection
    import hub.http.pool as pool
    import hub.http.server as server
    import hub.proxy as proxy
    import routing.decision as decision

    protocol = server.OcpiHttpToolsProtocol
    swaps: list[tuple[Any, str, object]] = [
        (protocol, "data_received", HttpToolsProtocol.data_received),
        (protocol, "on_url", HttpToolsProtocol.on_url),
        (protocol, "_check_headers", _nothing),
        (proxy.Proxy, "_limit", _nothing),
        (pool.Pool, "admit", _nothing),
        (pool.Pool, "done", _nothing),
        (decision, "check_suffix", _nothing),
        (client, "_UNSENDABLE", _Never()),
        (connection.Connection, "on_header", _append_header),
        (connection.Connection, "data_received", _feed),
    ]
    _SWAPS[:] = [(owner, name, owner.__dict__[name], bare) for owner, name, bare in swaps]
    state = {"active": True}

    def flip(_signum: int, _frame: FrameType | None) -> None:
        state["active"] = not state["active"]
        for owner, name, checked, bare in _SWAPS:
            setattr(owner, name, checked if state["active"] else bare)

    signal.signal(signal.SIGUSR2, flip)


def _nothing(*_args: object) -> None:
    return None


class _Never:
    @staticmethod
    def search(_text: str) -> None:
        return None


def _append_header(self: Any, name: bytes, value: bytes) -> None:
    """Connection.on_header without the answer head's bounds."""
    self.headers.append((name, value))


def _feed(self: Any, data: bytes) -> None:
    """Connection.data_received without the answer head's size bound."""
    self.received_any = True
    try:
        self.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        from hub.http.connection import ClosedError

        self._fail(ClosedError(f"malformed answer: {exc}"))
        self.abort()
