"""Smoke tests that run first (see conftest): a broken dependency fails CI in seconds, not after minutes."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ser_audit
import ser_audit_corpora
import ser_audit_reference
from ser_audit.dependencies import PINNED, pinned_requirements

ROOT = Path(__file__).resolve().parent.parent
# Optional extras import their library inside functions, so every module must import without them.
PACKAGES = (ser_audit, ser_audit_reference, ser_audit_corpora)


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package.__name__)
        names.extend(info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."))
    # ``python -m ser_audit`` runs the command line on import; its imports are ser_audit.cli.main's.
    return sorted(name for name in names if not name.endswith(".__main__"))


@pytest.mark.smoke
def test_the_compiled_pair_imports() -> None:
    import torch
    import torchaudio

    assert torch.__version__ and torchaudio.__version__


@pytest.mark.smoke
@pytest.mark.parametrize("module", _modules())
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


@pytest.mark.smoke
def test_the_fallback_pins_match_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {d.split("==")[0]: d for d in declared if d.split("==")[0] in PINNED}
    assert pins == PINNED
    assert pinned_requirements() == [PINNED["torch"], PINNED["torchaudio"]]


# torchaudio's own refusal, as a torch built for another CUDA version makes it raise on import.
BREAK_TORCHAUDIO = (
    "import sys, importlib.abc\n"
    "class Broken(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torchaudio':\n"
    "            raise RuntimeError('Detected that PyTorch and TorchAudio were compiled with different CUDA versions.\\n'\n"
    "                               'PyTorch has CUDA version 13.2 whereas TorchAudio has CUDA version 13.0.')\n"
    "sys.meta_path.insert(0, Broken())\n"
)


@pytest.mark.smoke
@pytest.mark.parametrize("command", [["layers", "zoo:cnn4"], ["leakage", "zoo:cnn4", "--quick"], ["corpus", "list"]])
def test_a_broken_torchaudio_is_one_line_naming_the_fix(command: list[str]) -> None:
    call = f"from ser_audit.cli.main import main; sys.exit(main({command!r}))"
    result = subprocess.run([sys.executable, "-c", BREAK_TORCHAUDIO + call], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "torch 2" in lines[0] and "torchaudio 2" in lines[0]  # both installed versions are named
    assert f"pip install {PINNED['torch']} {PINNED['torchaudio']}" in lines[0]
    assert "compiled with different CUDA versions" in lines[0]
