"""Wall time of ``ser-audit protect --quick`` beside the quick leakage audit it is made of (issue #26: <= 3 min).

A protect run audits the unprotected model, audits each strength's copy at the protected layer,
writes the chosen copy and audits that file at every tapped layer. This prints its wall time and
the plain quick leakage audit's, measured side by side in one run on a warm cache (the reference
model trained and the corpora synthesised before any timing), and their ratio.

    OMP_NUM_THREADS=1 python benchmarks/protect.py [--method projection|adversarial]
    python benchmarks/protect.py --smoke      # the planted twice-leaking model on tiny corpora (CI)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 180.0
CLI = [sys.executable, "-m", "ser_audit"]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode not in (0, 1):  # 1: a gate failed, the run itself finished
        sys.exit(f"{' '.join(command[2:4])} failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="projection")
    parser.add_argument("--smoke", action="store_true", help="a planted model on tiny corpora, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model, layer, extra = ["zoo:cnn4"], "pool4", []
        if args.smoke:
            from ser_audit.testing import tiny_corpus
            from ser_audit.testing.protection import write_twice_leaking

            audit = tiny_corpus(folder / "audit", per_speaker=6, seed=2)
            aux = tiny_corpus(folder / "aux", preset="ravdess-like", per_speaker=4, seed=3)
            spec, weights = write_twice_leaking(folder)
            model, layer = [spec, "--weights", str(weights)], "both"
            extra = ["--corpus", str(audit.root / "manifest.csv"), "--aux-corpus", str(aux.root / "manifest.csv"),
                     "--cache-dir", str(folder / "cache")]
        # Warm-up, untimed: the reference model trained and the corpora synthesised once.
        timed([*CLI, "leakage", *model, *extra, "--quick", "--quiet", "--out", str(folder / "warm"), "--layers", layer,
               "--scenarios", "s2"])
        leakage = timed([*CLI, "leakage", *model, *extra, "--quick", "--quiet", "--out", str(folder / "leakage")])
        protect = timed([*CLI, "protect", *model, *extra, "--layer", layer, "--method", args.method, "--quick", "--quiet",
                         "--out", str(folder / "protected.onnx"), "--report", str(folder / "protect")])
    print(f"quick leakage audit {leakage:.0f} s; quick protect ({args.method} at {layer}) {protect:.0f} s, "
          f"{protect / leakage:.1f}x the audit; target {TARGET_S:.0f} s: {'met' if protect <= TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
