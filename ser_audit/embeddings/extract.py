"""Running the target over a corpus once and keeping each tapped layer, through the embedding store.

Every tapped layer is kept as pooled statistics; layers that a convolutional, recurrent
or same-architecture attacker reads are also kept whole (float16 memory maps), shrunk by
adaptive averaging when they would exceed the memory cap. Pooled statistics are the
mean and standard deviation over the layer's time axis, so every utterance gives a
fixed-size vector whatever its length. Layers whose pooled vector would exceed
``max_features`` are first averaged over their frequency/channel bins (recorded in
``Embeddings.reductions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.embeddings.store import ArrayWriter, EmbeddingStore, StoredLayer, store_key
from ser_audit.errors import ModelError
from ser_audit.frontend.inputs import EvaluationInputs
from ser_audit.frontend.inputs import equal_length_runs as equal_length_runs  # re-exported: its earlier import path
from ser_audit.frontend.inputs import reference_utterances as reference_utterances  # likewise
from ser_audit.models.interface import ForwardResult, LayerInfo, TargetModel
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

MAX_FEATURES = 4096


@dataclass
class Embeddings:
    """Activations per layer, rows aligned with the corpus's utterances, read back from the store.

    Attributes:
        layers: Pooled statistics per layer, ``[n, features]`` float32.
        logits: The model's outputs, ``[n, classes]``.
        reductions: Layers whose bins were averaged before pooling, and how.
        maps: Whole activation maps ``[n, *shape]`` (float16 memory maps) for the layers asked for.
        map_reductions: Maps shrunk to fit the memory cap, and how.
        reused: Layers taken from an earlier run's cache rather than computed now.
        location: The store folder (``None`` when the store was temporary).
        repairs: Cached files that failed their checksum and were computed again.
        device: Where the forward passes ran (``None`` when every layer came from the cache).
        notes: What the report should say of how they ran (a GPU asked for that the format could not use).
        silent: Ids of the utterances whose waveform reached the model digitally silent (``None``: not known,
            a store written before this was recorded).
    """

    layers: dict[str, np.ndarray]
    logits: np.ndarray
    reductions: dict[str, str] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    map_reductions: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    location: Path | None = None
    repairs: list[str] = field(default_factory=list)
    device: str | None = None
    notes: list[str] = field(default_factory=list)
    silent: list[str] | None = None


def mean_and_std(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std over the last axis, reading the data twice instead of five times.

    Pooling full-resolution maps is most of the cost of tapping every layer, so the std comes
    from the sum of squares (one read, no temporary) and only rows where that would cancel
    (mean large against the spread) are recomputed from deviations.
    """
    length = flat.shape[-1]
    mean = flat.sum(-1) / length
    variance = torch.linalg.vector_norm(flat, dim=-1).square_().div_(length) - mean * mean
    cancelling = mean * mean > 1e3 * variance
    if cancelling.any():
        rows = flat[cancelling]
        variance[cancelling] = (rows - rows.mean(-1, keepdim=True)).square_().mean(-1)
    return mean, variance.clamp_(min=0).sqrt_()


def pool(activation: np.ndarray, axis: int | None, max_features: int = MAX_FEATURES) -> tuple[np.ndarray, str | None]:
    """[batch, ...] to [batch, features]: mean and std over ``axis``, flattened."""
    batch = activation.shape[0]
    if axis is None:
        return np.asarray(activation, dtype=np.float32).reshape(batch, -1), None
    tensor = torch.from_numpy(np.asarray(activation, dtype=np.float32)).movedim(axis, -1)
    flat = tensor.reshape(batch, -1, tensor.shape[-1])
    reduction = None
    if 2 * flat.shape[1] > max_features:
        bins = max_features // 2
        edges = np.linspace(0, flat.shape[1], bins + 1).astype(int)
        flat = torch.stack([flat[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:])], dim=1)
        reduction = f"averaged {tuple(tensor.shape[1:-1])} non-time bins into {bins} before pooling"
    mean, std = mean_and_std(flat)
    return torch.cat([mean, std], dim=1).numpy(), reduction


def map_shape_within(shape: tuple[int, ...], n_utterances: int, budget_bytes: int) -> tuple[int, ...]:
    """Halve the longest non-channel axis of a per-utterance map until ``n`` float16 maps fit the budget."""
    shape = tuple(shape)
    reducible = range(1, len(shape)) if len(shape) >= 3 else range(len(shape))
    while n_utterances * int(np.prod(shape)) * 2 > budget_bytes:
        axis = max(reducible, key=lambda a: shape[a])
        if shape[axis] <= 1:
            break
        shape = shape[:axis] + ((shape[axis] + 1) // 2,) + shape[axis + 1 :]
    return shape


def fit_map(activation: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``[batch, *any]`` to ``[batch, *shape]`` by adaptive averaging (variable length, memory cap)."""
    if activation.shape[1:] == shape:
        return activation
    tensor = torch.from_numpy(np.ascontiguousarray(activation, dtype=np.float32))
    if len(shape) == 1:
        return F.adaptive_avg_pool1d(tensor[:, None], shape[0])[:, 0].numpy()
    if len(shape) == 2:
        return F.adaptive_avg_pool2d(tensor[:, None], shape)[:, 0].numpy()
    if len(shape) == 3:
        return F.adaptive_avg_pool3d(tensor[:, None], shape)[:, 0].numpy()
    raise ValueError(f"cannot resize a map of rank {len(shape)}")


def _refuse_non_finite(model: TargetModel, layer: str, vector: np.ndarray, chunk: Sequence[Utterance],
                       rows: np.ndarray) -> None:
    """NaN or infinite activations would fail deep inside an attacker; say where they come from instead."""
    finite = np.isfinite(vector).all(axis=1)
    if not finite.all():
        first = chunk[int(rows[int(np.argmin(finite))])]
        raise ModelError(f"layer {layer} of model {model.path or 'in memory'} computes NaN or infinite values "
                         f"({int((~finite).sum())} of {len(finite)} utterances in a batch, the first {first.id}, "
                         f"{first.path}); check the model's weights, or leave the layer out with --layers")


def _forward_or_name_the_short(model: TargetModel, inputs: dict[str, np.ndarray], names: Sequence[str],
                               utterances: Sequence[Utterance], samples: int) -> ForwardResult:
    """``model.forward``; where it fails on audio shorter than the 1 s example it ran on when listing its
    layers, the audio is too short for the model (a variable-length model with a minimum input), so
    the failure is the input's: a ModelError naming the utterance, not an internal error."""
    try:
        return model.forward(inputs, names)
    except (RuntimeError, ValueError) as error:
        example = model.frontend.num_samples or model.frontend.sample_rate
        if samples >= example:
            raise
        rate = model.frontend.sample_rate
        raise ModelError(
            f"model {model.path or 'in memory'} cannot run on utterance {utterances[0].id!r} ({utterances[0].path}): "
            f"{samples} samples ({samples / rate:.3f} s) are too short for it ({str(error).splitlines()[0][:160]}); "
            "remove such utterances from the manifest or give the model a fixed duration_s in its front-end spec"
        ) from None


VARIABLE_LENGTH_NOTE = "map resampled to the layer's listed shape (variable-length input)"
# A waveform whose every sample is within one 16-bit step of zero carries no voice: digital silence.
SILENCE = 1 / 32768
DEFAULT_MAP_BUDGET = 512 * 2**20  # bytes of float16 per layer map


def extract(
    model: TargetModel,
    corpus: Corpus,
    layers: Sequence[LayerInfo],
    *,
    maps: Sequence[str] = (),
    cache_dir: Path | None = None,
    map_budget: int = DEFAULT_MAP_BUDGET,
    batch_size: int = 32,
    reference_choice: int = 0,
    device: str = "cpu",
    observer: ProgressObserver = NULL_OBSERVER,
) -> Embeddings:
    """Pooled statistics for ``layers`` and whole maps for the names in ``maps``, through the store.

    One forward pass per batch computes every missing layer at once; layers already in the
    store under the same (model, front-end, corpus) key are read from it. With ``cache_dir``
    ``None``, or a model that has no file to hash, the store is a temporary folder. A model with
    further inputs is fed reference number ``reference_choice`` (``frontend.inputs``), part of the key.
    The passes run on ``device`` (resolved: ``cpu``, ``cuda``, ``cuda:N``) where the model's format can
    (``TargetModel.place``), and the model is back where it was afterwards; the front-end and the pooling
    stay on the CPU, so each batch crosses once each way.
    """
    spec = model.frontend
    fed = spec.model_dump_json() + (f"|reference choice {reference_choice}" if spec.reference_inputs and reference_choice
                                    else "")
    key = store_key(model.cache_identity, fed, corpus.manifest_sha256()) if model.path else None
    store = EmbeddingStore.for_run(cache_dir, key, description={
        "model": str(model.path), "model_sha256": model.sha256 if model.path else None, "corpus": corpus.name,
        "manifest_sha256": corpus.manifest_sha256(), "utterances": len(corpus)})
    wanted_maps = set(maps)

    def missing(layer: LayerInfo) -> bool:
        stored = store.layer(layer.name)
        if stored is None:
            return True
        return layer.name in wanted_maps and (stored.map is None or stored.map_budget != map_budget)

    todo = [layer for layer in layers if missing(layer)]
    placement = None
    if todo or not store.has_logits():
        with model.placed(device) as placement:
            if placement.note:
                observer.note(placement.note)
            _compute(model, corpus, todo, wanted_maps, store, map_budget, batch_size, observer, reference_choice)
    pooled, reductions, arrays, map_reductions = {}, {}, {}, {}
    for layer in layers:
        stored = store.layer(layer.name)
        assert stored is not None
        pooled[layer.name] = np.asarray(store.read(stored.pooled))
        if stored.reduction:
            reductions[layer.name] = stored.reduction
        if layer.name in wanted_maps and stored.map:
            arrays[layer.name] = store.read(stored.map)
            if stored.map_reduction:
                map_reductions[layer.name] = stored.map_reduction
    logits = np.asarray(store.read(store.index()["logits"]))
    todo_names = {layer.name for layer in todo}
    return Embeddings(
        layers=pooled, logits=logits, reductions=reductions, maps=arrays, map_reductions=map_reductions,
        reused=[layer.name for layer in layers if layer.name not in todo_names],
        location=None if store.temporary else store.folder, repairs=list(store.repairs),
        device=placement.device if placement else None, notes=[placement.note] if placement and placement.note else [],
        silent=store.silent(),
    )


def _compute(
    model: TargetModel,
    corpus: Corpus,
    layers: Sequence[LayerInfo],
    wanted_maps: set[str],
    store: EmbeddingStore,
    map_budget: int,
    batch_size: int,
    observer: ProgressObserver,
    reference_choice: int = 0,
) -> None:
    spec = model.frontend
    # Whole utterances with their fixed reference, a batch of one length at a time (never padded); the auxiliary
    # inputs (zeros, constant, length, mask) are made by the model from each batch.
    inputs = EvaluationInputs(spec, corpus, reference_choice=reference_choice)
    fed_names = [spec.input_name, *(extra.name for extra in spec.reference_inputs)]
    names = [layer.name for layer in layers]
    n = len(corpus)
    pooled: dict[str, ArrayWriter] = {}
    reductions: dict[str, str | None] = {}
    map_writers: dict[str, ArrayWriter] = {}
    map_shapes: dict[str, tuple[int, ...]] = {}
    map_reductions: dict[str, str | None] = {}
    for layer in layers:
        if layer.name not in wanted_maps:
            continue
        natural = tuple(layer.shape[1:])
        shape = map_shape_within(natural, n, map_budget)
        map_shapes[layer.name] = shape
        map_reductions[layer.name] = (
            f"map averaged from {'x'.join(map(str, natural))} to {'x'.join(map(str, shape))} to fit the "
            f"{map_budget // 2**20} MiB memory cap" if shape != natural else None
        )
        map_writers[layer.name] = store.writer(store.file_names(layer.name)[1], (n, *shape), np.float16)
    logits_writer: ArrayWriter | None = None

    listed_shapes = {layer.name: tuple(layer.shape[1:]) for layer in layers}
    silent: list[str] = []
    time_axes = {layer.name: layer.time_axis for layer in layers}
    try:
        with observer.task(f"extracting {len(names)} layer(s) on {corpus.name}", total=n) as task:
            for start in range(0, n, batch_size):
                chunk = corpus.utterances[start : start + batch_size]
                for batch in inputs.batches(range(start, start + len(chunk))):
                    fed = {name: tensor.numpy() for name, tensor in zip(fed_names, batch.fed)}
                    quiet = batch.audio.abs().amax(-1) <= SILENCE
                    silent += [chunk[i].id for i in batch.rows[quiet.numpy()]]
                    result = _forward_or_name_the_short(model, fed, names, [chunk[i] for i in batch.rows],
                                                        batch.audio.shape[-1])
                    if logits_writer is None:
                        logits_writer = store.writer("logits.npy", (n, *result.logits.shape[1:]), np.float32)
                    logits_writer.append(result.logits)
                    for name in names:
                        activation = result.layers[name]
                        vector, reduction = pool(activation, time_axes[name])
                        _refuse_non_finite(model, name, vector, chunk, batch.rows)
                        if name not in pooled:
                            pooled[name] = store.writer(store.file_names(name)[0], (n, vector.shape[1]), np.float32)
                        pooled[name].append(vector)
                        reductions[name] = reductions.get(name) or reduction
                        if name in map_writers:
                            if activation.shape[1:] != listed_shapes[name]:
                                map_reductions[name] = map_reductions[name] or VARIABLE_LENGTH_NOTE
                            map_writers[name].append(fit_map(activation, map_shapes[name]))
                task.advance(len(chunk))
    except BaseException:
        for writer in [*pooled.values(), *map_writers.values(), *([logits_writer] if logits_writer else [])]:
            writer.abandon()
        raise
    finished: dict[str, StoredLayer] = {}
    for name in names:
        pooled[name].finish()
        entry = StoredLayer(pooled=store.file_names(name)[0], reduction=reductions.get(name))
        if name in map_writers:
            writer = map_writers[name]
            writer.finish()
            note = map_reductions[name]
            if writer.clipped:
                note = "; ".join(filter(None, [note, f"{writer.clipped} values beyond the float16 range clipped"]))
            entry = StoredLayer(
                pooled=entry.pooled, reduction=entry.reduction, map=store.file_names(name)[1],
                map_shape=map_shapes[name], map_reduction=note, map_budget=map_budget,
            )
        else:
            previous = store.layer(name)
            if previous is not None and previous.map:  # keep a map computed by an earlier run
                entry = StoredLayer(**{**previous.__dict__, "pooled": entry.pooled, "reduction": entry.reduction})
        finished[name] = entry
    assert logits_writer is not None
    logits_writer.finish()
    order = {utterance.id: i for i, utterance in enumerate(corpus.utterances)}
    store.commit(finished, "logits.npy", silent=sorted(silent, key=order.__getitem__))
