"""Python entry points. Each returns data (a Report, a list of layers); nothing here prints.

Example:
    >>> from ser_audit.api import leakage_audit                       # doctest: +SKIP
    >>> report = leakage_audit("zoo:cnn4", corpus="synthetic", seed=0)  # doctest: +SKIP
    >>> [(r.layer, round(r.accuracy.mean, 2)) for r in report.leakage.results]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ser_audit import __version__
from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.registry import DEFAULT_CORPUS, resolve_corpus
from ser_audit.errors import ConfigError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.gates import leakage_gates
from ser_audit.report.model import CorpusInfo, Environment, LayerRow, Leakage, ModelInfo, Report, Robustness, Tool

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel
    from ser_audit.robustness.evaluate import ProbeSettings
    from ser_audit.robustness.hardening import HardeningRecipe

_PROVENANCE_PACKAGES = ("torch", "torchaudio", "onnx", "onnxruntime", "numpy", "scipy", "scikit-learn", "pydantic")
ATTRIBUTES = ("gender", "speaker")


def default_cache_dir() -> Path:
    """``$SER_AUDIT_CACHE``, else ``$XDG_CACHE_HOME/ser-audit``, else ``~/.cache/ser-audit``."""
    if os.environ.get("SER_AUDIT_CACHE"):
        return Path(os.environ["SER_AUDIT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ser-audit"


@dataclass(frozen=True)
class ModelSource:
    """How to load the model under audit (mirrors the MODEL argument and its flags)."""

    spec: str
    frontend: Path | None = None
    weights: Path | None = None
    trust_pickle: bool = False


@dataclass(frozen=True)
class CorpusSource:
    """Which corpus to read (mirrors --corpus, --corpus-root and --corpus-option)."""

    spec: str = DEFAULT_CORPUS
    root: Path | None = None
    options: tuple[str, ...] = ()


def _model(source: ModelSource | str, cache_dir: Path, seed: int, observer: ProgressObserver) -> "TargetModel":
    from ser_audit.models.loading import load_model

    source = ModelSource(source) if isinstance(source, str) else source
    return load_model(source.spec, frontend=source.frontend, weights=source.weights, trust_pickle=source.trust_pickle,
                      cache_dir=cache_dir, seed=seed, observer=observer)


def _corpus(corpus: CorpusSource | str, cache_dir: Path, seed: int, observer: ProgressObserver) -> Corpus:
    corpus = CorpusSource(corpus) if isinstance(corpus, str) else corpus
    return load_corpus(corpus.spec, cache_dir=cache_dir, seed=seed, corpus_root=corpus.root, options=corpus.options,
                       observer=observer)


def environment() -> Environment:
    packages = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return Environment(python=sys.version.split()[0], platform=platform.platform(), packages=packages)


def corpus_info(corpus: Corpus, *, seed: int | None = None) -> CorpusInfo:
    from ser_audit.corpus.loader import audio_summary

    summary = corpus.summary()
    return CorpusInfo(manifest_sha256=corpus.manifest_sha256(), seed=seed, audio=audio_summary(corpus), **summary)


def load_corpus(spec: str, *, cache_dir: Path, seed: int, corpus_root: Path | None = None,
                options: Sequence[str] = (), observer: ProgressObserver = NULL_OBSERVER) -> Corpus:
    return resolve_corpus(spec, cache_dir=cache_dir, seed=seed, corpus_root=corpus_root, options=options,
                          observer=observer)


def list_layers(source: ModelSource, *, cache_dir: Path | None = None, seed: int = 0,
                observer: ProgressObserver = NULL_OBSERVER) -> list[LayerRow]:
    model = _model(source, cache_dir or default_cache_dir(), seed, observer)
    return [LayerRow(index=l.index, name=l.name, kind=l.kind, shape=list(l.shape)) for l in model.layers()]


def leakage_audit(
    source: ModelSource | str,
    *,
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    sentence_disjoint: bool = False,
    layers: str | None = None,
    attribute: str = "gender",
    folds: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    max_leakage: float | None = None,
    max_gap: float | None = None,
    command: Sequence[str] = (),
    observer: ProgressObserver = NULL_OBSERVER,
) -> Report:
    """Tap the model's layers on ``corpus`` and measure how well a linear-probe attacker infers ``attribute``.

    Folds are speaker-disjoint (leave-one-session-out where sessions exist). Returns the report;
    gate outcomes are in ``report.gates``.
    """
    from ser_audit.embeddings.extract import extract
    from ser_audit.leakage.runner import input_reference, probe_layers, recommend

    if attribute not in ATTRIBUTES:
        raise ConfigError(f"--attribute {attribute!r}: choose one of {', '.join(ATTRIBUTES)}")
    if attribute == "speaker":
        raise ConfigError("--attribute speaker needs closed-set folds, which are not implemented yet; use gender")
    source = ModelSource(source) if isinstance(source, str) else source
    cache = cache_dir or default_cache_dir()
    created = _now()
    # The corpus first: a wrong --corpus-root should not wait for a reference model to train.
    audit_corpus = _corpus(corpus, cache, seed, observer)
    model = _model(source, cache, seed, observer)
    selected = model.select_layers(layers)
    corpus_folds = speaker_disjoint_folds(audit_corpus, n_folds=folds, seed=seed, sentence_disjoint=sentence_disjoint)
    embeddings = extract(model, audit_corpus, selected, observer=observer)
    rows = probe_layers(embeddings, audit_corpus, selected, corpus_folds, attribute=attribute, seed=seed, observer=observer)
    reference = input_reference(audit_corpus, corpus_folds, attribute=attribute, seed=seed, observer=observer)
    chance = rows[0].chance
    threshold = max_leakage if max_leakage is not None else min(1.0, chance + 0.1)
    report = Report(
        tool=Tool(version=__version__),
        command=list(command),
        seed=seed,
        created=created,
        finished=_now(),
        environment=environment(),
        model=_model_info(source, model),
        corpus=corpus_info(audit_corpus, seed=seed),
        leakage=Leakage(
            attribute=attribute,
            folds=[fold.name for fold in corpus_folds],
            results=rows,
            input_reference=reference,
            recommendation=recommend(rows, threshold),
        ),
        notes=[f"{name}: {text}" for name, text in embeddings.reductions.items()],
    )
    report.gates = leakage_gates(report, max_leakage=max_leakage, max_gap=max_gap)
    return report


def _model_info(source: ModelSource, model: TargetModel) -> ModelInfo:
    return ModelInfo(
        path=source.spec,
        file=str(model.path) if model.path else None,
        sha256=model.sha256,
        format=model.format,
        frontend=model.frontend.model_dump(mode="json"),
        layers=[LayerRow(index=l.index, name=l.name, kind=l.kind, shape=list(l.shape)) for l in model.layers()],
        training=model.training,
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def reference_model_table() -> list[dict[str, str]]:
    from ser_audit.models.zoo import reference_models

    return [
        {"name": m.name, "paper": m.paper, "description": m.description, "version": str(m.version)}
        for m in sorted(reference_models().values(), key=lambda m: m.name)
    ]


def train_reference_model(name: str, out: Path, *, seed: int = 0, cache_dir: Path | None = None,
                          observer: ProgressObserver = NULL_OBSERVER) -> dict:
    """Train (or take from the cache) ``zoo:NAME`` and write it to ``out`` in the format its suffix names.

    Returns:
        The held-out metrics recorded at training time.
    """
    from ser_audit.models.loading import load_checkpoint
    from ser_audit.models.training import export_model
    from ser_audit.models.zoo import load_or_train

    if out.suffix.lower() not in (".onnx", ".pt", ".pt2", ".ckpt"):
        raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript), .pt2 (torch.export) or .ckpt file name")
    checkpoint = load_or_train(name, cache_dir=cache_dir or default_cache_dir(), seed=seed, observer=observer)
    if out.suffix.lower() == ".ckpt":
        import shutil

        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, out)
    model = load_checkpoint(checkpoint)
    if out.suffix.lower() != ".ckpt":
        export_model(model.module, model.frontend, out)
    return dict(model.training or {})


def robustness_audit(
    source: ModelSource | str,
    *,
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    settings: "ProbeSettings | None" = None,
    gradient: str = "auto",
    seed: int = 0,
    cache_dir: Path | None = None,
    min_robust_uar: float | None = None,
    at_eps: float | None = None,
    command: Sequence[str] = (),
    observer: ProgressObserver = NULL_OBSERVER,
) -> Report:
    """FGSM over an eps grid (one gradient per batch) and PGD at one eps, on the emotion predictions.

    ``gradient="auto"`` falls back to an SPSA estimate (rows say black-box) when an ONNX graph
    has no differentiable torch conversion; ``"white-box"`` makes that an error.
    """
    from ser_audit.frontend.features import FrontEnd
    from ser_audit.report.gates import robustness_gates
    from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model, robustness_score
    from ser_audit.robustness.fgsm import P2_EPS_GRID

    source = ModelSource(source) if isinstance(source, str) else source
    settings = settings or ProbeSettings(grid=P2_EPS_GRID, seed=seed)
    cache = cache_dir or default_cache_dir()
    created = _now()
    audit_corpus = _corpus(corpus, cache, seed, observer)
    model = _model(source, cache, seed, observer)
    module, black_box, notes = _attackable(model, gradient)
    data = evaluation_set(model, audit_corpus, observer)
    rows, spread = probe_model(module, data, settings, FrontEnd(model.frontend), black_box=black_box, observer=observer)
    report = Report(
        tool=Tool(version=__version__), command=list(command), seed=seed, created=created, finished=_now(),
        environment=environment(), model=_model_info(source, model), corpus=corpus_info(audit_corpus, seed=seed),
        robustness=Robustness(evaluation_set=data.description, input_spread=spread, results=rows,
                              score=robustness_score(rows)),
        notes=notes,
    )
    report.scores.robustness = report.robustness.score if report.robustness else None
    report.gates = robustness_gates(report, min_robust_uar=min_robust_uar, at_eps=at_eps)
    return report


def _attackable(model: "TargetModel", gradient: str) -> tuple[Any, bool, list[str]]:
    """The module probes differentiate (black_box False), or a forward-only wrapper (black_box True)."""
    from ser_audit.errors import ModelError
    from ser_audit.models.differentiable import torch_module
    from ser_audit.robustness.spsa import ForwardOnly

    if gradient not in ("auto", "white-box"):
        raise ConfigError(f"--gradient {gradient!r}: use auto or white-box")
    try:
        return torch_module(model), False, []
    except ModelError as error:
        if gradient == "white-box":
            raise
        names = model.input_names

        def logits(primary, *extra):  # type: ignore[no-untyped-def]
            return model.forward({names[0]: primary, **dict(zip(names[1:], extra))}).logits

        note = f"{error}; FGSM used an SPSA gradient estimate (black-box) and PGD was skipped"
        return ForwardOnly(logits), True, [note]


def harden_model(
    source: ModelSource | str,
    out: Path,
    *,
    recipe: "HardeningRecipe",
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    cache_dir: Path | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> dict[str, float]:
    """Adversarially fine-tune a model (P2's vanilla or similarity-based training) and write it to ``out``.

    Returns held-out UAR on real and on FGSM data at the recipe's eps, before and after.
    """
    import copy

    from ser_audit.frontend.features import FrontEnd
    from ser_audit.models.differentiable import torch_module
    from ser_audit.models.training import export_model, write_checkpoint_payload
    from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model
    from ser_audit.robustness.hardening import harden

    recipe.check()
    if out.suffix.lower() not in (".onnx", ".pt", ".pt2", ".ckpt"):
        raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript), .pt2 (torch.export) or .ckpt file name")
    source = ModelSource(source) if isinstance(source, str) else source
    cache = cache_dir or default_cache_dir()
    training_corpus = _corpus(corpus, cache, recipe.seed, observer)
    model = _model(source, cache, recipe.seed, observer)
    if out.suffix.lower() == ".ckpt" and not (model.path and model.path.suffix == ".ckpt"):
        raise ConfigError(f"--out {out}: .ckpt is for reference-model checkpoints; use .onnx, .pt or .pt2")
    original = torch_module(model)
    hardened = harden(copy.deepcopy(original), model, training_corpus, recipe, observer=observer)
    settings = ProbeSettings(grid=(0.0, recipe.eps), pgd_eps=None, seed=recipe.seed)
    data = evaluation_set(model, training_corpus, observer)
    frontend = FrontEnd(model.frontend)
    before, _ = probe_model(original, data, settings, frontend)
    after, _ = probe_model(hardened, data, settings, frontend)
    if out.suffix.lower() == ".ckpt":
        assert model.path is not None
        write_checkpoint_payload(model.path, hardened, out, extra_metrics={"hardening": recipe.method})
    else:
        export_model(hardened, model.frontend, out)
    return {
        "real_before": before[0].uar, "adversarial_before": before[1].uar,
        "real_after": after[0].uar, "adversarial_after": after[1].uar,
        "eps": recipe.eps, "n": after[0].n, "evaluation_set": data.description,  # type: ignore[dict-item]
    }


def full_audit(
    source: ModelSource | str,
    *,
    hardened: ModelSource | None = None,
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    layers: str | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    settings: "ProbeSettings | None" = None,
    max_leakage: float | None = None,
    max_gap: float | None = None,
    min_robust_uar: float | None = None,
    at_eps: float | None = None,
    command: Sequence[str] = (),
    observer: ProgressObserver = NULL_OBSERVER,
) -> Report:
    """Leakage and robustness in one report; with ``hardened``, also how hardening moved each layer's leakage."""
    from ser_audit.report.model import HardeningEffect

    common = dict(corpus=corpus, seed=seed, cache_dir=cache_dir, observer=observer)
    report = leakage_audit(source, layers=layers, max_leakage=max_leakage, max_gap=max_gap, command=command, **common)
    robust = robustness_audit(source, settings=settings, min_robust_uar=min_robust_uar, at_eps=at_eps, **common)
    report.robustness = robust.robustness
    report.scores.robustness = robust.scores.robustness
    report.gates = [*report.gates, *robust.gates]
    report.notes = [*report.notes, *robust.notes]
    if hardened is not None and report.leakage is not None:
        names = ",".join(row.layer for row in report.leakage.results)
        after = leakage_audit(hardened, layers=names, **common)
        report.hardened_model = after.model
        after_rows = {row.layer: row for row in after.leakage.results} if after.leakage else {}
        for row in report.leakage.results:
            other = after_rows[row.layer]
            report.hardening_effect.append(HardeningEffect(
                layer=row.layer, leakage_before=row.accuracy.mean, leakage_after=other.accuracy.mean,
                change=other.accuracy.mean - row.accuracy.mean,
                significant=other.accuracy.ci_low > row.accuracy.ci_high or other.accuracy.ci_high < row.accuracy.ci_low,
            ))
    report.finished = _now()
    return report
