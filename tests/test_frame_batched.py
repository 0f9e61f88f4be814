"""Frame-batched models (a CREPE-like network on frames, the frames of all utterances as one batch): their
layers are regrouped per utterance, frames as the time axis, and a planted attribute is found; a layer
whose rows cannot be regrouped is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_audit.errors import LayerSelectionError
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.frames import FrameBatching, frames_per_utterance, regroup, row_order
from ser_audit.testing import tiny_corpus
from ser_audit.testing.frames import FRAME, FRAMES_FRONTEND, HOP, FrameBatchedEmotion, write_frame_batched

FAST = ["--scenarios", "s2", "--attackers", "generic", "--quick", "--quiet", "--format", "json"]
FRAME_LAYERS = ["pitch.bank", "pitch", "noise", "conv", "relu", "frame_pool", "flatten", "projection"]
FRAMES = (16_000 - FRAME) // HOP + 1  # per 1 s utterance


class FrameMajor(FrameBatchedEmotion):
    """The same network with its rows frame by frame (u0f0, u1f0, ..., u0f1, ...)."""

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        return audio.unfold(1, FRAME, HOP).transpose(0, 1).reshape(-1, 1, FRAME)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pitch = self.pitch(self.frames(audio))
        hidden = self.flatten(self.frame_pool(self.relu(self.conv(torch.cat([pitch, self.noise(pitch)], dim=1)))))
        per_frame = self.projection(hidden)
        return self.head(per_frame.reshape(-1, audio.shape[0], per_frame.shape[-1]).mean(dim=0))


@pytest.fixture(scope="module")
def corpus_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = tiny_corpus(tmp_path_factory.mktemp("frames-corpus") / "corpus", per_speaker=4, seed=1)
    return corpus.root / "manifest.csv"


def _eager(module: torch.nn.Module) -> EagerTorchModel:
    torch.manual_seed(0)
    return EagerTorchModel(module.eval(), FRAMES_FRONTEND)


def test_layers_lists_the_frame_layers_per_utterance_with_frames_as_time(run_cli, tmp_path: Path) -> None:
    model, weights = write_frame_batched(tmp_path)
    result = run_cli("layers", model, "--weights", str(weights), "--json")
    assert result.code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    shapes = {name: row["shape"] for name, row in rows.items()}
    assert shapes["pitch"] == [1, FRAMES, 10, 4] and shapes["flatten"] == [1, FRAMES, 16] and shapes["head"] == [1, 4]
    # What the listing says of them: frames per utterance, the frames as the time axis.
    assert (rows["pitch"]["frames"], rows["pitch"]["time_axis"]) == (FRAMES, 1) and rows["head"]["frames"] is None
    assert "regrouped" in run_cli("layers", model, "--weights", str(weights)).stdout
    layers = {layer.name: layer for layer in _eager(FrameBatchedEmotion()).layers()}
    assert [name for name, layer in layers.items() if layer.frames == FRAMES and layer.time_axis == 1] == FRAME_LAYERS
    assert layers["head"].frames is None and layers["head"].time_axis is None


class ZerosLike(torch.nn.Module):
    def forward(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(like)


@pytest.mark.parametrize("module,order", [(FrameBatchedEmotion, "utterance"), (FrameMajor, "frame")])
def test_each_utterance_gets_its_own_frames(module: type, order: str) -> None:
    network = module()
    network.noise = ZerosLike()  # deterministic, so that each utterance's rows can be compared
    model = _eager(network)
    model.layers()
    assert model._frame_batching is not None and model._frame_batching["pitch"].order == order
    audio = (0.1 * torch.randn(3, 16_000, generator=torch.Generator().manual_seed(1))).numpy()
    together = model.forward({"audio": audio}, ["pitch", "projection"]).layers
    assert together["pitch"].shape == (3, FRAMES, 10, 4)
    for row in range(3):
        alone = model.forward({"audio": audio[row : row + 1]}, ["pitch", "projection"]).layers
        for name in ("pitch", "projection"):
            assert np.allclose(together[name][row], alone[name][0], atol=1e-5), (name, row)


def test_quick_leakage_finds_the_planted_pitch_per_utterance(run_cli, corpus_manifest: Path, tmp_path: Path) -> None:
    model, weights = write_frame_batched(tmp_path)
    out = tmp_path / "report"
    result = run_cli("leakage", model, "--weights", str(weights), "--corpus", str(corpus_manifest),
                     "--layers", "pitch,noise,projection", *FAST, "--out", str(out))
    assert result.code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    probes = {row["layer"]: row for row in report["leakage"]["results"] if row["attacker_design"] == "linear-probe"}
    utterances = report["corpus"]["n_utterances"]
    assert {row["n_test"] for row in probes.values()} == {utterances}  # one row per utterance, not per frame
    assert probes["pitch"]["significant"] and probes["pitch"]["balanced_accuracy"] > 0.8
    assert probes["projection"]["significant"]  # reads the pitch bands
    assert not probes["noise"]["significant"] and probes["noise"]["balanced_accuracy"] < 0.7


def test_without_the_plant_the_frame_layers_do_not_leak(run_cli, corpus_manifest: Path, tmp_path: Path) -> None:
    model, weights = write_frame_batched(tmp_path, leak=False)
    out = tmp_path / "report"
    result = run_cli("leakage", model, "--weights", str(weights), "--corpus", str(corpus_manifest),
                     "--layers", "pitch,projection", *FAST, "--out", str(out))
    assert result.code == 0, result.stderr
    probes = [row for row in json.loads((out / "report.json").read_text())["leakage"]["results"]
              if row["attacker_design"] == "linear-probe"]
    assert len(probes) == 2 and not any(row["significant"] for row in probes)


def test_frames_straddling_utterances_are_refused_in_one_line(run_cli, corpus_manifest: Path, tmp_path: Path) -> None:
    model, weights = write_frame_batched(tmp_path, cross_utterance=True)
    listed = run_cli("layers", model, "--weights", str(weights), "--json")
    assert listed.code == 0  # listing still works, and says which layers are refused and why
    assert "not in proportion" in {row["name"]: row for row in json.loads(listed.stdout)}["pitch"]["refused"]
    for layers in (["--layers", "pitch"], []):  # named, and the default taps (all refused)
        result = run_cli("leakage", model, "--weights", str(weights), "--corpus", str(corpus_manifest), *layers,
                         *FAST, "--out", str(tmp_path / "report"))
        assert result.code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert "cannot be regrouped per utterance" in lines[0] and "not in proportion" in lines[0]
    assert "layer pitch " in run_cli("leakage", model, "--weights", str(weights), "--corpus", str(corpus_manifest),
                                     "--layers", "pitch", *FAST, "--out", str(tmp_path / "r")).stderr


def test_frames_per_utterance_needs_growth_in_proportion() -> None:
    assert frames_per_utterance((60, 10, 4), (90, 10, 4)) == 30
    assert frames_per_utterance((2, 10), (3, 10)) is None  # an ordinary batch axis
    assert frames_per_utterance((61, 10), (92, 10)) is None  # grows, but not in proportion
    assert frames_per_utterance((60, 10), (90, 11)) is None
    assert frames_per_utterance((60, 10), (60, 10)) is None  # does not grow


def test_row_order_reads_which_rows_hold_the_second_utterance() -> None:
    base = np.zeros((6, 2))
    consecutive, interleaved, both = base.copy(), base.copy(), base.copy()
    consecutive[3:] = 1
    interleaved[1::2] = 1
    both[[0, 3]] = 1  # a row of the first utterance changed too: no order explains it
    assert row_order(base, consecutive, 3) == "utterance"
    assert row_order(base, interleaved, 3) == "frame"
    assert row_order(base, both, 3) is None
    assert row_order(base, base, 3) is None


def test_regroup_both_orders_and_refuses_a_remainder() -> None:
    rows = np.arange(6)[:, None]
    assert regroup("x", rows, 2, FrameBatching(3, "utterance"))[..., 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert regroup("x", rows, 2, FrameBatching(3, "frame"))[..., 0].tolist() == [[0, 2, 4], [1, 3, 5]]
    with pytest.raises(LayerSelectionError, match="layer x is frame-batched .* 6 rows for 4 utterances"):
        regroup("x", rows, 4, FrameBatching(3, "utterance"))


@pytest.mark.parametrize("module", ["ser_audit.models.frames", "ser_audit.testing.frames"])
def test_the_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
