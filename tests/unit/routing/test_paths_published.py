"""routing/paths.py, as published: module URLs ending in ``/`` (``module_url_path``), a party's ``//`` after the
module, and the suffix checks that keep a request inside the endpoint it addressed."""

from __future__ import annotations

import pytest

from routing.errors import InvalidParametersError
from routing.model import FUNCTIONAL_MODULES, InterfaceRole, ModuleID
from routing.paths import check_suffix, match_module, module_path, module_url_path

ROLES = (InterfaceRole.SENDER, InterfaceRole.RECEIVER)


@pytest.mark.parametrize("module", FUNCTIONAL_MODULES)
@pytest.mark.parametrize("role", ROLES)
def test_a_published_module_url_ends_in_one_slash_and_routes_back(module: ModuleID, role: InterfaceRole) -> None:
    published = module_url_path(module, role)
    assert published == module_path(module, role) + "/"
    assert not published.endswith("//")
    assert match_module(published) == (module, role, "")


@pytest.mark.parametrize("module", FUNCTIONAL_MODULES)
@pytest.mark.parametrize("role", ROLES)
def test_a_party_appending_to_the_published_url_lands_right_either_way(module: ModuleID, role: InterfaceRole) -> None:
    published = module_url_path(module, role)
    expected = (module, role, "/NL/CPO/LOC1")
    assert match_module(published + "NL/CPO/LOC1") == expected  # appended as is
    assert match_module(published + "/NL/CPO/LOC1") == expected  # joined with a "/" of its own: "//"


def test_the_published_paths_are_the_ocpi_2_2_1_layout() -> None:
    assert module_url_path(ModuleID.LOCATIONS, InterfaceRole.SENDER) == "/ocpi/2.2.1/sender/locations/"
    assert module_url_path(ModuleID.COMMANDS, InterfaceRole.RECEIVER) == "/ocpi/2.2.1/receiver/commands/"


@pytest.mark.parametrize(
    ("path", "suffix"),
    [
        ("/ocpi/2.2.1/receiver/locations//NL/CPO/LOC1", "/NL/CPO/LOC1"),
        ("/ocpi/2.2.1/receiver/locations//NL/CPO/LOC1/", "/NL/CPO/LOC1"),
        ("/ocpi/2.2.1/receiver/commands//START_SESSION", "/START_SESSION"),
        ("/ocpi/2.2.1/sender/tokens//T1/authorize", "/T1/authorize"),
    ],
)
def test_one_extra_slash_after_the_module_is_forgiven(path: str, suffix: str) -> None:
    matched = match_module(path)
    assert matched is not None
    assert matched[2] == suffix
    check_suffix(matched[2])


@pytest.mark.parametrize(
    "path",
    [
        "/ocpi/2.2.1/receiver/locations///NL/CPO/LOC1",  # two extra: an empty segment remains
        "/ocpi/2.2.1/receiver/locations/NL//CPO/LOC1",  # an empty segment further on is never forgiven
    ],
)
def test_more_empty_segments_are_refused(path: str) -> None:
    matched = match_module(path)
    assert matched is not None
    with pytest.raises(InvalidParametersError, match="empty"):
        check_suffix(matched[2])


@pytest.mark.parametrize("suffix", ["", "/NL/CPO/LOC1", "/T1/authorize", "/a-b_c.d~e", "/%20x", "/x%2Ey"])
def test_ordinary_suffixes_pass(suffix: str) -> None:
    check_suffix(suffix)


@pytest.mark.parametrize(
    "suffix",
    [
        "/..",
        "/NL/../credentials",
        "/.",
        "/%2e%2e/x",
        "/%2E%2e",
        "/x/%2E",
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a\\b",
        "/a b",
        "/a\tb",
        "/a\r\nb",
        "/é",
        "//x",
        "/x/",
    ],
)
def test_suffixes_that_could_leave_the_endpoint_are_2001(suffix: str) -> None:
    with pytest.raises(InvalidParametersError) as caught:
        check_suffix(suffix)
    assert caught.value.ocpi_status == 2001
