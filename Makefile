# The one test command (README, .ci/run): install, lint, type-check, then the whole suite.
.PHONY: test lint serve bench

test: lint
	python -m pytest

lint:
	python -m pip install -q -e '.[dev]'
	python -m ruff check .
	python -m ruff format --check .
	python -m mypy

serve:
	python -m pip install -q -e '.[dev]'
	ocpi-hub serve

bench:
	python -m benchmarks.run
