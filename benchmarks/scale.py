"""Wall time and peak memory of a quick leakage audit as the corpus grows (issue #25).

For each size, synthesises ``iemocap-like`` (10 speakers, size / 10 utterances each), then runs
``ser-audit leakage MODEL --quick`` on it in a child process with a fresh cache (the reference
model and the aux corpus linked in from the usual cache, so they are trained and synthesised
once, before any timing; the embedding store is new, so every size extracts cold). Each child's
own peak resident set size comes from ``wait4``, so the synthesis is measured apart from the
audit and this process's own memory counts for neither. With worker processes (``--executor auto``
on two or more cores) one process's peak is not the audit's: the whole tree's proportional set
size (``Pss``, shared pages such as the memory-mapped store split among the processes that map
them) is sampled every 0.2 s and its peak reported too. Extraction streams the corpus and
memory-maps the embedding store, so the peak should grow far slower than the corpus.
Target: the tree within 4 GB at 10,000 utterances.

    OMP_NUM_THREADS=1 python benchmarks/scale.py                        # 400, 2,000 and 5,000 utterances
    OMP_NUM_THREADS=1 python benchmarks/scale.py --sizes 10000          # the 4 GB memory check
    python benchmarks/scale.py --smoke    # 40 and 60 utterances and a planted CNN, seconds (CI)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LIMIT_GB = 4.0
SPEAKERS = 10  # iemocap-like
CLI = [sys.executable, "-m", "ser_audit"]


@dataclass(frozen=True)
class Measured:
    """One child process: exit status, wall seconds, its own peak resident set size and its process tree's
    peak summed Pss, in GB."""

    code: int
    seconds: float
    peak_gb: float
    tree_gb: float = 0.0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while being read
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def _tree_pss_kib(root: int) -> int:
    total = 0
    for pid in _descendants(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except (OSError, ValueError):
            continue
    return total


class _TreeSampler(threading.Thread):
    """The largest summed Pss of ``root`` and its descendants, sampled until ``stop``."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak_kib, self.done = root, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak_kib = max(self.peak_kib, _tree_pss_kib(self.root))


@dataclass(frozen=True)
class Row:
    utterances: int
    synthesis: Measured
    audit: Measured


def measured(command: list[str], environment: dict[str, str] | None = None) -> Measured:
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    sampler = _TreeSampler(child.pid)
    sampler.start()
    # wait4 before reading stderr: reaping first keeps this child's rusage; the audit's stderr is
    # small with --quiet, so the pipe does not fill and block the child.
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1) and child.stderr is not None:
        sys.stderr.write(child.stderr.read().decode()[-2000:])
    # ru_maxrss and Pss are in KiB on Linux; a run shorter than one sample has only its own peak.
    peak = usage.ru_maxrss / 1024**2
    return Measured(code, seconds, peak, sampler.peak_kib / 1024**2 or peak)


def fresh_cache(folder: Path, shared: Path) -> Path:
    """A new cache with the shared one's trained models and synthesised corpora linked in, nothing else."""
    folder.mkdir(parents=True)
    for item in ("zoo", "corpora"):
        (shared / item).mkdir(parents=True, exist_ok=True)
        (folder / item).symlink_to(shared / item)
    return folder


def one_size(utterances: int, model: str, extra: list[str], folder: Path, shared: Path) -> Row:
    corpus = folder / f"corpus-{utterances}"
    synthesis = measured([*CLI, "corpus", "synth", "iemocap-like", "--out", str(corpus), "--size",
                          str(max(2, utterances // SPEAKERS)), "--quiet"])
    if synthesis.code:
        sys.exit(f"synthesis of {utterances} utterances failed (exit {synthesis.code})")
    cache = fresh_cache(folder / f"cache-{utterances}", shared)
    audit = measured([*CLI, "leakage", model, *extra, "--quick", "--corpus", str(corpus / "manifest.csv"),
                      "--cache-dir", str(cache), "--out", str(folder / f"report-{utterances}"), "--format", "json",
                      "--quiet"])
    if audit.code not in (0, 1):  # 1: a gate failed, the audit itself ran
        sys.exit(f"the audit of {utterances} utterances failed (exit {audit.code})")
    return Row(utterances, synthesis, audit)


def table(rows: list[Row], model: str) -> list[str]:
    lines = [f"| utterances | synthesis | synthesis peak RSS | quick leakage audit of `{model}` | audit peak RSS "
             f"(largest process) | audit peak Pss (process tree) | {LIMIT_GB:g} GB target |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        within = "within" if row.audit.tree_gb <= LIMIT_GB else "OVER"
        lines.append(f"| {row.utterances:,} | {row.synthesis.seconds:.0f} s | {row.synthesis.peak_gb:.2f} GB "
                     f"| {row.audit.seconds:.0f} s | {row.audit.peak_gb:.2f} GB | {row.audit.tree_gb:.2f} GB | {within} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="400,2000,5000",
                        help="comma-separated corpus sizes in utterances (10 speakers); 10000 is the memory check")
    parser.add_argument("--model", default="zoo:cnn4")
    parser.add_argument("--smoke", action="store_true", help="40 and 60 utterances and a planted CNN")
    args = parser.parse_args()
    sizes = [40, 60] if args.smoke else [int(size) for size in args.sizes.split(",")]
    if any(size < 2 * SPEAKERS for size in sizes):
        parser.error(f"--sizes: each size must be at least {2 * SPEAKERS} (two utterances per speaker)")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model, extra = args.model, []
        if args.smoke:
            from ser_audit.testing import write_planted_cnn

            model, weights = write_planted_cnn(folder / "model", leak=True)
            extra = ["--weights", str(weights)]
            shared = folder / "shared-cache"
        else:
            shared = prepare_shared_cache(args.model)
        rows = []
        for size in sizes:
            rows.append(one_size(size, model, extra, folder, shared))
            print(f"{size:,} utterances: audit {rows[-1].audit.seconds:.0f} s, peak RSS "
                  f"{rows[-1].audit.peak_gb:.2f} GB, process tree peak Pss {rows[-1].audit.tree_gb:.2f} GB", flush=True)
    print(f"\n{os.environ.get('OMP_NUM_THREADS', 'unset')} OMP thread(s), {os.cpu_count()} cores on this machine\n")
    print("\n".join(table(rows, model)))
    largest = max(rows, key=lambda row: row.utterances)
    print(f"\nlargest corpus, {largest.utterances:,} utterances: process tree peak Pss {largest.audit.tree_gb:.2f} GB "
          f"({'within' if largest.audit.tree_gb <= LIMIT_GB else 'OVER'} the {LIMIT_GB:g} GB target)")


def prepare_shared_cache(model: str) -> Path:
    """The usual cache, with ``model`` (if a reference model) trained and the aux corpus synthesised, in a child
    whose time and memory are not reported: training is not part of an audit."""
    from ser_audit.api import default_cache_dir

    cache = default_cache_dir()
    code = ["from ser_audit.api import load_corpus; from pathlib import Path",
            f"load_corpus('ravdess-like', cache_dir=Path({str(cache)!r}), seed=0)"]
    if model.startswith("zoo:"):
        code += ["from ser_audit.models.zoo import load_or_train",
                 f"load_or_train({model[4:]!r}, cache_dir=Path({str(cache)!r}))"]
    subprocess.run([sys.executable, "-c", "; ".join(code)], check=True)
    return cache


if __name__ == "__main__":
    main()
