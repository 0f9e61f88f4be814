"""Calibration of ser-audit's statistics on planted data: false positives, interval coverage, power.

Every repetition synthesises a corpus whose speakers cluster their utterances (a voice vector
per speaker, noise per utterance) and audits four dependent layers with three attackers each
(see ``ser_audit.leakage.statistics.calibration``). It prints, with exact Clopper-Pearson 95% intervals:

- on nulls (no layer carries gender): each p-value method's rejection rate at 5%, including
  the tests ser-audit used before report schema 1.2, and the audit-level decisions (any row
  significant after max-T, the ``--max-gap 0.1`` gate, any severity above none, a privacy
  score below 90);
- on planted leaks: the coverage of every interval method (does the 95% interval hold the
  attacker's true leakage, measured on 10,000 new speakers), its median width and its width
  over the probe's on the same layer, before and after the small-sample corrections;
- power: how often the audit flags the leak, per design and strength, and the minimum
  detectable leakage (the smallest mean probe L flagged in at least 80% of data sets);
- the verdict (``leakage.verdicts.decide``) at the audit's default threshold T = chance + 0.05,
  and at T = chance + 0.1 (``--max-gap 0.1``), on nulls of 10 to 96 speakers and on the
  unbalanced design's planted leak of probe L about 0.75, with the grade it would get;
- the price of a looser ``leaks``: how often the audit's rule, and one that reads each row's own
  95% interval, claim a leak past T where T sits at the largest true leakage of the audit's rows
  (the least favourable threshold: every such claim is false), beside what each finds on the
  planted leak.

    python benchmarks/calibration.py                 # the tables of calibration-results.md
    python benchmarks/calibration.py --smoke         # seconds: every section on a few data sets
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Callable

# One BLAS/OpenMP thread per worker: the work is many small matrices, and threads fight.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

from ser_audit.leakage.statistics.calibration import (  # noqa: E402
    ATTACKER_NAMES,
    ATTACKERS,
    DESIGNS,
    LARGE_DESIGNS,
    Design,
    Outcome,
    clopper_pearson,
    coverage,
    rates,
    repetition,
)
from ser_audit.leakage.statistics.verdicts import DEFAULT_MARGIN  # noqa: E402


def _one(seed: int, design: Design, leak: float, n_permutations: int, with_coverage: bool, boundary: bool) -> Outcome:
    return repetition(design, leak=leak, seed=seed, n_permutations=n_permutations, coverage=with_coverage,
                      boundary=boundary)


def simulate(design: Design, leak: float, repetitions: int, workers: int, n_permutations: int, *,
             with_coverage: bool = False, boundary: bool = False) -> list[Outcome]:
    job = partial(_one, design=design, leak=leak, n_permutations=n_permutations, with_coverage=with_coverage,
                  boundary=boundary)
    if workers == 1:
        return [job(seed) for seed in range(repetitions)]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(job, range(repetitions), chunksize=4))


def _rate(count: int, trials: int) -> str:
    low, high = clopper_pearson(count, trials)
    return f"{count}/{trials} = {count / trials:.3f} [{low:.3f}, {high:.3f}]"


def null_table(outcomes: list[Outcome]) -> list[str]:
    lines = ["| statistic | count | rate | Clopper-Pearson 95% |", "|---|---|---|---|"]
    for rate in rates(outcomes):
        low, high = rate.interval
        lines.append(f"| {rate.name} | {rate.count} / {rate.trials} | {rate.rate:.3f} | [{low:.3f}, {high:.3f}] |")
    return lines


def coverage_table(cells: dict[tuple[str, float], list[Outcome]]) -> list[str]:
    lines = ["| design | leak | probe L | truth (probe) | attacker | coverage before | coverage now | median width "
             "| width / probe's |", "|---|---|---|---|---|---|---|---|---|"]
    for (name, leak), outcomes in cells.items():
        mean_l = sum(o.balanced_accuracy for o in outcomes) / len(outcomes)
        truth = sum(o.intervals["probe"].truth for o in outcomes) / len(outcomes)
        for attacker in ATTACKERS:
            before, now = coverage(outcomes, attacker, rule="before"), coverage(outcomes, attacker)
            lines.append(f"| {name} | {leak} | {mean_l:.3f} | {truth:.3f} | {ATTACKER_NAMES[attacker]} "
                         f"| {_rate(before.covered, before.trials)} | {_rate(now.covered, now.trials)} "
                         f"| {now.median_width:.3f} | {now.median_width_ratio:.2f} |")
    return lines


def pooled_coverage(cells: dict[tuple[str, float], list[Outcome]]) -> list[str]:
    lines = ["| design | attacker | coverage before | coverage now | median width before | now |", "|---|---|---|---|---|---|"]
    for design in dict.fromkeys(name for name, _ in cells):
        outcomes = [o for (name, _), group in cells.items() if name == design for o in group]
        for attacker in ATTACKERS:
            before, now = coverage(outcomes, attacker, rule="before"), coverage(outcomes, attacker)
            lines.append(f"| {design} | {ATTACKER_NAMES[attacker]} | {_rate(before.covered, before.trials)} "
                         f"| {_rate(now.covered, now.trials)} | {before.median_width:.3f} | {now.median_width:.3f} |")
    return lines


DETECTIONS: dict[str, Callable[[Outcome], bool]] = {
    "a row significant (verdicts.decide)": lambda o: o.any_significant,
    "gate --max-gap 0.1 fails": lambda o: o.gate_failed,
    f"verdict leaks (T = chance + {DEFAULT_MARGIN})": lambda o: o.verdict == "leaks",
    "verdict leaks (T = chance + 0.1)": lambda o: o.leaks_at_gap,
}


def power_table(cells: dict[tuple[str, float], list[Outcome]]) -> list[str]:
    lines = ["| design | leak | probe L | " + " | ".join(DETECTIONS) + " |", "|---|---|---|" + "---|" * len(DETECTIONS)]
    for (name, leak), outcomes in cells.items():
        mean_l = sum(o.balanced_accuracy for o in outcomes) / len(outcomes)
        found = [_rate(sum(check(o) for o in outcomes), len(outcomes)) for check in DETECTIONS.values()]
        lines.append(f"| {name} | {leak} | {mean_l:.3f} | " + " | ".join(found) + " |")
    return lines


def price_table(planted: list[Outcome], boundary: list[Outcome]) -> list[str]:
    """What each rule for "leaks past T" buys on the planted leak, and what it costs where T sits at the truth."""
    mean_l = sum(o.balanced_accuracy for o in planted) / len(planted)
    truth = sum(o.largest_truth or 0.0 for o in boundary) / len(boundary)
    lines = [f"| rule for `leaks` | on the planted leak (probe L {mean_l:.3f}) | false `leaks` with T at the largest "
             f"true L (on average {truth:.3f}) |", "|---|---|---|"]
    for name, found, false in (
            ("the audit's: a significant layer, a lower bound past T jointly over the rows (max-T), T = chance + "
             f"{DEFAULT_MARGIN} on the planted leak",
             lambda o: o.verdict == "leaks", lambda o: o.boundary_leaks),
            ("looser: a significant row whose own 95% interval starts past T (the same T)",
             lambda o: o.leaks_marginal, lambda o: o.boundary_marginal)):
        lines.append(f"| {name} | {_rate(sum(bool(found(o)) for o in planted), len(planted))} "
                     f"| {_rate(sum(bool(false(o)) for o in boundary), len(boundary))} |")
    return lines


def detectable_table(cells: dict[tuple[str, float], list[Outcome]], *, power: float = 0.8) -> list[str]:
    """Per design and decision: the smallest mean probe L flagged in at least ``power`` of the data sets."""
    lines = ["| design | " + " | ".join(DETECTIONS) + " |", "|---|" + "---|" * len(DETECTIONS)]
    for design in dict.fromkeys(name for name, _ in cells):
        found = []
        for check in DETECTIONS.values():
            detected = [sum(o.balanced_accuracy for o in group) / len(group)
                        for (name, _), group in cells.items()
                        if name == design and sum(check(o) for o in group) >= power * len(group)]
            found.append(f"{min(detected):.2f}" if detected else "above the largest leak tried")
        lines.append(f"| {design} | " + " | ".join(found) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=500, help="null data sets per design")
    parser.add_argument("--leak-repetitions", type=int, default=150, help="data sets per planted leak strength")
    parser.add_argument("--leaks", default="0.7,1.0,1.3,1.7,2.2",
                        help="planted shifts of the voice's first coordinate (sd units)")
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--verdict-repetitions", type=int, default=200,
                        help="data sets for the verdict checks (48 and 96 speakers, the unbalanced leak)")
    parser.add_argument("--verdict-leak", type=float, default=1.3, help="the unbalanced design's leak (probe L ~0.75)")
    parser.add_argument("--boundary-repetitions", type=int, default=400,
                        help="data sets for the false-leaks check at the least favourable threshold")
    parser.add_argument("--boundary-leak", type=float, default=0.6,
                        help="the unbalanced design's leak for that check (true L about chance + 0.1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--smoke", action="store_true", help="every section on a few data sets (seconds)")
    parser.add_argument("--verdicts-only", action="store_true",
                        help="only the verdict checks: nulls of 48 and 96 speakers, the unbalanced leak")
    args = parser.parse_args()
    designs: tuple[Design, ...] = DESIGNS
    large: tuple[Design, ...] = LARGE_DESIGNS
    if args.smoke:
        args.repetitions, args.leak_repetitions, args.leaks, args.permutations = 4, 3, "1.5", 49
        args.verdict_repetitions = args.boundary_repetitions = 2
        designs, large = DESIGNS[:1], LARGE_DESIGNS[:1]
    started = time.perf_counter()
    for design in () if args.verdicts_only else designs:
        print(f"\n## Null: {design.name} ({args.repetitions} data sets, {args.permutations} relabellings each)\n")
        print("\n".join(null_table(simulate(design, 0.0, args.repetitions, args.workers, args.permutations))))
    for design in large:
        outcomes = simulate(design, 0.0, args.verdict_repetitions, args.workers, args.permutations)
        print(f"\n## Null: {design.name} ({len(outcomes)} data sets): can a gender-free model be certified private?\n")
        print("\n".join(null_table(outcomes)))
        margins = sorted(o.private_margin for o in outcomes)
        print(f"\nmargin T - chance at which the model is certified private in 80% of these data sets: "
              f"{margins[int(0.8 * (len(margins) - 1))]:.3f} (median {margins[len(margins) // 2]:.3f})")
    design, leak = DESIGNS[-1], args.verdict_leak
    outcomes = simulate(design, leak, args.verdict_repetitions, args.workers, args.permutations)
    mean_l = sum(o.balanced_accuracy for o in outcomes) / len(outcomes)
    print(f"\n## Planted leak {leak}: {design.name} (probe L {mean_l:.3f} on average; {len(outcomes)} data sets)\n")
    print("\n".join(null_table(outcomes)))
    grades = Counter(o.grade for o in outcomes)
    print("\ngrades (privacy score capped by the verdict): "
          + ", ".join(f"{letter} {grades[letter]}" for letter in sorted(grades)))
    boundary = simulate(design, args.boundary_leak, args.boundary_repetitions, args.workers, args.permutations,
                        boundary=True)
    print(f"\n## The price of a looser `leaks`: {design.name}, T at the largest true leakage of the audit's rows "
          f"(leak {args.boundary_leak}; {len(boundary)} data sets)\n")
    print("\n".join(price_table(outcomes, boundary)))
    cells: dict[tuple[str, float], list[Outcome]] = {}
    if args.verdicts_only:
        print(f"\n{time.perf_counter() - started:.0f} s on {args.workers} worker(s)")
        return
    for design in designs:
        for leak in (float(x) for x in args.leaks.split(",")):
            cells[design.name, leak] = simulate(design, leak, args.leak_repetitions, args.workers, args.permutations,
                                                with_coverage=True)
    print(f"\n## Coverage of the 95% intervals on planted leaks ({args.leak_repetitions} data sets a cell)\n")
    print("\n".join(coverage_table(cells)))
    print("\n## Coverage pooled over leak strengths\n")
    print("\n".join(pooled_coverage(cells)))
    print("\n## Power: how often the audit flags a planted leak\n")
    print("\n".join(power_table(cells)))
    print("\n## Minimum detectable leakage: smallest mean probe L flagged in at least 80% of data sets\n")
    print("\n".join(detectable_table(cells)))
    print(f"\n{time.perf_counter() - started:.0f} s on {args.workers} worker(s)")


if __name__ == "__main__":
    main()
