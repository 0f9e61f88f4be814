"""Training reference models on a corpus, and writing them in every supported format."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.registry import resolve_corpus
from ser_audit.errors import ConfigError
from ser_audit.files import atomic_write
from ser_audit.frontend.inputs import TrainingInputs, describe_choice
from ser_audit.frontend.inputs import waveforms as waveforms  # re-exported: its earlier import path
from ser_audit.frontend.spec import METADATA_KEY, FrontEndSpec
from ser_audit.models.loop import balanced_class_weights, run_epochs, stage_optimiser, torch_shuffle, unfreeze
from ser_audit.models.reference import ReferenceModel, Stage
from ser_audit.models.transcription import train_transcript_stage
from ser_audit.progress import NULL_OBSERVER, ProgressObserver


@dataclass
class TrainedModel:
    reference: ReferenceModel
    module: nn.Module
    frontend: FrontEndSpec
    metrics: dict[str, Any]
    seed: int


def unweighted_average_recall(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean per-class recall over the classes present in ``truth`` (UAR)."""
    recalls = [np.mean(predicted[truth == c] == c) for c in range(n_classes) if np.any(truth == c)]
    return float(np.mean(recalls))


def corpus_inputs(corpus: Corpus, spec: FrontEndSpec, observer: ProgressObserver = NULL_OBSERVER) -> list[torch.Tensor]:
    """The model's input tensors for every utterance of a fixed-length spec: the primary features, then one per
    reference input (:class:`~ser_audit.frontend.inputs.TrainingInputs`, made)."""
    return TrainingInputs(spec, corpus, observer=observer, label=f"{corpus.name} audio").tensors


def train_reference(
    reference: ReferenceModel,
    *,
    cache_dir: Path,
    seed: int = 0,
    observer: ProgressObserver = NULL_OBSERVER,
    corpora: Mapping[str, Corpus] | None = None,
    device: str = "cpu",
) -> TrainedModel:
    """Train through the recipe's stages, holding out the last session (one male, one female
    speaker) of the training corpus (the last stage's) from every stage on that corpus.

    The held-out UAR is measured on speakers the model never saw; the returned model is the
    one trained without them. ``corpora`` supplies loaded corpora by stage corpus name (tests
    pass tiny ones); the others are resolved like ``--corpus``.

    Training runs on ``device`` (resolved: ``cpu``, ``cuda``, ``cuda:N``). Modules are built on the CPU (the
    same initial weights on every device) and moved there; fixed-length inputs are computed and normalised on
    the CPU and moved there once, random crops are analysed there batch by batch. The returned module is on
    the CPU, so a checkpoint holds CPU tensors whatever trained it; only the numbers differ (a GPU's kernels
    round differently).
    """
    if reference.frontend.auxiliary_inputs:
        raise ConfigError(f"zoo:{reference.name}: training recipes feed corpus inputs only; its front-end spec declares "
                          f"auxiliary inputs {[extra.name for extra in reference.frontend.auxiliary_inputs]}")
    started = time.perf_counter()
    stages = reference.stages
    loaded = dict(corpora or {})
    for name in dict.fromkeys(stage.corpus for stage in stages):
        if name not in loaded:
            loaded[name] = resolve_corpus(name, cache_dir=cache_dir, seed=seed, observer=observer)
    corpus = loaded[stages[-1].corpus]
    # Stages that crop or draw references at random train from whole waveforms (kept audio).
    sampled = {stage.corpus for stage in stages if stage.random_crop_s is not None or stage.random_reference}
    variable = reference.frontend.duration_s is None
    if variable and not all(s.random_crop_s for s in stages):
        raise ConfigError(f"zoo:{reference.name}: training needs a front-end of fixed length, "
                          "or of variable length with random crops (Stage.random_crop_s) in every stage")
    emotions = list(corpus.emotions)
    base_spec = reference.frontend.model_copy(update={"emotions": emotions, "normalisation": "none"})
    inputs = {name: TrainingInputs(base_spec, loaded[name], keep_audio=name in sampled, observer=observer,
                                   label=f"{loaded[name].name} audio")
              for name in dict.fromkeys(s.corpus for s in stages)}
    sessions = np.array([u.session for u in corpus])
    held_out = sorted(set(sessions))[-1]
    train_index = np.flatnonzero(sessions != held_out)
    test_index = np.flatnonzero(sessions == held_out)
    mean, std = inputs[stages[-1].corpus].moments(train_index)
    spec = reference.frontend.model_copy(update={"emotions": emotions, "normalisation": "global", "mean": mean, "std": std})
    for value in inputs.values():
        value.normalise(spec, device=device)

    torch.manual_seed(seed)
    module, records = _run_stages(reference, loaded, inputs, corpus, train_index, emotions, seed, observer,
                                  cache_dir=cache_dir, device=device)
    module.eval()
    predicted = _predict(module, inputs[stages[-1].corpus], test_index)
    module.to("cpu")
    truth = np.array([emotions.index(corpus.utterances[i].emotion) for i in test_index])
    metrics = {
        "held_out_uar": unweighted_average_recall(truth, predicted, len(emotions)),
        "held_out_accuracy": float(np.mean(truth == predicted)),
        "held_out_session": str(held_out),
        "n_train": int(len(train_index)),
        "n_test": int(len(test_index)),
        "training_corpus": corpus.name,
        "training_corpus_sha256": records[-1]["corpus_sha256"],
        "training_speakers": records[-1]["speakers"],
        "stages": records,
        **_input_records(reference),
        "training_device": device,
        # Wall time including corpus synthesis and feature extraction (what a first `zoo:` use costs).
        "training_seconds": round(time.perf_counter() - started, 1),
    }
    return TrainedModel(reference, module, spec, metrics, seed)


def _predict(module: nn.Module, inputs: TrainingInputs, rows: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Predicted classes of ``rows`` as at test time (whole utterances, each with its fixed reference): one at a
    time from kept audio (lengths may differ), else in batches of ``batch_size`` (all at once when None)."""
    step = 1 if inputs.audio is not None else batch_size or len(rows)
    with torch.no_grad():
        return torch.cat([module(*inputs.whole(rows[k : k + step])).argmax(1).cpu()
                          for k in range(0, len(rows), step)]).numpy()


def _input_records(reference: ReferenceModel) -> dict[str, Any]:
    """How the training and test inputs were drawn, for the model's metadata and the report."""
    spec, stage = reference.frontend, reference.stages[-1]
    records: dict[str, Any] = {}
    if stage.random_crop_s is not None:
        records["training_crops"] = f"random {stage.random_crop_s:g} s crops, drawn anew each epoch (shorter utterances repeated)"
        records["test_input"] = "whole utterances" if spec.duration_s is None else f"{spec.duration_s:g} s ({spec.crop})"
    if spec.reference_inputs:
        records["training_reference"] = (
            "a random neutral utterance of the same speaker per example and epoch, never the utterance itself"
            if stage.random_reference else describe_choice(0))
        records["test_reference"] = describe_choice(0)
    return records


def _run_stages(
    reference: ReferenceModel, corpora: dict[str, Corpus], inputs: dict[str, TrainingInputs], corpus: Corpus,
    train_index: np.ndarray, emotions: list[str], seed: int, observer: ProgressObserver, *, cache_dir: Path | None = None,
    device: str = "cpu",
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Every stage in order on one module (rebuilt when the classes change, on the CPU, then moved to
    ``device``); a record of each stage's data.

    One shuffle serves all stages; stages on the training ``corpus`` see its ``train_index`` only.
    """
    shuffle = torch_shuffle(seed)
    module: nn.Module | None = None
    classes: list[str] = []
    records = []
    stages = reference.stages
    for number, stage in enumerate(stages, start=1):
        stage_corpus = corpora[stage.corpus]
        if stage.target == "transcript":  # CTC on module.transcribe, built for the final classes from the start
            module = module if module is not None else _stage_module(reference, len(emotions), None, rebuild=True).to(device)
            classes = classes or list(emotions)
            stage_inputs = inputs[stage.corpus]
            if stage_inputs.audio is not None:
                raise ConfigError(f"zoo:{reference.name}: a transcript stage trains on fixed-length inputs, not random crops")
            records.append(train_transcript_stage(
                module, stage, stage_corpus, stage_inputs.tensors, max_seconds=reference.frontend.duration_s, shuffle=shuffle,
                seed=seed, cache_dir=cache_dir, observer=observer,
                label=f"training zoo:{reference.name} (stage {number}/{len(stages)}: transcript on {stage_corpus.name})"))
            continue
        # By content: another name for the same data (synthetic = iemocap-like) must not see the held-out session.
        final_corpus = stage_corpus is corpus or stage_corpus.manifest_sha256() == corpus.manifest_sha256()
        rows = train_index if final_corpus else np.arange(len(stage_corpus))
        held_out = _speaker_held_out(stage_corpus, rows) if stage.target == "speaker" else np.array([], dtype=np.int64)
        rows = np.setdiff1d(rows, held_out)
        names, targets = _targets(stage_corpus, stage, rows, emotions if final_corpus else None)
        rows = rows[targets[rows].numpy() >= 0]
        module = _stage_module(reference, len(names), module, rebuild=names != classes).to(device)
        classes = names
        label = f"training zoo:{reference.name}" + (
            f" (stage {number}/{len(stages)}: {stage.target} on {stage_corpus.name})" if len(stages) > 1 else "")
        _train_stage(module, stage, inputs[stage.corpus], targets, len(names), rows, shuffle, observer, label, device,
                     seed)
        record: dict[str, Any] = {
            "target": stage.target, "corpus": stage_corpus.name, "corpus_sha256": stage_corpus.manifest_sha256(),
            "n_train": int(len(rows)), "speakers": sorted({stage_corpus.utterances[i].speaker for i in rows}),
        }
        if len(held_out):
            accuracy = _accuracy(module, inputs[stage.corpus], targets, held_out)
            record.update(held_out_accuracy=accuracy, n_held_out=int(len(held_out)), chance=1 / len(names))
            observer.note(f"zoo:{reference.name} stage {number}: speaker identification accuracy {accuracy:.3f} on "
                          f"{len(held_out)} held-out utterances of {len(names)} speakers (chance {1 / len(names):.3f})")
        records.append(record)
    assert module is not None  # a recipe has at least one stage
    return module, records


def _speaker_held_out(corpus: Corpus, rows: np.ndarray) -> np.ndarray:
    """Utterances kept out of a speaker-identification stage to measure it: the last fifth
    (at least one) of each speaker's utterances, in corpus order, for speakers with two or more."""
    by_speaker: dict[str, list[int]] = {}
    for row in rows:
        by_speaker.setdefault(corpus.utterances[row].speaker, []).append(int(row))
    held_out = [row for own in by_speaker.values() if len(own) > 1 for row in own[-max(1, len(own) // 5):]]
    return np.array(sorted(held_out), dtype=np.int64)


def _accuracy(module: nn.Module, inputs: TrainingInputs, targets: torch.Tensor, rows: np.ndarray) -> float:
    module.eval()
    predicted = torch.from_numpy(_predict(module, inputs, rows, batch_size=64))
    return float((predicted == targets[torch.from_numpy(rows)]).float().mean())


def _targets(corpus: Corpus, stage: Stage, rows: np.ndarray, emotions: list[str] | None) -> tuple[list[str], torch.Tensor]:
    """The stage's class names and every utterance's class index (-1 outside the classes, never trained on)."""
    if stage.target == "speaker":
        names = sorted({corpus.utterances[i].speaker for i in rows})
        values = [u.speaker for u in corpus]
    else:
        names = emotions if emotions is not None else list(corpus.emotions) or sorted({u.emotion for u in corpus})
        values = [u.emotion for u in corpus]
    index = {name: k for k, name in enumerate(names)}
    return names, torch.tensor([index.get(value, -1) for value in values])


def _stage_module(reference: ReferenceModel, n_classes: int, previous: nn.Module | None, *, rebuild: bool) -> nn.Module:
    """A module for the stage's classes: ``previous`` when they are unchanged, else a fresh build
    carrying over every parameter and buffer of ``previous`` whose shape does not depend on the
    number of classes (found by building once more, for one class more, outside the random stream)."""
    if previous is not None and not rebuild:
        return previous
    module = reference.build(n_classes=n_classes, **reference.config)
    if previous is None:
        return module
    with torch.random.fork_rng(devices=[]):
        wider = reference.build(n_classes=n_classes + 1, **reference.config).state_dict()
    state = module.state_dict()
    carried = {
        name: value for name, value in previous.state_dict().items()
        if name in state and name in wider and value.shape == state[name].shape == wider[name].shape
    }
    module.load_state_dict({**state, **carried})
    return module


def _train_stage(
    module: nn.Module, stage: Stage, inputs: TrainingInputs, targets: torch.Tensor, n_classes: int,
    rows: np.ndarray, shuffle: Callable[[int], torch.Tensor], observer: ProgressObserver, label: str, device: str = "cpu",
    seed: int = 0,
) -> None:
    """One stage on ``module``, already on ``device``, where ``inputs`` are too (or are made, for crops); random
    crops and references are drawn from a generator seeded with ``seed``, restarted by each stage."""
    optimiser = stage_optimiser(module, stage)
    # Class-weighted loss: the corpus is imbalanced like IEMOCAP (happy is rare).
    weights = balanced_class_weights(targets[rows], n_classes).to(device) if stage.class_weighted else None
    targets = targets.to(device)
    criterion = nn.CrossEntropyLoss(weight=weights)
    sample = inputs.sampler(crop_s=stage.random_crop_s, random_reference=stage.random_reference, seed=seed)

    def loss(batch: torch.Tensor, _epoch: int) -> torch.Tensor:
        return criterion(module(*sample(batch)), targets[batch])

    try:
        with observer.task(label, total=stage.epochs) as task:
            run_epochs(module, optimiser, loss, torch.from_numpy(rows), epochs=stage.epochs, batch_size=stage.batch_size,
                       shuffle=shuffle, clip_grad_norm=stage.clip_grad_norm,
                       rate_factor=stage.rate_factor if stage.lr_milestones else None,
                       on_epoch=lambda _epoch: task.advance())
    finally:
        unfreeze(module)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` (its metadata kept) with every tensor on the CPU: a checkpoint is the same
    file whichever device trained it."""
    state = module.state_dict()
    for name, value in state.items():
        state[name] = value.cpu()
    return state


def write_checkpoint(trained: TrainedModel, out: Path) -> None:
    """Eager checkpoint: tensors and plain data only, so it loads with ``weights_only=True``."""
    payload = {
        "state_dict": cpu_state_dict(trained.module),
        "reference_model": trained.reference.name,
        "config": dict(trained.reference.config),
        "n_classes": len(trained.frontend.emotions),
        METADATA_KEY: trained.frontend.to_json(),
        "metrics": json.dumps(trained.metrics),
        "seed": trained.seed,
    }
    atomic_write(out, lambda path: torch.save(payload, path))


def write_checkpoint_payload(source: Path, module: nn.Module, out: Path, *, extra_metrics: dict[str, Any]) -> None:
    """A copy of the reference checkpoint ``source`` with ``module``'s weights (e.g. after hardening)."""
    payload = torch.load(str(source), map_location="cpu", weights_only=True)
    payload["state_dict"] = cpu_state_dict(module)
    payload["metrics"] = json.dumps({**json.loads(payload["metrics"]), **extra_metrics})
    atomic_write(out, lambda path: torch.save(payload, path))
