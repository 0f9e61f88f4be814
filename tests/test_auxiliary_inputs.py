"""Auxiliary inputs (zeros, constant, length, mask): an ONNX graph with a state and a sample-rate input
beside the audio is refused in one line until its spec declares them, then audited like any other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ser_audit.errors import ModelError
from ser_audit.frontend.spec import ExtraInput
from ser_audit.models.inputs import DeclaredInput, auxiliary_tensor, complete_inputs
from ser_audit.testing import tiny_corpus
from ser_audit.testing.auxiliary import DECLARED_FRONTEND, WAVEFORM_FRONTEND, write_auxiliary_model

FAST = ["--scenarios", "s2", "--attackers", "generic", "--quick", "--quiet", "--format", "json"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The graph as handed over: its embedded spec feeds the audio only."""
    return write_auxiliary_model(tmp_path_factory.mktemp("auxiliary") / "vad.onnx")


@pytest.fixture(scope="module")
def declared(graph: Path) -> Path:
    path = graph.with_name("declared.json")
    path.write_text(DECLARED_FRONTEND.to_json())
    return path


@pytest.fixture(scope="module")
def corpus_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = tiny_corpus(tmp_path_factory.mktemp("auxiliary-corpus") / "corpus", per_speaker=4, seed=1)
    return corpus.root / "manifest.csv"


def test_undeclared_inputs_are_refused_in_one_line_naming_each(run_cli, graph: Path) -> None:
    result = run_cli("layers", str(graph))
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "'state' float32 [2, batch, 16]" in lines[0] and "'sr' int64 []" in lines[0]
    assert "extra_inputs" in lines[0] and '"source": "zeros"' in lines[0] and '"source": "constant"' in lines[0]


def test_a_declared_graph_lists_its_layers(run_cli, graph: Path, declared: Path) -> None:
    result = run_cli("layers", str(graph), "--frontend", str(declared), "--json")
    assert result.code == 0, result.stderr
    names = [layer["name"] for layer in json.loads(result.stdout)]
    assert names[:3] == ["pitch.bank", "pitch", "encoder"] and "head" in names


def test_the_sidecar_declaration_is_read(run_cli, graph: Path, declared: Path, tmp_path: Path) -> None:
    copy = tmp_path / "vad.onnx"
    copy.write_bytes(graph.read_bytes())
    (tmp_path / "vad.frontend.json").write_text(declared.read_text())
    assert run_cli("layers", str(copy)).code == 0


@pytest.mark.parametrize("leak", [True, False])
def test_leakage_on_a_declared_graph_finds_the_pitch_bands(run_cli, graph: Path, declared: Path, corpus_manifest: Path,
                                                           tmp_path: Path, leak: bool) -> None:
    model = graph if leak else write_auxiliary_model(tmp_path / "null.onnx", leak=False)
    out = tmp_path / "report"
    result = run_cli("leakage", str(model), "--frontend", str(declared), "--corpus", str(corpus_manifest),
                     "--layers", "pitch,encoder", *FAST, "--out", str(out))
    assert result.code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    probes = {row["layer"]: row for row in report["leakage"]["results"] if row["attacker_design"] == "linear-probe"}
    assert set(probes) == {"pitch", "encoder"}
    # The F0 bands carry gender (chance 0.5); the noise put in their place carries nothing.
    assert probes["pitch"]["significant"] is leak
    assert (probes["pitch"]["balanced_accuracy"] > 0.8) is leak
    assert report["model"]["extra_inputs"] == {
        "state": "zeros, shaped as the graph declares, batch on axis 1",
        "sr": "the constant 16000, shaped as the graph declares"}


def test_robustness_is_white_box_with_the_auxiliary_inputs_held_constant(run_cli, graph: Path, declared: Path,
                                                                        corpus_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_cli("robustness", str(graph), "--frontend", str(declared), "--corpus", str(corpus_manifest),
                     "--domain", "waveform", "--quick", "--quiet", "--format", "json", "--out", str(out))
    assert result.code == 0, result.stderr
    rows = json.loads((out / "report.json").read_text())["robustness"]["results"]
    assert rows and {row["gradient"] for row in rows} == {"white-box"}
    assert {row["method"] for row in rows} == {"fgsm", "pgd"}


def test_the_differentiable_path_takes_the_audio_only(graph: Path) -> None:
    import torch

    from ser_audit.models.differentiable import torch_module
    from ser_audit.models.onnx_model import load_onnx

    model = load_onnx(graph, DECLARED_FRONTEND)
    module = torch_module(model)
    audio = 0.1 * torch.randn(3, 16_000, generator=torch.Generator().manual_seed(0))
    audio.requires_grad_(True)
    logits = module(audio)
    assert np.allclose(logits.detach().numpy(), model.forward({"input": audio.detach().numpy()}).logits, atol=1e-4)
    logits.sum().backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0


def test_a_state_whose_batch_axis_is_not_given_is_refused(graph: Path) -> None:
    from ser_audit.models.onnx_model import load_onnx

    spec = WAVEFORM_FRONTEND.model_copy(update={"extra_inputs": [
        ExtraInput(name="state", source="zeros"), ExtraInput(name="sr", source="constant", value=16000)]})
    with pytest.raises(ModelError, match=r"'state' is declared float32 \[2, batch, 16\] and axis 1 \(batch\) is symbolic"):
        load_onnx(graph, spec)


# Each source's tensor.

STATE = DeclaredInput((2, "batch", 16), "float32")


@pytest.mark.parametrize("extra,declared,shape,dtype,value", [
    (ExtraInput(name="state", source="zeros", batch_axis=1), STATE, (2, 3, 16), np.float32, 0),
    (ExtraInput(name="state", source="zeros", shape=[2, "batch", 8]), None, (2, 3, 8), np.float32, 0),
    (ExtraInput(name="h", source="zeros"), DeclaredInput(("n", 4), "float64"), (3, 4), np.float64, 0),
    (ExtraInput(name="sr", source="constant", value=16000), DeclaredInput((), "int64"), (), np.int64, 16000),
    (ExtraInput(name="sr", source="constant", value=16000), None, (), np.float32, 16000),
    (ExtraInput(name="sr", source="constant", value=8000, dtype="int64"), DeclaredInput((1,), None), (1,), np.int64,
     8000),
    (ExtraInput(name="lengths", source="length"), None, (3,), np.int64, 500),
    (ExtraInput(name="lengths", source="length"), DeclaredInput(("batch",), "int32"), (3,), np.int32, 500),
    (ExtraInput(name="attention_mask", source="mask"), None, (3, 500), np.int64, 1),
    (ExtraInput(name="attention_mask", source="mask"), DeclaredInput(("b", "t"), "float32"), (3, 500), np.float32, 1),
])
def test_each_source_makes_its_tensor(extra: ExtraInput, declared: DeclaredInput | None, shape: tuple[int, ...],
                                      dtype: type, value: float) -> None:
    tensor = auxiliary_tensor(extra, declared, batch=3, length=500)
    assert tensor.shape == shape and tensor.dtype == dtype
    assert np.all(tensor == value)


def test_zeros_without_any_shape_is_refused() -> None:
    with pytest.raises(ModelError, match="needs a shape"):
        auxiliary_tensor(ExtraInput(name="state", source="zeros"), None, batch=2, length=10)


def test_completion_follows_the_primary_batch_and_replaces_what_a_caller_passed() -> None:
    spec = WAVEFORM_FRONTEND.model_copy(update={"extra_inputs": [
        ExtraInput(name="lengths", source="length"), ExtraInput(name="mask", source="mask")]})
    audio = np.zeros((2, 700), dtype=np.float32)
    completed = complete_inputs(spec, {"input": audio, "mask": audio}, {})
    assert completed["lengths"].tolist() == [700, 700]
    assert completed["mask"].shape == (2, 700) and completed["mask"].dtype == np.int64
    assert completed["input"] is audio


@pytest.mark.parametrize("fields,message", [
    ({"source": "constant"}, "'value' is needed"),
    ({"source": "zeros", "value": 1.0}, "'value' is needed"),
    ({"source": "length", "batch_axis": 1}, "takes no shape or batch_axis"),
    ({"source": "zeros", "shape": [2, "batch"], "batch_axis": 1}, "not both"),
    ({"source": "neutral_same_speaker", "dtype": "int64"}, "takes no dtype"),
])
def test_inconsistent_declarations_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExtraInput(name="x", **fields)


@pytest.mark.parametrize("module", ["ser_audit.models.inputs", "ser_audit.testing.auxiliary"])
def test_the_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
