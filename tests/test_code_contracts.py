"""Contracts on the code itself, run with the tests so CI fails when one breaks: ruff, and the
import layering (cli → api → leakage/robustness/report → embeddings → models → frontend →
corpus, never backwards, no cycles)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_layers_and_form_no_cycle() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_layering_check_catches_a_backward_import(tmp_path: Path) -> None:
    """The check must be able to fail: a copy of the package where corpus imports the CLI."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "ser_audit", copy / "ser_audit", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "check_layers.py", copy / "scripts")
    with (copy / "ser_audit" / "corpus" / "manifest.py").open("a") as handle:
        handle.write("\n\ndef _backwards() -> None:\n    from ser_audit.cli import main  # noqa: F401\n")
    result = subprocess.run([sys.executable, str(copy / "scripts" / "check_layers.py")], capture_output=True, text=True)
    assert result.returncode == 1 and "corpus may not depend on cli" in result.stdout


def test_ruff_finds_nothing() -> None:
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                                                       capture_output=True).returncode != 0:
        pytest.fail("ruff is not installed; it comes with the dev extra: pip install -e '.[dev]'")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "ser_audit", "tests", "benchmarks", "scripts", "plugins"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_finds_nothing() -> None:
    """Type checks with the settings in pyproject.toml (every function annotated, the pydantic plugin)."""
    if subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True).returncode != 0:
        pytest.fail("mypy is not installed; it comes with the dev extra: pip install -e '.[dev]'")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
