"""Where a party's URL may send the hub: parsing, validation and address policy for outbound calls (SSRF defence).

Owns: the one parser of URLs that parties hand the hub (versions URL, endpoint URLs, pagination ``Link``s, CDR
``Location``s, ``response_url``s) into a normalised ``PartyUrl``; the ``NetworkPolicy`` that says which addresses
the hub may connect to (public ones, plus the operator's ``allow_party_networks``); and ``resolve()``, which turns
a ``PartyUrl`` into the permitted addresses to connect to. A URL is checked twice: its text when a party gives it
(``parse_party_url`` + ``check_literal``, and ``resolve`` at registration), and the addresses ``resolve`` returns
when the hub connects — the caller connects to exactly those, never to the name again, so a name that re-resolves
to a private address later (DNS rebinding) cannot reach it.
Must not: connect, log, cache resolutions (the caller decides), or put anything in an error message that tells a
party what is listening where: refused, unresolvable and private all read the same.
Pure except ``resolve`` (one ``getaddrinfo``).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final, Literal, Protocol, TypeAlias
from urllib.parse import quote

Address: TypeAlias = IPv4Address | IPv6Address
Network: TypeAlias = IPv4Network | IPv6Network
#: One ``getaddrinfo`` answer as ``resolve`` reads it: (family, type, proto, canonname, sockaddr). Loose on purpose,
#: so that any event loop's precise typeshed signature satisfies ``AddressResolver``.
AddressInfo: TypeAlias = tuple[int, int, int, str, tuple[object, ...]]

#: Longest URL text accepted, and longest request target after percent-encoding. Party URLs are short; a bound
#: keeps a hostile one from costing work or producing a request line servers refuse.
MAX_URL_LENGTH: Final = 4096
#: DNS limits (RFC 1035 §2.3.4): 63 octets a label, 253 characters a name in text form without the final dot.
MAX_NAME_LENGTH: Final = 253

#: The one message a party sees when an address is refused or a name does not resolve: it must not tell them
#: whether something answers there, so the three cases read alike.
NOT_PUBLIC: Final = "the host must resolve to a public internet address"

_DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443}

# Refused anywhere in the URL: C0 controls, space, DEL, C1 controls and NBSP (\x00-\x20, \x7f-\xa0), backslash
# (WHATWG parsers read it as "/" in http URLs, RFC 3986 ones do not: a parser differential), and every other
# Unicode space or line/paragraph separator (category Zs/Zl/Zp). Raw CR/LF/NUL are how request splitting and
# header injection start; refusing them in every part of the URL means none can reach a request line or a log.
_FORBIDDEN: Final = re.compile("[\x00-\x20\x7f-\xa0\\\\\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
# Lone surrogates cannot be UTF-8 encoded, so they could not be percent-encoded either.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_AUTHORITY_END: Final = re.compile("[/?#]")
# A host name after IDNA: letters, digits, hyphen, and underscore (not in RFC 1123 host names, but real DNS names
# such as SRV-style labels carry it and resolvers accept it); 1 to 63 characters a label.
_NAME: Final = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_HEX: Final = frozenset("0123456789abcdef")
# RFC 3986 §3.3/§3.4: pchar / "/" / "?" — unreserved, sub-delims, ":" "@", and percent-encoded octets.
_TARGET_VALID: Final = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_TARGET_SAFE: Final = "!$&'()*+,;=:@/?%"  # quote() keeps letters, digits and "-._~" by itself
_STRAY_PERCENT: Final = re.compile("%(?![0-9A-Fa-f]{2})")


class PartyUrlError(ValueError):
    """A party URL the hub will not call; the message is safe to show the party and says what to fix.

    A ValueError rather than an ``OcpiError``: the same refusal is 2001 when a party registers a URL and 4003 when
    the hub meets it while forwarding, so the caller wraps it (``raise InvalidParametersError(...) from exc``).
    """


class PartyAddressError(PartyUrlError):
    """The host has no permitted address: it does not resolve, or every address it has is refused.

    ``str(exc)`` is always ``NOT_PUBLIC``; ``detail`` says which addresses were refused and why, for the operator's
    logs only.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(NOT_PUBLIC)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PartyUrl:
    """A validated, normalised party URL. Build it with ``parse_party_url``; nothing else checks its fields."""

    scheme: Literal["http", "https"]
    #: Lower-case ASCII (IDNA-encoded), no trailing dot; IPv4 literals as dotted quads, IPv6 compressed, unbracketed.
    host: str
    port: int
    tls: bool
    #: Request target in origin form (RFC 9112 §3.2.1): path and query, percent-encoded, at least b"/".
    target: bytes
    #: The authority for the Host header: IPv6 in brackets, the port only when it is not the scheme's default.
    host_header: bytes

    @property
    def text(self) -> str:
        """The URL as the hub calls it (normalised, fragment dropped): what to store and compare."""
        return f"{self.scheme}://{self.host_header.decode('ascii')}{self.target.decode('ascii')}"


def parse_party_url(url: str) -> PartyUrl:
    """Parse and validate a URL a party gave the hub; ``PartyUrlError`` says what to fix.

    Decisions: a fragment is dropped (it is never sent: RFC 3986 §3.5, RFC 9110 §7.1); non-ASCII, and ASCII that
    RFC 3986 does not allow in a path or query, is percent-encoded as UTF-8, as is a "%" not starting an escape;
    existing escapes, including %0D %0A %00, are kept — they are legal, reach only the party's own server, and
    cannot break a request line, which only raw bytes can. An empty port means the default one (RFC 3986 §3.2.3).
    IPv6 zone ids are refused (only link-local addresses need them, and those are refused anyway). Any host that
    ``inet_aton`` accepts (``127.1``, ``0x7f000001``, ``0177.0.0.1``, ``2130706433``) is that IPv4 address, as
    glibc's resolver would take it, and is normalised to a dotted quad.
    """
    if not isinstance(url, str):
        raise PartyUrlError("the URL must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise PartyUrlError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN.search(url) is not None:
        raise PartyUrlError("the URL contains control characters, spaces or backslashes")
    if _SURROGATE.search(url) is not None:
        raise PartyUrlError("the URL is not valid Unicode text")
    scheme_text, colon, rest = url.partition(":")
    scheme = scheme_text.lower()
    if not colon or scheme not in _DEFAULT_PORTS:
        raise PartyUrlError("the URL must use http or https")
    if not rest.startswith("//"):
        raise PartyUrlError("the URL must start with http:// or https://")
    rest = rest[2:]
    end = _AUTHORITY_END.search(rest)
    authority, rest = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    if "@" in authority:
        raise PartyUrlError("user names or passwords in URLs are not accepted")
    default_port = _DEFAULT_PORTS[scheme]
    host, port = _split_authority(authority, default_port)

    path_and_query = rest.partition("#")[0]
    if not path_and_query.startswith("/"):
        path_and_query = "/" + path_and_query  # "" or "?query": the origin form needs a path
    target = _encode_target(path_and_query)
    if len(target) > MAX_URL_LENGTH:
        raise PartyUrlError(f"the URL is longer than {MAX_URL_LENGTH} characters once percent-encoded")

    authority_text = f"[{host}]" if ":" in host else host
    if port != default_port:
        authority_text = f"{authority_text}:{port}"
    return PartyUrl(
        scheme="https" if scheme == "https" else "http",
        host=host,
        port=port,
        tls=scheme == "https",
        target=target,
        host_header=authority_text.encode("ascii"),
    )


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[v6][:port]`` (no userinfo) → (normalised host, port)."""
    port_text: str | None = None
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise PartyUrlError("the IPv6 address is missing its closing bracket")
        inside, after = authority[1:close], authority[close + 1 :]
        if after:
            if not after.startswith(":"):
                raise PartyUrlError("the host is not a valid name")
            port_text = after[1:]
        return _ipv6_host(inside), _port(port_text, default_port)
    if authority.count(":") > 1:
        raise PartyUrlError("IPv6 addresses must be written in brackets, e.g. https://[2001:db8::1]/")
    host_text, colon, after = authority.partition(":")
    if colon:
        port_text = after
    if not host_text:
        raise PartyUrlError("the URL has no host")
    return _name_host(host_text), _port(port_text, default_port)


def _ipv6_host(text: str) -> str:
    if "%" in text:
        # RFC 6874 zone ids ("%25eth0"): only meaningful for link-local addresses, which are never permitted.
        raise PartyUrlError("IPv6 zone identifiers are not accepted")
    try:
        return str(IPv6Address(text))
    except ValueError:
        raise PartyUrlError("the host is not a valid IPv6 address") from None


def _name_host(text: str) -> str:
    if "%" in text:
        raise PartyUrlError("the host must not be percent-encoded")
    if text.isascii():
        name = text.lower()
    else:
        # The stdlib codec is IDNA 2003 (nameprep): it also maps full-width letters and digits and ideographic
        # dots to ASCII, which is why every check below runs on its output, not on what the party sent.
        try:
            name = text.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise PartyUrlError("the host is not a valid internationalised domain name") from None
    if name.endswith("."):
        # An absolute name: SNI and certificate names never carry the final dot (RFC 6066 §3), nor should Host.
        name = name[:-1]
    if len(name) > MAX_NAME_LENGTH or _NAME.fullmatch(name) is None:
        raise PartyUrlError("the host is not a valid name")
    address = _ipv4_literal(name)
    if address is not None:
        return str(address)
    if _ends_in_number(name):
        # "1.2.3.4.5", "999.1.1.1", "0x": no real name ends in a numeric label, and parsers (WHATWG, glibc, musl)
        # disagree about such hosts — refusing them leaves no room for a differential.
        raise PartyUrlError("the host looks like an IPv4 address but is not a valid one")
    return name


def _port(text: str | None, default_port: int) -> int:
    if not text:
        return default_port
    # isdecimal() alone would accept non-ASCII digits ("٨٠").
    if not (text.isascii() and text.isdecimal()) or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise PartyUrlError("the port must be a number from 1 to 65535")
    return int(text)


def _ipv4_literal(name: str) -> IPv4Address | None:
    """The IPv4 address glibc would take ``name`` for, in any spelling ``inet_aton`` accepts, else None."""
    try:
        return IPv4Address(socket.inet_aton(name))
    except (OSError, ValueError):  # OSError: not an address; ValueError: embedded NUL
        return None


def _ends_in_number(name: str) -> bool:
    """WHATWG URL Standard's "ends in a number" test on the last label: decimal digits, or 0x and hex digits."""
    last = name.rpartition(".")[2]
    if last.isdecimal():
        return True
    return last.startswith("0x") and all(c in _HEX for c in last[2:])


def _ip_literal(host: str) -> Address | None:
    """The address a ``PartyUrl.host`` is written as, if it is an IP literal (any spelling), else None."""
    if ":" in host:
        try:
            return IPv6Address(host)
        except ValueError:
            return None
    return _ipv4_literal(host)


def _encode_target(text: str) -> bytes:
    if _TARGET_VALID.fullmatch(text) is not None:
        return text.encode("ascii")
    return quote(_STRAY_PERCENT.sub("%25", text), safe=_TARGET_SAFE).encode("ascii")


# -- address policy ----------------------------------------------------------------------------------------------

# Why an address is refused; text for the operator's logs only (parties get NOT_PUBLIC).
LOOPBACK: Final = "loopback"
PRIVATE: Final = "private network"
LINK_LOCAL: Final = "link-local"
SHARED: Final = "shared address space (CGNAT)"
MULTICAST: Final = "multicast"
UNSPECIFIED: Final = "unspecified"
BROADCAST: Final = "broadcast"
DOCUMENTATION: Final = "documentation"
BENCHMARKING: Final = "benchmarking"
UNIQUE_LOCAL: Final = "unique local (private network)"
RESERVED: Final = "reserved"
NOT_GLOBAL: Final = "not globally reachable"

# The explicit table is the policy; Python's ``is_global`` runs after it only as a catch-all, so a newer Python
# that knows more special ranges makes the hub stricter, never looser. The table does not rely on it because
# ``is_global`` differs between 3.11 patch releases and misses ranges that matter here (3.11.7 calls 224.0.0.1,
# ff0e::1, 64:ff9b::7f00:1 and 2002:7f00:1:: global). Sources: IANA IPv4/IPv6 Special-Purpose Address Registries
# (RFC 6890 and its updates). Left out on purpose, being globally reachable per those registries: AS112
# (192.31.196.0/24, 192.175.48.0/24, RFC 7534/7535) and AMT (192.52.193.0/24, RFC 7450).
_REFUSED_V4: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/32", UNSPECIFIED),  # Linux connects it to the local host
    ("0.0.0.0/8", RESERVED),  # "this network", RFC 1122 §3.2.1.3
    ("10.0.0.0/8", PRIVATE),  # RFC 1918
    ("100.64.0.0/10", SHARED),  # RFC 6598: carrier-grade NAT, often the provider's internal network
    ("127.0.0.0/8", LOOPBACK),  # RFC 1122 §3.2.1.3
    ("169.254.0.0/16", LINK_LOCAL),  # RFC 3927; cloud metadata services live at 169.254.169.254
    ("172.16.0.0/12", PRIVATE),  # RFC 1918
    ("192.0.0.0/24", RESERVED),  # IETF protocol assignments, RFC 6890 §2.2.2 (also DS-Lite, NAT64 discovery)
    ("192.0.2.0/24", DOCUMENTATION),  # TEST-NET-1, RFC 5737
    ("192.88.99.0/24", RESERVED),  # 6to4 relay anycast, deprecated by RFC 7526
    ("192.168.0.0/16", PRIVATE),  # RFC 1918
    ("198.18.0.0/15", BENCHMARKING),  # RFC 2544
    ("198.51.100.0/24", DOCUMENTATION),  # TEST-NET-2, RFC 5737
    ("203.0.113.0/24", DOCUMENTATION),  # TEST-NET-3, RFC 5737
    ("224.0.0.0/4", MULTICAST),  # RFC 5771
    ("255.255.255.255/32", BROADCAST),  # RFC 919
    ("240.0.0.0/4", RESERVED),  # former class E, RFC 1112 §4
)
_REFUSED_V6: Final[tuple[tuple[str, str], ...]] = (
    ("::/128", UNSPECIFIED),  # RFC 4291 §2.5.2
    ("::1/128", LOOPBACK),  # RFC 4291 §2.5.3
    ("64:ff9b:1::/48", RESERVED),  # RFC 8215 local-use NAT64: where the IPv4 sits is site-specific, so unjudgeable
    ("100::/64", RESERVED),  # discard-only, RFC 6666
    # IETF protocol assignments (RFC 2928, RFC 6890), incl. Teredo 2001::/32 (RFC 4380: it embeds an obfuscated
    # IPv4 and tunnels to it) and ORCHIDv2 2001:20::/28. IANA marks a few sub-blocks global; none hosts a party.
    ("2001::/23", RESERVED),
    ("2001:db8::/32", DOCUMENTATION),  # RFC 3849
    ("3fff::/20", DOCUMENTATION),  # RFC 9637
    ("fc00::/7", UNIQUE_LOCAL),  # RFC 4193
    ("fe80::/10", LINK_LOCAL),  # RFC 4291 §2.5.6
    ("fec0::/10", RESERVED),  # site-local, deprecated by RFC 3879 but still routed by old stacks
    ("ff00::/8", MULTICAST),  # RFC 4291 §2.7
)
# IANA allocates only 2000::/3 for global unicast (RFC 4291 §2.4); the rest is reserved, or handled above.
_GLOBAL_UNICAST_V6: Final = IPv6Network("2000::/3")

# IPv6 forms that carry an IPv4 address and reach it: judged by the embedded address, allow-list included.
_MAPPED: Final = IPv6Network("::ffff:0:0/96")  # RFC 4291 §2.5.5.2: a dual-stack socket connects to the IPv4
_NAT64: Final = IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1 well-known prefix: the translator connects to it
_SIX_TO_FOUR: Final = IPv6Network("2002::/16")  # RFC 3056 §2: IPv4 in bits 16 to 47, reached through a relay
# RFC 4291 §2.5.5.1 IPv4-compatible ::a.b.c.d (deprecated; :: and ::1 are matched first): never permitted, no
# resolver returns it and no current stack routes it, but the log names the embedded address's category.
_COMPATIBLE: Final = IPv6Network("::/96")


def _mask(network: Network) -> tuple[int, int]:
    """(network int, mask int): ``int(address) & mask == network`` is the whole membership test."""
    return int(network.network_address), int(network.netmask)


def _masks(table: Iterable[tuple[str, str]]) -> tuple[tuple[int, int, str], ...]:
    return tuple((*_mask(ip_network(cidr)), reason) for cidr, reason in table)


_REFUSED_V4_MASKS: Final = _masks(_REFUSED_V4)
_REFUSED_V6_MASKS: Final = _masks(_REFUSED_V6)
_MAPPED_MASK: Final = _mask(_MAPPED)
_NAT64_MASK: Final = _mask(_NAT64)
_SIX_TO_FOUR_MASK: Final = _mask(_SIX_TO_FOUR)
_COMPATIBLE_MASK: Final = _mask(_COMPATIBLE)
_GLOBAL_UNICAST_MASK: Final = _mask(_GLOBAL_UNICAST_V6)
_LOW_32: Final = 0xFFFFFFFF


class NetworkPolicy:
    """Which addresses the hub may connect to for a party: public ones, plus the operator's allowed networks.

    ``permits`` runs on every new outbound connection, so the networks are precomputed as integer masks.
    """

    __slots__ = ("_allowed_v4", "_allowed_v6", "allowed")

    def __init__(self, allowed: Iterable[Network] = ()) -> None:
        self.allowed: tuple[Network, ...] = tuple(allowed)
        self._allowed_v4 = tuple(_mask(n) for n in self.allowed if n.version == 4)
        self._allowed_v6 = tuple(_mask(n) for n in self.allowed if n.version == 6)

    @classmethod
    def from_cidrs(cls, cidrs: Sequence[str]) -> NetworkPolicy:
        """Build from the ``allow_party_networks`` setting; ValueError (one line) names the first bad entry."""
        networks: list[Network] = []
        for cidr in cidrs:
            if not isinstance(cidr, str):
                raise ValueError(f"allow_party_networks: {cidr!r} is not a CIDR string")
            try:
                # strict: "10.1.2.3/8" is more likely a typo than a wish to allow all of 10/8.
                networks.append(ip_network(cidr.strip(), strict=True))
            except ValueError as exc:
                raise ValueError(f"allow_party_networks: {cidr!r} is not a network in CIDR notation: {exc}") from None
        return cls(networks)

    @classmethod
    def anywhere(cls) -> NetworkPolicy:
        """Every address: for URLs the operator configured (the hub's own public URL), never for a party's."""
        return cls([IPv4Network("0.0.0.0/0"), IPv6Network("::/0")])

    def __repr__(self) -> str:
        return f"NetworkPolicy(allowed={[str(n) for n in self.allowed]})"

    def permits(self, address: Address) -> bool:
        """True when the hub may connect to ``address`` for a party."""
        return self.reason(address) is None

    def reason(self, address: Address) -> str | None:
        """Why ``address`` is refused (for logs, never for parties), or None when it is permitted."""
        if address.version == 4:
            return self._reason_v4(int(address), address)
        value = int(address)
        for network, mask in self._allowed_v6:
            if value & mask == network:
                return None
        for (network, mask), form in (
            (_MAPPED_MASK, "IPv4-mapped"),
            (_NAT64_MASK, "NAT64"),
        ):
            if value & mask == network:
                return _embedded(self._reason_v4(value & _LOW_32, None), form, value & _LOW_32)
        if value & _SIX_TO_FOUR_MASK[1] == _SIX_TO_FOUR_MASK[0]:
            embedded = (value >> 80) & _LOW_32
            return _embedded(self._reason_v4(embedded, None), "6to4", embedded)
        for network, mask, why in _REFUSED_V6_MASKS:
            if value & mask == network:
                return why
        if value & _COMPATIBLE_MASK[1] == _COMPATIBLE_MASK[0]:
            inner = _reason_table_v4(value & _LOW_32) or RESERVED
            return f"{inner} (in deprecated IPv4-compatible form {IPv4Address(value & _LOW_32)})"
        if value & _GLOBAL_UNICAST_MASK[1] != _GLOBAL_UNICAST_MASK[0]:
            return RESERVED
        return None if address.is_global else NOT_GLOBAL

    def _reason_v4(self, value: int, address: IPv4Address | None) -> str | None:
        for network, mask in self._allowed_v4:
            if value & mask == network:
                return None
        why = _reason_table_v4(value)
        if why is not None:
            return why
        return None if (address if address is not None else IPv4Address(value)).is_global else NOT_GLOBAL


def _reason_table_v4(value: int) -> str | None:
    for network, mask, why in _REFUSED_V4_MASKS:
        if value & mask == network:
            return why
    return None


def _embedded(reason: str | None, form: str, value: int) -> str | None:
    return None if reason is None else f"{reason} (embedded in {form} address as {IPv4Address(value)})"


# -- checks ------------------------------------------------------------------------------------------------------


def check_literal(url: PartyUrl, policy: NetworkPolicy) -> None:
    """Refuse at once, before any network I/O, a URL whose host is an IP literal the policy refuses."""
    address = _ip_literal(url.host)
    if address is not None:
        why = policy.reason(address)
        if why is not None:
            raise PartyAddressError(f"{address}: {why}")


class AddressResolver(Protocol):
    """What ``resolve`` needs of an event loop (any ``asyncio.AbstractEventLoop``); a seam for tests."""

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Sequence[AddressInfo]: ...


async def resolve(
    url: PartyUrl, policy: NetworkPolicy, *, loop: AddressResolver | None = None
) -> list[tuple[int, str]]:
    """The permitted addresses of ``url.host`` as (family, address text), in resolver order, duplicates dropped.

    Connect to these and only these (``create_connection(host=address, server_hostname=url.host)``): looking the
    name up again would let DNS rebinding bypass the check. IP literals are not looked up. An IPv4-mapped address
    is returned as the IPv4 address it reaches, so what was judged is what is connected to. Raises
    ``PartyAddressError`` when the name does not resolve or every address is refused; no timeout of its own
    (the caller's connect timeout bounds it).
    """
    literal = _ip_literal(url.host)
    if literal is not None:
        why = policy.reason(literal)
        if why is not None:
            raise PartyAddressError(f"{literal}: {why}")
        return [_connectable(literal)]
    resolver: AddressResolver = asyncio.get_running_loop() if loop is None else loop
    try:
        infos = await resolver.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise PartyAddressError(f"{url.host} does not resolve: {exc}") from exc
    permitted: list[tuple[int, str]] = []
    refused: list[str] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = sockaddr[0]
        try:
            address = ip_address(text if isinstance(text, str) else "")
        except ValueError:
            refused.append(f"{text!r}: not an IP address")
            continue
        why = policy.reason(address)
        if why is not None:
            refused.append(f"{address}: {why}")
            continue
        entry = _connectable(address)
        if entry not in permitted:  # a handful of entries: a list keeps order at no cost
            permitted.append(entry)
    if not permitted:
        raise PartyAddressError(f"{url.host} → " + (", ".join(refused) or "no addresses"))
    return permitted


def _connectable(address: Address) -> tuple[int, str]:
    if address.version == 4:
        return socket.AF_INET, str(address)
    mapped = address.ipv4_mapped
    if mapped is not None:
        return socket.AF_INET, str(mapped)
    return socket.AF_INET6, str(address)  # keeps a zone id from the resolver ("fe80::1%eth0") if it gave one
