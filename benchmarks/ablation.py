"""A hub without its hostile-traffic checks, for one measurement only: what those checks cost a routed GET.

Issue 12's checks must cost a routed GET at most 5 % (a comparison or a counter each, never a Redis lookup).
``python -m benchmarks.run`` measures that by running, beside the real hub, a hub process in which ``apply``
replaced each per-request check on the routed path by the plain behaviour underneath it:

- request head limits (size off the wire, request line, header count and line length) and the refusal linger
  (hub/http/server.py): uvicorn's own ``data_received`` and ``on_url``;
- the per-platform rate limit (hub/proxy.py ``Proxy._limit``) and the pool's pending-request caps per origin and
  per sender (hub/http/pool.py ``Pool.admit``/``done``);
- the path suffix check for dot segments, encodings and controls (routing/paths.py ``check_suffix``);
- the request-line guard on outbound URLs (hub/http/client.py) and the answer head limits (hub/http/connection.py).

Checks that cost nothing on a warm keep-alive request are left in place (the address policy runs per new
connection). The process loads this through a ``sitecustomize`` module that ``environment`` puts on its
``PYTHONPATH`` (every hub process, workers included). Never imported by the hub itself.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httptools
import httpx

from benchmarks.load import Request

#: The variable the generated sitecustomize checks, so that only the ablated hub is changed.
SWITCH = "BENCH_ABLATE_HUB_CHECKS"  # not OCPI_HUB_*: those are the hub's settings
_ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def environment() -> Iterator[dict[str, str]]:
    """Environment additions for a hub process without the checks (valid while the block runs)."""
    with tempfile.TemporaryDirectory(prefix="ocpihub-ablation-") as directory:
        (Path(directory) / "sitecustomize.py").write_text(
            f"import os\nif os.environ.get({SWITCH!r}) == '1':\n    import benchmarks.ablation\n"
            "    benchmarks.ablation.apply()\n"
        )
        path = os.pathsep.join(p for p in (directory, str(_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        yield {"PYTHONPATH": path, SWITCH: "1"}


#: A path suffix only the checks refuse (``..;`` is read as ``..`` by Tomcat-style servers): 2001 from the real hub.
_REFUSED_SUFFIX = "/..;/LOC1"


async def confirm(real: Request, bare: Request) -> None:
    """Raise unless ``bare`` (a request to the ablated hub) passes what ``real`` (the same to the real hub) may
    not: the measurement would compare two equal hubs."""
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await client.get(real.url + _REFUSED_SUFFIX, headers=real.headers)
        passed = await client.get(bare.url + _REFUSED_SUFFIX, headers=bare.headers)
    if refused.status_code != 400 or passed.status_code == 400:
        raise RuntimeError(
            f"the ablation did not take: real hub {refused.status_code}, hub without checks {passed.status_code}"
        )


class _Never:
    @staticmethod
    def search(_text: str) -> None:
        return None


def apply() -> None:
    """Replace the checks (see the module docstring) in this process."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    import hub.http.client as client
    import hub.http.connection as connection
    import hub.http.pool as pool
    import hub.http.server as server
    import hub.proxy as proxy
    import routing.decision as decision

    protocol: Any = server.OcpiHttpToolsProtocol
    protocol.data_received = HttpToolsProtocol.data_received
    protocol.on_url = HttpToolsProtocol.on_url
    protocol._check_headers = lambda self: None
    limited: Any = proxy.Proxy
    limited._limit = lambda self, caller: None
    capped: Any = pool.Pool
    capped.admit = lambda self, sender: None
    capped.done = lambda self, sender: None
    checked: Any = decision
    checked.check_suffix = lambda suffix: None
    guarded: Any = client
    guarded._UNSENDABLE = _Never()
    answer: Any = connection.Connection
    answer.on_header = lambda self, name, value: self.headers.append((name, value))
    answer.data_received = _feed


def _feed(self: Any, data: bytes) -> None:
    """Connection.data_received without the answer head's size bound."""
    self.received_any = True
    try:
        self.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        self._fail(connection_closed(f"malformed answer: {exc}"))
        self.abort()


def connection_closed(message: str) -> Exception:
    from hub.http.connection import ClosedError

    return ClosedError(message)
