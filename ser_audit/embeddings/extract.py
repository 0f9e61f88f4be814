"""Running the target over a corpus once and keeping each tapped layer as pooled statistics.

Pooled statistics are the mean and standard deviation over the layer's time axis, so
every utterance gives a fixed-size vector whatever its length. Layers whose pooled
vector would exceed ``max_features`` are first averaged over their frequency/channel
bins (recorded in ``Embeddings.reductions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.errors import CorpusError
from ser_audit.frontend.features import FrontEnd, fit_length
from ser_audit.models.interface import LayerInfo, TargetModel
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

MAX_FEATURES = 4096


@dataclass
class Embeddings:
    """Pooled activations per layer, rows aligned with the corpus's utterances."""

    layers: dict[str, np.ndarray]
    logits: np.ndarray
    reductions: dict[str, str] = field(default_factory=dict)


def time_axis(layer_rank: int, layout: Sequence[str]) -> int | None:
    """The axis of a layer that runs along time, assuming layers keep the input's axis order."""
    if layer_rank <= 2:
        return None
    if layer_rank == len(layout):
        return list(layout).index("time")
    # A rank-3 tensor inside a [batch, channel, freq, time] model is [batch, feature, time];
    # inside a [batch, time, freq] model it is [batch, time, feature].
    without_channel = [axis for axis in layout if axis != "channel"]
    return without_channel.index("time") if "time" in without_channel else layer_rank - 1


def pool(activation: np.ndarray, axis: int | None, max_features: int = MAX_FEATURES) -> tuple[np.ndarray, str | None]:
    """[batch, ...] to [batch, features]: mean and std over ``axis``, flattened."""
    batch = activation.shape[0]
    if axis is None:
        return activation.reshape(batch, -1), None
    moved = np.moveaxis(activation, axis, -1)
    flat = moved.reshape(batch, -1, moved.shape[-1])
    reduction = None
    if 2 * flat.shape[1] > max_features:
        bins = max_features // 2
        edges = np.linspace(0, flat.shape[1], bins + 1).astype(int)
        flat = np.stack([flat[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
        reduction = f"averaged {moved.shape[1:-1]} non-time bins into {bins} before pooling"
    return np.concatenate([flat.mean(-1), flat.std(-1)], axis=1).astype(np.float32), reduction


def reference_utterances(corpus: Corpus) -> list[Utterance]:
    """For each utterance, a neutral utterance of the same speaker other than itself (P4's conditioning input)."""
    neutral: dict[str, list[Utterance]] = {}
    for utterance in corpus:
        if utterance.emotion == "neutral":
            neutral.setdefault(utterance.speaker, []).append(utterance)
    chosen = []
    for utterance in corpus:
        candidates = [u for u in neutral.get(utterance.speaker, []) if u.id != utterance.id]
        if not candidates:
            raise CorpusError(
                f"the model needs a neutral reference utterance of speaker {utterance.speaker!r}, "
                f"but corpus {corpus.name!r} has no other neutral utterance of that speaker"
            )
        chosen.append(candidates[0])
    return chosen


def extract(
    model: TargetModel,
    corpus: Corpus,
    layers: Sequence[LayerInfo],
    *,
    batch_size: int = 32,
    observer: ProgressObserver = NULL_OBSERVER,
) -> Embeddings:
    """One forward pass per batch returns the logits and every selected layer at once."""
    spec = model.frontend
    frontend = FrontEnd(spec)
    references = reference_utterances(corpus) if spec.extra_inputs else None
    names = [layer.name for layer in layers]
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in names}
    reductions: dict[str, str] = {}
    logits = []

    def features(utterances: Sequence[Utterance]) -> np.ndarray:
        signals = [fit_length(read_audio(u.path, spec.sample_rate), spec.num_samples, spec.crop) for u in utterances]
        length = max(len(s) for s in signals)  # variable-length models: zero-pad within the batch
        batch = np.stack([np.pad(s, (0, length - len(s))) for s in signals])
        with torch.no_grad():
            return frontend(torch.from_numpy(batch)).numpy()

    with observer.task(f"extracting {len(names)} layer(s) on {corpus.name}", total=len(corpus)) as task:
        for start in range(0, len(corpus), batch_size):
            chunk = corpus.utterances[start : start + batch_size]
            inputs = {spec.input_name: features(chunk)}
            if references is not None:
                reference_features = features(references[start : start + batch_size])
                inputs.update({extra.name: reference_features for extra in spec.extra_inputs})
            result = model.forward(inputs, names)
            logits.append(result.logits)
            for name in names:
                activation = result.layers[name]
                vector, reduction = pool(activation, time_axis(activation.ndim, spec.layout))
                pooled[name].append(vector)
                if reduction:
                    reductions[name] = reduction
            task.advance(len(chunk))
    return Embeddings(
        layers={name: np.concatenate(parts) for name, parts in pooled.items()},
        logits=np.concatenate(logits),
        reductions=reductions,
    )
