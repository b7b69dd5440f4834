"""routing/table.py: authentication, sender checks, receiver resolution and broadcast recipients."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

import pytest

from routing import headers as h
from routing.errors import (
    ForbiddenError,
    InvalidParametersError,
    ReceiverUnreachableError,
    UnauthorizedError,
    UnknownReceiverError,
)
from routing.model import ConnectionStatus, InterfaceRole, ModuleID, PartyKey, PartyRole, TokenForm
from routing.outcome import Outcome
from routing.table import Broadcast, Caller, Platform, RoutingTable, TokenGrant, token_digest

HUB = PartyKey("ZZ", "HUB")
LOCATIONS_RECEIVER = (ModuleID.LOCATIONS, InterfaceRole.RECEIVER)
TOKENS_RECEIVER = (ModuleID.TOKENS, InterfaceRole.RECEIVER)
ALL_RECEIVERS = (LOCATIONS_RECEIVER, TOKENS_RECEIVER, (ModuleID.TARIFFS, InterfaceRole.RECEIVER))


def platform(
    platform_id: str,
    roles: Iterable[str],
    status: ConnectionStatus = ConnectionStatus.CONNECTED,
    endpoints: Iterable[tuple[ModuleID, InterfaceRole]] = ALL_RECEIVERS,
) -> Platform:
    return Platform(
        id=platform_id,
        name=platform_id,
        roles=frozenset(PartyRole.parse(r) for r in roles),
        status=status,
        endpoints={
            (module, role): f"https://{platform_id}.example.com/ocpi/2.2.1/{module.value}/{role.value.lower()}"
            for module, role in endpoints
        },
        auth_header=b"Token " + platform_id.encode(),
        versions_url=f"https://{platform_id}.example.com/ocpi/versions",
        registered=True,
    )


def table(platforms: Iterable[Platform], tokens: Mapping[str, tuple[str, bool]] | None = None) -> RoutingTable:
    """``tokens``: clear token → (platform id, registered)."""
    grants = {
        token_digest(t.encode()): TokenGrant(pid, token_digest(t.encode()), registered)
        for t, (pid, registered) in (tokens or {}).items()
    }
    return RoutingTable(version=1, hub=HUB, platforms={p.id: p for p in platforms}, tokens=grants)


def caller_of(platform: Platform, registered: bool = True) -> Caller:
    return Caller(platform, registered, TokenForm.BASE64, token_digest(b"t"), b"t")


def candidates(header: str) -> h.TokenCandidates:
    return h.parse_authorization(header.encode())


def b64(token: str) -> str:
    return base64.b64encode(token.encode()).decode()


# -- basics ------------------------------------------------------------------------------------------------


def test_token_digest_is_sha256() -> None:
    assert token_digest(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_platform_parties_are_derived_from_roles() -> None:
    p = platform("p", ["NL:AAA:CPO", "NL:AAA:EMSP", "NL:BBB:EMSP"])
    assert p.parties == frozenset({PartyKey("NL", "AAA"), PartyKey("NL", "BBB")})


def test_table_indexes_parties_by_platform() -> None:
    a, b = platform("a", ["NL:AAA:CPO"]), platform("b", ["DE:BBB:EMSP", "DE:CCC:EMSP"])
    t = table([a, b])
    assert t.parties == {PartyKey("NL", "AAA"): a, PartyKey("DE", "BBB"): b, PartyKey("DE", "CCC"): b}


def test_empty_table() -> None:
    t = RoutingTable.empty(HUB)
    assert t.version == 0
    assert t.hub == HUB
    assert t.platforms == {} and t.tokens == {} and t.parties == {}
    with pytest.raises(UnauthorizedError):
        t.authenticate(candidates("Token abc"))


# -- authenticate --------------------------------------------------------------------------------------------


def test_authenticate_base64_form() -> None:
    p = platform("p", ["NL:AAA:CPO"])
    caller = table([p], {"token-c": ("p", True)}).authenticate(candidates(f"Token {b64('token-c')}"))
    assert caller.platform is p
    assert caller.registered is True
    assert caller.form is TokenForm.BASE64
    assert caller.token == b"token-c"
    assert caller.digest == token_digest(b"token-c")


def test_authenticate_raw_form() -> None:
    p = platform("p", ["NL:AAA:CPO"])
    caller = table([p], {"token-c": ("p", True)}).authenticate(candidates("Token token-c"))
    assert caller.platform is p
    assert caller.form is TokenForm.RAW
    assert caller.token == b"token-c"


def test_authenticate_raw_token_that_also_decodes_as_base64() -> None:
    # "dG9rZW4=" decodes to "token"; the platform's token is the literal text, sent raw.
    p = platform("p", ["NL:AAA:CPO"])
    caller = table([p], {"dG9rZW4=": ("p", True)}).authenticate(candidates("Token dG9rZW4="))
    assert caller.form is TokenForm.RAW
    assert caller.token == b"dG9rZW4="


def test_authenticate_token_a_is_not_registered() -> None:
    p = platform("p", ["NL:AAA:CPO"])
    caller = table([p], {"token-a": ("p", False)}).authenticate(candidates(f"Token {b64('token-a')}"))
    assert caller.registered is False


@pytest.mark.parametrize("header", ["Token unknown", f"Token {b64('unknown')}", f"Token {b64('token-c')}x"])
def test_authenticate_unknown_token(header: str) -> None:
    t = table([platform("p", ["NL:AAA:CPO"])], {"token-c": ("p", True)})
    with pytest.raises(UnauthorizedError):
        t.authenticate(candidates(header))


def test_authenticate_grant_for_missing_platform_is_unauthorized() -> None:
    t = table([platform("p", ["NL:AAA:CPO"])], {"token-c": ("gone", True)})
    with pytest.raises(UnauthorizedError):
        t.authenticate(candidates("Token token-c"))


# -- check_sender --------------------------------------------------------------------------------------------


def test_check_sender_returns_an_owned_party() -> None:
    p = platform("p", ["NL:AAA:CPO", "NL:BBB:EMSP"])
    t = table([p])
    assert t.check_sender(caller_of(p), PartyKey("NL", "BBB")) == PartyKey("NL", "BBB")


def test_check_sender_with_lower_case_headers() -> None:
    p = platform("p", ["NL:AAA:CPO"])
    parsed = h.read_request_headers([(b"ocpi-from-country-code", b"nl"), (b"ocpi-from-party-id", b"aaa")])
    assert table([p]).check_sender(caller_of(p), parsed.from_party) == PartyKey("NL", "AAA")


def test_check_sender_token_a_is_unauthorized() -> None:
    p = platform("p", ["NL:AAA:CPO"])
    with pytest.raises(UnauthorizedError):
        table([p]).check_sender(caller_of(p, registered=False), PartyKey("NL", "AAA"))


def test_check_sender_suspended_is_forbidden() -> None:
    p = platform("p", ["NL:AAA:CPO"], status=ConnectionStatus.SUSPENDED)
    with pytest.raises(ForbiddenError):
        table([p]).check_sender(caller_of(p), PartyKey("NL", "AAA"))


@pytest.mark.parametrize("status", [ConnectionStatus.OFFLINE, ConnectionStatus.PLANNED])
def test_check_sender_offline_or_planned_may_send(status: ConnectionStatus) -> None:
    p = platform("p", ["NL:AAA:CPO"], status=status)
    assert table([p]).check_sender(caller_of(p), PartyKey("NL", "AAA")) == PartyKey("NL", "AAA")


def test_check_sender_missing_from_is_the_only_party() -> None:
    # Many implementations send no routing headers; a one-party platform's sender is unambiguous (digest §2.9).
    p = platform("p", ["NL:AAA:CPO"])
    assert table([p]).check_sender(caller_of(p), None) == PartyKey("NL", "AAA")


def test_check_sender_missing_from_with_several_parties() -> None:
    p = platform("p", ["NL:AAA:CPO", "NL:BBB:EMSP"])
    with pytest.raises(InvalidParametersError, match="required"):
        table([p]).check_sender(caller_of(p), None)


@pytest.mark.parametrize("other", [PartyKey("DE", "BBB"), PartyKey("NL", "AAB"), PartyKey("nl", "aaa")])
def test_check_sender_from_not_owned(other: PartyKey) -> None:
    # Includes the un-normalised PartyKey("nl", "aaa"): keys are upper-cased by the header parser, not here.
    p, q = platform("p", ["NL:AAA:CPO"]), platform("q", ["DE:BBB:EMSP"])
    with pytest.raises(InvalidParametersError, match="does not belong"):
        table([p, q]).check_sender(caller_of(p), other)


# -- resolve -------------------------------------------------------------------------------------------------


SENDER = platform("p", ["NL:AAA:CPO"])
FROM = PartyKey("NL", "AAA")


def test_resolve_direct() -> None:
    receiver = platform("r", ["DE:BBB:EMSP"])
    caller = caller_of(SENDER)
    direct = table([SENDER, receiver]).resolve(
        caller, FROM, PartyKey("DE", "BBB"), ModuleID.TOKENS, InterfaceRole.RECEIVER
    )
    assert direct.receiver is receiver
    assert direct.endpoint == "https://r.example.com/ocpi/2.2.1/tokens/receiver"
    assert (direct.caller, direct.sender, direct.to_party) == (caller, FROM, PartyKey("DE", "BBB"))
    assert not direct.add_to
    assert not direct.add_from


def test_resolve_unknown_receiver() -> None:
    t = table([SENDER, platform("r", ["DE:BBB:EMSP"])])
    with pytest.raises(UnknownReceiverError) as caught:
        t.resolve(caller_of(SENDER), FROM, PartyKey("DE", "CCC"), ModuleID.TOKENS, InterfaceRole.RECEIVER)
    assert caught.value.ocpi_status == 4001
    assert caught.value.outcome is Outcome.UNKNOWN_RECEIVER


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (ConnectionStatus.OFFLINE, Outcome.RECEIVER_OFFLINE),
        (ConnectionStatus.PLANNED, Outcome.RECEIVER_PLANNED),
        (ConnectionStatus.SUSPENDED, Outcome.RECEIVER_SUSPENDED),
    ],
)
def test_resolve_receiver_not_connected(status: ConnectionStatus, outcome: Outcome) -> None:
    t = table([SENDER, platform("r", ["DE:BBB:EMSP"], status=status)])
    with pytest.raises(ReceiverUnreachableError, match=status.value) as caught:
        t.resolve(caller_of(SENDER), FROM, PartyKey("DE", "BBB"), ModuleID.TOKENS, InterfaceRole.RECEIVER)
    assert caught.value.ocpi_status == 4003
    assert caught.value.outcome is outcome  # the metrics tell a party's state from a network failure


@pytest.mark.parametrize(
    ("module", "role"), [(ModuleID.TOKENS, InterfaceRole.SENDER), (ModuleID.COMMANDS, InterfaceRole.RECEIVER)]
)
def test_resolve_missing_endpoint(module: ModuleID, role: InterfaceRole) -> None:
    t = table([SENDER, platform("r", ["DE:BBB:EMSP"], endpoints=[TOKENS_RECEIVER])])
    with pytest.raises(ReceiverUnreachableError, match="no") as caught:
        t.resolve(caller_of(SENDER), FROM, PartyKey("DE", "BBB"), module, role)
    assert caught.value.ocpi_status == 4003
    assert caught.value.outcome is Outcome.NO_ENDPOINT


# -- broadcast -----------------------------------------------------------------------------------------------


def world() -> dict[str, Platform]:
    platforms = [
        # The sender's platform also hosts an eMSP: it never gets its own push back.
        platform("cpo", ["NL:CPO:CPO", "NL:OWN:EMSP"]),
        platform("cpo2", ["DE:CP2:CPO"]),
        platform("emsps", ["NL:EM1:EMSP", "NL:EM2:EMSP"]),
        platform("nsp", ["BE:NSP:NSP"]),
        platform("other", ["FR:OTH:OTHER"]),
        # One party in two audience roles: one copy only.
        platform("dual", ["FR:DUA:EMSP", "FR:DUA:OTHER"]),
        platform("scsp", ["NL:SCS:SCSP"]),
        platform("nap", ["NL:NAP:NAP"]),
        platform("offline", ["NL:OFF:EMSP"], status=ConnectionStatus.OFFLINE),
        platform("planned", ["NL:PLA:EMSP"], status=ConnectionStatus.PLANNED),
        platform("suspended", ["NL:SUS:EMSP"], status=ConnectionStatus.SUSPENDED),
        platform("noendpoint", ["NL:NOE:EMSP"], endpoints=[(ModuleID.LOCATIONS, InterfaceRole.SENDER)]),
        platform("emspcpo", ["BE:EMC:EMSP", "BE:CPC:CPO"]),
    ]
    return {p.id: p for p in platforms}


def recipients(decision: Broadcast) -> set[tuple[str, str, str]]:
    return {(r.platform.id, str(r.party), r.endpoint) for r in decision.recipients}


def expected(*pairs: tuple[str, str], module: ModuleID = ModuleID.LOCATIONS) -> set[tuple[str, str, str]]:
    return {(pid, party, f"https://{pid}.example.com/ocpi/2.2.1/{module.value}/receiver") for pid, party in pairs}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_broadcast_from_cpo_reaches_emsp_nsp_and_other(method: str) -> None:
    ps = world()
    decision = table(ps.values()).broadcast(
        caller_of(ps["cpo"]),
        PartyKey("NL", "CPO"),
        ModuleID.LOCATIONS,
        InterfaceRole.RECEIVER,
        method,
        own(PartyKey("NL", "CPO")),
    )
    assert recipients(decision) == expected(
        ("emsps", "NL:EM1"),
        ("emsps", "NL:EM2"),
        ("nsp", "BE:NSP"),
        ("other", "FR:OTH"),
        ("dual", "FR:DUA"),
        ("emspcpo", "BE:EMC"),
    )
    assert len(decision.recipients) == 6


def test_broadcast_gives_one_recipient_per_party_of_a_platform() -> None:
    ps = world()
    decision = table(ps.values()).broadcast(
        caller_of(ps["cpo"]),
        PartyKey("NL", "CPO"),
        ModuleID.TARIFFS,
        InterfaceRole.RECEIVER,
        "PUT",
        own(PartyKey("NL", "CPO")),
    )
    emsps = [r for r in decision.recipients if r.platform.id == "emsps"]
    assert sorted(str(r.party) for r in emsps) == ["NL:EM1", "NL:EM2"]
    assert all(r.endpoint == "https://emsps.example.com/ocpi/2.2.1/tariffs/receiver" for r in emsps)
    assert [str(r.party) for r in decision.recipients if r.platform.id == "dual"] == ["FR:DUA"]


@pytest.mark.parametrize("sender", [PartyKey("NL", "OWN"), PartyKey("BE", "EMC")])
def test_broadcast_from_emsp_reaches_cpos_only(sender: PartyKey) -> None:
    ps = world()
    platform_id = "cpo" if sender.party_id == "OWN" else "emspcpo"
    decision = table(ps.values()).broadcast(
        caller_of(ps[platform_id]), sender, ModuleID.TOKENS, InterfaceRole.RECEIVER, "PUT", own(sender)
    )
    everyone = expected(("cpo", "NL:CPO"), ("cpo2", "DE:CP2"), ("emspcpo", "BE:CPC"), module=ModuleID.TOKENS)
    assert recipients(decision) == {r for r in everyone if r[0] != platform_id}


def test_broadcast_from_other_reaches_cpos_only() -> None:
    ps = world()
    decision = table(ps.values()).broadcast(
        caller_of(ps["other"]),
        PartyKey("FR", "OTH"),
        ModuleID.TOKENS,
        InterfaceRole.RECEIVER,
        "POST",
        own(PartyKey("FR", "OTH")),
    )
    assert recipients(decision) == expected(
        ("cpo", "NL:CPO"), ("cpo2", "DE:CP2"), ("emspcpo", "BE:CPC"), module=ModuleID.TOKENS
    )


def test_broadcast_only_to_receiver_interfaces() -> None:
    ps = world()
    with pytest.raises(InvalidParametersError, match="Receiver interfaces"):
        table(ps.values()).broadcast(
            caller_of(ps["cpo"]),
            PartyKey("NL", "CPO"),
            ModuleID.LOCATIONS,
            InterfaceRole.SENDER,
            "PUT",
            own(PartyKey("NL", "CPO")),
        )


def test_broadcast_of_someone_elses_objects_is_refused() -> None:
    ps = world()
    with pytest.raises(InvalidParametersError, match="sender's own objects"):
        table(ps.values()).broadcast(
            caller_of(ps["cpo"]), PartyKey("NL", "CPO"), ModuleID.TARIFFS, InterfaceRole.RECEIVER, "PUT", "/DE/CP2/T1"
        )


def test_broadcast_by_a_non_owner_role_is_refused() -> None:
    ps = world()
    emsp = next(k for k in ps if k.startswith("emsp") and k != "emspcpo")
    sender = next(iter(ps[emsp].parties))
    with pytest.raises(InvalidParametersError, match="does not own"):
        table(ps.values()).broadcast(
            caller_of(ps[emsp]), sender, ModuleID.LOCATIONS, InterfaceRole.RECEIVER, "PUT", own(sender)
        )


def own(sender: PartyKey) -> str:
    """A broadcast URL suffix naming the sender's own object."""
    return f"/{sender.country_code}/{sender.party_id}/X1"


def test_broadcast_with_no_connected_audience_is_empty() -> None:
    cpo = platform("cpo", ["NL:CPO:CPO"])
    offline = platform("e", ["NL:EEE:EMSP"], status=ConnectionStatus.OFFLINE)
    decision = table([cpo, offline]).broadcast(
        caller_of(cpo),
        PartyKey("NL", "CPO"),
        ModuleID.LOCATIONS,
        InterfaceRole.RECEIVER,
        "PUT",
        own(PartyKey("NL", "CPO")),
    )
    assert decision.recipients == ()


@pytest.mark.parametrize("method", ["GET", "DELETE", "HEAD", "OPTIONS", "post"])
def test_broadcast_refuses_non_push_methods(method: str) -> None:
    ps = world()
    with pytest.raises(InvalidParametersError) as caught:
        table(ps.values()).broadcast(
            caller_of(ps["cpo"]),
            PartyKey("NL", "CPO"),
            ModuleID.LOCATIONS,
            InterfaceRole.RECEIVER,
            method,
            own(PartyKey("NL", "CPO")),
        )
    assert caught.value.ocpi_status == 2001


@pytest.mark.parametrize("module", [ModuleID.SESSIONS, ModuleID.CDRS, ModuleID.COMMANDS, ModuleID.CHARGINGPROFILES])
def test_broadcast_refuses_party_specific_modules(module: ModuleID) -> None:
    ps = world()
    with pytest.raises(InvalidParametersError, match="cannot be broadcast") as caught:
        table(ps.values()).broadcast(
            caller_of(ps["cpo"]),
            PartyKey("NL", "CPO"),
            module,
            InterfaceRole.RECEIVER,
            "POST",
            own(PartyKey("NL", "CPO")),
        )
    assert caught.value.ocpi_status == 2001


@pytest.mark.parametrize(("pid", "sender"), [("nsp", PartyKey("BE", "NSP")), ("scsp", PartyKey("NL", "SCS"))])
def test_broadcast_refuses_roles_without_audience(pid: str, sender: PartyKey) -> None:
    ps = world()
    with pytest.raises(InvalidParametersError, match="does not own"):
        table(ps.values()).broadcast(
            caller_of(ps[pid]), sender, ModuleID.LOCATIONS, InterfaceRole.RECEIVER, "PUT", own(sender)
        )
