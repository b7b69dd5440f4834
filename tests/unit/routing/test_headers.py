"""routing/headers.py: the one-pass ASGI header parser and the ``Authorization: Token`` decoder."""

from __future__ import annotations

import pytest

from routing import headers as h
from routing.errors import InvalidParametersError, UnauthorizedError
from routing.model import PartyKey

RawHeaders = list[tuple[bytes, bytes]]


def parse(raw: RawHeaders) -> h.RequestHeaders:
    """The parser as the proxy uses it: read in one pass, problems raised once the caller is authenticated."""
    parsed = h.read_request_headers(raw)
    parsed.check()
    return parsed


ROUTING: RawHeaders = [
    (b"ocpi-to-country-code", b"de"),
    (b"ocpi-to-party-id", b"xyz"),
    (b"ocpi-from-country-code", b"nl"),
    (b"ocpi-from-party-id", b"abc"),
]


def test_empty_headers_give_nothing() -> None:
    parsed = parse([])
    assert parsed == h.RequestHeaders(
        authorization=None,
        request_id=None,
        correlation_id=None,
        to_party=None,
        from_party=None,
        content_length=None,
        passthrough=[],
    )


def test_routing_headers_are_upper_cased() -> None:
    parsed = parse(ROUTING)
    assert parsed.to_party == PartyKey("DE", "XYZ")
    assert parsed.from_party == PartyKey("NL", "ABC")


def test_routing_header_values_are_stripped() -> None:
    parsed = parse([(b"ocpi-to-country-code", b" nl "), (b"ocpi-to-party-id", b" a1b ")])
    assert parsed.to_party == PartyKey("NL", "A1B")


def test_reads_every_header_it_knows() -> None:
    parsed = parse(
        [
            (b"authorization", b"Token abc"),
            (b"x-request-id", b"req-1"),
            (b"x-correlation-id", b"corr-1"),
            (b"content-length", b"42"),
            *ROUTING,
        ]
    )
    assert parsed.authorization == b"Token abc"
    assert parsed.request_id == b"req-1"
    assert parsed.correlation_id == b"corr-1"
    assert parsed.content_length == 42


@pytest.mark.parametrize(
    "present",
    [
        [(b"ocpi-to-country-code", b"NL")],
        [(b"ocpi-to-party-id", b"ABC")],
        [(b"ocpi-from-country-code", b"NL")],
        [(b"ocpi-from-party-id", b"ABC")],
    ],
)
def test_routing_headers_come_in_pairs(present: RawHeaders) -> None:
    with pytest.raises(InvalidParametersError, match="pairs"):
        parse(present)


@pytest.mark.parametrize(
    ("country_code", "party_id"),
    [
        (b"N", b"ABC"),
        (b"NLD", b"ABC"),
        (b"N1", b"ABC"),
        (b"NL", b"AB"),
        (b"NL", b"ABCD"),
        (b"NL", b"A-C"),
        (b"", b"ABC"),
    ],
)
def test_routing_headers_must_be_cistrings(country_code: bytes, party_id: bytes) -> None:
    with pytest.raises(InvalidParametersError):
        parse([(b"ocpi-from-country-code", country_code), (b"ocpi-from-party-id", party_id)])


@pytest.mark.parametrize("bad", [b"N\xc3\x9f", b"N\rL", b"N\nL", b"N\tL", b"NL\x00", b"NL\x7f"])
def test_routing_headers_must_be_printable_ascii(bad: bytes) -> None:
    with pytest.raises(InvalidParametersError, match="printable"):
        parse([(b"ocpi-to-country-code", bad), (b"ocpi-to-party-id", b"ABC")])


@pytest.mark.parametrize("name", [b"x-request-id", b"x-correlation-id"])
@pytest.mark.parametrize(
    "bad", [b"abc\xc3\xa9", b"abc\r", b"abc\n", b"a\r\nX-Injected: 1", b"abc\tdef", b"\x00", b"x" * 256]
)
def test_bad_request_ids_are_refused(name: bytes, bad: bytes) -> None:
    with pytest.raises(InvalidParametersError):
        parse([(name, bad)])


def test_request_id_of_max_length_is_accepted() -> None:
    value = b"x" * h.MAX_ID_LENGTH
    parsed = parse([(b"x-request-id", value), (b"x-correlation-id", value)])
    assert parsed.request_id == value
    assert parsed.correlation_id == value


@pytest.mark.parametrize("bad", [b"", b"abc", b"-1", b"+1", b"1.5", b" 12", b"1e3", b"0x10"])
def test_content_length_must_be_a_number(bad: bytes) -> None:
    with pytest.raises(InvalidParametersError, match="Content-Length"):
        parse([(b"content-length", bad)])


def test_content_length_zero() -> None:
    assert parse([(b"content-length", b"0")]).content_length == 0


@pytest.mark.parametrize("name", sorted(h.NOT_FORWARDED))
def test_not_forwarded_headers_are_dropped_from_passthrough(name: bytes) -> None:
    value = b"1" if name == h.CONTENT_LENGTH else b"Token abc" if name == h.AUTHORIZATION else b"v"
    parsed = parse([(name, value), (b"accept", b"application/json")])
    assert parsed.passthrough == [(b"accept", b"application/json")]


def test_hop_by_hop_and_rewritten_headers_are_in_not_forwarded() -> None:
    for name in (b"authorization", b"x-request-id", b"host", b"content-length", b"transfer-encoding", b"connection"):
        assert name in h.NOT_FORWARDED
    for name in (b"x-correlation-id", b"ocpi-to-country-code", b"ocpi-from-party-id", b"content-type"):
        assert name not in h.NOT_FORWARDED


def test_ocpi_headers_are_kept_in_passthrough_as_sent_and_in_order() -> None:
    raw: RawHeaders = [
        (b"host", b"hub.example.com"),
        (b"content-type", b"application/json"),
        (b"x-correlation-id", b"corr-1"),
        *ROUTING,
        (b"authorization", b"Token abc"),
        (b"x-request-id", b"req-1"),
        (b"user-agent", b"party/1.0"),
    ]
    parsed = parse(raw)
    assert parsed.passthrough == [
        (b"content-type", b"application/json"),
        (b"x-correlation-id", b"corr-1"),
        *ROUTING,
        (b"user-agent", b"party/1.0"),
    ]


# -- Authorization ----------------------------------------------------------------------------------------


def test_missing_authorization_is_unauthorized() -> None:
    with pytest.raises(UnauthorizedError):
        h.parse_authorization(None)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"Token",
        b"Token ",
        b"Token    ",
        b"Bearer ZXhhbXBsZS10b2tlbg==",
        b"Basic ZXhhbXBsZS10b2tlbg==",
        b"TokenZXhhbXBsZS10b2tlbg==",
        b"Token abc\xc3\xa9",
        b"Token abc\ndef",
        b"Token " + b"A" * h.MAX_AUTHORIZATION_LENGTH,
    ],
)
def test_malformed_authorization_is_unauthorized(value: bytes) -> None:
    with pytest.raises(UnauthorizedError):
        h.parse_authorization(value)


@pytest.mark.parametrize("scheme", [b"Token", b"token", b"TOKEN", b"tOkEn"])
def test_token_scheme_is_case_insensitive(scheme: bytes) -> None:
    candidates = h.parse_authorization(scheme + b" ZXhhbXBsZS10b2tlbg==")
    assert candidates.decoded == b"example-token"
    assert candidates.raw == b"ZXhhbXBsZS10b2tlbg=="


def test_base64_token_gives_both_candidates() -> None:
    assert h.parse_authorization(b"Token ZXhhbXBsZS10b2tlbg==") == h.TokenCandidates(
        decoded=b"example-token", raw=b"ZXhhbXBsZS10b2tlbg=="
    )


def test_spec_example_with_trailing_newline_is_not_a_decoded_candidate() -> None:
    # transport_and_format §4.1.2's example encodes "example-token\n"; a newline is not printable.
    candidates = h.parse_authorization(b"Token ZXhhbXBsZS10b2tlbgo=")
    assert candidates.decoded is None
    assert candidates.raw == b"ZXhhbXBsZS10b2tlbgo="


@pytest.mark.parametrize(
    "token",
    [b"example-token", b"0c9e3a5b-8f1d-4e2a-9b7c-1d2e3f4a5b6c", b"abc", b"abcd", b"not base64!"],
)
def test_raw_token_has_no_decoded_candidate(token: bytes) -> None:
    candidates = h.parse_authorization(b"Token " + token)
    assert candidates.decoded is None
    assert candidates.raw == token


def test_surrounding_whitespace_is_stripped_from_the_token() -> None:
    candidates = h.parse_authorization(b"Token   ZXhhbXBsZS10b2tlbg==  ")
    assert candidates.raw == b"ZXhhbXBsZS10b2tlbg=="
    assert candidates.decoded == b"example-token"


def test_base64_of_empty_string_is_not_a_decoded_candidate() -> None:
    # "====" is not valid strict base64; "" would be; neither yields a usable decoded token.
    candidates = h.parse_authorization(b"Token ====")
    assert candidates.decoded is None
    assert candidates.raw == b"===="


@pytest.mark.parametrize(
    ("token", "base64_form", "expected"),
    [
        ("example-token", True, b"Token ZXhhbXBsZS10b2tlbg=="),
        ("example-token", False, b"Token example-token"),
    ],
)
def test_authorization_value(token: str, base64_form: bool, expected: bytes) -> None:
    assert h.authorization_value(token, base64_form) == expected


@pytest.mark.parametrize(
    "token", ["example-token", "0c9e3a5b-8f1d-4e2a-9b7c-1d2e3f4a5b6c", "a", "ab", "abc", "x" * 64, "a b~c"]
)
def test_authorization_value_round_trips_through_parse_authorization(token: str) -> None:
    encoded = h.parse_authorization(h.authorization_value(token, base64_form=True))
    assert encoded.decoded == token.encode()
    plain = h.parse_authorization(h.authorization_value(token, base64_form=False))
    assert plain.raw == token.encode()
