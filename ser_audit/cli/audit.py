"""``ser-audit audit MODEL``: leakage and robustness into one report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_outputs, finish
from ser_audit.cli.progress import observer_for
from ser_audit.cli.render import comparison_summary, leakage_summary, robustness_summary
from ser_audit.report.model import Report


def audit(
    model: options.ModelArgument,
    compare_with: Annotated[Optional[str], typer.Option(
        "--compare-with", metavar="FILE|MODEL", help="Another model (a hardened or protected copy, another version, "
        "another architecture with the same front-end): the same probes on it, layer by layer.")] = None,
    hardened: Annotated[Optional[str], typer.Option(
        "--hardened", metavar="FILE", help="Deprecated: the older name of --compare-with, with the same meaning.")] = None,
    corpus: options.CorpusOption = "synthetic",
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
    aux_corpus: options.AuxCorpusOption = api.DEFAULT_AUX_CORPUS,
    layers: options.LayersOption = None,
    attribute: options.AttributeOption = "gender",
    folds: options.FoldsOption = None,
    sentence_disjoint: options.SentenceDisjointOption = False,
    scenarios: options.ScenariosOption = "worst,s1,s2,s3,s4",
    attackers: options.AttackersOption = "generic,aware",
    eps: options.EpsOption = "0,0.02,0.04,0.06,0.08,0.1",
    eta: options.EtaOption = None,
    pgd_eps: options.PgdEpsOption = 0.02,
    pgd_steps: options.PgdStepsOption = None,
    pgd_step_size: options.PgdStepSizeOption = None,
    domain: options.DomainOption = "features",
    attack_target: options.AttackTargetOption = "labels",
    targeted: options.TargetedOption = None,
    gradient: options.GradientOption = "auto",
    probe: options.ProbeOption = None,
    perturb: options.PerturbOption = "primary",
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
    min_robust_uar: options.MinRobustUarOption = None,
    at_eps: options.AtEpsOption = None,
    quiet: options.QuietOption = False,
) -> None:
    """Privacy leakage and adversarial robustness of one model, in one report."""
    check_outputs(format, policy, out, cache_dir)
    probes = options.probe_settings(eps, eta, pgd_eps, pgd_steps, pgd_step_size, domain, attack_target, targeted,
                                    gradient, probe, perturb)
    config = api.AuditConfig.create(
        options.model_source(model, frontend, weights, trust_pickle),
        compare_with=_source(compare_with, frontend), hardened=_source(hardened, frontend, deprecated=True),
        corpus=options.corpus_source(corpus, corpus_root, corpus_option), aux_corpus=api.CorpusSource(aux_corpus),
        layers=layers, attribute=attribute, scenarios=scenarios, attackers=attackers, folds=folds,
        sentence_disjoint=sentence_disjoint, quick=quick, device=device, executor=executor, seed=seed,
        cache_dir=cache_dir, probes=probes, max_leakage=max_leakage, max_gap=max_gap,
        min_robust_uar=min_robust_uar, at_eps=at_eps, policy=policy,
    )
    report = api.full_audit(config, command=["ser-audit", *sys.argv[1:]], observer=observer_for(quiet))

    def summary(report: Report) -> None:
        leakage_summary(report)
        robustness_summary(report)
        comparison_summary(report)

    finish(report, out, format, quiet=quiet, summary=summary)


def _source(spec: str | None, frontend: Path | None, *, deprecated: bool = False) -> api.ModelSource | None:
    """--compare-with's model (read with --frontend where it carries no spec); ``deprecated``: --hardened, its older
    name, which one line on stderr says."""
    if spec is not None and deprecated:
        sys.stderr.write("ser-audit: warning: --hardened is deprecated; use --compare-with, which means the same\n")
    return None if spec is None else api.ModelSource(spec, frontend=frontend)
