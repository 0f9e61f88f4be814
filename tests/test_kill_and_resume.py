"""SIGKILL during extraction and during attacker training (and SIGINT during extraction), then a rerun: the report equals an
uninterrupted run's, timestamps and paths aside (issue #18). Runs ``scripts/kill_and_resume.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "kill_and_resume.py"


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_report(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("SIGKILL during", "SIGINT during"))]
    assert len(lines) == 3 and all(("killed, report" in line or "interrupted, report" in line)
                                and "report written before the kill: False" in line for line in lines), lines
    assert all("report equals the uninterrupted run's: True" in line for line in lines)
