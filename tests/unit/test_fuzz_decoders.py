"""Every decoder over mutated inputs (``tests.fuzz_decoders``): no crash, no hang, no
traceback, every error naming an offset. A few hundred inputs per decoder on every run;
100,000 per decoder in the ``slow`` run, in a child process so that a crash or a hang (the
watchdog ends the child) fails the test instead of the session."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import fuzz_decoders
from tests.conftest import REPO


@pytest.mark.parametrize("name", sorted(fuzz_decoders.DECODERS))
def test_mutated_inputs_quick(name: str) -> None:
    result = fuzz_decoders.run(name, 300, seed=7, hang_seconds=60)
    assert result["findings"] == 0, result["first_findings"]
    assert sum(result["outcomes"].values()) == 300  # type: ignore[attr-defined]


def test_mutations_reach_every_outcome() -> None:
    """The mutations are not all rejected at the first byte: records still decode."""
    outcomes = fuzz_decoders.run("3gpp-native", 500, seed=3, hang_seconds=60)["outcomes"]
    assert {"clean", "problems", "part-way", "file-error"} <= set(outcomes)  # type: ignore[arg-type]


@pytest.mark.slow
def test_100k_mutated_inputs_per_decoder() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz_decoders", "--count", "100000", "--seed", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=6 * 3600, check=False)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    print(proc.stdout)  # the counts, for the record (pytest -s shows them)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert {r["decoder"] for r in results} == set(fuzz_decoders.DECODERS)
    assert all(r["inputs"] == 100_000 and r["findings"] == 0 for r in results)
