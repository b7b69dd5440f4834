"""A seconds-long run of the benchmark command, so it never rots. No timing is asserted: tests are not benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_command_runs_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    # The Python load generator: the one every machine has (wrk is used when installed).
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--python-generator", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    for heading in ("## End to end", "## Targets", "## Micro", "## Broadcast", "## Scale"):
        assert heading in text
    for scenario in ("direct GET", "naive proxy GET (1 worker)", "hub GET (1 worker)", "hub GET (2 workers)"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {scenario} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1].replace(",", "")) > 0, row  # requests went through
        assert cells[-1] == "0", row  # and none failed
    assert "Python load generator ceiling" in text
