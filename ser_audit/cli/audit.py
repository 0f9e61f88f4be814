"""``ser-audit audit MODEL``: leakage and robustness into one report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.progress import STDERR, observer_for
from ser_audit.cli.render import leakage_summary, print_table
from ser_audit.report.writer import write_json


def audit(
    model: options.ModelArgument,
    hardened: Annotated[Optional[Path], typer.Option("--hardened", help="A hardened copy: report how leakage moved.")] = None,
    corpus: options.CorpusOption = "synthetic",
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
    layers: options.LayersOption = None,
    eps: options.EpsOption = "0,0.02,0.04,0.06,0.08,0.1",
    seed: options.SeedOption = 0,
    out: options.OutOption = "ser-audit-report",
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
    from ser_audit.robustness.evaluate import ProbeSettings

    report = api.full_audit(
        api.ModelSource(model, frontend=frontend, weights=weights, trust_pickle=trust_pickle),
        hardened=api.ModelSource(str(hardened), frontend=frontend) if hardened else None,
        corpus=api.CorpusSource(corpus, corpus_root, tuple(corpus_option or ())), layers=layers, seed=seed,
        cache_dir=cache_dir, settings=ProbeSettings(grid=options.parse_eps_grid(eps), seed=seed), max_leakage=max_leakage,
        max_gap=max_gap, min_robust_uar=min_robust_uar, at_eps=at_eps, command=["ser-audit", *sys.argv[1:]],
        observer=observer_for(quiet),
    )
    written = write_json(report, out)
    if written is not None:
        if not quiet:
            leakage_summary(report)
            if report.hardening_effect:
                print_table("leakage before and after hardening", ["layer", "before", "after", "change"],
                            [(e.layer, f"{e.leakage_before:.3f}", f"{e.leakage_after:.3f}", f"{e.change:+.3f}")
                             for e in report.hardening_effect])
        STDERR.print(f"report written to {written}")
    if not all(gate.passed for gate in report.gates):
        raise typer.Exit(1)
