"""Calibration of ser-audit's statistics on planted data: false positives on nulls, detection on leaks.

Every repetition synthesises a corpus whose speakers cluster their utterances (a voice vector
per speaker, noise per utterance) and audits four dependent layers with three attackers each
(see ``ser_audit.leakage.calibration``). On nulls (no layer carries gender) it prints, with
exact Clopper-Pearson 95% intervals:

- each p-value method's rejection rate at 5%, including the tests ser-audit used before
  report schema 1.2, so the old anti-conservative figures are reproduced beside the new ones;
- the audit-level decisions: any row significant after max-T, the ``--max-gap 0.1`` gate,
  any severity above none, a privacy score below 90.

On planted leaks of several strengths it prints how often the same decisions fire.

    python benchmarks/calibration.py                       # 1000 null repetitions per design
    python benchmarks/calibration.py --repetitions 200 --leak-repetitions 50
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

# One BLAS/OpenMP thread per worker: the work is many small matrices, and threads fight.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

from ser_audit.leakage.calibration import DESIGNS, Design, Outcome, rates, repetition  # noqa: E402


def _one(seed: int, design: Design, leak: float, n_permutations: int) -> Outcome:
    return repetition(design, leak=leak, seed=seed, n_permutations=n_permutations)


def simulate(design: Design, leak: float, repetitions: int, workers: int, n_permutations: int) -> list[Outcome]:
    job = partial(_one, design=design, leak=leak, n_permutations=n_permutations)
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(job, range(repetitions), chunksize=8))


def table(outcomes: list[Outcome]) -> list[str]:
    lines = ["| statistic | count | rate | Clopper-Pearson 95% |", "|---|---|---|---|"]
    for rate in rates(outcomes):
        low, high = rate.interval
        lines.append(f"| {rate.name} | {rate.count} / {rate.trials} | {rate.rate:.3f} | [{low:.3f}, {high:.3f}] |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=1000, help="null data sets per design")
    parser.add_argument("--leak-repetitions", type=int, default=200, help="data sets per planted leak strength")
    parser.add_argument("--leaks", default="0.5,1.0,1.3,1.5", help="planted shifts of the voice's first coordinate (sd units)")
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    started = time.perf_counter()
    for design in DESIGNS:
        print(f"\n## Null: {design.name} ({args.repetitions} data sets, {args.permutations} relabellings each)\n")
        print("\n".join(table(simulate(design, 0.0, args.repetitions, args.workers, args.permutations))))
    for design in DESIGNS:
        for leak in (float(x) for x in args.leaks.split(",")):
            outcomes = simulate(design, leak, args.leak_repetitions, args.workers, args.permutations)
            mean = sum(o.balanced_accuracy for o in outcomes) / len(outcomes)
            print(f"\n## Planted leak {leak}: {design.name} (probe L {mean:.3f} on average; {len(outcomes)} data sets)\n")
            print("\n".join(table(outcomes)))
    print(f"\n{time.perf_counter() - started:.0f} s on {args.workers} worker(s)")


if __name__ == "__main__":
    main()
