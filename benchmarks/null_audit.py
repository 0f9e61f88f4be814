"""Whole audits of planted targets: a model whose every layer is gender-free must pass; a leaking one must not.

Each seed synthesises its own IEMOCAP-like corpus (10 speakers, new voices) and audits
``ser_audit.testing.PlantedCNN`` through the public API with every scenario (worst, s1-s4,
generic and aware, the strongest-attacker rows), the verdict at its default threshold
(chance + 0.05), and the ``--max-gap 0.1`` gate read from the same rows:

- ``leak=False``: every layer is noise. Counted: privacy score >= 90, the gate passing, any
  row significant after family-wise adjustment, any severity above none.
- ``leak=True``: the speaker's pitch track runs through every layer. Counted: flagged (the
  gate fails and some row is significant).

Each audit's verdict is counted too: a gender-free target must never be called ``leaks``.

    python benchmarks/null_audit.py --seeds 20            # --quick settings, about 1-2 min a seed
    python benchmarks/null_audit.py --seeds 20 --preset ravdess-like --null-only   # 24 speakers
    python benchmarks/null_audit.py --seeds 5 --full      # the default (slower) attacker settings
    python benchmarks/null_audit.py --smoke               # one tiny seed: what CI runs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ser_audit.api import ModelSource, leakage_audit
from ser_audit.leakage.statistics.calibration import clopper_pearson
from ser_audit.report.model import Report
from ser_audit.report.policy import evaluate, flag_policy
from ser_audit.testing import tiny_corpus, write_planted_cnn

# The aux corpus must be other speakers: RAVDESS-like's actors when auditing IEMOCAP-like, and the reverse.
AUX = {"iemocap-like": "ravdess-like", "ravdess-like": "iemocap-like"}


def audit(folder: Path, *, leak: bool, seed: int, quick: bool, per_speaker: int, preset: str = "iemocap-like",
          **options: object) -> Report:
    corpus = tiny_corpus(folder / f"corpus-{preset}-{seed}", preset=preset, per_speaker=per_speaker, seed=seed)
    spec, weights = write_planted_cnn(folder, leak=leak, seed=seed)
    return leakage_audit(ModelSource(spec, weights=weights), corpus=str(corpus.root / "manifest.csv"), quick=quick,
                         seed=seed, cache_dir=folder / "cache", aux_corpus=AUX[preset], **options)


def gap_gate_passes(report: Report) -> bool:
    """``--max-gap 0.1``, decided on the saved report as ``ser-audit gate`` would (the verdict keeps its default T)."""
    return all(gate.passed for gate in evaluate(flag_policy(max_gap=0.1), report))


def verdict(report: Report) -> str:
    return report.leakage.verdict.verdict if report.leakage and report.leakage.verdict else "none"


def count(name: str, hits: int, total: int) -> str:
    low, high = clopper_pearson(hits, total)
    return f"| {name} | {hits} / {total} | [{low:.3f}, {high:.3f}] |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--per-speaker", type=int, default=8, help="utterances per speaker")
    parser.add_argument("--preset", default="iemocap-like", choices=sorted(AUX),
                        help="iemocap-like: 10 speakers (5 + 5, sessions); ravdess-like: 24 (12 + 12)")
    parser.add_argument("--null-only", action="store_true", help="audit only the gender-free target")
    parser.add_argument("--full", action="store_true", help="default attacker settings instead of --quick")
    parser.add_argument("--smoke", action="store_true", help="one seed, 4 utterances a speaker, probe only")
    args = parser.parse_args()
    started = time.perf_counter()
    null, leaking = [], []
    seeds = 1 if args.smoke else args.seeds
    options: dict[str, object] = {"scenarios": []} if args.smoke else {}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(seeds):
            for leak, found in ((False, null), (True, leaking)):
                if leak and args.null_only:
                    continue
                report = audit(Path(scratch), leak=leak, seed=seed, quick=not args.full, preset=args.preset,
                               per_speaker=4 if args.smoke else args.per_speaker, **options)
                found.append(report)
                rows = report.leakage.results if report.leakage else []
                print(f"seed {seed} leak {leak}: verdict {verdict(report)}, privacy {report.scores.privacy}, "
                      f"grade {report.scores.grade}, gate {'pass' if gap_gate_passes(report) else 'FAIL'}, "
                      f"{sum(bool(r.significant) for r in rows)} of {len(rows)} rows significant", flush=True)
    n = seeds
    print(f"\n| on the gender-free target ({args.preset}) | count | Clopper-Pearson 95% |\n|---|---|---|")
    print(count("privacy score >= 90", sum((r.scores.privacy or 0) >= 90 for r in null), n))
    print(count("--max-gap 0.1 passes", sum(gap_gate_passes(r) for r in null), n))
    print(count("any row significant", sum(any(x.significant for x in r.leakage.results) for r in null), n))
    print(count("any severity above none", sum(any(x.severity != "none" for x in r.leakage.results) for r in null), n))
    for name in ("leaks", "inconclusive", "private"):
        print(count(f"verdict {name}", sum(verdict(r) == name for r in null), n))
    print(count("grade A", sum(r.scores.grade == "A" for r in null), n))
    if leaking:
        print(f"\n| on the leaking target ({args.preset}) | count | Clopper-Pearson 95% |\n|---|---|---|")
        flagged = sum(not gap_gate_passes(r) and any(x.significant for x in r.leakage.results)
                      for r in leaking)
        print(count("flagged (gate fails, a row significant)", flagged, n))
        print(count("verdict leaks", sum(verdict(r) == "leaks" for r in leaking), n))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
