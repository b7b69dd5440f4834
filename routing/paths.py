"""The hub's own URL layout: where each (module, interface role) lives, and how a receiver URL is built.

Owns: every path the hub serves under ``/ocpi``; matching a request path to (module, interface role, suffix);
joining a receiver's endpoint URL with that suffix and query (digest §8.12: join with one ``/``, tolerate
trailing slashes). Each (module, role) gets its own URL so a path is never ambiguous (digest §5.4).
Must not: do I/O.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from routing.errors import InvalidParametersError
from routing.model import FUNCTIONAL_MODULES, InterfaceRole, ModuleID

VERSION: Final = "2.2.1"
VERSIONS_PATH: Final = "/ocpi/versions"
DETAILS_PATH: Final = f"/ocpi/{VERSION}"
CREDENTIALS_PATH: Final = f"/ocpi/{VERSION}/credentials"
HUBCLIENTINFO_PATH: Final = f"/ocpi/{VERSION}/hubclientinfo"
RELAY_PREFIX: Final = f"/ocpi/{VERSION}/relay/"
MODULE_PREFIX: Final = f"/ocpi/{VERSION}/"

_ROLE_SEGMENT: Final = {InterfaceRole.SENDER: "sender", InterfaceRole.RECEIVER: "receiver"}

_ROUTES: Final = {
    f"{_ROLE_SEGMENT[role]}/{module.value}": (module, role)
    for module in FUNCTIONAL_MODULES
    for role in (InterfaceRole.SENDER, InterfaceRole.RECEIVER)
}


def module_path(module: ModuleID, role: InterfaceRole) -> str:
    """The hub's path for one (module, interface role), without a trailing slash."""
    return f"{MODULE_PREFIX}{_ROLE_SEGMENT[role]}/{module.value}"


def module_url_path(module: ModuleID, role: InterfaceRole) -> str:
    """The path the hub publishes for one (module, interface role): ending in ``/``, as the spec's own examples
    publish module URLs, so a party that appends ``{country_code}/{party_id}/{id}`` without a slash still lands
    right; requests with or without the slash are served alike."""
    return module_path(module, role) + "/"


def match_module(path: str) -> tuple[ModuleID, InterfaceRole, str] | None:
    """``/ocpi/2.2.1/{sender|receiver}/{module}{suffix}`` → (module, role, suffix without trailing slash)."""
    if not path.startswith(MODULE_PREFIX):
        return None
    rest = path[len(MODULE_PREFIX) :]
    first = rest.find("/")
    if first < 0:
        return None
    second = rest.find("/", first + 1)
    key = rest if second < 0 else rest[:second]
    route = _ROUTES.get(key)
    if route is None:
        return None
    suffix = "" if second < 0 else rest[second:].rstrip("/")
    if suffix.startswith("//"):
        # ``locations//NL/...``: a party joined the published URL (ending in "/") with a "/" of its own.
        suffix = suffix[1:]
    return route[0], route[1], suffix


def check_suffix(suffix: str) -> None:
    """2001 for a path the receiver could resolve outside the endpoint it was addressed at: dot segments — also
    percent-encoded once or twice (``%2e``, ``%252e``), or with a path parameter (``..;``, which Tomcat-style
    servers read as ``..``) — empty segments, encoded slashes and backslashes, and characters that do not belong
    in a request line (controls, NUL in any encoding, spaces, non-ASCII)."""
    if not suffix:
        return
    if _UNFIT.search(suffix) is not None:
        raise InvalidParametersError("the path contains characters that are not allowed")
    segments = suffix[1:].split("/")
    if "%" not in suffix and ";" not in suffix:  # the usual path: nothing encoded, nothing to decode
        if "" in segments or "." in segments or ".." in segments:
            raise InvalidParametersError("the path may not contain empty, '.' or '..' segments")
        return
    for segment in segments:
        decoded = _decoded(segment)
        plain = decoded.split(";", 1)[0]
        if segment == "" or plain in (".", "..") or "/" in decoded or "\\" in decoded:
            raise InvalidParametersError("the path may not contain empty, '.' or '..' segments")
        if _CONTROL.search(decoded):
            raise InvalidParametersError("the path contains characters that are not allowed")


_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")
#: What a raw path may not carry at all: anything but visible ASCII (controls, space, DEL, non-ASCII), and the
#: backslash some servers read as "/". One search: this runs on every request with a suffix.
_UNFIT: Final = re.compile(r"[^\x21-\x5b\x5d-\x7e]")


def _decoded(segment: str) -> str:
    """A segment percent-decoded twice: what a receiver (or a proxy in front of it) may end up seeing."""
    once = unquote(segment) if "%" in segment else segment
    return unquote(once) if "%" in once else once


def join_url(endpoint: str, suffix: str, query: bytes) -> str:
    """The receiver URL: its endpoint as published when there is no suffix, else joined with exactly one ``/``."""
    url = endpoint if not suffix else endpoint.rstrip("/") + suffix
    if query:
        return f"{url}?{query.decode('latin-1')}"
    return url
