"""routing/table.py, origins: ``split_origin`` and ``Platform.local_url`` — where URLs a party hands out may point,
and how the hub calls them (no request forgery through party URLs)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing.model import InterfaceRole, ModuleID
from routing.table import split_origin
from tests.unit.routing.builders import platform


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://cpo.example.com/ocpi/versions", ("https", "cpo.example.com")),
        ("HTTPS://CPO.Example.COM:8443/x", ("https", "cpo.example.com:8443")),
        ("http://127.0.0.1:9000", ("http", "127.0.0.1:9000")),
        ("http://[::1]:9000/x", ("http", "[::1]:9000")),
        ("https://cpo.example.com?x=1", ("https", "cpo.example.com")),
        ("https://cpo.example.com#frag", ("https", "cpo.example.com")),
        ("https://cpo.example.com/a?b#c", ("https", "cpo.example.com")),
    ],
)
def test_split_origin_gives_scheme_and_authority_lower_case(url: str, origin: tuple[str, str]) -> None:
    assert split_origin(url) == origin


@pytest.mark.parametrize(
    "url",
    [
        "",
        "cpo.example.com/ocpi",
        "ftp://cpo.example.com/x",
        "file:///etc/passwd",
        "javascript://cpo.example.com/%0aalert(1)",
        "https:///path-only",
        "https://",
        "https://user@cpo.example.com/",
        "https://user:pw@cpo.example.com/",
        "https://evil.example@cpo.example.com/",
        "//cpo.example.com/x",
    ],
)
def test_split_origin_refuses_anything_else(url: str) -> None:
    assert split_origin(url) == ("", "")


#: A party that registered its endpoints over plain HTTP on a port, and its versions on another host over HTTPS.
PARTY = platform("party", ["NL:CPO:CPO"], origin="http://ocpi.party.example:9000")
SPLIT = platform(
    "split",
    ["NL:SPL:CPO"],
    origin="http://ocpi.split.example:9000",
    endpoints=[(ModuleID.LOCATIONS, InterfaceRole.SENDER)],
)


def test_a_platforms_authorities_are_every_registered_origin() -> None:
    assert dict(PARTY.authorities) == {"ocpi.party.example:9000": "http"}


@pytest.mark.parametrize(
    "url",
    [
        "http://ocpi.party.example:9000/ocpi/2.2.1/locations/sender?offset=10",
        "http://ocpi.party.example:9000",
        "http://OCPI.Party.Example:9000/x",
    ],
)
def test_a_url_on_a_registered_origin_in_its_scheme_is_kept_as_is(url: str) -> None:
    assert PARTY.local_url(url) == url


@pytest.mark.parametrize(
    ("url", "called"),
    [
        ("https://ocpi.party.example:9000/cdrs/1", "http://ocpi.party.example:9000/cdrs/1"),
        ("HTTPS://ocpi.party.example:9000/cdrs/1", "http://ocpi.party.example:9000/cdrs/1"),
    ],
)
def test_a_url_in_another_scheme_on_a_registered_host_and_port_is_called_as_registered(url: str, called: str) -> None:
    # A party that writes https:// for the http:// server it registered is still understood, and never makes the
    # hub talk TLS to a port that does not (or plain HTTP to one that does).
    assert PARTY.local_url(url) == called


@pytest.mark.parametrize(
    "url",
    [
        "http://ocpi.party.example/x",  # the default port is another origin
        "http://ocpi.party.example:9001/x",
        "http://other.example:9000/x",
        "http://ocpi.party.example.evil.example:9000/x",
        "http://evil.example/?u=http://ocpi.party.example:9000",
        "http://user@ocpi.party.example:9000/x",
        "ftp://ocpi.party.example:9000/x",
        "/relative/path",
        "http://ocpi.party.example:9000/a b",
        "http://ocpi.party.example:9000/a\\b",
        "http://ocpi.party.example:9000/a\nb",
        "http://ocpi.party.example:9000/\x00",
        "http://ocpi.party.example:9000/é",
    ],
)
def test_anything_else_is_not_the_platforms_url(url: str) -> None:
    assert PARTY.local_url(url) is None


def test_a_platform_with_origins_in_two_schemes_keeps_each() -> None:
    mixed = platform("mixed", ["NL:MIX:CPO"], origin="https://api.mixed.example")
    mixed = replace(mixed, versions_url="http://versions.mixed.example:8080/ocpi/versions")
    assert dict(mixed.authorities) == {"api.mixed.example": "https", "versions.mixed.example:8080": "http"}
    assert mixed.local_url("http://api.mixed.example/x") == "https://api.mixed.example/x"
    assert mixed.local_url("https://versions.mixed.example:8080/v") == "http://versions.mixed.example:8080/v"


def test_the_first_registered_scheme_of_an_origin_wins() -> None:
    # An origin registered in both schemes (endpoints over https, versions over http): one scheme, the first.
    both = replace(SPLIT, versions_url="https://ocpi.split.example:9000/ocpi/versions")
    assert dict(both.authorities) == {"ocpi.split.example:9000": "http"}
