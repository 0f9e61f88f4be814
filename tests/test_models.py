from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ser_audit.errors import FrontEndError, LayerSelectionError, ModelError
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.export import export_model
from ser_audit.models.loading import load_model
from ser_audit_reference.cnn4 import CNN4, LOG_MEL_P2

SPEC = LOG_MEL_P2.model_copy(update={"emotions": ["neutral", "happy", "sad", "angry"], "duration_s": 1.0})


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    module = CNN4(4, width=0.0625).eval()
    folder = tmp_path_factory.mktemp("models")
    for suffix in ("onnx", "pt", "pt2"):
        export_model(module, SPEC, folder / f"cnn4.{suffix}")
    torch.save({"state_dict": module.state_dict(), "config": {"width": 0.0625}, "n_classes": 4}, folder / "weights.pt")
    (folder / "weights.frontend.json").write_text(SPEC.to_json())
    return module, folder


@pytest.mark.parametrize("suffix, kind", [("onnx", "onnx"), ("pt", "torchscript"), ("pt2", "torch.export")])
def test_every_format_lists_the_eager_layers_and_taps_the_same_values(tiny_cnn, tmp_path: Path, suffix: str, kind: str) -> None:
    module, folder = tiny_cnn
    eager = EagerTorchModel(module, SPEC)
    other = load_model(str(folder / f"cnn4.{suffix}"), cache_dir=tmp_path)
    assert other.format == kind
    assert other.frontend == SPEC
    assert [(l.name, l.shape) for l in other.layers()] == [(l.name, l.shape) for l in eager.layers()]
    names = [l.name for l in eager.layers()]
    shape = eager.example_inputs(batch=3)["features"].shape
    inputs = {"features": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    expected, got = eager.forward(inputs, names), other.forward(inputs, names)
    for name in names:
        assert np.abs(expected.layers[name] - got.layers[name]).max() < 1e-4, name
    assert np.abs(expected.logits - got.logits).max() < 1e-4


def test_in_place_activation_does_not_overwrite_the_tapped_layer_before_it() -> None:
    # Reads the spec's input ([batch, 1, 64 mels, 63 frames]): listing layers runs the model on it.
    module = torch.nn.Sequential(torch.nn.Linear(63, 8), torch.nn.ReLU(inplace=True), torch.nn.Linear(8, 4),
                                 torch.nn.Flatten(1), torch.nn.Linear(64 * 4, 4))  # logits [batch, classes]
    model = EagerTorchModel(module, SPEC)
    inputs = {"features": np.random.default_rng(0).standard_normal((16, 1, 64, 63)).astype(np.float32)}
    result = model.forward(inputs, ["0", "1"])
    assert (result.layers["0"] < 0).any() and (result.layers["1"] >= 0).all()
    assert module[1].inplace  # restored


def test_layer_selection(tiny_cnn) -> None:
    model = EagerTorchModel(tiny_cnn[0], SPEC)
    names = [l.name for l in model.layers()]
    assert names[:3] == ["conv1", "relu1", "pool1"]
    assert [l.name for l in model.select_layers("pool*")] == ["pool1", "pool2", "pool3", "pool4"]
    assert [l.name for l in model.select_layers("0,2")] == ["conv1", "pool1"]
    assert [l.name for l in model.select_layers("1-2")] == ["relu1", "pool1"]
    assert len(model.select_layers("all")) == len(names)
    assert [l.name for l in model.select_layers(None)] == ["pool1", "pool2", "pool3", "pool4", "global_pool", "fc_relu"]
    with pytest.raises(LayerSelectionError, match="matches no layer"):
        model.select_layers("lstm*")


def test_python_factory_with_weights(tiny_cnn, tmp_path: Path) -> None:
    module, folder = tiny_cnn
    model = load_model("python:ser_audit_reference.cnn4:build", weights=folder / "weights.pt", cache_dir=tmp_path)
    assert model.frontend == SPEC
    assert [l.name for l in model.layers()] == [l.name for l in EagerTorchModel(module, SPEC).layers()]


def test_a_factory_in_the_working_folder_imports_as_uvicorn_would_and_one_nowhere_says_what_to_do(
        tiny_cnn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    _, folder = tiny_cnn
    here = tmp_path / "project"
    here.mkdir()
    (here / "my_ser_model.py").write_text("from ser_audit_reference.cnn4 import build\n")
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(here))])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"No module named 'my_ser_model'\); run from the folder that holds it, add "
                                         r"that folder to PYTHONPATH, or install its package$"):
        load_model("python:my_ser_model:build", weights=folder / "weights.pt", cache_dir=tmp_path)
    monkeypatch.chdir(here)
    monkeypatch.delitem(sys.modules, "my_ser_model", raising=False)  # whatever the import below leaves goes too
    model = load_model("python:my_ser_model:build", weights=folder / "weights.pt", cache_dir=tmp_path)
    assert model.frontend == SPEC and sys.path[-1] == str(here), "appended: it shadows nothing installed"


def test_cached_activations_of_a_factory_model_do_not_outlive_an_edit_of_its_code(
        tiny_cnn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    _, folder = tiny_cnn
    here = tmp_path / "project"
    here.mkdir()
    source = here / "edited_ser_model.py"
    monkeypatch.syspath_prepend(str(here))

    def identity(text: str) -> tuple[str, str]:
        source.write_text(text)
        monkeypatch.delitem(sys.modules, "edited_ser_model", raising=False)
        model = load_model("python:edited_ser_model:build", weights=folder / "weights.pt", cache_dir=tmp_path)
        return model.sha256, model.cache_identity

    before = identity("from ser_audit_reference.cnn4 import build\n")
    after = identity("from ser_audit_reference.cnn4 import build\n# forward() edited\n")
    assert before[0] == after[0], "the report's model hash stays the weights file's"
    assert before[1] != after[1] and before == identity("from ser_audit_reference.cnn4 import build\n")


class _LogitsAndHidden(torch.nn.Module):
    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.body(x)
        return logits, torch.relu(logits)


@pytest.mark.parametrize("suffix", ["pt", "pt2"])
def test_a_saved_program_returning_logits_and_hidden_gives_its_logits_to_gradients(
        tiny_cnn, tmp_path: Path, suffix: str) -> None:
    module, _ = tiny_cnn
    path = tmp_path / f"pair.{suffix}"
    export_model(_LogitsAndHidden(module).eval(), SPEC, path)
    model = load_model(str(path), cache_dir=tmp_path)
    inputs = model.example_inputs()
    x = torch.as_tensor(inputs[SPEC.input_name])
    logits = model.differentiable()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (x.shape[0], 4)
    assert torch.allclose(logits, module(x), atol=1e-5)


def test_harden_and_protect_refuse_a_torchscript_archive_in_one_line(tiny_cnn, tmp_path: Path) -> None:
    """Both ended in exit 3: a ScriptModule takes no forward hooks, and its loaded parameters no training."""
    from ser_audit.errors import ConfigError
    from ser_audit.models.batch_of_one import refuse_training

    _, folder = tiny_cnn
    with pytest.raises(ConfigError, match="is a TorchScript archive, which protect cannot train or hook; give the "
                                          "same model as ONNX"):
        refuse_training(load_model(str(folder / "cnn4.pt"), cache_dir=tmp_path), "protect")
    refuse_training(load_model(str(folder / "cnn4.onnx"), cache_dir=tmp_path), "protect")


def test_pickled_module_is_refused_unless_trusted(tiny_cnn, tmp_path: Path) -> None:
    module, _ = tiny_cnn
    path = tmp_path / "whole.pt"
    torch.save(module, path)
    with pytest.raises(ModelError, match="trust-pickle"):
        load_model(str(path), cache_dir=tmp_path)
    (tmp_path / "whole.frontend.json").write_text(SPEC.to_json())
    assert load_model(str(path), trust_pickle=True, cache_dir=tmp_path).format == "torch"


def test_weights_only_file_needs_a_factory(tiny_cnn, tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(tiny_cnn[0].state_dict(), path)
    with pytest.raises(ModelError, match="python:module:factory"):
        load_model(str(path), cache_dir=tmp_path)


@pytest.mark.parametrize("content", [b"this is not a model\n", b""])
def test_bad_model_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        load_model(str(path), cache_dir=tmp_path)


def test_missing_model_and_missing_spec(tiny_cnn, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "nope.onnx"), cache_dir=tmp_path)
    module, _ = tiny_cnn
    bare = tmp_path / "bare.pt"
    torch.jit.save(torch.jit.trace(module, torch.zeros(1, 1, 64, 63)), str(bare))
    with pytest.raises(FrontEndError, match="no front-end spec"):
        load_model(str(bare), cache_dir=tmp_path)


def test_a_model_with_a_reference_input_in_eager_and_onnx(small_corpus, tmp_path: Path) -> None:
    from ser_audit.embeddings.extract import extract, reference_utterances
    from ser_audit.testing import two_input_model

    eager = two_input_model()
    assert eager.input_names == ["features", "reference"]
    export_model(eager.module, eager.frontend, tmp_path / "two.onnx")
    exported = load_model(str(tmp_path / "two.onnx"), cache_dir=tmp_path)
    assert [l.name for l in exported.layers()] == [l.name for l in eager.layers()]
    references = reference_utterances(small_corpus)
    assert all(r.speaker == u.speaker and r.emotion == "neutral" and r.id != u.id for u, r in zip(small_corpus, references))
    subset = small_corpus.subset(range(12))
    layers = eager.select_layers("speaker_embedding.1,conditioned")
    from_eager, from_onnx = extract(eager, subset, layers), extract(exported, subset, layers)
    for name in from_eager.layers:
        assert np.abs(from_eager.layers[name] - from_onnx.layers[name]).max() < 1e-4


class _Waveform(torch.nn.Module):
    """A raw-waveform SER model of any length: strided convolution, mean over time, a linear head."""

    def __init__(self, reshape_to_one_second: bool = False) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 400, stride=160)
        self.fc = torch.nn.Linear(4, 4)
        self.reshape_to_one_second = reshape_to_one_second

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.reshape_to_one_second:  # a length baked in, as tracing a .view() on the example's shape does
            wave = wave.reshape(wave.shape[0], 16_000)
        return self.fc(torch.relu(self.conv(wave.unsqueeze(1))).mean(-1))


def _variable_length_spec():
    from ser_audit.frontend.spec import Features, FrontEndSpec

    return FrontEndSpec(features=Features(kind="waveform"), layout=["batch", "time"], duration_s=None,
                        emotions=["neutral", "happy", "sad", "angry"])


@pytest.mark.parametrize("convert", ["script", "trace"])
def test_torchscript_models_run_at_every_length_of_a_variable_length_spec(tmp_path: Path, convert: str) -> None:
    from ser_audit.frontend.spec import EXTRA_FILE

    module = _Waveform().eval()
    archive = torch.jit.script(module) if convert == "script" else torch.jit.trace(module, torch.zeros(2, 16_000))
    path = tmp_path / "wave.pt"
    torch.jit.save(archive, str(path), _extra_files={EXTRA_FILE: _variable_length_spec().to_json()})
    model = load_model(str(path), cache_dir=tmp_path)
    for seconds in (0.6, 1.0, 2.3):
        wave = np.random.default_rng(0).standard_normal((3, int(seconds * 16_000))).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(wave)).numpy()
        assert np.abs(model.forward({model.input_names[0]: wave}, ["conv"]).logits - expected).max() < 1e-4, seconds


def test_a_torchscript_graph_that_fixed_its_length_is_refused_at_load(tmp_path: Path, capfd) -> None:
    from ser_audit.frontend.spec import EXTRA_FILE

    archive = torch.jit.trace(_Waveform(reshape_to_one_second=True).eval(), torch.zeros(2, 16_000))
    path = tmp_path / "fixed.pt"
    torch.jit.save(archive, str(path), _extra_files={EXTRA_FILE: _variable_length_spec().to_json()})
    with pytest.raises(ModelError, match="runs only at the length it was converted at.*duration_s"):
        load_model(str(path), cache_dir=tmp_path)


def test_a_torchscript_graph_the_exporter_cannot_convert_says_what_to_do_and_prints_nothing(tmp_path: Path,
                                                                                          capfd) -> None:
    from ser_audit.frontend.spec import EXTRA_FILE

    class Dictionary(torch.nn.Module):
        def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": wave[:, :4]}

    path = tmp_path / "dict.pt"
    torch.jit.save(torch.jit.script(Dictionary()), str(path), _extra_files={EXTRA_FILE: _variable_length_spec().to_json()})
    capfd.readouterr()
    with pytest.raises(ModelError, match=r"cannot be converted for tapping \(.*DictConstruct.*\); export the model"):
        load_model(str(path), cache_dir=tmp_path)
    assert capfd.readouterr().out == ""  # the exporter's IR dump once went to stdout, breaking --json


@pytest.mark.parametrize(("batch", "duration", "message"), [
    (2, 1.0, r"fixed batch size of 2 .*dynamic_axes=\{'features': \{0: 'batch'\}\}"),
    (None, None, r"fixes the time axis of input 'features' at 16000, but the front-end spec is variable-length"),
])
def test_onnx_graphs_with_a_fixed_batch_or_length_are_refused_at_load(tmp_path: Path, batch: int | None,
                                                                      duration: float | None, message: str) -> None:
    """A batch fixed above 1 once ended in exit 3 inside onnxruntime when layers ran at another batch."""
    spec = _variable_length_spec().model_copy(update={"duration_s": duration})
    path = tmp_path / "wave.onnx"
    axes = None if batch else {"features": {0: "batch"}}
    torch.onnx.export(_Waveform().eval(), (torch.zeros(batch or 3, 16_000),), str(path), dynamo=False,
                      input_names=["features"], output_names=["logits"], dynamic_axes=axes)
    (tmp_path / "wave.frontend.json").write_text(spec.to_json())
    with pytest.raises(ModelError, match=message):
        load_model(str(path), cache_dir=tmp_path)


def test_an_onnx_graph_whose_logits_are_not_its_first_output(tmp_path: Path) -> None:
    """Probabilities listed first: the output named logits is read, on both the onnxruntime and the torch path."""

    class ProbabilitiesFirst(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _Waveform()

        def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.inner(wave)
            return torch.softmax(logits, -1), logits

    module = ProbabilitiesFirst().eval()
    path = tmp_path / "two.onnx"
    torch.onnx.export(module, (torch.zeros(2, 16_000),), str(path), dynamo=False, input_names=["features"],
                      output_names=["probs", "logits"], dynamic_axes={"features": {0: "batch"}})
    (tmp_path / "two.frontend.json").write_text(_variable_length_spec().model_copy(update={"duration_s": 1.0}).to_json())
    model = load_model(str(path), cache_dir=tmp_path)
    wave = np.random.default_rng(0).standard_normal((3, 16_000)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(wave))[1].numpy()
        through_torch = model.differentiable()(torch.from_numpy(wave)).numpy()
    assert np.abs(model.forward({"features": wave}).logits - expected).max() < 1e-4
    assert np.abs(through_torch - expected).max() < 1e-4


def test_a_model_with_more_logits_than_its_spec_has_emotions_is_refused(tmp_path: Path) -> None:
    """Seven outputs read against four emotions gave UAR 0 at every eps, and a robustness grade, with no word."""
    module = _Waveform().eval()
    module.fc = torch.nn.Linear(4, 7)
    path = tmp_path / "seven.onnx"
    torch.onnx.export(module, (torch.zeros(2, 16_000),), str(path), dynamo=False, input_names=["features"],
                      output_names=["logits"], dynamic_axes={"features": {0: "batch"}})
    (tmp_path / "seven.frontend.json").write_text(_variable_length_spec().model_copy(update={"duration_s": 1.0}).to_json())
    with pytest.raises(ModelError, match="outputs 7 logits, but its front-end spec names 4 emotions"):
        load_model(str(path), cache_dir=tmp_path).layers()  # as every command lists them before any work


class _OtherFirstOutput(torch.nn.Module):
    def __init__(self, body: torch.nn.Module, shape: str) -> None:
        super().__init__()
        self.body, self.shape = body, shape

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.body(x)
        return {"kept axis": lambda: logits[:, None], "one score": lambda: logits[:, 0],
                "label first": lambda: (logits.argmax(-1), logits)}[self.shape]()


@pytest.mark.parametrize("shape, found", [("kept axis", r"float32 \[2, 1, 4\]"), ("one score", r"float32 \[2\]"),
                                          ("label first", r"\w+ \[2\]")])
def test_a_first_output_that_is_not_float_logits_per_utterance_is_refused_at_load(
        tiny_cnn, shape: str, found: str) -> None:
    """These loaded, then ended in exit 3 deep inside an attacker or an attack."""
    model = EagerTorchModel(_OtherFirstOutput(tiny_cnn[0], shape), SPEC)
    with pytest.raises(ModelError, match=f"first output is {found} for 2 utterances; ser-audit reads float logits"):
        model.layers()


def test_an_onnx_graph_under_another_extension_is_named_so(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    torch.onnx.export(_Waveform().eval(), (torch.zeros(2, 16_000),), str(path), dynamo=False, input_names=["features"],
                      output_names=["logits"], dynamic_axes={"features": {0: "batch"}})
    with pytest.raises(ModelError, match="is an ONNX graph under another extension; rename it to model.onnx"):
        load_model(str(path), cache_dir=tmp_path)
    path.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="neither ONNX"):
        load_model(str(path), cache_dir=tmp_path)


def test_an_exported_program_whose_guards_admit_one_length_is_refused_at_load(tmp_path: Path) -> None:
    """Dim.AUTO on a strided, pooled waveform model specialises the length (a guard on T // 16); the ONNX graph ran
    other lengths, then the probes, which run the program, failed mid-run with exit 3."""
    from ser_audit.frontend.spec import EXTRA_FILE

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 4, 80, stride=16)
            self.pool = torch.nn.MaxPool1d(4)
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pool(torch.relu(self.conv(wave.unsqueeze(1)))).mean(-1))

    auto = torch.export.Dim.AUTO
    program = torch.export.export(Pooled().eval(), (torch.zeros(2, 16_000),), dynamic_shapes=({0: auto, 1: auto},))
    path = tmp_path / "pooled.pt2"
    torch.export.save(program, str(path), extra_files={EXTRA_FILE: _variable_length_spec().to_json()})
    try:
        program.module()(torch.zeros(2, int(1.37 * 16_000)))
    except Exception:
        with pytest.raises(ModelError, match="does not run at 1.37 s of audio.*duration_s"):
            load_model(str(path), cache_dir=tmp_path)
    else:
        pytest.skip("this torch kept the length dynamic; nothing to refuse")


def test_a_scripted_recurrent_layer_is_listed(tmp_path: Path) -> None:
    """torch.jit.script exports an LSTM without its module's scope while the Linear keeps one: it vanished from
    `layers`, and with it the recurrent family and every recurrent attacker."""
    from ser_audit.frontend.spec import EXTRA_FILE

    class Recurrent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(160, 8, batch_first=True)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            frames = wave[:, : (wave.shape[1] // 160) * 160].reshape(wave.shape[0], -1, 160)
            sequence, _ = self.lstm(frames)
            return self.fc(sequence.mean(1))

    path = tmp_path / "recurrent.pt"
    torch.jit.save(torch.jit.script(Recurrent().eval()), str(path),
                   _extra_files={EXTRA_FILE: _variable_length_spec().to_json()})
    kinds = {layer.kind for layer in load_model(str(path), cache_dir=tmp_path).layers()}
    assert "LSTM" in kinds and "Gemm" in kinds


def test_an_onnx_graph_exported_with_a_batch_of_one_runs_one_utterance_at_a_time(tmp_path: Path) -> None:
    """torch.onnx.export without dynamic_axes fixes the batch at 1 and bakes it into the reshapes (the most common
    export there is): ser-audit feeds it utterance by utterance, its torch paths too, with the batched figures."""
    from ser_audit.frontend.features import FrontEnd
    from ser_audit.models.batch_of_one import NOTE, OneAtATime
    from ser_audit.models.differentiable import torch_module
    from ser_audit.models.export import export_model
    from ser_audit_reference.cnn4 import CNN4, LOG_MEL_P2

    torch.manual_seed(0)
    spec = LOG_MEL_P2.model_copy(update={"emotions": ["neutral", "angry", "sad", "happy"], "duration_s": 1.0})
    network = CNN4(4, width=0.0625).eval()
    export_model(network, spec, tmp_path / "batched.onnx")
    example = FrontEnd(spec)(torch.zeros(1, spec.num_samples))
    torch.onnx.export(network, (example,), str(tmp_path / "one.onnx"), dynamo=False, input_names=[spec.input_name],
                      output_names=["logits"])
    (tmp_path / "one.frontend.json").write_text(spec.to_json())
    one, batched = (load_model(str(tmp_path / name), cache_dir=tmp_path) for name in ("one.onnx", "batched.onnx"))
    assert one.loading == {"batch": NOTE} and not batched.loading
    listed = [(layer.name, layer.shape, layer.time_axis) for layer in one.layers()]
    assert listed == [(layer.name, layer.shape, layer.time_axis) for layer in batched.layers()]
    names = [name for name, _, _ in listed]
    inputs = batched.example_inputs(batch=3)
    inputs[spec.input_name] = np.random.default_rng(0).standard_normal(inputs[spec.input_name].shape).astype(np.float32)
    run, reference = one.forward(inputs, names), batched.forward(inputs, names)
    np.testing.assert_allclose(run.logits, reference.logits, atol=1e-5)
    for name in names:
        np.testing.assert_allclose(run.layers[name], reference.layers[name], atol=1e-5)
    with torch.no_grad():
        gradients_path = torch_module(one)(torch.from_numpy(inputs[spec.input_name])).numpy()
    np.testing.assert_allclose(gradients_path, reference.logits, atol=1e-4)
    part = one.downstream("pool3")
    assert isinstance(part.body, OneAtATime)
    with torch.no_grad():
        features = torch.from_numpy(reference.layers["pool3"])
        np.testing.assert_allclose(part.body(features).numpy(), batched.downstream("pool3").body(features).numpy(),
                                   atol=1e-4)


def test_a_batch_of_one_graph_is_audited_end_to_end(tmp_path: Path, small_corpus, run_cli) -> None:
    """Leakage with the same-architecture attacker (its sub-network trained one utterance at a time) and FGSM
    through the converted graph, on a graph that fixes its batch at 1."""
    import json

    from ser_audit.frontend.features import FrontEnd
    from ser_audit_reference.cnn4 import CNN4, LOG_MEL_P2

    torch.manual_seed(0)
    spec = LOG_MEL_P2.model_copy(update={"emotions": ["neutral", "angry", "sad", "happy"], "duration_s": 1.0})
    path = tmp_path / "one.onnx"
    torch.onnx.export(CNN4(4, width=0.0625).eval(), (FrontEnd(spec)(torch.zeros(1, spec.num_samples)),), str(path),
                      dynamo=False, input_names=[spec.input_name], output_names=["logits"])
    (tmp_path / "one.frontend.json").write_text(spec.to_json())
    out = tmp_path / "report"
    result = run_cli("audit", str(path), "--corpus", str(small_corpus.root / "manifest.csv"), "--layers", "pool3",
                     "--scenarios", "worst", "--attackers", "generic", "--eps", "0,0.02", "--quick",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet")
    assert result.code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["loading"]["batch"].startswith("the graph fixes its batch at 1")
    designs = {row["attacker_design"] for row in report["leakage"]["results"]}
    assert {"linear-probe", "same-architecture"} <= designs, designs
    assert not report["leakage"]["skipped"], report["leakage"]["skipped"]
    assert {row["eps"] for row in report["robustness"]["results"] if row["method"] == "fgsm"} == {0.0, 0.02}
    # Training through it would normalise, capture and export utterance by utterance: refused, with the re-export.
    refused = run_cli("harden", str(path), "--method", "vanilla", "--out", str(tmp_path / "hard.onnx"), "--corpus",
                      str(small_corpus.root / "manifest.csv"), "--cache-dir", str(tmp_path / "cache"), "--quiet")
    assert refused.code == 2 and "fixes its batch at 1: harden trains and writes a batched model" in refused.stderr
    assert "dynamic_axes={'features': {0: 'batch'}, 'logits': {0: 'batch'}}" in refused.stderr
    assert not (tmp_path / "hard.onnx").exists()


def test_one_at_a_time_stacks_each_output_where_it_keeps_its_batch_and_refuses_to_train_a_batch_norm() -> None:
    from ser_audit.models.batch_of_one import OneAtATime, run_each, trainable

    time_major = OneAtATime(torch.nn.Identity(), [1])  # [time, batch, hidden], as a time-major RNN's tap
    x = torch.arange(24.0).reshape(3, 4, 2)
    assert torch.equal(time_major(x), x)
    outputs = run_each(lambda one: [one["x"] * 2, one["x"].sum(0, keepdims=True)], {"x": np.ones((3, 5))}, {"x": 0})
    assert [o.shape for o in outputs] == [(3, 5), (3, 5)]
    scalars = run_each(lambda one: [one["x"].mean()], {"x": np.ones((3, 5))}, {"x": 0})  # a per-utterance scalar
    assert scalars[0].shape == (3,)
    assert OneAtATime(_Mean(), [0])(torch.ones(3, 5)).shape == (3,)
    assert trainable(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    assert not trainable(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)))


class _Mean(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean()


def test_a_batch_of_one_graph_whose_logits_drop_the_batch_axis_is_refused_in_one_line(tmp_path: Path) -> None:
    class Squeezed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _Waveform()

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            return self.inner(wave).squeeze(0)

    path = tmp_path / "squeezed.onnx"
    torch.onnx.export(Squeezed().eval(), (torch.zeros(1, 16_000),), str(path), dynamo=False,
                      input_names=["features"], output_names=["logits"])
    (tmp_path / "squeezed.frontend.json").write_text(_variable_length_spec().model_copy(update={"duration_s": 1.0}).to_json())
    with pytest.raises(ModelError, match=r"logits have no batch axis \(shape \[8\] for 2 utterances\)"):
        load_model(str(path), cache_dir=tmp_path).layers()


def test_a_graph_torch_export_cannot_capture_fails_in_one_line_without_its_dump(
        onnx_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """torch.export print()s the whole captured graph (about 200 lines) before it raises."""
    from ser_audit.models.differentiable import torch_module

    model = load_model(str(onnx_model), cache_dir=tmp_path)
    module = torch_module(model)
    capfd.readouterr()
    with pytest.raises(ModelError, match="torch.export cannot capture the model"):
        export_model(module, model.frontend, tmp_path / "converted.pt2")
    assert capfd.readouterr().err == ""


def test_an_out_format_is_checked_before_training_both_ways(onnx_model: Path, tmp_path: Path) -> None:
    """harden and protect ask first whether they could write --out; the answer must be no and yes where it is."""
    from ser_audit.errors import ConfigError
    from ser_audit.models.differentiable import torch_module
    from ser_audit.models.export import check_exportable

    model = load_model(str(onnx_model), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"--out .*converted\.pt2: torch.export cannot capture the model"):
        check_exportable(torch_module(model), model.frontend, tmp_path / "converted.pt2")
    check_exportable(torch_module(model), model.frontend, tmp_path / "converted.onnx")  # ONNX is written back
    eager = CNN4(4, width=0.0625).train()
    check_exportable(eager, model.frontend, tmp_path / "eager.pt2")
    assert eager.training and not list(tmp_path.glob("*.pt2"))  # its mode kept, nothing written


def test_a_layer_name_the_torch_path_lacks_is_answered_with_names_it_has(tiny_cnn, onnx_model: Path, tmp_path: Path) -> None:
    """protect and similarity hardening refused "pool4" on an ONNX graph without saying what would work."""
    from ser_audit.defenses.tap import submodule
    from ser_audit.errors import ConfigError
    from ser_audit.models.differentiable import torch_module

    converted = torch_module(load_model(str(onnx_model), cache_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"converted from a graph, whose modules carry its node names \(node_"):
        submodule(converted, "pool4")
    with pytest.raises(ConfigError, match=r"its modules are conv1, relu1, pool1"):
        submodule(tiny_cnn[0], "pool9")
