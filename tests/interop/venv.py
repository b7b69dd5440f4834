"""The virtualenv the interop parties run in: extrawest-ocpi (pydantic 1, fastapi 0.101) kept apart from the project.

Owns: building that venv once per set of requirements (``python -m venv`` + pip), caching it under
``$OCPI_HUB_INTEROP_CACHE`` or ``~/.cache/ocpi-hub/interop/<hash>/``, a file lock so two pytest processes never build
it at the same time, and one error type that says why it could not be built.

Must not: install anything into the project's environment, or wait without a deadline.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

#: What the parties need. extrawest-ocpi pins fastapi 0.101.1, httpx 0.24.1 and pydantic 1.10.12 itself; the rest is
#: pinned here so every machine runs the same server code.
REQUIREMENTS: Final[tuple[str, ...]] = (
    "extrawest-ocpi==2025.7.16",
    "fastapi==0.101.1",
    "pydantic==1.10.12",
    "httpx==0.24.1",
    "starlette==0.27.0",
    "uvicorn==0.30.6",
)
BUILD_TIMEOUT: Final = 240.0  # seconds for venv + pip together (about 6 s on the 2-core machine with a warm index)
LOCK_TIMEOUT: Final = BUILD_TIMEOUT + 30.0
READY_MARKER: Final = "ready.txt"


class InteropUnavailableError(RuntimeError):
    """The party venv could not be built (no network, the index refused, pip failed or timed out)."""


def cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("OCPI_HUB_INTEROP_CACHE")
    if configured:
        return Path(configured)
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ocpi-hub" / "interop"


def requirements_key(requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    """One venv per (requirements, interpreter): a venv is tied to the python that made it."""
    material = "\n".join((*requirements, sys.version, os.path.realpath(sys.executable)))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


@contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, polled until ``timeout``; released when the block ends (or we die)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    held = f"another process held {path} for more than {timeout:.0f} s"
                    raise InteropUnavailableError(held) from None
                time.sleep(0.2)  # waiting on another process's lock: there is no event to wait on
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(args: list[str], deadline: float, what: str) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise InteropUnavailableError(f"{what}: no time left")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=remaining, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise InteropUnavailableError(f"{what} did not finish within {BUILD_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
        tail = " | ".join(lines[-6:]) or f"exit status {done.returncode}"
        raise InteropUnavailableError(f"{what} failed: {tail}")


def build_venv(target: Path, requirements: tuple[str, ...], timeout: float) -> None:
    """Create ``target`` from scratch: a sibling temporary directory renamed into place once it works."""
    deadline = time.monotonic() + timeout
    staging = target.with_name(target.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _run([sys.executable, "-m", "venv", str(staging)], deadline, "python -m venv")
        python = str(venv_python(staging))
        _run(
            [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", *requirements],
            deadline,
            "pip install " + " ".join(requirements),
        )
        _run([python, "-c", "import py_ocpi, uvicorn, fastapi"], deadline, "importing py_ocpi in the party venv")
        frozen = subprocess.run(
            [python, "-m", "pip", "freeze", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1.0),
            check=False,
        ).stdout
        (staging / READY_MARKER).write_text(frozen)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_party_venv(
    requirements: tuple[str, ...] = REQUIREMENTS, root: Path | None = None, timeout: float = BUILD_TIMEOUT
) -> Path:
    """The party venv's python, building the venv first if this machine has none yet.

    Raises ``InteropUnavailableError`` with pip's own last words when it cannot be installed.
    """
    base = (root or cache_root()) / requirements_key(requirements)
    venv = base / "venv"
    if (venv / READY_MARKER).exists() and venv_python(venv).exists():
        return venv_python(venv)
    with file_lock(base / "build.lock", LOCK_TIMEOUT):
        if not ((venv / READY_MARKER).exists() and venv_python(venv).exists()):  # built while we waited?
            build_venv(venv, requirements, timeout)
    return venv_python(venv)


def main() -> None:
    """``python -m tests.interop.venv``: build (or find) the venv and print its python and the time it took."""
    start = time.monotonic()
    python = ensure_party_venv()
    print(f"{python} ({time.monotonic() - start:.1f} s)")


if __name__ == "__main__":
    main()
