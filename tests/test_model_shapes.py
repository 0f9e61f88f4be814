"""Every model shape, end to end: ``layers``, a quick ``leakage`` and a quick ``robustness`` run on an
LSTM SER model and on a CNN→GRU SER model, each handed over as eager torch
(``python:pkg.module:factory`` + ``--weights``, a plain state dict) and as ONNX from the
TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, which records no
intermediate shapes); and plain chains of convolutional blocks exported the same way, whose
middle block must get the same-architecture (worst-case) attacker rather than a skip entry.

The runs are as small as they can be and still say something: 48 one-second utterances of 24
speakers (the ravdess-like preset, whose voices carry gender in their pitch), two
speaker-disjoint folds, the worst-case scenario, the generic attacker, the recurrent layers
only, a two-point eps grid and three PGD steps.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from ser_audit.cli.main import main
from ser_audit.leakage.scenarios.table import SAME_ARCHITECTURE_DESIGNS, target_family
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.interface import TargetModel
from ser_audit.models.loading import load_model
from ser_audit.testing import LLD_FRONTEND, tiny_corpus
from ser_audit.testing.topologies import TOPOLOGIES

HIDDEN = 16
# The recurrent layers of each topology (``ser_audit.testing.topologies``); the LSTM model's Linear
# projection after its LSTMs is audited too.
RECURRENT = {"lstm": ("rnn1", "rnn2"), "crnn": ("gru",)}
AUDITED = {"lstm": ("rnn1", "rnn2", "projection"), "crnn": ("gru",)}
# How many input frames one step of each recurrent layer covers (the CNN→GRU pools by two first).
FRAMES_PER_STEP = {"lstm": 1, "crnn": 2}
FACTORY = {"lstm": "python:ser_audit.testing.topologies:tiny_lstm", "crnn": "python:ser_audit.testing.topologies:TinyCRNN"}
FORMS = ("eager", "onnx")
CASES = [(topology, form) for topology in RECURRENT for form in FORMS]


def cli(*args: str) -> tuple[int, str, str]:
    """``ser-audit ARGS`` in-process, as the ``run_cli`` fixture does, but usable from module-scoped fixtures."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def torchscript_onnx(module: nn.Module, path: Path) -> Path:
    """The ONNX file a user gets from the TorchScript-based exporter: batch and time dynamic, no front-end
    metadata (the CLI gets ``--frontend``) and no intermediate shapes (``value_info``)."""
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, (torch.randn(2, 32, 100),), str(path), dynamo=False, input_names=["features"],
                          output_names=["logits"], dynamic_axes={"features": {0: "batch", 2: "time"}})
    return path


class ConvBlock(nn.Module):
    """convolution → batch norm → ReLU, the ReLU its own operation, so the block is a layer."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels_in, channels_out, 3, padding=1)
        self.norm = nn.BatchNorm1d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))


def chain_of_blocks() -> nn.Sequential:
    """A plain chain: three convolutional blocks, global pooling, an emotion head."""
    return nn.Sequential(ConvBlock(32, 16), ConvBlock(16, 16), ConvBlock(16, 16), nn.AdaptiveAvgPool1d(1),
                         nn.Flatten(), nn.Linear(16, 4))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


@pytest.fixture(scope="module")
def speech(workspace: Path) -> Path:
    """48 utterances of 24 speakers cut to one second; gender is in every voice's pitch."""
    corpus = tiny_corpus(workspace / "corpus", preset="ravdess-like", per_speaker=2, seed=1)
    for utterance in corpus.utterances:
        audio, rate = soundfile.read(str(utterance.path))
        soundfile.write(str(utterance.path), audio[:rate], rate)
    return corpus.root / "manifest.csv"


@pytest.fixture(scope="module")
def frontend_file(workspace: Path) -> Path:
    path = workspace / "frontend.json"
    path.write_text(LLD_FRONTEND.model_dump_json())
    return path


@pytest.fixture(scope="module")
def originals() -> dict[str, nn.Module]:
    modules = {}
    for topology in RECURRENT:
        torch.manual_seed(0)
        modules[topology] = TOPOLOGIES[topology]().eval()
    return modules


@pytest.fixture(scope="module")
def handed_over(originals, workspace: Path, frontend_file: Path) -> dict[tuple[str, str], list[str]]:
    """Each case as the CLI's model arguments: a factory with its state dict, or an ONNX file."""
    arguments: dict[tuple[str, str], list[str]] = {}
    for topology, module in originals.items():
        weights = workspace / f"{topology}.pt"
        torch.save(module.state_dict(), weights)
        arguments[topology, "eager"] = [FACTORY[topology], "--weights", str(weights), "--frontend", str(frontend_file)]
        onnx_file = torchscript_onnx(module, workspace / f"{topology}.onnx")
        arguments[topology, "onnx"] = [str(onnx_file), "--frontend", str(frontend_file)]
    return arguments


def loaded(handed_over, topology: str, form: str, cache_dir: Path) -> TargetModel:
    """The model the CLI would load for a case."""
    arguments = handed_over[topology, form]
    options = dict(zip(arguments[1::2], arguments[2::2]))
    weights = Path(options["--weights"]) if "--weights" in options else None
    return load_model(arguments[0], frontend=Path(options["--frontend"]), weights=weights, cache_dir=cache_dir)


class Reports:
    """Quick ``leakage`` and ``robustness`` reports of each case, each run once, when a test first asks."""

    def __init__(self, handed_over: dict[tuple[str, str], list[str]], speech: Path, folder: Path) -> None:
        self.handed_over, self.speech, self.folder = handed_over, speech, folder
        self.made: dict[tuple[str, str, str], dict] = {}

    def __call__(self, topology: str, form: str, command: str) -> dict:
        key = (topology, form, command)
        if key not in self.made:
            options = {
                "leakage": ["--scenarios", "worst", "--attackers", "generic", "--folds", "2",
                            "--layers", ",".join(AUDITED[topology])],
                "robustness": ["--eps", "0,0.05", "--gradient", "white-box"],
            }[command]
            out = self.folder / f"{topology}-{form}-{command}.json"
            code, _, stderr = cli(command, *self.handed_over[topology, form], "--corpus", str(self.speech), "--quick",
                                  *options, "--out", str(out), "--quiet")
            assert code == 0, stderr
            self.made[key] = json.loads(out.read_text())
        return self.made[key]


@pytest.fixture(scope="module")
def reports(handed_over, speech: Path, workspace: Path) -> Reports:
    return Reports(handed_over, speech, workspace)


def worst_rows(report: dict, layer: str) -> list[dict]:
    """The worst-case scenario's attackers on ``layer`` (not the probe and the nested choice, also worst rows)."""
    return [row for row in report["leakage"]["results"] if row["layer"] == layer and row["scenario"] == "worst"
            and row["attacker_design"] not in ("linear-probe", "nested-choice")]


@pytest.mark.parametrize("topology,form", CASES)
def test_layers_lists_the_recurrent_layers(handed_over, topology: str, form: str) -> None:
    code, stdout, stderr = cli("layers", *handed_over[topology, form], "--json")
    assert code == 0, stderr
    rows = {row["name"]: row for row in json.loads(stdout)}
    cell = {"lstm": "lstm", "crnn": "gru"}[topology]
    for name in RECURRENT[topology]:
        assert cell in rows[name]["kind"].lower(), rows[name]
        assert len(rows[name]["shape"]) == 3 and rows[name]["shape"][-1] == HIDDEN, rows[name]


@pytest.mark.parametrize("topology,form", CASES)
def test_leakage_has_worst_case_rows_on_every_recurrent_layer(reports, topology: str, form: str) -> None:
    report = reports(topology, form, "leakage")
    assert report["leakage"]["target_family"] == "recurrent"
    assert report["leakage"]["skipped"] == []
    shapes = {row["name"]: row["shape"] for row in report["model"]["layers"]}
    for layer in AUDITED[topology]:
        rows = worst_rows(report, layer)
        assert {row["attacker_design"] for row in rows} == set(SAME_ARCHITECTURE_DESIGNS), (layer, rows)
        # The attacker read the whole [time, hidden] map of the tap, not a final state or a pooled vector.
        assert all(row["n_features"] == int(np.prod(shapes[layer][1:])) for row in rows), (layer, shapes[layer])


def test_planted_gender_is_found_on_every_recurrent_layer(reports) -> None:
    """The voices carry gender in their pitch and random recurrent weights pass it on: the worst-case
    attacker on each recurrent layer must find it (empty or mis-tapped rows could not), alike on the
    eager model and on its ONNX export, which tap the same values."""
    found = {}
    for form in FORMS:
        for layer in RECURRENT["lstm"]:
            rows = worst_rows(reports("lstm", form, "leakage"), layer)
            assert len(rows) == len(SAME_ARCHITECTURE_DESIGNS), (form, layer)
            for row in rows:
                assert row["balanced_accuracy"] >= 0.75 and row["p_value"] <= 0.05, (form, layer, row["balanced_accuracy"])
                found[form, layer, row["attacker_design"]] = row["balanced_accuracy"]
    for (form, layer, design), accuracy in found.items():
        assert abs(accuracy - found["eager", layer, design]) <= 0.1, (form, layer, design)


@pytest.mark.parametrize("topology,form", CASES)
def test_recurrent_taps_are_batch_time_hidden(handed_over, topology: str, form: str, workspace: Path) -> None:
    model = loaded(handed_over, topology, form, workspace)
    layers = {layer.name: layer for layer in model.layers()}
    assert target_family(model.layers()) == "recurrent"
    inputs = model.example_inputs(batch=3)
    frames = inputs["features"].shape[2]
    longer = {name: np.concatenate([x, x[..., : frames // 2]], axis=2) for name, x in inputs.items()}
    for name in RECURRENT[topology]:
        assert layers[name].time_axis == 1, layers[name]
        assert layers[name].shape == (1, frames // FRAMES_PER_STEP[topology], HIDDEN), layers[name]
        for batch in (inputs, longer):
            tapped = model.forward(batch, [name]).layers[name]
            steps = batch["features"].shape[2] // FRAMES_PER_STEP[topology]
            assert tapped.shape == (3, steps, HIDDEN), (name, tapped.shape)


@pytest.mark.parametrize("topology,form", CASES)
def test_robustness_is_white_box(reports, topology: str, form: str) -> None:
    robustness = reports(topology, form, "robustness")["robustness"]
    assert robustness["gradient_fallback"] is None
    probes = {(row["method"], row["gradient"]) for row in robustness["results"] if row["eps"] > 0}
    assert probes == {("fgsm", "white-box"), ("pgd", "white-box")}


def test_onnx_lstm_gradients_agree_with_the_eager_model(originals, handed_over, workspace: Path) -> None:
    """The differentiable path of the TorchScript-exported LSTM (onnx2torch with ser-audit's LSTM
    converter) gives the eager model's input gradients, at the exported length and a longer one."""
    model = loaded(handed_over, "lstm", "onnx", workspace)
    assert target_family(model.layers()) == "recurrent"
    converted, eager = model.differentiable(), originals["lstm"]
    features = torch.from_numpy(model.example_inputs(batch=3)["features"])
    features = features + torch.randn(features.shape, generator=torch.Generator().manual_seed(0)) * 3
    labels = torch.tensor([0, 1, 2])
    for batch in (features, torch.cat([features, features[..., :40]], dim=2)):
        gradients = []
        for module in (eager, converted):
            x = batch.clone().requires_grad_(True)
            nn.functional.cross_entropy(module(x), labels).backward()
            assert x.grad is not None
            gradients.append(x.grad.flatten())
        assert gradients[0].abs().max() > 0
        assert nn.functional.cosine_similarity(gradients[0], gradients[1], dim=0) > 0.999
        assert torch.allclose(gradients[1], gradients[0], rtol=1e-4, atol=1e-4 * float(gradients[0].abs().max()))


@pytest.mark.parametrize("chain,block", [("blocks", "1"), ("resnet", "layer1.1")])
def test_middle_block_of_a_torchscript_onnx_chain_gets_worst_case_rows(
    chain: str, block: str, speech: Path, frontend_file: Path, workspace: Path
) -> None:
    torch.manual_seed(0)
    module = chain_of_blocks() if chain == "blocks" else TOPOLOGIES[chain]()
    onnx_file = torchscript_onnx(module, workspace / f"{chain}.onnx")
    code, stdout, stderr = cli("layers", str(onnx_file), "--frontend", str(frontend_file), "--json")
    assert code == 0, stderr
    names = [row["name"] for row in json.loads(stdout)]
    assert block in names[1:-1], names  # a middle layer
    out = workspace / f"{chain}-leakage.json"
    code, _, stderr = cli("leakage", str(onnx_file), "--frontend", str(frontend_file), "--corpus", str(speech),
                          "--quick", "--scenarios", "worst", "--attackers", "generic", "--folds", "2", "--layers", block,
                          "--out", str(out), "--quiet")
    assert code == 0, stderr
    report = json.loads(out.read_text())
    assert report["leakage"]["target_family"] == "convolutional"
    assert report["leakage"]["skipped"] == [], report["leakage"]["skipped"]
    assert {row["attacker_design"] for row in worst_rows(report, block)} == set(SAME_ARCHITECTURE_DESIGNS)


def test_a_layer_named_like_an_index_is_selected_by_name() -> None:
    """An ``nn.Sequential``'s children are named ``0``, ``1``...: ``--layers 1`` is the block named 1."""
    model = EagerTorchModel(chain_of_blocks(), LLD_FRONTEND)
    names = [layer.name for layer in model.layers()]
    assert names.index("1") != 1
    assert [layer.name for layer in model.select_layers("1")] == ["1"]
    assert [layer.name for layer in model.select_layers("1-2")] == names[1:3]  # not a name: a range
