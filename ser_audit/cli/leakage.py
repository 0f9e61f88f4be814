"""``ser-audit leakage MODEL``."""

from __future__ import annotations

import sys

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.progress import STDERR, observer_for
from ser_audit.cli.render import leakage_summary
from ser_audit.report.writer import write_json


def leakage(
    model: options.ModelArgument,
    corpus: options.CorpusOption = "synthetic",
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
    sentence_disjoint: options.SentenceDisjointOption = False,
    layers: options.LayersOption = None,
    attribute: options.AttributeOption = "gender",
    folds: options.FoldsOption = None,
    seed: options.SeedOption = 0,
    out: options.OutOption = "ser-audit-report",
    cache_dir: options.CacheDirOption = None,
    frontend: options.FrontendOption = None,
    weights: options.WeightsOption = None,
    trust_pickle: options.TrustPickleOption = False,
    max_leakage: options.MaxLeakageOption = None,
    max_gap: options.MaxGapOption = None,
    quiet: options.QuietOption = False,
) -> None:
    """Privacy leakage audit: how well attackers infer a speaker attribute from tapped layers."""
    report = api.leakage_audit(
        api.ModelSource(model, frontend=frontend, weights=weights, trust_pickle=trust_pickle),
        corpus=api.CorpusSource(corpus, corpus_root, tuple(corpus_option or ())),
        sentence_disjoint=sentence_disjoint, layers=layers, attribute=attribute, folds=folds, seed=seed,
        cache_dir=cache_dir, max_leakage=max_leakage, max_gap=max_gap,
        command=["ser-audit", *sys.argv[1:]], observer=observer_for(quiet),
    )
    written = write_json(report, out)
    if written is not None:
        if not quiet:
            leakage_summary(report)
        STDERR.print(f"report written to {written}")
    if not all(gate.passed for gate in report.gates):
        raise typer.Exit(1)
