"""A seconds-long run of the benchmark command, so it never rots. No timing is asserted: tests are not benchmarks.

What is asserted: every scenario's row is there, requests went through and none failed; the paginated GETs got
real pages (the hub's Link followed once); GET All via Hub answered a page of 100 from the whole store; the
store took broadcast pushes; the memory figures were measured; message tracking is either measured or reported
"not measured: setting missing".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run

# The smoke run takes about half a minute on 2 shared cores; its first test also waits for it.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = (
    run.DIRECT_GET,
    run.NAIVE_GET,
    run.HUB_GET,
    run.HUB_GET_REF,
    run.HUB_GET_BARE,
    run.HUB_GET_CHECKED,
    run.NAIVE_PAGE,
    run.HUB_PAGE,
    run.HUB_PUT,
    run.HUB_GET_ALL,
    run.HUB_GET_ALL_1,
    run.AUTHORIZE_TO,
    run.AUTHORIZE_OPEN,
    run.HUB2_GET,
)


def cells(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell starts with ``first``."""
    row = next(line for line in text.splitlines() if line.startswith(f"| {first}"))
    return [c.strip() for c in row.strip("|").split("|")]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def json_section(text: str, heading: str) -> Any:
    """The JSON block under a ``## heading``."""
    rest = text.split(f"## {heading}", 1)[1]
    return json.loads(rest.split("```json", 1)[1].split("```", 1)[0])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("benchmarks") / "RESULTS.md"
    # The Python load generator: the one every machine has (wrk is used when installed).
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--python-generator", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return output.read_text()


def test_every_section_and_scenario(results: str) -> None:
    for heading in (
        "## End to end",
        "## Targets",
        "## Redis commands per 1k requests",
        "## Paginated lists",
        "## Store of broadcast data",
        "## Micro",
        "## Broadcast",
        "## Scale",
    ):
        assert heading in results
    for scenario in SCENARIOS:
        row = cells(results, f"{scenario} |")
        assert number(row[1]) > 0, row  # requests went through
        assert row[-1] == "0", row  # and none failed
    assert "Python load generator ceiling" in results


def test_paginated_lists(results: str) -> None:
    check = json_section(results, "Paginated lists")
    assert check["naive_link"].startswith("/2.2.1/locations/sender?offset=10")  # passed through untouched
    assert check["hub_link_followed_first_id"] == "LOC10"  # the relay Link led to the next page
    for label in ("hub (1 worker) ÷ naive proxy, paginated GET", "hub CPU per paginated GET"):
        assert number(cells(results, label)[1]) > 0
    assert number(cells(results, "Redis commands per 1k paginated GETs")[1]) >= 0
    link = json_section(results, "Micro")["pagination_link"]
    assert link["relay_link_us"] > 0
    assert link["missing_link_last_page_us"] > 0


def test_store_of_broadcast_data(results: str) -> None:
    store = json_section(results, "Store of broadcast data")
    assert store["apply"]["stored_per_s_median"] > 0
    assert all(r["errors"] == 0 for r in store["apply"]["runs"])
    assert store["get_all"]["items"] == 100
    assert store["get_all"]["x_total_count"] == store["store"]["locations"] > 100
    assert store["authorize"]["answers"] == ["ALLOWED", "ALLOWED"]
    assert store["memory"]["locations"]["bytes_per_object"] > store["memory"]["locations"]["body_bytes_avg"] > 2000
    assert store["memory"]["tokens"]["bytes_per_object"] > 0
    assert number(cells(results, "broadcast Locations stored/s")[1]) > 0
    assert number(cells(results, "GET All via Hub, page of 100")[1]) > 0
    cells(results, "open routing's added p50")  # a figure, whatever its sign in a seconds-long run
    assert number(cells(results, "Redis memory per 10,000 Locations")[1]) > 0
    assert number(cells(results, "Redis memory per 1,000,000 Tokens")[1]) > 0


def test_message_tracking_measured_or_said_missing(results: str) -> None:
    value = cells(results, "message tracking's cost: routed GET throughput lost")[1]
    plan = run.tracking_plan()
    if plan is None:
        assert value == run.NOT_MEASURED
        return
    number(value)
    row = cells(results, f"{plan.scenario} |")
    assert number(row[1]) > 0
    assert row[-1] == "0"
