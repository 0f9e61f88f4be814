"""The model contract: every topology a user may hand over, in every format it exports to, lists its
layers, taps the same values as its eager original, cuts for the same-architecture attacker,
differentiates for white-box FGSM, and shows a planted attribute to a probe.

Topologies come from ``ser_audit.testing.topologies`` (CNN, residual net, LSTM, GRU, CNN→GRU,
transformer encoder with tuple outputs, two-input model); formats are eager torch, ONNX from
the dynamo exporter, ONNX from the TorchScript-based exporter, TorchScript and torch.export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import extract
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.probe import cross_validate
from ser_audit.leakage.scenarios.table import target_family
from ser_audit.leakage.statistics.inference import balanced_accuracy_of
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.export import export_model
from ser_audit.models.interface import TargetModel
from ser_audit.models.loading import load_model
from ser_audit.models.subnetwork import Unavailable
from ser_audit.robustness.fgsm import FGSM
from ser_audit.testing import LLD_FRONTEND, TWO_INPUT_FRONTEND
from ser_audit.testing.topologies import TOPOLOGIES, WAVEFORM_FRONTEND, WAVEFORM_TOPOLOGIES

FORMATS = {
    "eager": None,
    "onnx-dynamo": ("model.onnx", "dynamo"),
    "onnx-torchscript": ("model.onnx", "torchscript"),
    "torchscript": ("model.pt", "auto"),
    "torch.export": ("model.pt2", "auto"),
}
# Pairs that cannot be made, and why; every other export must succeed.
UNSUPPORTED = {
    ("transformer", "torchscript"): "torch.jit.trace: the traced graphs differ between invocations "
                                    "(MultiheadAttention takes its fused fast path)",
    ("wav2vec2", "torchscript"): "torch.jit.trace: the traced graphs differ between invocations "
                                 "(MultiheadAttention takes its fused fast path)",
}
# Where the cut for the same-architecture attacker goes: a middle layer whose downstream part is a
# function of it alone.
CUT_AT = {
    "cnn": "pool1", "resnet": "layer1.1", "lstm": "rnn1", "gru": "rnn1", "crnn": "pool",
    "transformer": "block1.norm2", "two-input": "conditioned", "wav2vec2": "wav2vec2.encoder.layers.0",
    # A frame-batched layer's downstream regroups by the input's batch size: not a function of the tap alone.
    "frames": None,
}
# A fixed length, so that graphs whose exporter specialised the time axis run on every utterance.
FIXED = LLD_FRONTEND.model_copy(update={"duration_s": 1.0})
FIXED_TWO_INPUT = TWO_INPUT_FRONTEND.model_copy(update={"duration_s": 1.0})
PAIRS = [(topology, form) for topology in TOPOLOGIES for form in FORMATS]


def _spec(topology: str):
    if topology in WAVEFORM_TOPOLOGIES:
        return WAVEFORM_FRONTEND
    return FIXED_TWO_INPUT if topology == "two-input" else FIXED


@pytest.fixture(scope="module")
def originals() -> dict[str, EagerTorchModel]:
    models = {}
    for topology, factory in TOPOLOGIES.items():
        torch.manual_seed(0)
        models[topology] = EagerTorchModel(factory(), _spec(topology))
    return models


@pytest.fixture(scope="module")
def formats(originals, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], TargetModel]:
    loaded: dict[tuple[str, str], TargetModel] = {}
    for topology, form in PAIRS:
        if (topology, form) in UNSUPPORTED:
            continue
        eager = originals[topology]
        if FORMATS[form] is None:
            loaded[topology, form] = eager
            continue
        name, exporter = FORMATS[form]
        folder = tmp_path_factory.mktemp(f"{topology}-{form}".replace(".", "-"))
        export_model(eager.module, eager.frontend, folder / name, onnx_exporter=exporter)
        loaded[topology, form] = load_model(str(folder / name), cache_dir=folder)
    return loaded


def model_for(formats, topology: str, form: str) -> TargetModel:
    if (topology, form) in UNSUPPORTED:
        pytest.skip(UNSUPPORTED[topology, form])
    return formats[topology, form]


def noisy_inputs(model: TargetModel, batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {name: (x + rng.standard_normal(x.shape).astype(np.float32) * 3)
            for name, x in model.example_inputs(batch=batch).items()}


@pytest.mark.parametrize("topology,form", PAIRS)
def test_layers_are_listed(formats, originals, topology: str, form: str) -> None:
    model = model_for(formats, topology, form)
    layers = model.layers()
    names = [layer.name for layer in layers]
    assert len(names) == len(set(names)) >= 3
    assert set(names) <= {layer.name for layer in originals[topology].layers()}, "a layer eager torch does not have"
    assert all(layer.shape[0] == 1 for layer in layers)
    expected = {"lstm": "recurrent", "gru": "recurrent", "crnn": "recurrent", "transformer": "transformer",
                "wav2vec2": "transformer"}
    assert target_family(layers, model.operators()) == expected.get(topology, "convolutional")
    by_name = {layer.name: layer for layer in originals[topology].layers()}
    for layer in layers:  # the time axis is read from the model, and agrees between formats
        if len(layer.shape) > 2 and layer.shape[by_name[layer.name].time_axis or 0] >= 4:
            assert layer.time_axis == by_name[layer.name].time_axis, layer.name
    taps = {layer.name for layer in model.default_taps()}
    if topology in ("lstm", "gru"):
        assert {"rnn1", "rnn2"} <= taps
    if topology == "resnet":
        assert {"layer1.0", "layer1.1", "layer2.0", "layer2.1"} <= taps


@pytest.mark.parametrize("topology,form", PAIRS)
def test_taps_match_the_eager_model(formats, originals, topology: str, form: str) -> None:
    model = model_for(formats, topology, form)
    eager = originals[topology]
    inputs = noisy_inputs(model)
    names = [layer.name for layer in model.layers()]
    ours, theirs = model.forward(inputs, names), eager.forward(inputs, names)
    assert np.allclose(ours.logits, theirs.logits, atol=1e-4, rtol=1e-4)
    eager_names = [layer.name for layer in eager.layers()]
    eager_kinds = {layer.name: layer.kind for layer in eager.layers()}
    compared = 0
    for name in names:
        following = eager_names[eager_names.index(name) + 1] if name != eager_names[-1] else None
        if following and "BatchNorm" in eager_kinds[following] and form in ("onnx-torchscript", "torchscript"):
            continue  # the TorchScript exporter folds the batch norm into this convolution, under its name
        a, b = ours.layers[name], theirs.layers[name]
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, float(np.abs(b).max())), name
        compared += 1
    assert compared >= len(names) // 2


@pytest.mark.parametrize("topology,form", PAIRS)
def test_same_architecture_cut_reproduces_the_logits(formats, topology: str, form: str) -> None:
    model = model_for(formats, topology, form)
    layer = CUT_AT[topology]
    if layer is None:  # a cut either says why it cannot be made, or reproduces the logits
        layer = next(layer for layer in model.default_taps() if layer.frames).name
        try:
            model.downstream(layer)
        except Unavailable as reason:
            assert str(reason)
            return
    inputs = noisy_inputs(model)
    result = model.forward(inputs, [layer])
    part = model.downstream(layer)
    with torch.no_grad():
        features = part.body(torch.from_numpy(result.layers[layer]))
        logits = part.head(features) if part.head is not None else features
    assert np.allclose(logits.numpy(), result.logits, atol=1e-4, rtol=1e-3), part.description


class _BoundExtras(nn.Module):
    def __init__(self, module: nn.Module, extras: list[torch.Tensor]) -> None:
        super().__init__()
        self.module, self.extras = module, extras

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.module(features, *self.extras)


@pytest.mark.parametrize("topology,form", PAIRS)
def test_white_box_fgsm_runs(formats, topology: str, form: str) -> None:
    model = model_for(formats, topology, form)
    inputs = noisy_inputs(model)
    tensors = [torch.from_numpy(inputs[name]) for name in model.input_names]
    module = _BoundExtras(model.differentiable(), tensors[1:]).eval()
    with torch.no_grad():
        logits = module(tensors[0]).numpy()
    assert np.allclose(logits, model.forward(inputs).logits, atol=1e-4, rtol=1e-3)
    labels = torch.from_numpy(logits.argmax(1))
    adversarial = FGSM(eps=0.05)(module, tensors[0], labels)
    assert adversarial.shape == tensors[0].shape and (adversarial != tensors[0]).float().mean() > 0.5
    with torch.no_grad():
        moved = module(adversarial)
    loss = nn.functional.cross_entropy
    assert loss(moved, labels) > loss(torch.from_numpy(logits), labels)  # the step raised the loss


@pytest.mark.parametrize("topology,form", PAIRS)
def test_planted_attribute_is_found(formats, small_corpus: Corpus, topology: str, form: str, tmp_path: Path) -> None:
    """Random weights over the descriptors carry the speaker's F0: some default tap must show gender."""
    model = model_for(formats, topology, form)
    layers = model.default_taps()
    embeddings = extract(model, small_corpus, layers, cache_dir=tmp_path)
    labels = np.array(small_corpus.labels("gender"))
    folds = speaker_disjoint_folds(small_corpus)
    scores = {}
    for layer in layers:
        outcome = cross_validate(LinearProbe(), embeddings.layers[layer.name], labels, folds)
        classes = np.unique(labels)
        scores[layer.name] = float(np.mean([balanced_accuracy_of(truth, predicted, classes)
                                            for truth, predicted in zip(outcome.truths, outcome.predictions)]))
    assert max(scores.values()) >= 0.8, scores
