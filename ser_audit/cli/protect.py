"""``ser-audit protect MODEL --layer LAYER --out FILE``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit import api
from ser_audit.cli import options
from ser_audit.cli.output import check_outputs, finish
from ser_audit.cli.progress import observer_for
from ser_audit.cli.render import protection_summary
from ser_audit.errors import ConfigError
from ser_audit.files import check_writable


def _strengths(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--strength {text!r}: give comma-separated numbers, e.g. 0.5,1,2") from None


def protect(
    model: options.ModelArgument,
    layer: Annotated[str, typer.Option("--layer", help="The layer to remove the attribute from (see `ser-audit layers`).")],
    out: Annotated[Path, typer.Option("--out", help="The protected model: .onnx, .pt (TorchScript) or .pt2.")],
    attribute: options.AttributeOption = "gender",
    method: Annotated[str, typer.Option("--method", help="projection (LEACE, a fixed layer) or adversarial "
                                                         "(gradient reversal), or a defense plugin.")] = "projection",
    strength: Annotated[Optional[str], typer.Option(
        "--strength", help="Comma-separated strengths to sweep (default: the method's three).")] = None,
    max_uar_drop: Annotated[float, typer.Option(
        "--max-uar-drop", help="Largest emotion UAR drop the chosen strength may cost.")] = 0.05,
    corpus: options.CorpusOption = "synthetic",
    corpus_root: options.CorpusRootOption = None,
    corpus_option: options.CorpusOptionOption = None,
    aux_corpus: Annotated[str, typer.Option(
        "--aux-corpus", help="The protection's training data and the s1/s3/s4 attackers' (other speakers).")
    ] = api.DEFAULT_AUX_CORPUS,
    seed: options.SeedOption = 0,
    quick: options.QuickLeakageOption = False,
    device: options.DeviceOption = "auto",
    executor: options.ExecutorOption = "auto",
    report: Annotated[str, typer.Option("--report", help="Folder for the protection report.")] = "ser-audit-report",
    format: options.FormatOption = "json",
    cache_dir: options.CacheDirOption = None,
    frontend: options.FrontendOption = None,
    weights: options.WeightsOption = None,
    trust_pickle: options.TrustPickleOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """Remove an attribute from one layer, then re-audit with attackers trained afterwards and report the trade-off."""
    check_outputs(format, None, report, cache_dir, out_flag="--report")
    check_writable(out, flag="--out")
    config = api.AuditConfig.create(
        options.model_source(model, frontend, weights, trust_pickle),
        corpus=options.corpus_source(corpus, corpus_root, corpus_option), aux_corpus=api.CorpusSource(aux_corpus),
        attribute=attribute, seed=seed, quick=quick, device=device, executor=executor, cache_dir=cache_dir)
    settings = api.ProtectSettings(layer=layer, out=out, method=method, strengths=_strengths(strength),
                                   max_uar_drop=max_uar_drop)
    result = api.protect_model(config, settings, command=["ser-audit", *sys.argv[1:]], observer=observer_for(quiet))
    finish(result, report, format, quiet=quiet, summary=protection_summary)
