"""``ser-audit leakage MODEL``."""

from __future__ import annotations

import sys

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_outputs, finish
from ser_audit.cli.progress import observer_for
from ser_audit.cli.render import leakage_summary


def leakage(
    model: options.ModelArgument,
    corpus: options.CorpusOption = "synthetic",
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
    aux_corpus: options.AuxCorpusOption = api.DEFAULT_AUX_CORPUS,
    sentence_disjoint: options.SentenceDisjointOption = False,
    layers: options.LayersOption = None,
    attribute: options.AttributeOption = "gender",
    scenarios: options.ScenariosOption = "worst,s1,s2,s3,s4",
    attackers: options.AttackersOption = "generic,aware",
    folds: options.FoldsOption = None,
    seed: options.SeedOption = 0,
    quick: options.QuickLeakageOption = False,
    device: options.DeviceOption = "cpu",
    executor: options.ExecutorOption = "local",
    out: options.OutOption = "ser-audit-report",
    format: options.FormatOption = "json",
    policy: options.PolicyOption = None,
    cache_dir: options.CacheDirOption = None,
    frontend: options.FrontendOption = None,
    weights: options.WeightsOption = None,
    trust_pickle: options.TrustPickleOption = False,
    max_leakage: options.MaxLeakageOption = None,
    max_gap: options.MaxGapOption = None,
    quiet: options.QuietOption = False,
) -> None:
    """Privacy leakage audit (P0): attackers infer a speaker attribute from tapped layers, in five scenarios."""
    check_outputs(format, policy)
    report = api.leakage_audit(
        api.ModelSource(model, frontend=frontend, weights=weights, trust_pickle=trust_pickle),
        corpus=api.CorpusSource(corpus, corpus_root, tuple(corpus_option or ())),
        aux_corpus=api.CorpusSource(aux_corpus, None, ()), sentence_disjoint=sentence_disjoint, layers=layers,
        attribute=attribute, scenarios=scenarios, attackers=attackers, folds=folds, seed=seed, quick=quick,
        device=device, executor=executor, cache_dir=cache_dir, max_leakage=max_leakage, max_gap=max_gap,
        command=["ser-audit", *sys.argv[1:]], observer=observer_for(quiet),
    )
    finish(report, out, format, quiet=quiet, policy=policy, summary=leakage_summary)
