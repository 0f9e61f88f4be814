from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ser_audit.cli.main import main
from ser_audit.corpus.interface import Corpus
from ser_audit.models.export import export_model
from ser_audit.testing import tiny_corpus
from ser_audit_reference.cnn4 import CNN4, LOG_MEL_P2


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Smoke tests first (the sort is stable, so the rest keep their order)."""
    items.sort(key=lambda item: item.get_closest_marker("smoke") is None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    if outcome.get_result().failed and item.get_closest_marker("smoke"):
        item.session.shouldstop = f"smoke test {item.name} failed: the install is broken, nothing else can pass"


@pytest.fixture(autouse=True)
def _jobs_in_this_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--executor auto`` (the default) would spawn workers on a multi-core machine, which a test's monkeypatches
    do not reach; in-process tests keep the jobs here unless marked ``spawns``. Tests that run the CLI in a
    subprocess get the real default."""
    if request.node.get_closest_marker("spawns") is None:
        monkeypatch.setattr("ser_audit.execution.auto.choose", lambda *_, **__: "local")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared cache (synthetic corpora, trained reference models); CI points it inside the clone."""
    configured = os.environ.get("SER_AUDIT_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return tiny_corpus(tmp_path_factory.mktemp("small") / "corpus", per_speaker=16, seed=0)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli():
    """Run ``ser-audit ARGS`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    spec = LOG_MEL_P2.model_copy(update={"emotions": ["neutral", "angry", "sad", "happy"], "duration_s": 1.0})
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_model(CNN4(4, width=0.0625), spec, path)
    return path


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = tiny_corpus(tmp_path_factory.mktemp("manifest") / "corpus", per_speaker=4, seed=1)
    # One recording arrives as 44.1 kHz stereo: it must be downmixed and resampled, not rejected.
    first = corpus.utterances[0].path
    audio, rate = soundfile.read(str(first))
    soundfile.write(str(first), np.stack([audio, audio], axis=1), 44_100 if rate != 44_100 else rate)
    return corpus.root / "manifest.csv"
