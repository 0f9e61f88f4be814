"""SIGKILL a leakage audit while it extracts embeddings and again while it trains attackers (and
SIGINT it while it extracts), rerun it on the same cache, and compare the final report with an
uninterrupted run's (issue #18).

    python scripts/kill_and_resume.py [--work DIR] [--per-speaker N]

Builds a tiny ONNX model and a synthetic corpus (``ser_audit.testing``), runs the audit once
without interruption (its own cache), then, for each kill point, starts the same audit on a fresh
cache, kills it with SIGKILL at that point, checks that no report was written, reruns it to the
end and compares. Reports are compared whole, except the fields that differ between any two
runs: ``created``, ``finished``, ``command`` and ``config.cache_dir`` (paths), and the note that
says which layers came from the cache. Prints one line per kill point; exit 0 when both reports
equal the uninterrupted one, 1 otherwise. ``tests/test_kill_and_resume.py`` runs it (slow).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

BIN = Path(sys.executable).with_name("ser-audit")
# Scenario attackers on two map layers and the vector layer, generic and aware: seconds of training.
AUDIT = ["--layers", "pool2,pool4,fc_relu", "--scenarios", "worst,s2", "--quick", "--folds", "3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def build(work: Path, per_speaker: int) -> tuple[Path, Path]:
    """The tiny ONNX model the tests use and a synthetic corpus of ``per_speaker`` utterances a speaker."""
    import torch

    from ser_audit.models.export import export_model
    from ser_audit.testing import tiny_corpus
    from ser_audit_reference.cnn4 import CNN4, LOG_MEL_P2

    torch.manual_seed(0)
    spec = LOG_MEL_P2.model_copy(update={"emotions": ["neutral", "angry", "sad", "happy"], "duration_s": 1.0})
    model = work / "tiny.onnx"
    export_model(CNN4(4, width=0.0625), spec, model)
    corpus = tiny_corpus(work / "corpus", per_speaker=per_speaker, seed=1)
    return model, corpus.root / "manifest.csv"


def command(model: Path, manifest: Path, cache: Path, out: Path) -> list[str]:
    return [str(BIN), "leakage", str(model), "--corpus", str(manifest), *AUDIT, "--cache-dir", str(cache),
            "--out", str(out)]


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs between any two runs (times, paths, cache provenance)."""
    report = json.loads(json.dumps(report))
    for key in ("created", "finished", "command"):
        report.pop(key, None)
    if report.get("config"):
        report["config"].pop("cache_dir", None)
    # Only the provenance line differs; a note about a cache file that failed its check would be a difference.
    report["notes"] = [note for note in report.get("notes", []) if "taken from the cache" not in note]
    return report


def extracting(cache: Path, stderr: list[str]) -> bool:
    """An embedding file is being written (a writer's temporary file exists)."""
    return any((cache / "embeddings").glob("*/*.partial")) if (cache / "embeddings").is_dir() else False


class TrainingAttackers:
    """The scenario attackers are training: the input reference (the task before them) has been done for
    ``delay`` seconds."""

    def __init__(self, delay: float = 1.5) -> None:
        self.delay = delay
        self.since: float | None = None

    def __call__(self, cache: Path, stderr: list[str]) -> bool:
        if self.since is None and any("done:" in line and "input reference" in line for line in stderr):
            self.since = time.monotonic()
        return self.since is not None and time.monotonic() - self.since >= self.delay


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def killed_run(model: Path, manifest: Path, cache: Path, out: Path, at: Callable[[Path, list[str]], bool],
               sent: signal.Signals = signal.SIGKILL, timeout: float = 600) -> str:
    """Start the audit, send it ``sent`` when ``at`` holds; returns what happened."""
    # A run started in the background (CI, nohup, `cmd &`) inherits SIGINT ignored, and Python then
    # installs no Ctrl-C handler; the audit is started with the default disposition, as from a terminal.
    process = subprocess.Popen(command(model, manifest, cache, out), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True, env=ENV, preexec_fn=_default_sigint)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    start = time.monotonic()
    while process.poll() is None and time.monotonic() - start < timeout:
        if at(cache, lines):
            process.send_signal(sent)
            process.wait()
            reader.join(timeout=10)
            if sent == signal.SIGINT and extracting(cache, lines):
                return "interrupted but left temporary files behind"
            if process.returncode == 0 and out.exists():
                # On a loaded machine the signal can land after the run wrote its report (the kill
                # point was seen, then this thread waited its turn): nothing was interrupted.
                return "finished before the signal"
            if sent == signal.SIGINT:  # Ctrl-C: exit 130 and one line, the CLI's own handling
                return "interrupted" if process.returncode == 130 and lines[-1:] == ["ser-audit: error: interrupted\n"] else \
                    f"interrupted but exited {process.returncode} saying {lines[-1:]}"
            return "killed"
        time.sleep(0.005)
    process.kill()
    process.wait()
    return "finished before the kill point" if process.returncode == 0 else f"exited {process.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="Folder for the model, corpus, caches and reports (default: temporary).")
    parser.add_argument("--per-speaker", type=int, default=24, help="Utterances per speaker of the corpus.")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ser-audit-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    model, manifest = build(work, args.per_speaker)
    reference_out = work / "uninterrupted.json"
    started = time.monotonic()
    subprocess.run(command(model, manifest, work / "cache-uninterrupted", reference_out), check=True, env=ENV,
                   capture_output=True)
    print(f"uninterrupted run: {time.monotonic() - started:.1f} s")
    reference = comparable(json.loads(reference_out.read_text()))
    failures = 0
    # Each kill point as a factory: TrainingAttackers keeps state, so every attempt gets a fresh one.
    points: list[tuple[str, Callable[[], Callable[[Path, list[str]], bool]], signal.Signals]] = [
        ("extraction", lambda: extracting, signal.SIGKILL), ("attacker training", TrainingAttackers, signal.SIGKILL),
        ("extraction", lambda: extracting, signal.SIGINT)]
    for name, kill_point, sent in points:
        label = f"{name.split()[0]}-{sent.name}"
        for attempt in range(1, 4):  # a fresh cache and a new start when the signal came too late
            cache, out = work / f"cache-{label}-{attempt}", work / f"{label}-{attempt}.json"
            outcome = killed_run(model, manifest, cache, out, kill_point(), sent)
            if outcome != "finished before the signal":
                break
            print(f"retrying {sent.name} during {name}: the run finished before the signal landed")
        written = out.exists()
        started = time.monotonic()
        rerun = subprocess.run(command(model, manifest, cache, out), env=ENV, capture_output=True, text=True)
        resumed = json.loads(out.read_text()) if rerun.returncode == 0 else {}
        same = rerun.returncode == 0 and comparable(resumed) == reference
        reused = any("taken from the cache" in note for note in resumed.get("notes", []))
        failures += not (outcome in ("killed", "interrupted") and not written and same)
        print(f"{sent.name} during {name}: {outcome}, report written before the kill: {written}; rerun exit "
              f"{rerun.returncode} in {time.monotonic() - started:.1f} s (embeddings from the killed run's cache: "
              f"{reused}), report equals the uninterrupted run's: {same}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
