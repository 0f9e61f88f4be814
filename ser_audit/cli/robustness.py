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
    eta: Annotated[Optional[float], typer.Option("--eta", help="FGSM clip around x (P2 eq. 2), relative like eps.")] = None,
    pgd_eps: Annotated[float, typer.Option("--pgd-eps", help="PGD radius, relative.")] = 0.02,
    pgd_steps: Annotated[Optional[int], typer.Option("--pgd-steps", help="PGD iterations (default 10, 3 with --quick).")] = None,
    pgd_step_size: Annotated[Optional[float], typer.Option("--pgd-step-size", help="Relative; default 2.5 eps / steps.")] = None,
    domain: Annotated[str, typer.Option("--domain", help="features (model input) or waveform.")] = "features",
    attack_target: Annotated[str, typer.Option("--attack-target", help="labels or predictions.")] = "labels",
    targeted: Annotated[Optional[str], typer.Option("--targeted", help="Push every prediction towards this emotion.")] = None,
    gradient: Annotated[str, typer.Option("--gradient", help="auto (SPSA fallback) or white-box.")] = "auto",
    probe: Annotated[Optional[list[str]], typer.Option(
        "--probe", help="A registered plugin probe to run too, at --pgd-eps (repeatable).")] = None,
    perturb: Annotated[str, typer.Option(
        "--perturb", help="Input to attack: primary (the utterance) or reference (a two-input model's neutral "
        "reference, a poisoned enrolment).")] = "primary",
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
    check_outputs(format, policy, out, cache_dir, uses_cache=False)
    probes = dict(grid=options.parse_eps_grid(eps), eta=eta, pgd_eps=pgd_eps, pgd_steps=pgd_steps,
                  pgd_step_size=pgd_step_size, domain=domain, attack_target=attack_target, targeted_class=targeted,
                  gradient=gradient, extra_probes=tuple(probe or ()), perturb=perturb)
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
