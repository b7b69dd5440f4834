"""registry/keys.py: every key shares one hash tag derived from the prefix."""

from __future__ import annotations

import pytest

from registry.keys import RegistryKeys

BUILDERS = (
    "platforms",
    "parties",
    "tokens",
    "version",
    "changes",
    "clientinfo",
    "events",
    "events_cursor",
    "public_url",
    "last_seen",
    "lease",
    "audit",
    "trace",
)


@pytest.mark.parametrize("prefix", ["ocpihub:", "ocpihub", "test:1234:"])
def test_every_key_has_the_prefix_hash_tag(prefix: str) -> None:
    keys = RegistryKeys(prefix=prefix)
    tag = "{" + prefix.rstrip(":") + "}:"
    built = [getattr(keys, name)() for name in BUILDERS] + [keys.relay("r1")]
    assert all(key.startswith(tag) for key in built)
    assert len(set(built)) == len(built)


def test_default_key_names() -> None:
    keys = RegistryKeys()
    assert keys.platforms() == "{ocpihub}:platforms"
    assert keys.relay("abc") == "{ocpihub}:relay:abc"
    assert keys.events_cursor() == "{ocpihub}:events:cursor"


def test_different_prefixes_never_share_keys() -> None:
    a, b = RegistryKeys(prefix="test:a:"), RegistryKeys(prefix="test:b:")
    assert {getattr(a, n)() for n in BUILDERS}.isdisjoint({getattr(b, n)() for n in BUILDERS})


def test_audit_and_trace_streams_have_their_own_names() -> None:
    keys = RegistryKeys()
    assert keys.audit() == "{ocpihub}:audit"
    assert keys.trace() == "{ocpihub}:trace"
