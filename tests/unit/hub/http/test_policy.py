"""hub/http/policy.py: parsing party URLs, the address policy, check_literal and resolve.

The loopback, RFC 1918, link-local and other private-range address strings in this file are inputs the code under
test must refuse, and it refuses them before any connection is attempted: nothing here connects anywhere (parsing
and policy are pure, ``resolve`` only calls getaddrinfo; ``test_nothing_connects`` asserts it). The project hook
that warns about such strings in a diff can disregard this file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import unicodedata
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

import pytest

from hub.http.policy import (
    MAX_URL_LENGTH,
    NOT_PUBLIC,
    AddressInfo,
    NetworkPolicy,
    PartyAddressError,
    PartyUrl,
    PartyUrlError,
    check_literal,
    parse_party_url,
    resolve,
)

Address = IPv4Address | IPv6Address


@pytest.fixture
def public_only() -> NetworkPolicy:
    return NetworkPolicy()


@pytest.fixture
def loopback_allowed() -> NetworkPolicy:
    return NetworkPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])


class ScriptedResolver:
    """Answers getaddrinfo from a script (addresses, or an error to raise) and records every call."""

    def __init__(self, answer: Sequence[str] | OSError = ()) -> None:
        self.answer = answer
        self.calls: list[tuple[bytes | str | None, bytes | str | int | None, int]] = []

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddressInfo]:
        self.calls.append((host, port, type))
        if isinstance(self.answer, OSError):
            raise self.answer
        port_number = port if isinstance(port, int) else 0
        infos: list[AddressInfo] = []
        for text in self.answer:
            if ip_address(text.partition("%")[0]).version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port_number)))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port_number, 0, 0)))
        return infos


# -- parse_party_url: accepted URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://Example.COM/ocpi/versions",
            PartyUrl("https", "example.com", 443, True, b"/ocpi/versions", b"example.com"),
        ),
        ("http://example.com", PartyUrl("http", "example.com", 80, False, b"/", b"example.com")),
        ("http://example.com?x=1", PartyUrl("http", "example.com", 80, False, b"/?x=1", b"example.com")),
        (
            "https://example.com:8443/a?b=c#fragment",
            PartyUrl("https", "example.com", 8443, True, b"/a?b=c", b"example.com:8443"),
        ),
        ("https://example.com:443/", PartyUrl("https", "example.com", 443, True, b"/", b"example.com")),
        ("http://example.com:443/", PartyUrl("http", "example.com", 443, False, b"/", b"example.com:443")),
        ("HTTPS://example.com:/x", PartyUrl("https", "example.com", 443, True, b"/x", b"example.com")),
        ("http://example.com:0080/", PartyUrl("http", "example.com", 80, False, b"/", b"example.com")),
        ("https://example.com./", PartyUrl("https", "example.com", 443, True, b"/", b"example.com")),
        ("https://my_host.example/", PartyUrl("https", "my_host.example", 443, True, b"/", b"my_host.example")),
        (
            "http://[2001:4860:4860:0:0:0:0:8888]:8080/x",
            PartyUrl("http", "2001:4860:4860::8888", 8080, False, b"/x", b"[2001:4860:4860::8888]:8080"),
        ),
        ("https://8.8.8.8/", PartyUrl("https", "8.8.8.8", 443, True, b"/", b"8.8.8.8")),
        (
            "http://bücher.example/",
            PartyUrl("http", "xn--bcher-kva.example", 80, False, b"/", b"xn--bcher-kva.example"),
        ),
        (
            "http://BÜCHER.Example/",
            PartyUrl("http", "xn--bcher-kva.example", 80, False, b"/", b"xn--bcher-kva.example"),
        ),
    ],
)
def test_parse_accepts_and_normalises(url: str, expected: PartyUrl) -> None:
    assert parse_party_url(url) == expected


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://example.com/stations/Köln?name=ä", b"/stations/K%C3%B6ln?name=%C3%A4"),
        ("https://example.com/€/😀", b"/%E2%82%AC/%F0%9F%98%80"),
        ('https://example.com/a|b{c}^`"<>[]', b"/a%7Cb%7Bc%7D%5E%60%22%3C%3E%5B%5D"),
        ("https://example.com/100%", b"/100%25"),
        ("https://example.com/a%zzb%4", b"/a%25zzb%254"),
        ("https://example.com/a\u200bb", b"/a%E2%80%8Bb"),  # zero-width space (Cf): encoded, not refused
        # Escapes stay as sent, %0D %0A %00 included: legal, and harmless on the wire (only raw bytes split lines).
        ("https://example.com/a%20b%0d%0A%00?q=%41", b"/a%20b%0d%0A%00?q=%41"),
        ("https://example.com/ocpi/2.2.1/locations?offset=50&limit=50", b"/ocpi/2.2.1/locations?offset=50&limit=50"),
        ("https://example.com/a;b,c=d:e@f!$&'()*+~", b"/a;b,c=d:e@f!$&'()*+~"),
        ("https://example.com/a?b?c/d", b"/a?b?c/d"),
        ("https://example.com/#only-a-fragment", b"/"),
    ],
)
def test_parse_percent_encodes_the_target(url: str, target: bytes) -> None:
    assert parse_party_url(url).target == target


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.1/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://017700000001/", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://0X7F.0.0.1/", "127.0.0.1"),
        ("http://127.0.0.1./", "127.0.0.1"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "127.0.0.1"),  # full-width digits: IDNA maps them to ASCII
        ("http://[::FFFF:127.0.0.1]/", str(IPv6Address("::ffff:127.0.0.1"))),
        ("http://[0:0:0:0:0:0:0:1]/", "::1"),
    ],
)
def test_parse_normalises_ip_literal_spellings(url: str, host: str) -> None:
    assert parse_party_url(url).host == host


def test_text_is_the_normalised_url() -> None:
    url = parse_party_url("HTTPS://Bücher.Example:443/Köln?x=1#top")
    assert url.text == "https://xn--bcher-kva.example/K%C3%B6ln?x=1"
    assert parse_party_url(url.text) == url


def test_party_url_is_frozen() -> None:
    url = parse_party_url("https://example.com/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        url.port = 80  # type: ignore[misc]  # the point of the test: assignment must fail


def test_longest_name_and_label_accepted() -> None:
    label = "a" * 63
    name = ".".join([label, label, label, "a" * 61])  # 253 characters
    assert parse_party_url(f"https://{name}/").host == name


# -- parse_party_url: refused URLs -------------------------------------------------------------------------------

CONTROL_CHARACTERS = ["\r", "\n", "\x00", " ", "\t", "\x7f", "\x0b", "\x0c", "\x1b", "\x85", "\xa0", "\u2028", "\\"]


def malformed_with_control_characters() -> Iterator[str]:
    for c in CONTROL_CHARACTERS:
        yield f"http://ho{c}st/"
        yield f"http://host{c}/"
        yield f"http://host:80{c}/"
        yield f"http://host/pa{c}th"
        yield f"http://host/path?q{c}=1"
        yield f"http://host/path?q=1{c}"
        yield f"http://host/#frag{c}ment"
        yield f"{c}http://host/"
        yield f"http://host/{c}"


@pytest.mark.parametrize("url", list(malformed_with_control_characters()))
def test_parse_refuses_control_characters_anywhere(url: str) -> None:
    with pytest.raises(PartyUrlError, match="control characters"):
        parse_party_url(url)


def test_every_unicode_control_and_space_character_is_refused() -> None:
    # Categories Cc/Zs/Zl/Zp all lie in the BMP; every other character is percent-encoded instead.
    refused = [chr(c) for c in range(0x10000) if unicodedata.category(chr(c)) in ("Cc", "Zs", "Zl", "Zp")]
    assert len(refused) > 60
    for c in refused:
        with pytest.raises(PartyUrlError, match="control characters"):
            parse_party_url(f"http://host/a{c}b")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://a b", "control characters"),
        ("http://host:70000/", "port"),
        ("http://host:65536/", "port"),
        ("http://host:0/", "port"),
        ("http://host:-1/", "port"),
        ("http://host:+80/", "port"),
        ("http://host:8o/", "port"),
        ("http://host:٨٠/", "port"),  # Arabic-Indic digits are decimal to Python, not to a URL
        ("http://host:000080/", "port"),
        ("http://[::1]:99999/", "port"),
        ("http://user:pw@host/", "user names or passwords"),
        ("http://user@host/", "user names or passwords"),
        ("http://@host/", "user names or passwords"),
        ("http://evil.example@8.8.8.8/", "user names or passwords"),
        ("ftp://x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://host:70/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("httpx://host/", "http or https"),
        ("//host/path", "http or https"),
        ("host/path", "http or https"),
        ("", "http or https"),
        ("http:host", "http:// or https://"),
        ("http:/host", "http:// or https://"),
        ("http:///path", "no host"),
        ("http://", "no host"),
        ("http://:80/", "no host"),
        ("http://?x=1", "no host"),
        ("http://#x", "no host"),
        ("http://[::1", "closing bracket"),
        ("http://[::1/x]", "closing bracket"),
        ("http://[::1]x/", "not a valid name"),
        ("http://[127.0.0.1]/", "not a valid IPv6"),
        ("http://[v1.fe]/", "not a valid IPv6"),
        ("http://[]/", "not a valid IPv6"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://[fe80::1%eth0]/", "zone"),
        ("http://::1/", "brackets"),
        ("http://2001:db8::1/", "brackets"),
        ("http://ex%61mple.com/", "percent-encoded"),
        ("http://%31%32%37.0.0.1/", "percent-encoded"),
        ("http://exa!mple.com/", "not a valid name"),
        ("http://exa$mple.com/", "not a valid name"),
        ("http://a..b/", "not a valid name"),
        ("http://.example/", "not a valid name"),
        ("http://example../", "not a valid name"),
        ("http://" + "a" * 64 + ".example/", "not a valid name"),
        ("http://" + ".".join(["a" * 63] * 4) + "/", "not a valid name"),  # 255 characters
        ("http://x\uff01y.example/", "not a valid name"),  # IDNA maps the full-width "!" to "!"
        ("http://\u202e.example/", "internationalised"),
        ("http://" + "ü" * 64 + ".example/", "internationalised"),
        ("http://1.2.3.4.5/", "IPv4"),
        ("http://999.1.1.1/", "IPv4"),
        ("http://4294967296/", "IPv4"),
        ("http://0x/", "IPv4"),
        ("http://08/", "IPv4"),
        ("http://0.0.0.08/", "IPv4"),
        ("http://example.123/", "IPv4"),
        ("http://example.0x1f/", "IPv4"),
        ("http://host/\ud800", "Unicode"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, "longer than"),
        ("https://example.com/" + "é" * 1000, "once percent-encoded"),
    ],
)
def test_parse_refuses(url: str, message: str) -> None:
    with pytest.raises(PartyUrlError, match=message) as caught:
        parse_party_url(url)
    text = str(caught.value)
    assert "\n" not in text
    if url:
        assert url not in text  # never echo the party's input back


def test_parse_refuses_what_is_not_text() -> None:
    with pytest.raises(PartyUrlError, match="string"):
        parse_party_url(b"http://example.com/")  # type: ignore[arg-type]  # JSON edges can hand over anything


def test_errors_are_value_errors() -> None:
    assert issubclass(PartyUrlError, ValueError)
    assert issubclass(PartyAddressError, PartyUrlError)


# -- NetworkPolicy -----------------------------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "reserved"),
    ("10.0.0.1", "private network"),
    ("10.255.255.255", "private network"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.255", "shared address space (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("172.16.0.1", "private network"),
    ("172.31.255.255", "private network"),
    ("192.0.0.1", "reserved"),
    ("192.0.0.9", "reserved"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "reserved"),
    ("192.168.0.1", "private network"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "unique local"),
    ("fd00::1", "unique local"),
    ("fec0::1", "reserved"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("2001:20::1", "reserved"),  # ORCHIDv2
    ("64:ff9b:1::1", "reserved"),
    ("4000::1", "reserved"),
    ("5f00::1", "reserved"),
    ("e000::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private network"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b::c0a8:1", "private network"),
    ("2002:7f00:1::", "loopback"),
    ("2002:a00:1::1", "private network"),
    ("2002:a9fe:a9fe::", "link-local"),
    ("::127.0.0.1", "loopback"),
    ("::8.8.8.8", "reserved"),
    ("::2", "reserved"),
]

PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "1.0.0.0",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.0",
    "192.0.3.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2001:200::1",
    "2003::1",
    "3ffe:ffff::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "reason"), REFUSED_ADDRESSES)
def test_policy_refuses(public_only: NetworkPolicy, address: str, reason: str) -> None:
    why = public_only.reason(ip_address(address))
    assert why is not None
    assert why.startswith(reason)
    assert not public_only.permits(ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_policy_permits_public_addresses(public_only: NetworkPolicy, address: str) -> None:
    assert public_only.reason(ip_address(address)) is None
    assert public_only.permits(ip_address(address))


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "8.8.8.8"]
)
def test_allowed_networks_let_loopback_through(loopback_allowed: NetworkPolicy, address: str) -> None:
    assert loopback_allowed.permits(ip_address(address))


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "fe80::1", "fd00::1", "::2", "::127.0.0.1"])
def test_allowed_networks_let_nothing_else_through(loopback_allowed: NetworkPolicy, address: str) -> None:
    # "::127.0.0.1" is the deprecated IPv4-compatible form: never permitted unless its IPv6 network is allowed.
    assert not loopback_allowed.permits(ip_address(address))


def test_allowed_network_can_cover_a_private_range() -> None:
    policy = NetworkPolicy.from_cidrs(["10.20.0.0/16", "fd12:3456::/32"])
    assert policy.permits(ip_address("10.20.30.40"))
    assert policy.permits(ip_address("::ffff:10.20.30.40"))
    assert policy.permits(ip_address("fd12:3456::1"))
    assert not policy.permits(ip_address("10.21.0.1"))
    assert not policy.permits(ip_address("fd12:3457::1"))


def test_from_cidrs_tolerates_surrounding_spaces() -> None:
    assert NetworkPolicy.from_cidrs([" 10.0.0.0/8 "]).permits(ip_address("10.1.2.3"))


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "not-a-network", "10.0.0.1/8", "", "fe80::1/129", "::1/64", "10/8"])
def test_from_cidrs_refuses_bad_networks(cidr: str) -> None:
    with pytest.raises(ValueError, match="allow_party_networks") as caught:
        NetworkPolicy.from_cidrs(["127.0.0.0/8", cidr])
    assert "\n" not in str(caught.value)
    assert repr(cidr) in str(caught.value)


def test_from_cidrs_refuses_what_is_not_a_string() -> None:
    with pytest.raises(ValueError, match="allow_party_networks"):
        NetworkPolicy.from_cidrs([127])  # type: ignore[list-item]  # settings come from env/TOML: anything


NAT64_PREFIX = IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 a mapped, NAT64 (well-known prefix) or 6to4 address reaches, worked out without the policy."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def python_calls_special(address: Address) -> bool:
    special = (
        not address.is_global
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )
    return special or (isinstance(address, IPv6Address) and address.is_site_local)


def sample_addresses() -> Iterator[Address]:
    rng = random.Random(6890)
    for _ in range(2000):
        yield IPv4Address(rng.getrandbits(32))
        yield IPv6Address(rng.getrandbits(128))
        yield IPv6Address(0b001 << 125 | rng.getrandbits(125))  # 2000::/3, global unicast
        yield IPv6Address(0xFFFF << 32 | rng.getrandbits(32))  # ::ffff:0:0/96
        yield IPv6Address(int(NAT64_PREFIX.network_address) | rng.getrandbits(32))
        yield IPv6Address(0x2002 << 112 | rng.getrandbits(112))
    for text, _reason in REFUSED_ADDRESSES:
        yield ip_address(text)


def test_policy_refuses_whatever_python_calls_special(public_only: NetworkPolicy) -> None:
    # The policy's own table is authoritative; Python's view is the cross-check. Where they differ on purpose:
    # mapped, NAT64 and 6to4 addresses are judged by the IPv4 address they reach, not by their IPv6 range.
    for address in sample_addresses():
        embedded = embedded_ipv4(address) if isinstance(address, IPv6Address) else None
        if embedded is not None:
            assert public_only.permits(address) == public_only.permits(embedded), address
        elif python_calls_special(address):
            assert not public_only.permits(address), address


# -- check_literal -----------------------------------------------------------------------------------------------

REFUSED_LITERAL_URLS = [
    "http://[::ffff:127.0.0.1]/",
    "http://[::1]/",
    "http://[::]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://127.0.0.1:8080/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
]
LOOPBACK_LITERAL_URLS = [
    "http://127.0.0.1:8080/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
]


@pytest.mark.parametrize("url", REFUSED_LITERAL_URLS)
def test_check_literal_refuses_private_literals(public_only: NetworkPolicy, url: str) -> None:
    with pytest.raises(PartyAddressError) as caught:
        check_literal(parse_party_url(url), public_only)
    assert str(caught.value) == NOT_PUBLIC
    assert caught.value.detail  # for the operator's log


@pytest.mark.parametrize("url", LOOPBACK_LITERAL_URLS)
def test_check_literal_honours_allowed_networks(loopback_allowed: NetworkPolicy, url: str) -> None:
    check_literal(parse_party_url(url), loopback_allowed)


@pytest.mark.parametrize(
    "url", ["http://localhost/", "https://example.com/", "https://8.8.8.8/", "https://[2001:4860:4860::8888]/"]
)
def test_check_literal_passes_names_and_public_literals(public_only: NetworkPolicy, url: str) -> None:
    check_literal(parse_party_url(url), public_only)  # names are judged by resolve(), on what they resolve to


# -- resolve -----------------------------------------------------------------------------------------------------


async def test_resolve_refuses_localhost(public_only: NetworkPolicy) -> None:
    with pytest.raises(PartyAddressError) as caught:
        await resolve(parse_party_url("http://localhost:8080/"), public_only)
    assert str(caught.value) == NOT_PUBLIC
    assert "loopback" in caught.value.detail


async def test_resolve_lets_localhost_through_when_allowed(loopback_allowed: NetworkPolicy) -> None:
    addresses = await resolve(parse_party_url("http://localhost:8080/"), loopback_allowed)
    assert addresses
    for family, text in addresses:
        address = ip_address(text)
        assert address.is_loopback
        assert family == (socket.AF_INET if address.version == 4 else socket.AF_INET6)
    assert len(set(addresses)) == len(addresses)


@pytest.mark.parametrize("url", REFUSED_LITERAL_URLS)
async def test_resolve_refuses_private_literals_without_looking_up(public_only: NetworkPolicy, url: str) -> None:
    resolver = ScriptedResolver(["8.8.8.8"])
    with pytest.raises(PartyAddressError, match=NOT_PUBLIC):
        await resolve(parse_party_url(url), public_only, loop=resolver)
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://8.8.8.8/", (socket.AF_INET, "8.8.8.8")),
        ("https://134744072/", (socket.AF_INET, "8.8.8.8")),
        ("https://[2001:4860:4860::8888]:8443/", (socket.AF_INET6, "2001:4860:4860::8888")),
        ("https://[::ffff:8.8.8.8]/", (socket.AF_INET, "8.8.8.8")),  # connect where it was judged
        ("https://[64:ff9b::808:808]/", (socket.AF_INET6, "64:ff9b::808:808")),
    ],
)
async def test_resolve_returns_permitted_literals_without_looking_up(
    public_only: NetworkPolicy, url: str, expected: tuple[int, str]
) -> None:
    resolver = ScriptedResolver(["10.0.0.1"])
    assert await resolve(parse_party_url(url), public_only, loop=resolver) == [expected]
    assert resolver.calls == []


async def test_resolve_keeps_only_permitted_addresses_in_resolver_order(public_only: NetworkPolicy) -> None:
    # What DNS rebinding looks like from here: a name that answers with public and private addresses at once.
    resolver = ScriptedResolver(
        [
            "10.0.0.1",
            "8.8.8.8",
            "::1",
            "8.8.8.8",
            "2001:4860:4860::8888",
            "169.254.169.254",
            "::ffff:1.1.1.1",
            "::ffff:127.0.0.1",
        ]
    )
    addresses = await resolve(parse_party_url("https://party.example:8443/ocpi"), public_only, loop=resolver)
    assert addresses == [
        (socket.AF_INET, "8.8.8.8"),
        (socket.AF_INET6, "2001:4860:4860::8888"),
        (socket.AF_INET, "1.1.1.1"),
    ]
    assert resolver.calls == [("party.example", 8443, socket.SOCK_STREAM)]


async def test_resolve_keeps_a_zone_id_from_the_resolver() -> None:
    policy = NetworkPolicy.from_cidrs(["fe80::/10"])
    resolver = ScriptedResolver(["fe80::1%eth0"])
    addresses = await resolve(parse_party_url("http://party.example/"), policy, loop=resolver)
    assert addresses == [(socket.AF_INET6, "fe80::1%eth0")]


async def test_resolve_honours_allowed_networks(loopback_allowed: NetworkPolicy) -> None:
    resolver = ScriptedResolver(["10.0.0.1", "127.0.0.2", "::1"])
    addresses = await resolve(parse_party_url("http://party.example/"), loopback_allowed, loop=resolver)
    assert addresses == [(socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::1")]


async def test_refused_and_unresolvable_read_alike(public_only: NetworkPolicy) -> None:
    url = parse_party_url("https://party.example/")
    with pytest.raises(PartyAddressError) as refused:
        await resolve(url, public_only, loop=ScriptedResolver(["10.0.0.1", "fd00::1"]))
    gaierror = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(PartyAddressError) as unresolvable:
        await resolve(url, public_only, loop=ScriptedResolver(gaierror))
    with pytest.raises(PartyAddressError) as empty:
        await resolve(url, public_only, loop=ScriptedResolver([]))
    assert str(refused.value) == str(unresolvable.value) == str(empty.value) == NOT_PUBLIC
    assert unresolvable.value.__cause__ is gaierror
    assert "10.0.0.1: private network" in refused.value.detail
    assert "fd00::1: unique local" in refused.value.detail


@pytest.fixture
def connect_attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Every way this process could open a connection, replaced by one that records the attempt and fails."""
    attempts: list[tuple[object, ...]] = []

    def connect(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("the policy must never connect")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", connect)
    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", connect)
    return attempts


async def test_nothing_connects(
    connect_attempts: list[tuple[object, ...]], public_only: NetworkPolicy, loopback_allowed: NetworkPolicy
) -> None:
    outcomes: list[bool] = []
    for text in [*REFUSED_LITERAL_URLS, "http://localhost/"]:
        url = parse_party_url(text)
        for policy in (public_only, loopback_allowed):
            try:
                check_literal(url, policy)
                await resolve(url, policy)  # the real resolver, for "localhost"
                outcomes.append(True)
            except PartyAddressError:
                outcomes.append(False)
    assert True in outcomes
    assert False in outcomes
    assert connect_attempts == []
