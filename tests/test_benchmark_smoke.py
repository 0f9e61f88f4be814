"""Every benchmark runs in CI in a seconds-long smoke mode, so it cannot rot unseen.

A script added to ``benchmarks/`` must be listed in ``SMOKE`` with a line its ``--smoke`` run
prints; ``test_every_benchmark_script_is_smoke_tested`` fails until it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# Each script in benchmarks/, and a line its --smoke run must print.
SMOKE = {
    "null_audit.py": "verdict leaks",
    "fgsm_sweep_vs_art.py": "max |ours - ART| = 0.00e+00",  # the one-gradient sweep equals ART's per-eps FGSM
    "embedding_extraction.py": "extraction of every layer",
    "scale.py": "within the 4 GB target",
    "protect.py": "x the audit; target 180 s",
    "calibration.py": "## Minimum detectable leakage",
    "default_audit.py": "privacy score",
    "device.py": "| reference-model training, whole call |",
    "batched_attackers.py": "stacked attackers pay where the ratio is under 1",
}


def unlisted(folder: Path) -> list[str]:
    """Python scripts in ``folder`` that ``SMOKE`` does not list."""
    return sorted(path.name for path in folder.glob("*.py") if path.name not in SMOKE)


def test_every_benchmark_script_is_smoke_tested() -> None:
    assert unlisted(BENCHMARKS) == [], "add each new benchmark to SMOKE with a --smoke mode and a marker line"
    assert sorted(name for name in SMOKE if not (BENCHMARKS / name).is_file()) == []


def test_the_listing_check_finds_an_unlisted_script(tmp_path: Path) -> None:
    for name in (*SMOKE, "new_benchmark.py"):
        (tmp_path / name).write_text("")
    assert unlisted(tmp_path) == ["new_benchmark.py"]


@pytest.mark.parametrize(("script", "marker"), sorted(SMOKE.items()))
def test_benchmark_smoke_mode_runs(script: str, marker: str, tmp_path: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SER_AUDIT_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], capture_output=True,
                            text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert marker in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.sh")))
def test_benchmark_shell_script_parses(script: str) -> None:
    """The GPU check runs only on a lent machine; here it must at least parse (and pass shellcheck where present)."""
    subprocess.run(["bash", "-n", str(BENCHMARKS / script)], check=True)
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(BENCHMARKS / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
