"""Training reference models on a corpus, and writing them in every supported format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.registry import resolve_corpus
from ser_audit.errors import ConfigError
from ser_audit.files import atomic_write
from ser_audit.frontend.features import FrontEnd, fit_length
from ser_audit.frontend.spec import METADATA_KEY, FrontEndSpec
from ser_audit.models.reference import ReferenceModel
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

TRAINING_CORPUS = "iemocap-like"


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


def waveforms(
    utterances: Iterable[Utterance], spec: FrontEndSpec, observer: ProgressObserver = NULL_OBSERVER, *, label: str = "audio"
) -> list[np.ndarray]:
    """Every utterance read at the spec's rate and cut or padded to its length."""
    items = list(utterances)
    out = []
    with observer.task(f"reading {label}", total=len(items)) as task:
        for utterance in items:
            out.append(fit_length(read_audio(utterance.path, spec.sample_rate), spec.num_samples, spec.crop))
            task.advance()
    return out


def extract_features(frontend: FrontEnd, signals: list[np.ndarray], batch_size: int = 32) -> torch.Tensor:
    parts = []
    with torch.no_grad():
        for start in range(0, len(signals), batch_size):
            batch = torch.from_numpy(np.stack(signals[start : start + batch_size]))
            parts.append(frontend(batch))
    return torch.cat(parts)


def train_reference(
    reference: ReferenceModel,
    *,
    cache_dir: Path,
    seed: int = 0,
    observer: ProgressObserver = NULL_OBSERVER,
) -> TrainedModel:
    """Train on the embedded corpus, holding out one session (one male, one female speaker) as test.

    The held-out UAR is measured on speakers the model never saw; the returned model is the
    one trained without them.
    """
    corpus = resolve_corpus(TRAINING_CORPUS, cache_dir=cache_dir, seed=seed, observer=observer)
    if reference.frontend.features.kind == "waveform" or reference.frontend.duration_s is None:
        raise ConfigError(f"zoo:{reference.name}: training needs a fixed-length spectral front-end")
    emotions = list(corpus.emotions)
    base_spec = reference.frontend.model_copy(update={"emotions": emotions, "normalisation": "none"})
    features = extract_features(FrontEnd(base_spec), waveforms(corpus, base_spec, observer, label=f"{corpus.name} audio"))
    labels = torch.tensor([emotions.index(u.emotion) for u in corpus])
    sessions = np.array([u.session for u in corpus])
    held_out = sorted(set(sessions))[-1]
    train_index = np.flatnonzero(sessions != held_out)
    test_index = np.flatnonzero(sessions == held_out)
    mean, std = float(features[train_index].mean()), float(features[train_index].std())
    spec = reference.frontend.model_copy(update={"emotions": emotions, "normalisation": "global", "mean": mean, "std": std})
    features = (features - mean) / std

    torch.manual_seed(seed)
    module = reference.build(n_classes=len(emotions), **reference.config)
    recipe = reference.training
    optimiser = torch.optim.Adam(module.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    counts = torch.bincount(labels[train_index], minlength=len(emotions)).float()
    # Class-weighted loss: the corpus is imbalanced like IEMOCAP (happy is rare).
    loss_function = nn.CrossEntropyLoss(weight=counts.sum() / (len(emotions) * counts.clamp_min(1)))
    generator = torch.Generator().manual_seed(seed)
    with observer.task(f"training zoo:{reference.name}", total=recipe.epochs) as task:
        for _epoch in range(recipe.epochs):
            module.train()
            order = torch.from_numpy(train_index)[torch.randperm(len(train_index), generator=generator)]
            for start in range(0, len(order), recipe.batch_size):
                batch = order[start : start + recipe.batch_size]
                optimiser.zero_grad()
                loss = loss_function(module(features[batch]), labels[batch])
                loss.backward()
                optimiser.step()
            task.advance()
    module.eval()
    with torch.no_grad():
        predicted = module(features[test_index]).argmax(1).numpy()
    truth = labels[test_index].numpy()
    metrics = {
        "held_out_uar": unweighted_average_recall(truth, predicted, len(emotions)),
        "held_out_accuracy": float(np.mean(truth == predicted)),
        "held_out_session": str(held_out),
        "n_train": int(len(train_index)),
        "n_test": int(len(test_index)),
        "training_corpus": corpus.name,
        "training_corpus_sha256": corpus.manifest_sha256(),
        "training_speakers": sorted({corpus.utterances[i].speaker for i in train_index}),
    }
    return TrainedModel(reference, module, spec, metrics, seed)


def write_checkpoint(trained: TrainedModel, out: Path) -> None:
    """Eager checkpoint: tensors and plain data only, so it loads with ``weights_only=True``."""
    payload = {
        "state_dict": trained.module.state_dict(),
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
    payload["state_dict"] = module.state_dict()
    payload["metrics"] = json.dumps({**json.loads(payload["metrics"]), **extra_metrics})
    atomic_write(out, lambda path: torch.save(payload, path))
