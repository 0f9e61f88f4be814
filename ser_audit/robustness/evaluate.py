"""Running probes over an evaluation set and measuring what they do to the emotion predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.devices import moved
from ser_audit.errors import ConfigError, CorpusError
from ser_audit.frontend.features import FrontEnd
from ser_audit.frontend.inputs import EvaluationInputs
from ser_audit.models.interface import TargetModel
from ser_audit.models.training import unweighted_average_recall
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import RobustnessResult
from ser_audit.robustness.interface import Probe, check_eps, probe_class
from ser_audit.robustness.spsa import SpsaFGSM

BATCH = 32


@dataclass
class EvaluationSet:
    """Inputs of the utterances probed, their emotion labels, genders and speakers, in batches of equal length.

    Each list holds one tensor per batch (``batches``: the rows of each, in order), so a
    variable-length model sees every utterance whole and unpadded. ``features`` are the primary
    input; ``extra`` the further inputs fed from the corpus (the fixed neutral reference, ``reference`` says
    which; auxiliary inputs such as a state or the sample rate are made inside ``torch_module``);
    ``audio`` and ``reference_audio`` the waveforms, for the waveform domain.
    """

    description: str
    batches: list[np.ndarray]
    features: list[torch.Tensor]
    extra: list[list[torch.Tensor]]
    audio: list[torch.Tensor]
    reference_audio: list[torch.Tensor]
    labels: np.ndarray
    genders: np.ndarray
    speakers: np.ndarray
    emotions: list[str]
    reference: str | None = None


@dataclass(frozen=True)
class ProbeSettings:
    """What to probe: the FGSM eps grid (relative to the input's spread), PGD at one eps, and how.

    ``perturb`` is the input attacked: ``primary`` (the utterance; the default) or ``reference``
    (P4's neutral reference of a two-input model: a poisoned enrolment, the utterance left clean).
    """

    grid: tuple[float, ...]
    eta: float | None = None
    pgd_eps: float | None = 0.02
    pgd_steps: int = 10
    pgd_step_size: float | None = None
    domain: str = "features"
    attack_target: str = "labels"  # or "predictions"
    targeted_class: str | None = None
    extra_probes: tuple[str, ...] = ()
    perturb: str = "primary"
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
        if self.perturb not in PERTURBED_INPUTS:
            raise ConfigError(f"--perturb {self.perturb!r}: use {' or '.join(PERTURBED_INPUTS)}")


PERTURBED_INPUTS = ("primary", "reference")


def evaluation_set(model: TargetModel, corpus: Corpus, observer: ProgressObserver = NULL_OBSERVER) -> EvaluationSet:
    """The held-out session for a reference model trained on this corpus, else every labelled utterance."""
    spec = model.frontend
    held_out = (model.training or {}).get("held_out_session")
    same_corpus = (model.training or {}).get("training_corpus") == corpus.name
    session = [i for i, u in enumerate(corpus) if not (held_out and same_corpus) or u.session == held_out]
    indices = [i for i in session if corpus.utterances[i].emotion in spec.emotions]
    if not indices:
        present = sorted({u.emotion for u in corpus})
        raise CorpusError(f"no utterance of corpus {corpus.name!r} ({corpus.root}) carries one of the model's emotions "
                          f"{spec.emotions} (the corpus has {present[:8]}); name the model's outputs with the corpus's "
                          "emotions (the spec's emotions, or id2label in a transformers config.json), or audit a corpus "
                          "labelled with them")
    subset = corpus.subset(indices)
    matched = sorted({u.emotion for u in subset})
    if len(matched) < 2:
        raise CorpusError(f"only {matched[0]!r} of the model's emotions {spec.emotions} occurs in corpus {corpus.name!r} "
                          f"({corpus.root}; it has {sorted({u.emotion for u in corpus})[:8]}): a UAR over one class "
                          "means nothing; name the model's outputs with the corpus's emotions (the spec's emotions, or "
                          "id2label in a transformers config.json)")
    description = f"held-out session {held_out} of {corpus.name}" if held_out and same_corpus else f"all of {corpus.name}"
    if len(indices) < len(session):
        unmatched = sorted({corpus.utterances[i].emotion for i in session} - set(spec.emotions))
        description += (f" labelled with the model's emotions ({len(session) - len(indices)} utterances of "
                        f"{', '.join(unmatched)} left out: the model has no such output)")
    inputs = EvaluationInputs(spec, corpus)
    batches = list(inputs.batches(indices, batch_size=BATCH, observer=observer, label=description))
    return EvaluationSet(
        description=description,
        batches=[batch.rows for batch in batches],
        features=[batch.fed[0] for batch in batches],
        extra=[batch.fed[1:] for batch in batches],
        audio=[batch.audio for batch in batches],
        reference_audio=[batch.reference_audio for batch in batches if batch.reference_audio is not None],
        labels=np.array([spec.emotions.index(u.emotion) for u in subset]),
        genders=np.array([u.gender for u in subset]),
        speakers=np.array([u.speaker for u in subset]),
        emotions=list(spec.emotions),
        reference=inputs.reference,
    )


def _predict(module: nn.Module, features: list[torch.Tensor], extra: list[list[torch.Tensor]],
             device: str = "cpu") -> np.ndarray:
    """Predicted classes, each batch taken to ``device`` (where ``module`` is) and its classes brought back."""
    with torch.no_grad():
        return torch.cat([module(batch.to(device), *(other.to(device) for other in others)).argmax(1).cpu()
                          for batch, others in zip(features, extra)]).numpy()


class _Bound(nn.Module):
    """The model with all inputs but the attacked one fixed, so probes see ``f(x) -> logits``.

    ``position`` 0 attacks the primary input; 1 attacks the reference, which feeds every further input.
    """

    def __init__(self, module: nn.Module, inputs: list[torch.Tensor], position: int,
                 frontend: nn.Module | None = None) -> None:
        super().__init__()
        self.module, self.inputs, self.position, self.frontend = module, inputs, position, frontend

    def forward(self, attacked: torch.Tensor) -> torch.Tensor:
        features = self.frontend(attacked) if self.frontend is not None else attacked
        if self.position == 0:
            return self.module(features, *self.inputs[1:])
        return self.module(self.inputs[0], *([features] * (len(self.inputs) - 1)))


def _row(method: str, eps: float, eps_raw: float, data: EvaluationSet, predicted: np.ndarray, clean: np.ndarray,
         norms: tuple[np.ndarray, np.ndarray], settings: ProbeSettings, probe: Probe | None,
         snr_db: float | None) -> RobustnessResult:
    n_classes = len(data.emotions)
    correct_before = clean == data.labels
    linf, l2 = norms
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
        mean_linf=float(linf.mean()),
        mean_l2=float(l2.mean()),
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
    device: str = "cpu",
    observer: ProgressObserver = NULL_OBSERVER,
) -> tuple[list[RobustnessResult], float]:
    """Clean scores, the FGSM grid from one gradient per batch, and PGD at one eps.

    With ``black_box`` the FGSM gradient is an SPSA estimate from forward passes and PGD is skipped.
    ``settings.perturb`` chooses the input attacked (the primary utterance, or the neutral reference).
    ``module`` (and ``frontend``, for the waveform domain) run on ``device`` (resolved: ``cpu``, ``cuda``,
    ``cuda:N``) and are back where they were afterwards; each batch goes there once and its adversarial
    inputs come back once, and the norms and scores are computed on the CPU. A black-box ``module``
    is a numpy function (``ForwardOnly``): pass ``cpu`` and place the model itself (``TargetModel.place``).
    Returns the rows and the attacked input's spread (the unit of the relative eps).
    """
    with moved(module, device), moved(frontend, device):
        return _probe(module, data, settings, frontend, black_box, device, observer)


def _probe(module: nn.Module, data: EvaluationSet, settings: ProbeSettings, frontend: FrontEnd, black_box: bool,
           device: str, observer: ProgressObserver) -> tuple[list[RobustnessResult], float]:
    clean = _predict(module, data.features, data.extra, device)
    reference = data.labels if settings.attack_target == "labels" else clean
    targeted = settings.targeted_class is not None
    if targeted:
        if settings.targeted_class not in data.emotions:
            raise ConfigError(f"--targeted {settings.targeted_class!r}: choose one of {', '.join(data.emotions)}")
        reference = np.full_like(reference, data.emotions.index(settings.targeted_class))
    position = 1 if settings.perturb == "reference" else 0
    if position and not data.reference_audio:
        raise ConfigError("--perturb reference: the model has no reference input (no extra_inputs in its front-end "
                          "spec); use --perturb primary")
    waveform_domain = settings.domain == "waveform"
    inputs = (data.reference_audio if position else data.audio) if waveform_domain else (
        [others[0] for others in data.extra] if position else data.features)
    spread = float(torch.cat([batch.flatten() for batch in inputs]).std())
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
    attacked = "the neutral reference" if position else settings.domain
    with observer.task(f"probing {len(data.labels)} utterances ({attacked})", total=len(data.labels)) as task:
        for rows, batch, features, others in zip(data.batches, inputs, data.features, data.extra):
            batch, features, others = batch.to(device), features.to(device), [other.to(device) for other in others]
            bound = _Bound(module, [features, *others], position, frontend if waveform_domain else None).eval()
            targets = labels[torch.from_numpy(rows)].to(device)
            for k, result in enumerate(fgsm.sweep(bound, batch, targets, grid)):
                adversarial[k].append(result.cpu())
            if pgd is not None:
                pgd_batches.append(pgd(bound, batch, targets).cpu())
            for (_name, probe), parts in zip(extra, extra_batches):
                parts.append(probe(bound, batch, targets).cpu())
            task.advance(len(rows))
    rows_out = []
    runs: list[tuple[str, float, float, list[torch.Tensor], Probe]] = [
        ("fgsm", eps, raw, parts, fgsm) for eps, raw, parts in zip(settings.grid, grid, adversarial)]
    if pgd is not None and settings.pgd_eps is not None:
        runs.append(("pgd", settings.pgd_eps, pgd.eps, pgd_batches, pgd))
    runs += [(name, extra_eps, extra_eps * spread, parts, probe)
             for (name, probe), parts in zip(extra, extra_batches)]
    for method, eps, raw, perturbed, probe in runs:
        fed = [_features(frontend, batch.to(device)) for batch in perturbed] if waveform_domain else perturbed
        if position:
            predicted = _predict(module, data.features, [[batch] * len(others) for batch, others in zip(fed, data.extra)],
                                 device)
        else:
            predicted = _predict(module, fed, data.extra, device)
        deltas = [(after - before).flatten(1) for after, before in zip(perturbed, inputs)]
        norms = (torch.cat([d.abs().amax(1) for d in deltas]).numpy(), torch.cat([d.norm(dim=1) for d in deltas]).numpy())
        snr = _snr_db(inputs, deltas) if waveform_domain else None
        rows_out.append(_row(method, eps, raw, data, predicted, clean, norms, settings, probe, snr))
    return rows_out, spread


def _features(frontend: FrontEnd, audio: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return frontend(audio)


def _snr_db(signals: list[torch.Tensor], noises: list[torch.Tensor]) -> float | None:
    signal_power = float(sum(float(s.pow(2).sum()) for s in signals))
    noise_power = float(sum(float(n.pow(2).sum()) for n in noises))
    return None if noise_power == 0 else float(10 * np.log10(signal_power / noise_power))


def robustness_score(rows: Sequence[RobustnessResult], *, chance: float = 0.0) -> float | None:
    """100 x area under the FGSM UAR-eps curve relative to clean UAR (1 = no loss), over the grid's span.

    None where the clean UAR is no better than ``chance`` (1 / the classes evaluated): a model that recognises
    nothing has nothing to lose, and would otherwise score 100.
    """
    curve = sorted((r.eps, r.uar) for r in rows if r.method == "fgsm")
    if len(curve) < 2 or curve[0][0] != 0.0 or curve[0][1] <= chance + 1e-9:
        return None
    eps, uar = np.array(curve).T
    return float(100 * np.trapezoid(uar / uar[0], eps) / (eps[-1] - eps[0]))
