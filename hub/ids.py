"""Request ids: ``X-Request-ID`` and ``X-Correlation-ID`` values the hub mints (transport_and_format §4.2).

Owns: ``new_request_id``. Must not: hold state.
"""

from __future__ import annotations

import os
from typing import Final

#: Random bytes fetched per getrandom call: 16 per id, so one system call serves 256 ids instead of one.
_BATCH: Final = 4096
_random = memoryview(b"")


def _forget_batch() -> None:
    global _random
    _random = memoryview(b"")


# A forked child must not hand out the ids its parent's batch still holds (workers are spawned, but be sure).
os.register_at_fork(after_in_child=_forget_batch)


def new_request_id() -> bytes:
    """A fresh UUID4 (§4.2 advises UUIDs), from the OS's random source like ``uuid.uuid4()``.

    Formatted by hand, and the random bytes fetched in batches: ``uuid.uuid4()`` costs several times more (a
    getrandom call each), and this runs on every forwarded request.
    """
    global _random
    if len(_random) < 16:
        _random = memoryview(os.urandom(_BATCH))
    raw = bytearray(_random[:16])
    _random = _random[16:]
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex().encode("ascii")
    return b"-".join((text[:8], text[8:12], text[12:16], text[16:20], text[20:]))
