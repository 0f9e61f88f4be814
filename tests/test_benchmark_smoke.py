"""Every benchmark runs in CI in a seconds-long smoke mode, so it cannot rot unseen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("script", "marker"), [
    ("null_audit.py", "verdict leaks"),
    ("fgsm_sweep_vs_art.py", "max |ours - ART| = 0.00e+00"),  # the one-gradient sweep equals ART's per-eps FGSM
    ("embedding_extraction.py", "extraction of every layer"),
    ("scale_memory.py", "within the 4 GB target"),
])
def test_benchmark_smoke_mode_runs(script: str, marker: str, tmp_path: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SER_AUDIT_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke"], capture_output=True,
                            text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert marker in result.stdout, result.stdout[-2000:]
