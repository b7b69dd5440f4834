"""hub/ids.py: request ids are UUID4s, unique, also across a fork."""

from __future__ import annotations

import os
import uuid

from hub.ids import new_request_id


def test_ids_are_uuid4_and_unique_across_batches() -> None:
    ids = [new_request_id() for _ in range(2_000)]  # several batches of random bytes
    assert len(set(ids)) == len(ids)
    for value in ids[:50]:
        parsed = uuid.UUID(value.decode("ascii"))
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed).encode("ascii") == value


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_request_id()  # the parent holds a partly used batch
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write, new_request_id())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    childs = os.read(read, 64)
    os.close(read)
    assert childs != new_request_id()
