"""Fixtures for interop tests against real extrawest-ocpi parties (see ``harness.py``).

The party venv is built once per machine, before the first test runs (``pytest_collection_modifyitems``, so its
pip time never counts against a test's timeout). If it cannot be installed, every test that needs it is skipped
with pip's reason — or fails, with ``OCPI_HUB_INTEROP_REQUIRED=1`` (for CI jobs that must not skip).

``checks`` records soft interop checks (harness.py ``Checks``); the run ends with "interop checks: N of M hold" and
every check that did not hold.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.interop.harness import CheckResult, Checks, LibraryParty, PartyFactory, Role, running_party
from tests.interop.venv import InteropUnavailableError, ensure_party_venv

HERE = Path(__file__).parent
VENV_OUTCOME = pytest.StashKey[Path | InteropUnavailableError]()
CHECK_RESULTS = pytest.StashKey[list[CheckResult]]()


def _build(config: pytest.Config) -> Path | InteropUnavailableError:
    try:
        outcome: Path | InteropUnavailableError = ensure_party_venv()
    except InteropUnavailableError as exc:
        outcome = exc
    config.stash[VENV_OUTCOME] = outcome
    return outcome


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.collectonly or VENV_OUTCOME in config.stash:
        return
    if any(HERE in item.path.parents for item in items):
        _build(config)


@pytest.fixture(scope="session")
def party_python(pytestconfig: pytest.Config) -> Path:
    """The python of the venv with extrawest-ocpi 2025.7.16."""
    outcome = pytestconfig.stash.get(VENV_OUTCOME, None) or _build(pytestconfig)
    if isinstance(outcome, InteropUnavailableError):
        message = f"extrawest-ocpi could not be installed: {outcome}"
        if os.environ.get("OCPI_HUB_INTEROP_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return outcome


def _factory(python: Path, role: Role, workdir: Path, default: tuple[str, str]) -> PartyFactory:
    def start(
        country_code: str = default[0],
        party_id: str = default[1],
        *,
        name: str | None = None,
        token_a: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[LibraryParty]:
        return running_party(python, role, country_code, party_id, name=name, token_a=token_a, env=env, workdir=workdir)

    return start


@pytest.fixture
def library_cpo(party_python: Path, tmp_path: Path) -> PartyFactory:
    """Start extrawest-ocpi CPOs (default NL*CPO); logs under the test's tmp_path."""
    return _factory(party_python, "CPO", tmp_path, ("NL", "CPO"))


@pytest.fixture
def library_emsp(party_python: Path, tmp_path: Path) -> PartyFactory:
    """Start extrawest-ocpi eMSPs (default BE*EMP); logs under the test's tmp_path."""
    return _factory(party_python, "EMSP", tmp_path, ("BE", "EMP"))


@pytest.fixture
def checks(request: pytest.FixtureRequest) -> Iterator[Checks]:
    """This test's soft interop checks; a test ends with ``checks.verify()``."""
    sink = request.config.stash.setdefault(CHECK_RESULTS, [])
    recorder = Checks(request.node.name, sink)
    yield recorder
    if not recorder.verified:
        # It stopped before its end: whatever it did not get to check does not hold either.
        recorder.that("the test ran to its end", False, "it stopped early: see its failure")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(CHECK_RESULTS, None)
    if not results:
        return
    held = sum(r.ok for r in results)
    terminalreporter.write_sep("-", f"interop checks: {held} of {len(results)} hold")
    listed = results if config.option.verbose > 0 else [r for r in results if not r.ok]  # -v: every check
    for result in listed:
        mark = "held" if result.ok else "did not hold"
        terminalreporter.write_line(
            f"{mark}: {result.test}: {result.name}" + (f": {result.detail}" if not result.ok else "")
        )
