"""Contract: the uvicorn internals hub/http/server.py builds on are still where it expects them.

``OcpiHttpToolsProtocol`` subclasses uvicorn's ``HttpToolsProtocol``, overrides its parser callbacks and reads its
per-connection state; none of that is public API. pyproject bounds uvicorn to a tested range, and these tests fail
with a message naming the installed uvicorn version when a release renames a method, changes a signature, moves
an attribute, or stops routing parser-callback errors to ``send_400_response``. No sockets: the protocol runs on a
fake transport in the test's event loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import httptools
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from hub.envelope import ABORT, RESPOND
from hub.http.server import OcpiHttpToolsProtocol
from tests.support.protocol import FakeTransport, fake_connection, make, settle

UVICORN = f"uvicorn {uvicorn.__version__}"

#: The methods hub/http/server.py overrides, which uvicorn must still call under these names and arguments.
OVERRIDDEN = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_headers_complete",
    "on_response_complete",
    "send_400_response",
)
#: Per-connection state it reads (after a request head has been parsed), and of the request's cycle.
PROTOCOL_ATTRIBUTES = (
    "url",
    "headers",
    "scope",
    "connections",
    "server_state",
    "transport",
    "loop",
    "cycle",
    "pipeline",
    "flow",
)
CYCLE_ATTRIBUTES = (
    "scope",
    "keep_alive",
    "response_started",
    "response_complete",
    "waiting_for_100_continue",
    "disconnected",
    "message_event",
    "on_response",
)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def connected() -> AsyncIterator[tuple[HttpToolsProtocol, FakeTransport]]:
    with fake_connection(hello) as pair:
        yield pair


def parameters(function: Any) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_overridden_methods_exist_with_the_same_parameters(name: str) -> None:
    base = getattr(HttpToolsProtocol, name, None)
    assert callable(base), f"{UVICORN}: HttpToolsProtocol.{name} is gone; hub/http/server.py overrides it"
    ours = getattr(OcpiHttpToolsProtocol, name)
    assert parameters(ours) == parameters(base), (
        f"{UVICORN}: HttpToolsProtocol.{name}{inspect.signature(base)} no longer matches hub/http/server.py's "
        f"override {name}{inspect.signature(ours)}"
    )


def test_every_public_method_of_ours_is_an_override() -> None:
    """A public method uvicorn does not define would never be called: a rename in uvicorn shows up here."""
    ours = {name for name, value in vars(OcpiHttpToolsProtocol).items() if callable(value) and name[0] != "_"}
    assert ours == set(OVERRIDDEN), f"{UVICORN}: update OVERRIDDEN or hub/http/server.py ({sorted(ours)})"
    missing = sorted(name for name in ours if not hasattr(HttpToolsProtocol, name))
    assert not missing, f"{UVICORN}: HttpToolsProtocol no longer has {missing}, which hub/http/server.py overrides"


async def test_state_read_by_the_hub_is_where_it_expects(
    connected: tuple[HttpToolsProtocol, FakeTransport],
) -> None:
    protocol, transport = connected
    protocol.data_received(b"GET /ocpi/x?y=1 HTTP/1.1\r\nhost: hub\r\n\r\n")
    missing = [name for name in PROTOCOL_ATTRIBUTES if not hasattr(protocol, name)]
    assert not missing, f"{UVICORN}: HttpToolsProtocol instances no longer have {missing}"
    assert protocol.url == b"/ocpi/x?y=1", f"{UVICORN}: HttpToolsProtocol.url is not the raw request target"
    # The head's checks read the parsed headers once, at on_headers_complete.
    assert protocol.headers == [(b"host", b"hub")], f"{UVICORN}: HttpToolsProtocol.headers is not the parsed list"
    assert isinstance(protocol.scope, dict) and protocol.scope["path"] == "/ocpi/x", f"{UVICORN}: scope moved"
    assert protocol in protocol.connections, f"{UVICORN}: HttpToolsProtocol.connections no longer counts it"
    assert isinstance(protocol.server_state.default_headers, list), f"{UVICORN}: server_state.default_headers"
    assert protocol.loop is asyncio.get_running_loop(), f"{UVICORN}: HttpToolsProtocol.loop"
    cycle = protocol.cycle
    assert isinstance(cycle, RequestResponseCycle), f"{UVICORN}: HttpToolsProtocol.cycle is not the request's cycle"
    missing = [name for name in CYCLE_ATTRIBUTES if not hasattr(cycle, name)]
    assert not missing, f"{UVICORN}: RequestResponseCycle no longer has {missing}"
    assert isinstance(cycle.message_event, asyncio.Event), f"{UVICORN}: RequestResponseCycle.message_event"
    assert len(protocol.pipeline) == 0, f"{UVICORN}: HttpToolsProtocol.pipeline is not the queue of cycles"
    assert {ABORT, RESPOND} <= set(protocol.scope["extensions"]), "the scope the app gets lacks the hub's extensions"
    assert cycle.scope is protocol.scope, f"{UVICORN}: RequestResponseCycle.scope is not the request's scope"
    assert isinstance(protocol.flow.write_paused, bool), f"{UVICORN}: FlowControl.write_paused"
    await settle(transport, b"\r\n\r\nok")
    assert transport.written.startswith(b"HTTP/1.1 200 "), bytes(transport.written)
    assert cycle.response_complete, f"{UVICORN}: RequestResponseCycle.response_complete"


def test_parser_callback_errors_reach_send_400_response() -> None:
    """hub/http/server.py refuses heads by raising in on_url/on_header: httptools must wrap that as an
    HttpParserError, which uvicorn's data_received must turn into a send_400_response call."""
    assert issubclass(httptools.HttpParserCallbackError, httptools.HttpParserError), (
        f"httptools {httptools.__version__}: HttpParserCallbackError is no longer an HttpParserError"
    )


async def test_uvicorn_routes_a_raising_callback_to_send_400_response() -> None:
    calls: list[str] = []

    class Refusing(HttpToolsProtocol):
        def on_header(self, name: bytes, value: bytes) -> None:
            raise RuntimeError("refused")

        def send_400_response(self, msg: str) -> None:
            calls.append(msg)

    protocol = make(Refusing, hello)
    protocol.connection_made(FakeTransport())
    try:
        protocol.data_received(b"GET / HTTP/1.1\r\nhost: hub\r\n\r\n")
    finally:
        protocol.connection_lost(None)
    assert len(calls) == 1, f"{UVICORN}: an exception in a parser callback no longer reaches send_400_response"


async def test_refusal_written_through_uvicorn(connected: tuple[HttpToolsProtocol, FakeTransport]) -> None:
    """The whole path on uvicorn's side: a 101st header is answered 431 with an envelope and a FIN (the connection
    closes after its lingering close); the app never runs."""
    protocol, transport = connected
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"x-%d: v\r\n" % i for i in range(101)) + b"\r\n"
    protocol.data_received(head)
    await settle(transport, b'"status_code":2001')
    assert transport.written.startswith(b"HTTP/1.1 431 "), bytes(transport.written)
    assert transport.eof
    assert protocol.cycle is None, f"{UVICORN}: a refused head still created a request cycle"


async def test_abort_marks_the_cycle_disconnected(connected: tuple[HttpToolsProtocol, FakeTransport]) -> None:
    protocol, transport = connected
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: hub\r\n\r\n")
    cycle = protocol.cycle
    abort: Any = protocol.scope["extensions"]["ocpihub.abort"]  # the ASGI scope types extensions loosely
    abort()
    assert transport.aborted
    assert cycle.disconnected, f"{UVICORN}: RequestResponseCycle.disconnected is not what ends an answer"
    assert cycle.message_event.is_set()
