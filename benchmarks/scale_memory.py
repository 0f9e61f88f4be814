"""Peak memory and wall time of a quick leakage audit at real-corpus size (issue #25: within 4 GB at 10,000 utterances).

Synthesises ``iemocap-like`` at the requested size (10 speakers), then runs ``ser-audit leakage
MODEL --quick`` on it in a child process and reads that child's own peak resident set size from
``wait4`` (the synthesis is another child, measured apart). Extraction streams the corpus and
memory-maps the embedding store, so the peak should grow far slower than the corpus.

    OMP_NUM_THREADS=1 python benchmarks/scale_memory.py --utterances 10000 [--model zoo:cnn4]
    python benchmarks/scale_memory.py --smoke    # 40 utterances and a planted CNN, seconds (CI)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_GB = 4.0


def measured(command: list[str]) -> tuple[int, float, float]:
    """(exit status, wall seconds, peak RSS in GB) of one child."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status and child.stderr is not None:
        sys.stderr.write(child.stderr.read().decode()[-2000:])
    return os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=10_000, help="corpus size (10 speakers)")
    parser.add_argument("--model", default="zoo:cnn4")
    parser.add_argument("--smoke", action="store_true", help="40 utterances and a planted CNN")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "ser_audit"]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model, extra = args.model, []  # the real run reads the usual cache: the model trained once, not timed
        utterances = 40 if args.smoke else args.utterances
        if args.smoke:
            from ser_audit.testing import write_planted_cnn

            model, weights = write_planted_cnn(folder / "model", leak=True)
            extra = ["--weights", str(weights), "--cache-dir", str(folder / "cache")]
        code, synth_seconds, synth_gb = measured(
            [*cli, "corpus", "synth", "iemocap-like", "--out", str(folder / "corpus"), "--size",
             str(max(2, utterances // 10)), "--quiet"])
        if code:
            sys.exit(f"synthesis failed (exit {code})")
        code, seconds, peak = measured(
            [*cli, "leakage", model, *extra, "--quick", "--corpus", str(folder / "corpus" / "manifest.csv"),
             "--out", str(folder / "report"), "--format", "json", "--quiet"])
        if code not in (0, 1):  # 1: a gate failed, the audit itself ran
            sys.exit(f"the audit failed (exit {code})")
    print(f"{utterances} utterances: synthesis {synth_seconds:.0f} s (peak RSS {synth_gb:.2f} GB); "
          f"quick leakage audit of {model} {seconds:.0f} s, peak RSS {peak:.2f} GB "
          f"({'within' if peak <= LIMIT_GB else 'OVER'} the {LIMIT_GB:g} GB target)")


if __name__ == "__main__":
    main()
