"""Wall time of the default leakage audit of ``zoo:cnn4`` (every scenario, both attacker kinds),
and of ``--quick``, with the reference model and corpora already cached. Target: <= 15 min
on 2 CPU cores for the default, about a minute for ``--quick``.

    python benchmarks/default_audit.py [--quick-only]
    python benchmarks/default_audit.py --smoke    # a planted CNN on tiny corpora, --quick, seconds (CI)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from ser_audit.api import ModelSource, default_cache_dir, leakage_audit, load_corpus
from ser_audit.report.model import Report


def cached_targets() -> tuple[ModelSource, str, str, Path]:
    """zoo:cnn4 on the synthetic corpus, trained and synthesised first (not part of the timing)."""
    from ser_audit.models.zoo import load_or_train

    cache = default_cache_dir()
    load_or_train("cnn4", cache_dir=cache)
    for name in ("synthetic", "ravdess-like"):
        load_corpus(name, cache_dir=cache, seed=0)
    return ModelSource("zoo:cnn4"), "synthetic", "ravdess-like", cache


def smoke_targets(folder: Path) -> tuple[ModelSource, str, str, Path]:
    """A leaking planted CNN on a 40-utterance IEMOCAP-like corpus, a 48-utterance RAVDESS-like aux corpus."""
    from ser_audit.testing import tiny_corpus, write_planted_cnn

    corpus = tiny_corpus(folder / "corpus", per_speaker=4, seed=0)
    aux = tiny_corpus(folder / "aux", preset="ravdess-like", per_speaker=2, seed=0)
    spec, weights = write_planted_cnn(folder / "model", leak=True)
    cache = folder / "cache"
    for item in ("zoo", "corpora"):
        (cache / item).mkdir(parents=True, exist_ok=True)
    return (ModelSource(spec, weights=weights), str(corpus.root / "manifest.csv"), str(aux.root / "manifest.csv"),
            cache)


def timed_audit(model: ModelSource, corpus: str, aux: str, cache: Path, *, quick: bool) -> tuple[Report, float]:
    # A fresh embedding store, so the timing includes extraction as a first audit would.
    with tempfile.TemporaryDirectory() as folder:
        fresh = Path(folder)
        for item in ("zoo", "corpora"):
            (fresh / item).symlink_to(cache / item)
        start = time.perf_counter()
        report = leakage_audit(model, corpus=corpus, aux_corpus=aux, quick=quick, cache_dir=fresh)
        return report, time.perf_counter() - start


def summary(report: Report, seconds: float, *, quick: bool) -> None:
    assert report.leakage is not None
    attacks = [row for row in report.leakage.results if row.is_scenario_attacker]
    rows = Counter(row.layer for row in attacks)
    pairs = {layer: len({(r.scenario, r.attacker_kind) for r in attacks if r.layer == layer}) for layer in rows}
    complete = [layer for layer, n in pairs.items() if n == 10]
    print(f"{'--quick' if quick else 'default'}: {seconds / 60:.1f} min ({seconds:.0f} s); scenario rows per layer "
          f"{dict(rows)}; all 10 scenario x kind pairs on {', '.join(complete) or 'no layer'}; "
          f"{len(report.leakage.skipped)} skipped")
    for layer in rows:
        worst = [r for r in attacks if r.layer == layer and r.scenario == "worst"]
        tuned = max((r for r in worst if r.attacker_design == "same-architecture"),
                    key=lambda r: r.balanced_accuracy, default=None)
        probe = next((r for r in report.leakage.results if r.layer == layer and r.is_probe), None)
        strongest = next((r for r in report.leakage.results if r.layer == layer and r.is_nested_choice), None)
        if probe and tuned:
            verdict = "at least" if tuned.balanced_accuracy >= (probe.ci_low or 0) else "UNDER"
            print(f"  {layer}: worst L {tuned.balanced_accuracy:.3f}, {verdict} the probe's lower bound "
                  f"(probe {probe.balanced_accuracy:.3f} [{probe.ci_low:.3f}, {probe.ci_high:.3f}])")
        if strongest:
            print(f"  {layer}: strongest L {strongest.balanced_accuracy:.3f} [{strongest.ci_low:.3f}, "
                  f"{strongest.ci_high:.3f}], adjusted p {strongest.p_value_adjusted:.3g}")
    if report.leakage.verdict is not None:
        for item in report.leakage.verdict.layers:
            print(f"  verdict {item.layer}: {item.verdict}, {item.severity}, probe-or-headline L "
                  f"{item.balanced_accuracy:.3f} [{item.ci_low:.3f}, {item.ci_high:.3f}] by {item.attacker}")
        print(f"  {report.leakage.verdict.statement}; grade {report.scores.grade}")
    print(f"  privacy score {report.scores.privacy}, seen speakers {len(report.leakage.seen_speakers)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a planted CNN on tiny corpora, --quick only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model, corpus, aux, cache = smoke_targets(Path(scratch)) if args.smoke else cached_targets()
        for quick in (True,) if args.quick_only or args.smoke else (True, False):
            report, seconds = timed_audit(model, corpus, aux, cache, quick=quick)
            summary(report, seconds, quick=quick)


if __name__ == "__main__":
    main()
