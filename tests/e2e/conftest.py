"""End-to-end tests run their in-process hubs, fake parties and clients on uvloop, the loop production runs on
(``ocpi-hub serve`` starts uvicorn with ``loop="uvloop"``).

pytest-asyncio (>= 1.5) parametrizes every async test with the factories this hook returns; one factory means one
run per test and, on pytest >= 8.4, no extra id (``test_x``, not ``test_x[uvloop]``). The hook is found through the
test's own directory, so only tests under tests/e2e get it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"uvloop": uvloop.new_event_loop}
