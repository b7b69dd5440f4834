"""Request ids: ``X-Request-ID`` and ``X-Correlation-ID`` values the hub mints (transport_and_format §4.2).

Owns: ``new_request_id``. Must not: hold state.
"""

from __future__ import annotations

import os


def new_request_id() -> bytes:
    """A fresh UUID4 (§4.2 advises UUIDs).

    Formatted by hand: ``uuid.uuid4()`` costs several times more, and this runs on every forwarded request.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex().encode("ascii")
    return b"-".join((text[:8], text[8:12], text[12:16], text[16:20], text[20:]))
