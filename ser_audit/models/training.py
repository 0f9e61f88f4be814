"""Training reference models on a corpus, and writing them in every supported format."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.registry import resolve_corpus
from ser_audit.errors import ConfigError, ModelError
from ser_audit.files import publish
from ser_audit.frontend.features import FrontEnd, fit_length
from ser_audit.frontend.spec import EXTRA_FILE, METADATA_KEY, FrontEndSpec
from ser_audit.models.quiet import quiet_torch
from ser_audit.models.zoo import ReferenceModel
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


def _atomic(out: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(descriptor)
    try:
        write(Path(temporary))
        publish(Path(temporary))
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
    _atomic(out, lambda path: torch.save(payload, path))


def write_checkpoint_payload(source: Path, module: nn.Module, out: Path, *, extra_metrics: dict[str, Any]) -> None:
    """A copy of the reference checkpoint ``source`` with ``module``'s weights (e.g. after hardening)."""
    payload = torch.load(str(source), map_location="cpu", weights_only=True)
    payload["state_dict"] = module.state_dict()
    payload["metrics"] = json.dumps({**json.loads(payload["metrics"]), **extra_metrics})
    _atomic(out, lambda path: torch.save(payload, path))


def export_model(module: nn.Module, frontend: FrontEndSpec, out: Path) -> None:
    """Write ``module`` as ONNX (.onnx), TorchScript (.pt) or a torch.export program (.pt2), spec embedded."""
    module = module.eval()
    inputs = _example_inputs(frontend)
    suffix = out.suffix.lower()
    with quiet_torch():
        _export(module, inputs, frontend, out, suffix)


def _export(module: nn.Module, inputs: tuple[torch.Tensor, ...], frontend: FrontEndSpec, out: Path, suffix: str) -> None:
    if suffix == ".onnx":
        _atomic(out, lambda path: _export_onnx(module, inputs, frontend, path))
    elif suffix == ".pt":
        traced = torch.jit.trace(module, inputs)
        _atomic(out, lambda path: torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: frontend.to_json()}))
    elif suffix == ".pt2":
        program = torch.export.export(module, inputs, dynamic_shapes=_dynamic_axes(frontend, len(inputs)))
        _atomic(out, lambda path: torch.export.save(program, str(path), extra_files={EXTRA_FILE: frontend.to_json()}))
    else:
        raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript) or .pt2 (torch.export) file name")


def _example_inputs(frontend: FrontEndSpec) -> tuple[torch.Tensor, ...]:
    """One distinct tensor per input; lengths differ for variable-length models so that the
    exporters do not conclude that the inputs must share a time axis (or are the same tensor)."""
    frontend_module = FrontEnd(frontend)
    tensors = []
    for index in range(1 + len(frontend.extra_inputs)):
        samples = frontend.num_samples or int(frontend.sample_rate * (1.0 + 0.25 * index))
        with torch.no_grad():
            tensors.append(frontend_module(0.01 * torch.randn(2, samples, generator=torch.Generator().manual_seed(index))))
    return tuple(tensors)


def _dynamic_axes(frontend: FrontEndSpec, n_inputs: int) -> tuple[dict[int, Any], ...]:
    """Batch is always dynamic; so is time, per input, for variable-length front-ends."""
    batch = torch.export.Dim("batch", min=1)
    if frontend.duration_s is not None:
        return tuple({0: batch} for _ in range(n_inputs))
    time_axis = frontend.layout.index("time")
    return tuple({0: batch, time_axis: torch.export.Dim(f"time{i}", min=8)} for i in range(n_inputs))


def _export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], frontend: FrontEndSpec, path: Path) -> None:
    """The dynamo exporter (it records module scopes, hence layer names); the TorchScript exporter
    for modules torch.export cannot capture (e.g. graphs that came from onnx2torch)."""
    import io

    import onnx

    names = [frontend.input_name, *(extra.name for extra in frontend.extra_inputs)]
    try:
        proto = torch.onnx.export(
            module, inputs, dynamo=True, input_names=names, output_names=["logits"],
            dynamic_shapes=_dynamic_axes(frontend, len(inputs)), verbose=False,
        ).model_proto
    except Exception as dynamo_error:  # the exporter raises many types
        time_axis = frontend.layout.index("time")
        axes = {
            name: ({0: "batch"} if frontend.duration_s else {0: "batch", time_axis: f"time{i}"})
            for i, name in enumerate(names)
        }
        buffer = io.BytesIO()
        try:
            torch.onnx.export(module, inputs, buffer, dynamo=False, input_names=names, output_names=["logits"],
                              dynamic_axes=axes)
        except Exception as error:  # the exporter raises many types
            first = str(dynamo_error).splitlines()[0]
            raise ModelError(f"ONNX export failed (torch.export: {first}; TorchScript exporter: {error})") from error
        proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: frontend.to_json()})
    onnx.save(proto, str(path))
