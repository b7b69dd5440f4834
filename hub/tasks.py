"""Background work of a hub process: the only place tasks are started.

Owns: strong references to running tasks, logging their failures, restarting the long-lived loops that fail
(``supervise``: no background task ends silently), cancelling long-running ones and draining bounded ones
(broadcast fan-outs) on shutdown, and ``gather_limited``. Must not: run request logic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Pauses before a failed background loop runs again.
RESTART_PAUSE: Final = 0.5
MAX_RESTART_PAUSE: Final = 30.0
#: A loop that ran this long before failing starts again after the shortest pause.
HEALTHY_RUN: Final = 60.0


class Tasks:
    """A set of named background tasks with a shutdown that cancels or drains them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def supervise(
        self,
        name: str,
        factory: Callable[[], Coroutine[Any, Any, None]],
        on_restart: Callable[[str], None] | None = None,
    ) -> asyncio.Task[Any]:
        """Run a long-lived loop that must never end: when it fails (or returns), log it, count it and start it
        again after a growing pause (0.5 s doubling to 30 s; back to 0.5 s after a minute of good health)."""

        async def keep_running() -> None:
            loop = asyncio.get_running_loop()
            pause = RESTART_PAUSE
            while True:
                started = loop.time()
                try:
                    await factory()
                    log.error("background task %s returned; starting it again", name)
                except Exception:
                    log.exception("background task %s failed; starting it again in %.1f s", name, pause)
                if on_restart is not None:
                    on_restart(name)
                if loop.time() - started > HEALTHY_RUN:
                    pause = RESTART_PAUSE
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_RESTART_PAUSE)

        return self.spawn(name, keep_running())

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def running(self, prefix: str) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if t.get_name().startswith(prefix)]

    async def drain(self, prefix: str, timeout: float) -> None:
        """Wait up to ``timeout`` for the tasks named ``prefix*`` (fan-outs finish rather than being dropped)."""
        pending = self.running(prefix)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()

    async def cancel_all(self, timeout: float = 5.0) -> None:
        """Cancel everything; bounded, because a library that swallows one cancellation must not hang shutdown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = set(self._tasks)
        while pending and loop.time() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.2)
        for task in pending:
            log.error("background task %s did not stop within %.1f s", task.get_name(), timeout)


async def gather_limited(limit: int, jobs: Sequence[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    """Run coroutines with at most ``limit`` in flight; results in order, exceptions returned, not raised."""
    semaphore = asyncio.Semaphore(max(limit, 1))

    async def run(job: Coroutine[Any, Any, T]) -> T:
        async with semaphore:
            return await job

    return await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)
