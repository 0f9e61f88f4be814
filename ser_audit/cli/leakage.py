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
    device: options.DeviceOption = "auto",
    executor: options.ExecutorOption = "auto",
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
    check_outputs(format, policy, out, cache_dir, studies=("leakage",))
    config = api.AuditConfig.create(
        options.model_source(model, frontend, weights, trust_pickle), corpus=options.corpus_source(corpus, corpus_root,
        corpus_option), aux_corpus=api.CorpusSource(aux_corpus), sentence_disjoint=sentence_disjoint, layers=layers,
        attribute=attribute, scenarios=scenarios, attackers=attackers, folds=folds, seed=seed, quick=quick,
        device=device, executor=executor, cache_dir=cache_dir, max_leakage=max_leakage, max_gap=max_gap, policy=policy,
    )
    report = api.leakage_audit(config, command=["ser-audit", *sys.argv[1:]], observer=observer_for(quiet))
    finish(report, out, format, quiet=quiet, summary=leakage_summary)
