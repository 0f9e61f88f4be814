"""Whole audits of planted targets: a model whose every layer is gender-free must pass; a leaking one must not.

Each seed synthesises its own IEMOCAP-like corpus (10 speakers, new voices) and audits
``ser_audit.testing.PlantedCNN`` through the public API with every scenario (worst, s1-s4,
generic and aware, the strongest-attacker rows), ``--max-gap 0.1``:

- ``leak=False``: every layer is noise. Counted: privacy score >= 90, the gate passing, any
  row significant after family-wise adjustment, any severity above none.
- ``leak=True``: the speaker's pitch track runs through every layer. Counted: flagged (the
  gate fails and some row is significant).

    python benchmarks/null_audit.py --seeds 20            # --quick settings, about 1-2 min a seed
    python benchmarks/null_audit.py --seeds 5 --full      # the default (slower) attacker settings
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ser_audit.api import ModelSource, leakage_audit
from ser_audit.leakage.calibration import clopper_pearson
from ser_audit.report.model import Report
from ser_audit.testing import tiny_corpus, write_planted_cnn


def audit(folder: Path, *, leak: bool, seed: int, quick: bool, per_speaker: int) -> Report:
    corpus = tiny_corpus(folder / f"corpus-{seed}", per_speaker=per_speaker, seed=seed)
    spec, weights = write_planted_cnn(folder, leak=leak, seed=seed)
    return leakage_audit(ModelSource(spec, weights=weights), corpus=str(corpus.root / "manifest.csv"), quick=quick,
                         seed=seed, cache_dir=folder / "cache", max_gap=0.1)


def count(name: str, hits: int, total: int) -> str:
    low, high = clopper_pearson(hits, total)
    return f"| {name} | {hits} / {total} | [{low:.3f}, {high:.3f}] |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--per-speaker", type=int, default=8, help="utterances per speaker (10 speakers)")
    parser.add_argument("--full", action="store_true", help="default attacker settings instead of --quick")
    args = parser.parse_args()
    started = time.perf_counter()
    null, leaking = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            for leak, found in ((False, null), (True, leaking)):
                report = audit(Path(scratch), leak=leak, seed=seed, quick=not args.full, per_speaker=args.per_speaker)
                found.append(report)
                rows = report.leakage.results if report.leakage else []
                print(f"seed {seed} leak {leak}: privacy {report.scores.privacy}, gate "
                      f"{'pass' if all(g.passed for g in report.gates) else 'FAIL'}, "
                      f"{sum(bool(r.significant) for r in rows)} of {len(rows)} rows significant", flush=True)
    n = args.seeds
    print("\n| on the gender-free target | count | Clopper-Pearson 95% |\n|---|---|---|")
    print(count("privacy score >= 90", sum((r.scores.privacy or 0) >= 90 for r in null), n))
    print(count("--max-gap 0.1 passes", sum(all(g.passed for g in r.gates) for r in null), n))
    print(count("any row significant after max-T", sum(any(x.significant for x in r.leakage.results) for r in null), n))
    print(count("any severity above none", sum(any(x.severity != "none" for x in r.leakage.results) for r in null), n))
    print("\n| on the leaking target | count | Clopper-Pearson 95% |\n|---|---|---|")
    flagged = sum(not all(g.passed for g in r.gates) and any(x.significant for x in r.leakage.results) for r in leaking)
    print(count("flagged (gate fails, a row significant)", flagged, n))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
