"""``ser-audit robustness MODEL`` and ``ser-audit harden MODEL``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_cache_dir, check_outputs, finish
from ser_audit.cli.progress import STDERR, observer_for
from ser_audit.cli.render import plain, robustness_summary
from ser_audit.config import check_relative_eps
from ser_audit.files import check_writable


def robustness(
    model: options.ModelArgument,
    corpus: options.CorpusOption = "synthetic",
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
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
    quick: Annotated[bool, typer.Option("--quick", help="PGD with 3 steps unless --pgd-steps is given.")] = False,
    seed: options.SeedOption = 0,
    device: options.DeviceOption = "auto",
    out: options.OutOption = "ser-audit-report",
    cache_dir: options.CacheDirOption = None,
    frontend: options.FrontendOption = None,
    weights: options.WeightsOption = None,
    trust_pickle: options.TrustPickleOption = False,
    min_robust_uar: options.MinRobustUarOption = None,
    at_eps: options.AtEpsOption = None,
    format: options.FormatOption = "json",
    policy: options.PolicyOption = None,
    quiet: options.QuietOption = False,
) -> None:
    """FGSM over an eps grid and PGD at one eps (P2), on the emotion predictions."""
    check_outputs(format, policy, out, cache_dir, uses_cache=False, studies=("robustness",))
    probes = options.probe_settings(eps, eta, pgd_eps, pgd_steps, pgd_step_size, domain, attack_target, targeted,
                                    gradient, probe, perturb)
    config = api.AuditConfig.create(
        options.model_source(model, frontend, weights, trust_pickle),
        corpus=options.corpus_source(corpus, corpus_root, corpus_option), probes=probes, quick=quick, seed=seed,
        device=device, cache_dir=cache_dir, min_robust_uar=min_robust_uar, at_eps=at_eps, policy=policy,
    )
    report = api.robustness_audit(config, command=["ser-audit", *sys.argv[1:]], observer=observer_for(quiet))
    finish(report, out, format, quiet=quiet, summary=robustness_summary)


def harden(
    model: options.ModelArgument,
    method: Annotated[str, typer.Option("--method", help="vanilla or similarity (P2).")],
    out: Annotated[Path, typer.Option("--out", help="Hardened model: .onnx, .pt, .pt2, or .ckpt for zoo models.")],
    eps: Annotated[float, typer.Option("--eps", help="FGSM eps for the adversarial data, relative.")] = 0.02,
    epochs: Annotated[int, typer.Option("--epochs", help="Fine-tuning epochs.")] = 12,
    warmup_epochs: Annotated[int, typer.Option("--warmup-epochs", help="Clean epochs before adversarial data.")] = 2,
    feature_layer: Annotated[Optional[str], typer.Option("--feature-layer", help="Module whose output is v.")] = None,
    corpus: options.CorpusOption = "synthetic",
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
    seed: options.SeedOption = 0,
    device: options.DeviceOption = "auto",
    cache_dir: options.CacheDirOption = None,
    frontend: options.FrontendOption = None,
    weights: options.WeightsOption = None,
    trust_pickle: options.TrustPickleOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """Adversarial training (P2's vanilla or similarity-based) of a loaded model; keeps its front-end spec."""
    from ser_audit.robustness.hardening import HardeningRecipe

    check_relative_eps("--eps", (eps,), allow_zero=False)
    check_writable(out, flag="--out")
    check_cache_dir(cache_dir)
    recipe = HardeningRecipe(method=method, eps=eps, epochs=epochs, warmup_epochs=warmup_epochs,
                             feature_layer=feature_layer, seed=seed)
    figures = api.harden_model(
        options.model_source(model, frontend, weights, trust_pickle), out, recipe=recipe,
        corpus=options.corpus_source(corpus, corpus_root, corpus_option), cache_dir=cache_dir, observer=observer_for(quiet),
        device=device,
    )
    STDERR.print(plain(
        f"{method}: held-out UAR real {figures['real_before']:.3f} -> {figures['real_after']:.3f}, "
        f"FGSM eps {eps} {figures['adversarial_before']:.3f} -> {figures['adversarial_after']:.3f} "
        f"({figures['evaluation_set']}); wrote {out}"
    ))
