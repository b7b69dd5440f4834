"""routing/paths.py: matching the hub's module URLs and joining receiver URLs."""

from __future__ import annotations

import pytest

from routing.errors import InvalidParametersError
from routing.model import FUNCTIONAL_MODULES, InterfaceRole, ModuleID
from routing.paths import MODULE_PREFIX, check_suffix, join_url, match_module, module_path, module_url_path

ROLES = (InterfaceRole.SENDER, InterfaceRole.RECEIVER)
SEGMENT = {InterfaceRole.SENDER: "sender", InterfaceRole.RECEIVER: "receiver"}


def test_functional_modules_are_the_seven_routed_ones() -> None:
    assert set(FUNCTIONAL_MODULES) == {
        ModuleID.CDRS,
        ModuleID.CHARGINGPROFILES,
        ModuleID.COMMANDS,
        ModuleID.LOCATIONS,
        ModuleID.SESSIONS,
        ModuleID.TARIFFS,
        ModuleID.TOKENS,
    }


@pytest.mark.parametrize("module", FUNCTIONAL_MODULES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("trailing", ["", "/", "//"])
def test_match_module_without_suffix(module: ModuleID, role: InterfaceRole, trailing: str) -> None:
    path = f"/ocpi/2.2.1/{SEGMENT[role]}/{module.value}{trailing}"
    assert match_module(path) == (module, role, "")


@pytest.mark.parametrize("module", FUNCTIONAL_MODULES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("tail", "suffix"),
    [
        ("/NL/ABC/LOC1", "/NL/ABC/LOC1"),
        ("/NL/ABC/LOC1/", "/NL/ABC/LOC1"),
        ("/NL/ABC/LOC1/EVSE1/CON1", "/NL/ABC/LOC1/EVSE1/CON1"),
        ("/START_SESSION", "/START_SESSION"),
        ("/START_SESSION/", "/START_SESSION"),
        ("/012345678/authorize", "/012345678/authorize"),
    ],
)
def test_match_module_with_suffix(module: ModuleID, role: InterfaceRole, tail: str, suffix: str) -> None:
    assert match_module(f"/ocpi/2.2.1/{SEGMENT[role]}/{module.value}{tail}") == (module, role, suffix)


@pytest.mark.parametrize("module", FUNCTIONAL_MODULES)
@pytest.mark.parametrize("role", ROLES)
def test_module_path_is_matched_back(module: ModuleID, role: InterfaceRole) -> None:
    path = module_path(module, role)
    assert path.startswith(MODULE_PREFIX)
    assert match_module(path) == (module, role, "")


@pytest.mark.parametrize(
    "path",
    [
        "/ocpi/2.2.1/receiver/credentials",
        "/ocpi/2.2.1/sender/credentials",
        "/ocpi/2.2.1/receiver/hubclientinfo",
        "/ocpi/2.2.1/sender/foo",
        "/ocpi/2.2.1/sender/foo/NL/ABC",
        "/ocpi/2.2.1/sender",
        "/ocpi/2.2.1/sender/",
        "/ocpi/2.2.1/receiver/locationsX",
        "/ocpi/2.2.1/receiver/Locations",
        "/ocpi/2.2.1/RECEIVER/locations",
        "/ocpi/2.2.1/cpo/locations",
        "/ocpi/2.2.1/locations",
        "/ocpi/2.2.1/credentials",
        "/ocpi/2.2.1/relay/abc",
        "/ocpi/2.2.1/",
        "/ocpi/2.2.1",
        "/ocpi/2.2/receiver/locations",
        "/ocpi/2.1.1/receiver/locations",
        "/ocpi/versions",
        "/receiver/locations",
        "/",
        "",
    ],
)
def test_match_module_refuses_other_paths(path: str) -> None:
    assert match_module(path) is None


ENDPOINTS = ["https://cpo.example.com/ocpi/2.2.1/locations", "https://cpo.example.com/ocpi/2.2.1/locations/"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_join_url_without_suffix_keeps_the_endpoint_exactly(endpoint: str) -> None:
    assert join_url(endpoint, "", b"") == endpoint


@pytest.mark.parametrize("endpoint", [*ENDPOINTS, "https://cpo.example.com/ocpi/2.2.1/locations//"])
def test_join_url_with_suffix_uses_exactly_one_slash(endpoint: str) -> None:
    assert join_url(endpoint, "/NL/ABC/LOC1", b"") == "https://cpo.example.com/ocpi/2.2.1/locations/NL/ABC/LOC1"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_join_url_appends_the_query(endpoint: str) -> None:
    assert (
        join_url(endpoint, "/NL/ABC", b"offset=0&limit=10")
        == "https://cpo.example.com/ocpi/2.2.1/locations/NL/ABC?offset=0&limit=10"
    )
    assert join_url(endpoint, "", b"date_from=2019-01-01T00:00:00Z") == f"{endpoint}?date_from=2019-01-01T00:00:00Z"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_match_then_join_gives_the_receiver_url(endpoint: str) -> None:
    matched = match_module("/ocpi/2.2.1/receiver/commands/START_SESSION/")
    assert matched is not None
    _, _, suffix = matched
    commands = endpoint.replace("locations", "commands")
    assert join_url(commands, suffix, b"") == "https://cpo.example.com/ocpi/2.2.1/commands/START_SESSION"


@pytest.mark.parametrize(
    "suffix",
    [
        "/NL/CPO/LOC1",
        "/LOC%201/EVSE%2D1",  # encoded ordinary characters are fine
        "/TOK1/authorize",
        "/a;b",  # a path parameter on an ordinary segment
        "/...",  # three dots are a name, not a dot segment
    ],
)
def test_check_suffix_accepts(suffix: str) -> None:
    check_suffix(suffix)


@pytest.mark.parametrize(
    "suffix",
    [
        "/NL//LOC1",
        "/./x",
        "/../x",
        "/x/..",
        "/%2e%2e/x",
        "/%2E%2e/x",
        "/%252e%252e/x",  # encoded twice: a proxy in front of the receiver may decode once more
        "/..;/x",  # Tomcat-style servers read "..;" as ".."
        "/%2e%2e;jsessionid=1/x",
        "/a%2fb",
        "/a%5cb",
        "/a%252fb",
        "/a%00b",
        "/a%2500b",
        "/a%0d%0aInjected: yes",
        "/a b",
        "/a\\b",
        "/caf\u00e9",
        "/a\x00b",  # raw controls and DEL: never in a request line, whether or not anything is encoded
        "/a\x01b",
        "/a\x7fb",
    ],
)
def test_check_suffix_refuses(suffix: str) -> None:
    with pytest.raises(InvalidParametersError):
        check_suffix(suffix)


@pytest.mark.parametrize(
    ("path", "suffix"),
    [
        ("/ocpi/2.2.1/receiver/locations//NL/CPO/L1", "/NL/CPO/L1"),  # a party's join with the published "/"
        ("/ocpi/2.2.1/receiver/locations/NL/CPO/L1/", "/NL/CPO/L1"),
    ],
)
def test_one_empty_segment_after_the_module_is_one_slash(path: str, suffix: str) -> None:
    matched = match_module(path)
    assert matched is not None
    assert matched[2] == suffix
    check_suffix(matched[2])


def test_module_url_path_ends_in_a_slash() -> None:
    for module in FUNCTIONAL_MODULES:
        for role in (InterfaceRole.SENDER, InterfaceRole.RECEIVER):
            path = module_url_path(module, role)
            assert path.endswith("/")
            assert match_module(path) == (module, role, "")
