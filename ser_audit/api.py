"""Python entry points. Each returns data (a Report, a list of layers); nothing here prints.

Every audit is described by one :class:`~ser_audit.config.AuditConfig`; these functions take
either a config or the model plus the config's fields as keyword arguments (the CLI's flags by
their Python names), and hand it to ``ser_audit.runner``.

Example:
    >>> from ser_audit.api import leakage_audit                       # doctest: +SKIP
    >>> report = leakage_audit("zoo:cnn4", corpus="synthetic", seed=0, quick=True)  # doctest: +SKIP
    >>> [(r.layer, round(r.balanced_accuracy, 2)) for r in report.leakage.results]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ser_audit.config import ATTRIBUTES, DEFAULT_AUX_CORPUS, AuditConfig, CorpusSource, ModelSource, ProbeOptions
from ser_audit.corpus.interface import Corpus
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import Report
from ser_audit.runner import audit as runs
from ser_audit.runner import sources
from ser_audit.runner.leakage import scenario_layers
from ser_audit.runner.models import harden_model as _harden_model
from ser_audit.runner.models import list_layers, reference_model_table, train_reference_model
from ser_audit.runner.protect import ProtectSettings
from ser_audit.runner.provenance import corpus_info, environment
from ser_audit.runner.sources import default_cache_dir

if TYPE_CHECKING:
    from ser_audit.robustness.evaluate import ProbeSettings
    from ser_audit.robustness.hardening import HardeningRecipe

__all__ = [
    "ATTRIBUTES", "DEFAULT_AUX_CORPUS", "AuditConfig", "CorpusSource", "ModelSource", "ProbeOptions", "corpus_info",
    "ProtectSettings", "default_cache_dir", "environment", "full_audit", "harden_model", "leakage_audit", "list_layers",
    "load_corpus", "protect_model", "reference_model_table", "robustness_audit", "scenario_layers", "train_reference_model",
]


def _config(source: AuditConfig | ModelSource | str, options: dict[str, Any]) -> AuditConfig:
    """A new config from the model and options, or ``source`` with ``options`` applied: probe options
    merge into its own, and a ``quick`` given again re-derives what follows from it."""
    if not isinstance(source, AuditConfig):
        return AuditConfig.create(source, **options)
    if not options:
        return source
    base = dict(source)
    probes = source.probes.model_dump()
    if "quick" in options:
        base = {key: value for key, value in base.items() if key not in ("permutations", "attacker_epochs")}
        probes.pop("pgd_steps")
    base["probes"] = {**probes, **dict(options.pop("probes", None) or {})}
    return AuditConfig.create(**{**base, **options})


def leakage_audit(source: AuditConfig | ModelSource | str, *, command: Sequence[str] = (),
                  observer: ProgressObserver = NULL_OBSERVER, **options: Any) -> Report:
    """P0's leakage study on one model: every selected layer, every scenario and attacker kind.

    A linear probe on pooled statistics gives the depth curve over all selected layers; the
    scenario attackers (same architecture, other designs of the same family, the other
    family; on audit-corpus folds or on ``aux_corpus``) run on a spread of them. Folds are
    speaker-disjoint (leave-one-session-out where sessions exist). ``attribute="speaker"``
    runs closed-set identification and open-set verification instead of the scenarios.
    ``options`` are :class:`AuditConfig` fields. Gate outcomes are in ``report.gates``.
    """
    return runs.leakage(_config(source, options), command=command, observer=observer)


def robustness_audit(source: AuditConfig | ModelSource | str, *, settings: "ProbeSettings | None" = None,
                     gradient: str | None = None, command: Sequence[str] = (),
                     observer: ProgressObserver = NULL_OBSERVER, **options: Any) -> Report:
    """FGSM over an eps grid (one gradient per batch) and PGD at one eps, on the emotion predictions.

    ``gradient="auto"`` falls back to an SPSA estimate (rows say black-box, the score is an upper
    bound) when an ONNX graph has no differentiable torch conversion; ``"white-box"`` makes that
    an error. ``settings`` (a ``ProbeSettings``) is the older spelling of ``probes``.
    """
    return runs.robustness(_config(source, _probe_options(settings, gradient, options)), command=command,
                           observer=observer)


def full_audit(source: AuditConfig | ModelSource | str, *, settings: "ProbeSettings | None" = None,
               command: Sequence[str] = (), observer: ProgressObserver = NULL_OBSERVER, **options: Any) -> Report:
    """Leakage and robustness in one report; with ``hardened``, also how hardening moved each layer's leakage."""
    return runs.audit(_config(source, _probe_options(settings, None, options)), command=command, observer=observer)


def protect_model(source: AuditConfig | ModelSource | str, settings: ProtectSettings, *, command: Sequence[str] = (),
                  observer: ProgressObserver = NULL_OBSERVER, **options: Any) -> Report:
    """Remove ``config.attribute`` from ``settings.layer`` (projection or adversarial), write the chosen copy to
    ``settings.out``, and return the report: the written model's informed audit, with ``report.protection``
    holding the trade-off per strength, each tapped layer before and after, and emotion UAR before and after."""
    from ser_audit.runner.protect import run_protect

    return run_protect(_config(source, options), settings, command=command, observer=observer)


def harden_model(source: ModelSource | str, out: Path, *, recipe: "HardeningRecipe",
                 corpus: CorpusSource | str = CorpusSource(), cache_dir: Path | None = None,
                 observer: ProgressObserver = NULL_OBSERVER, device: str = "auto") -> dict[str, Any]:
    """Adversarially fine-tune a model (P2's vanilla or similarity-based training) on ``device`` (``auto``, ``cpu``,
    ``cuda``, ``cuda:N``) and write it to ``out``.

    Returns held-out UAR on real and on FGSM data at the recipe's eps, before and after.
    """
    return _harden_model(ModelSource(source) if isinstance(source, str) else source, out, recipe=recipe,
                         corpus=CorpusSource(corpus) if isinstance(corpus, str) else corpus, cache_dir=cache_dir,
                         observer=observer, device=device)


def load_corpus(spec: str, *, cache_dir: Path, seed: int, corpus_root: Path | None = None,
                options: Sequence[str] = (), observer: ProgressObserver = NULL_OBSERVER) -> Corpus:
    return sources.load_corpus(CorpusSource(spec, corpus_root, tuple(options)), cache_dir=cache_dir, seed=seed,
                               observer=observer)


def _probe_options(settings: "ProbeSettings | None", gradient: str | None, options: dict[str, Any]) -> dict[str, Any]:
    if settings is None and gradient is None:
        return options
    probes = dict(options.pop("probes", None) or {})
    if settings is not None:
        probes.update({key: value for key, value in asdict(settings).items() if key != "seed"})
    if gradient is not None:
        probes["gradient"] = gradient
    return {**options, "probes": probes}
