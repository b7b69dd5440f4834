"""routing/decision.py: the one decision every functional-module request and every relay URL runs through."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from routing import headers as h
from routing.decision import GetAll, OpenRoute, StoreGet, decide, decide_relay
from routing.errors import (
    ForbiddenError,
    InvalidParametersError,
    NoEndpointError,
    NotFoundError,
    OcpiError,
    ReceiverOfflineError,
    ReceiverPlannedError,
    ReceiverSuspendedError,
    ReceiverUnreachableError,
    UnauthorizedError,
    UnknownReceiverError,
)
from routing.model import ConnectionStatus, InterfaceRole, ModuleID, PartyKey
from routing.outcome import Outcome
from routing.relays import RelayGrant
from routing.table import Broadcast, Direct, RoutingTable
from tests.unit.routing.builders import (
    HUB,
    Trail,
    authorization,
    party,
    platform,
    request_headers,
    table,
    token_of,
)

SENDER, RECEIVER = InterfaceRole.SENDER, InterfaceRole.RECEIVER

CPO = platform("cpo", ["NL:CPO:CPO"])
EMSP = platform("emsp", ["DE:EMS:EMSP"])
NSP = platform("nsp", ["BE:NSP:NSP"])
OTHER = platform("other", ["FR:OTH:OTHER"])
NAP = platform("nap", ["ES:NAP:NAP"])
#: One platform, two parties in two roles: OCPI-from is never inferred for it.
MULTI = platform("multi", ["BE:MCP:CPO", "BE:MEM:EMSP"])
TOKEN_A = platform("token-a", ["IT:TKA:EMSP"], registered=False, status=ConnectionStatus.PLANNED)
SUSPENDED = platform("suspended", ["NL:SUS:EMSP"], status=ConnectionStatus.SUSPENDED)
OFFLINE = platform("offline", ["NL:OFF:EMSP"], status=ConnectionStatus.OFFLINE)
PLANNED = platform("planned", ["NL:PLA:EMSP"], status=ConnectionStatus.PLANNED)
NO_SESSIONS = platform("nosessions", ["NL:NOS:EMSP"], endpoints=[(ModuleID.LOCATIONS, RECEIVER)])
WORLD = table(CPO, EMSP, NSP, OTHER, NAP, MULTI, TOKEN_A, SUSPENDED, OFFLINE, PLANNED, NO_SESSIONS)

CPO_PARTY, EMSP_PARTY = party("NL:CPO"), party("DE:EMS")


def run(
    token: str | None,
    module: ModuleID = ModuleID.SESSIONS,
    role: InterfaceRole = RECEIVER,
    method: str = "PUT",
    suffix: str = "/NL/CPO/S1",
    *,
    to: PartyKey | None = EMSP_PARTY,
    sender: PartyKey | None = CPO_PARTY,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    routing: RoutingTable = WORLD,
    trail: Trail | None = None,
) -> object:
    parsed = request_headers(token, to=to, sender=sender, extra=extra)
    return decide(routing, parsed, module, role, method, suffix, trail or Trail())


# -- 401 first, whatever else is wrong (transport_and_format §4.1.2) -------------------------------------------

#: Everything else a request can get wrong, each on its own.
OTHER_FAULTS: dict[str, Callable[[str | None], object]] = {
    "nothing else": lambda token: run(token),
    "repeated OCPI-to-party-id": lambda token: run(token, extra=((h.OCPI_TO_PARTY_ID, b"XYZ"),)),
    "half a routing pair": lambda token: run(token, sender=None, extra=((h.OCPI_FROM_PARTY_ID, b"CPO"),)),
    "malformed OCPI-to": lambda token: run(
        token, to=None, extra=((h.OCPI_TO_COUNTRY_CODE, b"N1"), (h.OCPI_TO_PARTY_ID, b"EMS"))
    ),
    "X-Request-ID with a newline": lambda token: run(token, extra=((h.X_REQUEST_ID, b"a\nb"),)),
    "non-numeric Content-Length": lambda token: run(token, extra=((h.CONTENT_LENGTH, b"ten"),)),
    "dot-dot path": lambda token: run(token, suffix="/NL/CPO/../S1"),
    "impersonated OCPI-from": lambda token: run(token, sender=EMSP_PARTY),
    "unknown receiver": lambda token: run(token, to=party("XX:ZZZ")),
    "GET of unstored data from the hub": lambda token: run(token, method="GET", to=HUB),
    "broadcast of someone else's object": lambda token: run(
        token, module=ModuleID.LOCATIONS, suffix="/DE/EMS/LOC1", to=HUB
    ),
}


@pytest.mark.parametrize("fault", OTHER_FAULTS)
@pytest.mark.parametrize("token", [None, "unknown-token"], ids=["no Authorization", "unknown token"])
def test_an_unauthenticated_request_gets_401_whatever_else_is_wrong(fault: str, token: str | None) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        OTHER_FAULTS[fault](token)
    assert caught.value.outcome is Outcome.REFUSED


@pytest.mark.parametrize("value", [b"Bearer abc", b"Token ", b"Token \x01\x02", b"Token " + b"a" * 600, b"token"])
def test_a_malformed_authorization_is_401_before_a_malformed_routing_header(value: bytes) -> None:
    raw = [(h.AUTHORIZATION, value), (h.OCPI_TO_COUNTRY_CODE, b"??"), (h.OCPI_TO_PARTY_ID, b"!!")]
    with pytest.raises(UnauthorizedError):
        decide(WORLD, h.read_request_headers(raw), ModuleID.SESSIONS, RECEIVER, "PUT", "/x", Trail())


def test_a_refused_token_leaves_no_platform_in_the_trail() -> None:
    trail = Trail()
    with pytest.raises(UnauthorizedError):
        run("unknown-token", trail=trail)
    assert (trail.platform_id, trail.from_party, trail.to_party) == ("", None, None)


@pytest.mark.parametrize("fault", [f for f in OTHER_FAULTS if f != "nothing else"])
def test_once_authenticated_the_other_faults_are_refused_without_a_route(fault: str) -> None:
    with pytest.raises(OcpiError) as caught:
        OTHER_FAULTS[fault](token_of("cpo"))
    assert not isinstance(caught.value, UnauthorizedError)
    assert caught.value.ocpi_status in (2001, 4001)


def test_a_header_problem_is_raised_after_the_caller_is_known() -> None:
    trail = Trail()
    with pytest.raises(InvalidParametersError, match="only once"):
        run(token_of("cpo"), extra=((h.OCPI_TO_PARTY_ID, b"XYZ"),), trail=trail)
    assert trail.platform_id == CPO.id  # the refusal is logged with the authenticated platform


def test_token_a_opens_no_functional_module() -> None:
    with pytest.raises(UnauthorizedError, match="token A"):
        run(token_of("token-a"), sender=party("IT:TKA"))


def test_a_suspended_sender_is_forbidden() -> None:
    with pytest.raises(ForbiddenError) as caught:
        run(token_of("suspended"), sender=party("NL:SUS"))
    assert caught.value.outcome is Outcome.REFUSED


@pytest.mark.parametrize("fault", [f for f in OTHER_FAULTS if f != "nothing else"])
@pytest.mark.parametrize(
    ("token", "refusal"),
    [("token-a", UnauthorizedError), ("suspended", ForbiddenError)],
    ids=["token A", "suspended"],
)
def test_token_a_and_suspension_come_before_any_fault_of_the_request(
    fault: str, token: str, refusal: type[OcpiError]
) -> None:
    # Who may call at all is answered first: a token-A holder learns it must register (401), a suspended platform
    # that it is suspended (403), not what else it got wrong.
    with pytest.raises(refusal):
        OTHER_FAULTS[fault](token_of(token))


# -- the sender: no impersonation, inferred for a one-party platform (digest §2.9) -----------------------------


def test_a_one_party_platform_without_ocpi_from_is_that_party_and_the_hub_adds_the_header() -> None:
    trail = Trail()
    route = run(token_of("cpo"), sender=None, trail=trail)
    assert isinstance(route, Direct)
    assert route.sender == CPO_PARTY
    assert route.add_from is True
    assert route.add_to is False
    assert trail.from_party == CPO_PARTY


def test_a_platform_of_several_parties_must_name_its_sender() -> None:
    with pytest.raises(InvalidParametersError, match="several parties"):
        run(token_of("multi"), sender=None)


@pytest.mark.parametrize("sender", ["BE:MCP", "BE:MEM"])
def test_a_platform_of_several_parties_may_send_as_each_of_them(sender: str) -> None:
    route = run(token_of("multi"), sender=party(sender))
    assert isinstance(route, Direct)
    assert route.sender == party(sender)
    assert route.add_from is False


@pytest.mark.parametrize("sender", ["DE:EMS", "NL:CPX", "BE:MCP"])
def test_ocpi_from_naming_another_platforms_party_is_2001(sender: str) -> None:
    with pytest.raises(InvalidParametersError, match="does not belong"):
        run(token_of("cpo"), sender=party(sender))


def test_routing_ids_are_read_case_insensitively() -> None:
    raw = [
        (h.AUTHORIZATION, authorization(token_of("cpo"))),
        (h.OCPI_FROM_COUNTRY_CODE, b"nl"),
        (h.OCPI_FROM_PARTY_ID, b"cpo"),
        (h.OCPI_TO_COUNTRY_CODE, b"de"),
        (h.OCPI_TO_PARTY_ID, b"ems"),
    ]
    route = decide(WORLD, h.read_request_headers(raw), ModuleID.SESSIONS, RECEIVER, "PUT", "/NL/CPO/S1", Trail())
    assert isinstance(route, Direct)
    assert (route.sender, route.to_party) == (CPO_PARTY, EMSP_PARTY)


# -- Direct (§4.1.8.2) -----------------------------------------------------------------------------------------


def test_a_named_connected_receiver_is_a_direct_route_to_its_endpoint() -> None:
    trail = Trail()
    route = run(token_of("cpo"), trail=trail)
    assert isinstance(route, Direct)
    assert route.receiver is EMSP
    assert route.endpoint == "https://emsp.example.com/ocpi/2.2.1/sessions/receiver"
    assert route.caller.platform is CPO
    assert (route.sender, route.to_party, route.add_to, route.add_from) == (CPO_PARTY, EMSP_PARTY, False, False)
    assert (trail.platform_id, trail.from_party, trail.to_party) == (CPO.id, CPO_PARTY, EMSP_PARTY)


def test_the_interface_role_picks_the_endpoint() -> None:
    route = run(token_of("emsp"), ModuleID.LOCATIONS, SENDER, "GET", "", to=CPO_PARTY, sender=EMSP_PARTY)
    assert isinstance(route, Direct)
    assert route.endpoint == "https://cpo.example.com/ocpi/2.2.1/locations/sender"


def test_an_unknown_receiver_is_4001_and_noted_in_the_trail() -> None:
    trail = Trail()
    with pytest.raises(UnknownReceiverError) as caught:
        run(token_of("cpo"), to=party("XX:ZZZ"), trail=trail)
    assert caught.value.ocpi_status == 4001
    assert trail.to_party == party("XX:ZZZ")


@pytest.mark.parametrize(
    ("receiver", "error", "outcome"),
    [
        ("NL:SUS", ReceiverSuspendedError, Outcome.RECEIVER_SUSPENDED),
        ("NL:OFF", ReceiverOfflineError, Outcome.RECEIVER_OFFLINE),
        ("NL:PLA", ReceiverPlannedError, Outcome.RECEIVER_PLANNED),
        ("IT:TKA", ReceiverPlannedError, Outcome.RECEIVER_PLANNED),
        ("NL:NOS", NoEndpointError, Outcome.NO_ENDPOINT),
    ],
)
def test_a_receiver_that_cannot_be_forwarded_to_is_4003_with_its_cause(
    receiver: str, error: type[ReceiverUnreachableError], outcome: Outcome
) -> None:
    with pytest.raises(error) as caught:
        run(token_of("cpo"), to=party(receiver))
    assert caught.value.ocpi_status == 4003
    assert caught.value.outcome is outcome


def test_the_hub_routes_a_request_to_a_party_of_the_senders_own_platform() -> None:
    route = run(token_of("multi"), sender=party("BE:MCP"), to=party("BE:MEM"))
    assert isinstance(route, Direct)
    assert route.receiver is MULTI


# -- Broadcast (§4.1.8.3) --------------------------------------------------------------------------------------


def test_a_push_addressed_to_the_hub_is_a_broadcast_to_the_opposite_roles() -> None:
    decision = run(token_of("cpo"), ModuleID.LOCATIONS, RECEIVER, "PUT", "/NL/CPO/LOC1", to=HUB)
    assert isinstance(decision, Broadcast)
    # Connected eMSPs, NSPs and OTHERs with a locations Receiver endpoint; not CPOs, the NAP, the sender, nor
    # suspended, offline, planned or token-A platforms.
    assert {str(r.party) for r in decision.recipients} == {"DE:EMS", "BE:NSP", "FR:OTH", "BE:MEM", "NL:NOS"}


@pytest.mark.parametrize(
    ("method", "module", "suffix", "match"),
    [
        ("DELETE", ModuleID.LOCATIONS, "/NL/CPO/LOC1", "cannot be broadcast"),
        ("PUT", ModuleID.SESSIONS, "/NL/CPO/S1", "party-specific"),
        ("PUT", ModuleID.LOCATIONS, "/DE/EMS/LOC1", "sender's own objects"),
        ("PUT", ModuleID.TOKENS, "/NL/CPO/T1", "does not own"),
    ],
)
def test_a_push_to_the_hub_that_may_not_be_broadcast_is_2001(
    method: str, module: ModuleID, suffix: str, match: str
) -> None:
    with pytest.raises(InvalidParametersError, match=match):
        run(token_of("cpo"), module, RECEIVER, method, suffix, to=HUB)


def test_a_tariff_delete_addressed_to_the_hub_is_broadcast() -> None:
    decision = run(token_of("cpo"), ModuleID.TARIFFS, RECEIVER, "DELETE", "/NL/CPO/T1", to=HUB)
    assert isinstance(decision, Broadcast)


# -- a push of one's own broadcastable objects without OCPI-to-* is broadcast (§4.1.8.4) ----------------------


@pytest.mark.parametrize(
    ("who", "sender", "module", "method", "suffix"),
    [
        ("cpo", "NL:CPO", ModuleID.LOCATIONS, "PUT", "/NL/CPO/LOC1"),
        ("cpo", "NL:CPO", ModuleID.LOCATIONS, "PATCH", "/NL/CPO/LOC1/EVSE1"),
        ("cpo", "NL:CPO", ModuleID.LOCATIONS, "PUT", "/nl/cpo/LOC1"),  # CiStrings: the owner compares upper-cased
        ("cpo", "NL:CPO", ModuleID.TARIFFS, "PUT", "/NL/CPO/T1"),
        ("cpo", "NL:CPO", ModuleID.TARIFFS, "DELETE", "/NL/CPO/T1"),
        ("emsp", "DE:EMS", ModuleID.TOKENS, "PUT", "/DE/EMS/TOK1"),
        ("emsp", "DE:EMS", ModuleID.TOKENS, "POST", "/DE/EMS/TOK1"),
    ],
)
@pytest.mark.parametrize("with_from", [True, False], ids=["OCPI-from", "no OCPI-from"])
def test_a_push_of_the_senders_own_objects_without_ocpi_to_is_broadcast(
    who: str, sender: str, module: ModuleID, method: str, suffix: str, with_from: bool
) -> None:
    decision = run(
        token_of(who), module, RECEIVER, method, suffix, to=None, sender=party(sender) if with_from else None
    )
    assert isinstance(decision, Broadcast)
    assert decision.recipients
    assert all(str(r.party) != sender for r in decision.recipients)


@pytest.mark.parametrize(
    ("module", "role", "method", "suffix"),
    [
        (ModuleID.LOCATIONS, RECEIVER, "PUT", "/DE/EMS/LOC1"),  # someone else's object
        (ModuleID.LOCATIONS, RECEIVER, "DELETE", "/NL/CPO/LOC1"),  # only a tariff's DELETE is carried
        (ModuleID.LOCATIONS, RECEIVER, "GET", "/NL/CPO/LOC1"),
        (ModuleID.LOCATIONS, SENDER, "PUT", "/NL/CPO/LOC1"),  # not a push interface
        (ModuleID.LOCATIONS, RECEIVER, "PUT", "/NL/CPO"),  # no object named
        (ModuleID.SESSIONS, RECEIVER, "PUT", "/NL/CPO/S1"),  # party-specific data: open routing
        (ModuleID.CDRS, RECEIVER, "POST", ""),
        (ModuleID.COMMANDS, RECEIVER, "POST", "/START_SESSION"),
    ],
)
def test_anything_else_without_ocpi_to_is_open_routed(
    module: ModuleID, role: InterfaceRole, method: str, suffix: str
) -> None:
    decision = run(token_of("cpo"), module, role, method, suffix, to=None)
    assert isinstance(decision, OpenRoute)
    assert (decision.caller.platform, decision.sender, decision.add_from) == (CPO, CPO_PARTY, False)


def test_an_open_routed_request_without_ocpi_from_asks_the_hub_to_add_it() -> None:
    trail = Trail()
    decision = run(token_of("cpo"), ModuleID.SESSIONS, RECEIVER, "PUT", "/NL/CPO/S1", to=None, sender=None, trail=trail)
    assert isinstance(decision, OpenRoute)
    assert (decision.sender, decision.add_from) == (CPO_PARTY, True)
    assert (trail.from_party, trail.to_party) == (CPO_PARTY, None)


def test_an_emsp_pushing_locations_in_its_own_name_without_ocpi_to_is_refused() -> None:
    # Looks like its own push (its own cc/pid in the URL), but an eMSP owns no locations: 2001, nothing routed.
    with pytest.raises(InvalidParametersError, match="does not own"):
        run(token_of("emsp"), ModuleID.LOCATIONS, RECEIVER, "PUT", "/DE/EMS/LOC1", to=None, sender=EMSP_PARTY)


# -- GET All / one stored object from the hub (§4.1.8.5) -------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "sender", "module"),
    [
        ("emsp", "DE:EMS", ModuleID.LOCATIONS),
        ("emsp", "DE:EMS", ModuleID.TARIFFS),
        ("nsp", "BE:NSP", ModuleID.LOCATIONS),
        ("other", "FR:OTH", ModuleID.LOCATIONS),
        ("other", "FR:OTH", ModuleID.TARIFFS),
        ("cpo", "NL:CPO", ModuleID.TOKENS),
        ("multi", "BE:MEM", ModuleID.LOCATIONS),
        ("multi", "BE:MCP", ModuleID.TOKENS),
    ],
)
def test_get_all_from_the_hub_is_for_the_parties_its_broadcasts_go_to(who: str, sender: str, module: ModuleID) -> None:
    decision = run(token_of(who), module, SENDER, "GET", "", to=HUB, sender=party(sender))
    assert isinstance(decision, GetAll)
    assert (decision.sender, decision.module) == (party(sender), module)


@pytest.mark.parametrize(
    ("who", "sender", "module"),
    [
        ("cpo", "NL:CPO", ModuleID.LOCATIONS),  # a CPO gets tokens, not other CPOs' locations
        ("cpo", "NL:CPO", ModuleID.TARIFFS),
        ("emsp", "DE:EMS", ModuleID.TOKENS),  # an eMSP gets locations and tariffs, not tokens
        ("nsp", "BE:NSP", ModuleID.TOKENS),
        ("nap", "ES:NAP", ModuleID.LOCATIONS),  # no broadcast goes to a NAP
        ("multi", "BE:MCP", ModuleID.LOCATIONS),  # the role of the party it sends as counts, not the platform's
        ("multi", "BE:MEM", ModuleID.TOKENS),
    ],
)
def test_get_all_from_the_hub_by_anyone_else_is_2001(who: str, sender: str, module: ModuleID) -> None:
    with pytest.raises(InvalidParametersError, match="for parties of role"):
        run(token_of(who), module, SENDER, "GET", "", to=HUB, sender=party(sender))


@pytest.mark.parametrize("module", [ModuleID.SESSIONS, ModuleID.CDRS, ModuleID.COMMANDS, ModuleID.CHARGINGPROFILES])
def test_a_get_from_the_hub_of_what_it_does_not_keep_is_2001(module: ModuleID) -> None:
    with pytest.raises(InvalidParametersError, match="keeps no"):
        run(token_of("emsp"), module, SENDER, "GET", "", to=HUB, sender=EMSP_PARTY)


@pytest.mark.parametrize("suffix", ["/NL/CPO/LOC1", "/NL/CPO/LOC1/EVSE1", "/NL/CPO/LOC1/EVSE1/1"])
def test_one_object_named_by_its_owner_is_a_store_get(suffix: str) -> None:
    decision = run(token_of("emsp"), ModuleID.LOCATIONS, SENDER, "GET", suffix, to=HUB, sender=EMSP_PARTY)
    assert isinstance(decision, StoreGet)
    assert (decision.sender, decision.module, decision.suffix) == (EMSP_PARTY, ModuleID.LOCATIONS, suffix)


@pytest.mark.parametrize(
    ("role", "suffix"), [(SENDER, "/LOC1"), (SENDER, "/NL/CPO"), (RECEIVER, ""), (RECEIVER, "/NL/CPO")]
)
def test_any_other_get_from_the_hub_is_2001(role: InterfaceRole, suffix: str) -> None:
    with pytest.raises(InvalidParametersError, match="GET addressed to the hub"):
        run(token_of("emsp"), ModuleID.LOCATIONS, role, "GET", suffix, to=HUB, sender=EMSP_PARTY)


# -- relay URLs ------------------------------------------------------------------------------------------------


def grant(
    allowed: str = "emsp",
    target: str = "cpo",
    to_party: PartyKey | None = CPO_PARTY,
    from_party: PartyKey | None = EMSP_PARTY,
) -> RelayGrant:
    """A relay made from an eMSP's GET to a CPO (the Link of a page): TO = the CPO, FROM = the eMSP, usable by
    the eMSP only (hub/relay.py ``link``)."""
    return RelayGrant(
        platform_id=platform(target, []).id,
        allowed_id=platform(allowed, []).id,
        module=ModuleID.LOCATIONS,
        target=f"https://{target}.example.com/ocpi/2.2.1/locations/sender?page=2",
        to_party=to_party,
        from_party=from_party,
    )


def relay(
    token: str | None,
    given: RelayGrant | None,
    *,
    to: PartyKey | None = None,
    sender: PartyKey | None = None,
    routing: RoutingTable = WORLD,
    trail: Trail | None = None,
) -> Direct:
    return decide_relay(routing, request_headers(token, to=to, sender=sender), given, trail or Trail())


@pytest.mark.parametrize("given", [None, grant()], ids=["unknown relay", "valid relay"])
@pytest.mark.parametrize("token", [None, "unknown-token"])
def test_a_relay_url_without_a_known_token_is_401_even_when_it_is_unknown(
    given: RelayGrant | None, token: str | None
) -> None:
    with pytest.raises(UnauthorizedError):
        relay(token, given, to=party("XX:ZZZ"))


@pytest.mark.parametrize(
    "given",
    [None, grant(allowed="cpo"), grant(allowed="nsp")],
    ids=["unknown, expired or forged", "made for the receiver", "made for another platform"],
)
def test_a_relay_url_used_by_anyone_but_its_platform_is_the_same_404(given: RelayGrant | None) -> None:
    with pytest.raises(NotFoundError, match="unknown or expired relay URL"):
        relay(token_of("emsp"), given)


def test_a_relay_url_is_refused_to_token_a_and_to_a_suspended_platform() -> None:
    with pytest.raises(UnauthorizedError):
        relay(token_of("token-a"), grant(allowed="token-a"))
    with pytest.raises(ForbiddenError):
        relay(token_of("suspended"), grant(allowed="suspended"))


def test_a_relay_url_followed_with_an_impersonated_ocpi_from_is_2001() -> None:
    with pytest.raises(InvalidParametersError, match="does not belong"):
        relay(token_of("emsp"), grant(), sender=CPO_PARTY)


@pytest.mark.parametrize("target", ["gone", "suspended", "offline", "planned"])
def test_a_relay_to_a_platform_no_longer_connected_is_4003(target: str) -> None:
    with pytest.raises(ReceiverUnreachableError, match="not connected") as caught:
        relay(token_of("emsp"), grant(target=target))
    assert caught.value.ocpi_status == 4003


def test_a_relay_followed_without_routing_headers_gets_the_original_exchanges_back() -> None:
    trail = Trail()
    route = relay(token_of("emsp"), grant(), trail=trail)
    assert route.receiver is CPO
    assert route.endpoint == "https://cpo.example.com/ocpi/2.2.1/locations/sender?page=2"
    # The next page is asked for as the first was: FROM = the eMSP, TO = the CPO, both filled in by the hub.
    assert (route.sender, route.to_party) == (EMSP_PARTY, CPO_PARTY)
    assert route.add_to is True
    assert route.add_from is True
    assert (trail.platform_id, trail.from_party, trail.to_party) == (EMSP.id, route.sender, route.to_party)


def test_a_relay_followed_with_routing_headers_keeps_them_and_adds_nothing() -> None:
    route = relay(token_of("emsp"), grant(), to=CPO_PARTY, sender=EMSP_PARTY)
    assert (route.sender, route.to_party, route.add_to, route.add_from) == (EMSP_PARTY, CPO_PARTY, False, False)


def test_a_relay_restores_the_grants_from_party_when_the_follower_holds_it() -> None:
    # A response_url relay: made for the receiver (the CPO) to call the eMSP back, FROM = CPO, TO = eMSP.
    callback = grant(allowed="cpo", target="emsp", to_party=EMSP_PARTY, from_party=CPO_PARTY)
    route = relay(token_of("cpo"), callback)
    assert (route.sender, route.to_party, route.add_to, route.add_from) == (CPO_PARTY, EMSP_PARTY, True, True)
    assert route.receiver is EMSP


def test_a_relay_followed_by_a_several_party_platform_uses_the_grants_party_or_none() -> None:
    held = grant(allowed="multi", from_party=party("BE:MEM"))
    route = relay(token_of("multi"), held)
    assert (route.sender, route.add_from) == (party("BE:MEM"), True)
    foreign = grant(allowed="multi", from_party=party("XX:ZZZ"))
    route = relay(token_of("multi"), foreign)
    assert (route.sender, route.add_from) == (None, False)  # not guessed among several parties


def test_a_relay_without_a_to_party_adds_no_ocpi_to() -> None:
    route = relay(token_of("emsp"), grant(to_party=None, from_party=None))
    assert (route.to_party, route.add_to) == (None, False)
    assert (route.sender, route.add_from) == (EMSP_PARTY, True)  # a one-party platform is that party
