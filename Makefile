# The one test command (README, .ci/run): install, lint, type-check, then the whole suite.
.PHONY: test lint serve bench browser

# The interop parties' venv is built with pip like the project's own: a machine that installed the project can
# build it, so an interop test that cannot run fails instead of skipping (a skipped test is not a passed one).
test: lint browser
	OCPI_HUB_INTEROP_REQUIRED=1 python -m pytest

lint:
	python -m pip install -q -e '.[dev]'
	python -m ruff check .
	python -m ruff format --check .
	python -m mypy

# tests/e2e/test_operator_page.py drives Debian's Chromium through Playwright (never `playwright install`, which
# downloads a browser of its own): the distribution's package, installed when missing (as root, or with sudo).
browser:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; } \
	  || { echo "could not install chromium (the operator page's browser test needs /usr/bin/chromium)" >&2; exit 1; }

serve:
	python -m pip install -q -e '.[dev]'
	ocpi-hub serve

bench:
	python -m benchmarks.run
