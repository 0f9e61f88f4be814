"""Running probes over an evaluation set and measuring what they do to the emotion predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import reference_utterances
from ser_audit.errors import ConfigError, CorpusError
from ser_audit.frontend.features import FrontEnd
from ser_audit.models.interface import TargetModel
from ser_audit.models.training import unweighted_average_recall, waveforms
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import RobustnessResult
from ser_audit.robustness.interface import Probe, check_eps, probe_class
from ser_audit.robustness.spsa import SpsaFGSM

BATCH = 32


@dataclass
class EvaluationSet:
    """Inputs of the utterances probed, their emotion labels and genders.

    ``features`` are the primary input; ``extra`` the further inputs (fed clean);
    ``audio`` the waveforms, for the waveform domain.
    """

    description: str
    features: torch.Tensor
    extra: list[torch.Tensor]
    audio: torch.Tensor
    labels: np.ndarray
    genders: np.ndarray
    emotions: list[str]


@dataclass(frozen=True)
class ProbeSettings:
    """What to probe: the FGSM eps grid (relative to the input's spread), PGD at one eps, and how."""

    grid: tuple[float, ...]
    eta: float | None = None
    pgd_eps: float | None = 0.02
    pgd_steps: int = 10
    pgd_step_size: float | None = None
    domain: str = "features"
    attack_target: str = "labels"  # or "predictions"
    targeted_class: str | None = None
    extra_probes: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        check_eps("--eps", list(self.grid))
        if self.eta is not None and not self.eta > 0:
            raise ConfigError(f"--eta must be positive (got {self.eta})")
        if self.pgd_eps is not None:
            check_eps("--pgd-eps", [self.pgd_eps])
        if self.pgd_steps < 1:
            raise ConfigError(f"--pgd-steps must be at least 1 (got {self.pgd_steps})")
        if self.pgd_step_size is not None and not self.pgd_step_size > 0:
            raise ConfigError(f"--pgd-step-size must be positive (got {self.pgd_step_size})")
        if self.domain not in ("features", "waveform"):
            raise ConfigError(f"--domain {self.domain!r}: use features or waveform")
        if self.attack_target not in ("labels", "predictions"):
            raise ConfigError(f"--attack-target {self.attack_target!r}: use labels or predictions")


def evaluation_set(model: TargetModel, corpus: Corpus, observer: ProgressObserver = NULL_OBSERVER) -> EvaluationSet:
    """The held-out session for a reference model trained on this corpus, else every labelled utterance."""
    spec = model.frontend
    held_out = (model.training or {}).get("held_out_session")
    same_corpus = (model.training or {}).get("training_corpus") == corpus.name
    indices = [
        i for i, u in enumerate(corpus)
        if u.emotion in spec.emotions and (not (held_out and same_corpus) or u.session == held_out)
    ]
    if not indices:
        raise CorpusError(f"no utterance of {corpus.name!r} carries one of the model's emotions {spec.emotions}")
    subset = corpus.subset(indices)
    description = f"held-out session {held_out} of {corpus.name}" if held_out and same_corpus else f"all of {corpus.name}"
    audio = torch.from_numpy(np.stack(_same_length(waveforms(subset, spec, observer, label=description))))
    frontend = FrontEnd(spec)
    with torch.no_grad():
        features = torch.cat([frontend(audio[i : i + BATCH]) for i in range(0, len(audio), BATCH)])
        extra = []
        if spec.extra_inputs:
            references = reference_utterances(corpus)
            reference_audio = np.stack(_same_length(waveforms([references[i] for i in indices], spec)))
            reference_features = frontend(torch.from_numpy(reference_audio))
            extra = [reference_features for _ in spec.extra_inputs]
    return EvaluationSet(
        description=description,
        features=features,
        extra=extra,
        audio=audio,
        labels=np.array([spec.emotions.index(u.emotion) for u in subset]),
        genders=np.array([u.gender for u in subset]),
        emotions=list(spec.emotions),
    )


def _same_length(signals: list[np.ndarray]) -> list[np.ndarray]:
    length = max(len(s) for s in signals)
    return [np.pad(s, (0, length - len(s))) for s in signals]


def _predict(module: nn.Module, features: torch.Tensor, extra: list[torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([
            module(features[i : i + BATCH], *(e[i : i + BATCH] for e in extra)).argmax(1)
            for i in range(0, len(features), BATCH)
        ]).numpy()


class _Bound(nn.Module):
    """The model with its further inputs fixed, so probes see ``f(x) -> logits``."""

    def __init__(self, module: nn.Module, extra: list[torch.Tensor], frontend: nn.Module | None = None) -> None:
        super().__init__()
        self.module, self.extra, self.frontend = module, extra, frontend

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.frontend(inputs) if self.frontend is not None else inputs
        return self.module(features, *self.extra)


def _row(method: str, eps: float, eps_raw: float, data: EvaluationSet, predicted: np.ndarray, clean: np.ndarray,
         perturbation: np.ndarray, settings: ProbeSettings, probe: Probe | None, snr_db: float | None) -> RobustnessResult:
    n_classes = len(data.emotions)
    correct_before = clean == data.labels
    flat = perturbation.reshape(len(perturbation), -1)
    return RobustnessResult(
        method=method,
        eps=eps,
        eps_raw=eps_raw,
        eta=settings.eta if method == "fgsm" else None,
        domain=settings.domain,
        gradient=probe.gradient_kind if probe else "none",
        attack_target=settings.attack_target,
        targeted_class=settings.targeted_class,
        steps=settings.pgd_steps if method == "pgd" else 1,
        uar=unweighted_average_recall(data.labels, predicted, n_classes),
        accuracy=float(np.mean(predicted == data.labels)),
        success_rate=float(np.mean(predicted[correct_before] != data.labels[correct_before])) if correct_before.any() else None,
        prediction_change_rate=float(np.mean(predicted != clean)),
        recall_by_class={
            emotion: float(np.mean(predicted[data.labels == c] == c))
            for c, emotion in enumerate(data.emotions) if np.any(data.labels == c)
        },
        uar_by_gender={
            gender: unweighted_average_recall(data.labels[data.genders == gender], predicted[data.genders == gender], n_classes)
            for gender in sorted(set(data.genders))
        },
        mean_linf=float(np.abs(flat).max(1).mean()),
        mean_l2=float(np.sqrt((flat**2).sum(1)).mean()),
        snr_db=snr_db,
        n=len(predicted),
    )


def probe_model(
    module: nn.Module,
    data: EvaluationSet,
    settings: ProbeSettings,
    frontend: FrontEnd,
    *,
    black_box: bool = False,
    observer: ProgressObserver = NULL_OBSERVER,
) -> tuple[list[RobustnessResult], float]:
    """Clean scores, the FGSM grid from one gradient per batch, and PGD at one eps.

    With ``black_box`` the FGSM gradient is an SPSA estimate from forward passes and PGD is skipped.
    Returns the rows and the attacked input's spread (the unit of the relative eps).
    """
    clean = _predict(module, data.features, data.extra)
    reference = data.labels if settings.attack_target == "labels" else clean
    targeted = settings.targeted_class is not None
    if targeted:
        if settings.targeted_class not in data.emotions:
            raise ConfigError(f"--targeted {settings.targeted_class!r}: choose one of {', '.join(data.emotions)}")
        reference = np.full_like(reference, data.emotions.index(settings.targeted_class))
    waveform_domain = settings.domain == "waveform"
    inputs = data.audio if waveform_domain else data.features
    spread = float(inputs.std())
    eta = None if settings.eta is None else settings.eta * spread
    fgsm = (SpsaFGSM(eta=eta, targeted=targeted, seed=settings.seed) if black_box
            else probe_class("fgsm")(eta=eta, targeted=targeted))
    grid = [eps * spread for eps in settings.grid]
    adversarial: list[list[torch.Tensor]] = [[] for _ in grid]
    pgd_batches: list[torch.Tensor] = []
    pgd = None
    if settings.pgd_eps is not None and not black_box:
        pgd = probe_class("pgd")(settings.pgd_eps * spread, steps=settings.pgd_steps,
                                 targeted=targeted, seed=settings.seed,
                                 step_size=None if settings.pgd_step_size is None else settings.pgd_step_size * spread)
    # Plugin probes run at PGD's radius (white-box only: they differentiate the model).
    extra_eps = settings.pgd_eps if settings.pgd_eps is not None else max(settings.grid)
    extra = [] if black_box else [
        (name, probe_class(name)(eps=extra_eps * spread, targeted=targeted))
        for name in settings.extra_probes]
    extra_batches: list[list[torch.Tensor]] = [[] for _ in extra]
    labels = torch.from_numpy(reference).long()
    with observer.task(f"probing {len(inputs)} utterances ({settings.domain})", total=len(inputs)) as task:
        for start in range(0, len(inputs), BATCH):
            batch = slice(start, start + BATCH)
            bound = _Bound(module, [e[batch] for e in data.extra], frontend if waveform_domain else None).eval()
            for k, result in enumerate(fgsm.sweep(bound, inputs[batch], labels[batch], grid)):
                adversarial[k].append(result)
            if pgd is not None:
                pgd_batches.append(pgd(bound, inputs[batch], labels[batch]))
            for (_name, probe), parts in zip(extra, extra_batches):
                parts.append(probe(bound, inputs[batch], labels[batch]))
            task.advance(len(inputs[batch]))
    rows = []
    runs: list[tuple[str, float, float, torch.Tensor, Probe]] = [
        ("fgsm", eps, raw, torch.cat(parts), fgsm) for eps, raw, parts in zip(settings.grid, grid, adversarial)]
    if pgd is not None and settings.pgd_eps is not None:
        runs.append(("pgd", settings.pgd_eps, pgd.eps, torch.cat(pgd_batches), pgd))
    runs += [(name, extra_eps, extra_eps * spread, torch.cat(parts), probe)
             for (name, probe), parts in zip(extra, extra_batches)]
    for method, eps, raw, perturbed, probe in runs:
        features = _features(frontend, perturbed) if waveform_domain else perturbed
        predicted = _predict(module, features, data.extra)
        delta = (perturbed - inputs).numpy()
        snr = _snr_db(inputs.numpy(), delta) if waveform_domain else None
        rows.append(_row(method, eps, raw, data, predicted, clean, delta, settings, probe, snr))
    return rows, spread


def _features(frontend: FrontEnd, audio: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([frontend(audio[i : i + BATCH]) for i in range(0, len(audio), BATCH)])


def _snr_db(signal: np.ndarray, noise: np.ndarray) -> float | None:
    noise_power = float(np.mean(noise**2))
    return None if noise_power == 0 else float(10 * np.log10(np.mean(signal**2) / noise_power))


def robustness_score(rows: Sequence[RobustnessResult]) -> float | None:
    """100 x area under the FGSM UAR-eps curve relative to clean UAR (1 = no loss), over the grid's span."""
    curve = sorted((r.eps, r.uar) for r in rows if r.method == "fgsm")
    if len(curve) < 2 or curve[0][0] != 0.0 or curve[0][1] == 0:
        return None
    eps, uar = np.array(curve).T
    return float(100 * np.trapezoid(uar / uar[0], eps) / (eps[-1] - eps[0]))
