"""Every benchmark in bench/ still runs: each script with tiny options (seconds), so that a bench
cannot drift from the code it measures unnoticed (bench/bandits.py once crashed on the typed
report). The figures themselves are not asserted: a bench prints them for a person to read."""

import subprocess
import sys

import pytest

from conftest import REPO, variant

# bench script -> the options that make it quick; a new bench must be added here (a test checks it)
TINY = {
    "bandits.py": [
        "--episodes",
        "20",
        "--gradings",
        "1",
        "--grading-episodes",
        "20",
        "--no-timing",
        "--write",
        "{tmp}/bandits_constants.py",
    ],
    "value_iteration.py": ["--maps", "2", "--gradings", "1", "--no-timing"],
    "sandbox.py": ["--starts", "1"],
    "reinforce.py": ["--gradings", "1", "--which", "reinforce", "--budget", "16", "--rules", "1/1"],
    "reinforce_naive.py": [],  # (64 naive episodes: the reference point of reinforce.py)
    "vae.py": ["--z_dim", "2", "--solution", "{tmp}/vae.py"],  # the reference, trained for 1 epoch
    "nas.py": ["--gradings", "1", "--budget", "8/4"],
}


def test_every_bench_has_tiny_options():
    missing = sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name not in TINY)
    assert missing == [], f"add the quick options of {missing} to TINY in tests/test_bench.py"


@pytest.mark.parametrize("script", sorted(TINY))
def test_the_bench_runs_with_tiny_options(tmp_path, script):
    args = [arg.format(tmp=tmp_path) for arg in TINY[script]]
    (tmp_path / "vae.py").write_text(variant("solutions/vae.py", ('"--epochs", default=10,', '"--epochs", default=1,')))
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), f"bench/{script} printed nothing"
    if script == "bandits.py":  # --write: the constants module the spec reads, importable as it is
        written = {}
        exec((tmp_path / "bandits_constants.py").read_text(), written)
        assert written["REFERENCE_EPISODES"] == 20 and len(written["EXPECTED"]) == 3
