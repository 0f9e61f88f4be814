"""transformers checkpoints as models: tiny save_pretrained folders built offline from configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from ser_audit.models.loading import load_model  # noqa: E402
from ser_audit.testing.checkpoints import EMOTIONS, KINDS, tiny_checkpoint  # noqa: E402

AUDITED = ("wav2vec2", "wavlm", "hubert", "whisper")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {kind: tiny_checkpoint(kind, root / kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_a_folder_is_a_model_with_its_blocks_listed(checkpoints, kind, tmp_path) -> None:
    import transformers as hf

    model = load_model(str(checkpoints[kind]), cache_dir=tmp_path)
    assert model.format == "transformers" and model.frontend.emotions == list(EMOTIONS)
    listed = [layer.name for layer in model.listed_layers()]
    blocks = [name for name in listed if ".layers." in name]
    assert len(blocks) == 2 and listed[-2:] == ["projector", "classifier"]
    assert len(model.listed_layers(everything=True)) > 3 * len(listed)  # the leaves inside the blocks
    assert [layer.name for layer in model.default_taps()] == [*blocks, "projector"]
    # The logits are the checkpoint's own, preprocessing included (what its pipeline computes).
    audio = np.random.default_rng(0).standard_normal((2, 16_000)).astype(np.float32) * 0.1
    extractor = hf.AutoFeatureExtractor.from_pretrained(str(checkpoints[kind]))
    reference = hf.AutoModelForAudioClassification.from_pretrained(str(checkpoints[kind])).eval()
    features = extractor(list(audio), sampling_rate=16_000, return_tensors="pt")
    name = "input_features" if kind == "whisper" else "input_values"
    with torch.no_grad():
        expected = reference(**{name: features[name]}).logits.numpy()
    ours = model.forward({model.frontend.input_name: audio}).logits
    np.testing.assert_allclose(ours, expected, atol=2e-4)
    assert model.loading["transformers"] == hf.__version__ and "never padded" in model.loading["padding"]


def test_group_norm_and_stable_layer_norm_are_recorded(checkpoints, tmp_path) -> None:
    wav2vec2 = load_model(str(checkpoints["wav2vec2"]), cache_dir=tmp_path)
    wavlm = load_model(str(checkpoints["wavlm"]), cache_dir=tmp_path)
    assert "group-norm" in wav2vec2.loading["encoder_normalisation"]
    assert "stable" in wavlm.loading["encoder_normalisation"]
    assert "wavlm.encoder.layer_norm" in [layer.name for layer in wavlm.listed_layers()]


@pytest.mark.parametrize("kind", ["wav2vec2", "wavlm", "whisper"])
def test_same_architecture_cut_is_sliced_from_the_block_list(checkpoints, kind, tmp_path) -> None:
    """Tap a block, run the rest through the cut: the model's own logits, with no fx trace."""
    model = load_model(str(checkpoints[kind]), cache_dir=tmp_path)
    audio = np.random.default_rng(1).standard_normal((2, 16_000)).astype(np.float32) * 0.1
    for tap in [*model.encoder_blocks(), "projector"]:
        result = model.forward({model.frontend.input_name: audio}, taps=[tap])
        part = model.downstream(tap)
        with torch.no_grad():
            logits = part.head(part.body(torch.from_numpy(result.layers[tap])))
        np.testing.assert_allclose(logits.numpy(), result.logits, atol=1e-4, err_msg=tap)


@pytest.mark.parametrize("kind", AUDITED)
def test_quick_leakage_robustness_and_harden(run_cli, checkpoints, manifest, kind, tmp_path) -> None:
    folder = str(checkpoints[kind])
    listed = run_cli("layers", folder, "--json", "--quiet")
    assert listed.code == 0, listed.stderr
    blocks = [row["name"] for row in json.loads(listed.stdout) if ".layers." in row["name"]]
    assert len(blocks) == 2

    out = tmp_path / "leakage.json"
    result = run_cli("leakage", folder, "--corpus", str(manifest), "--quick", "--out", str(out), "--format", "json",
                     "--quiet")
    assert result.code == 0, result.stderr
    report = json.loads((out / "report.json").read_text() if out.is_dir() else out.read_text())
    rows = report["leakage"]["results"]
    assert {row["layer"] for row in rows if row["attacker_design"] == "linear-probe"} >= set(blocks)
    assert any(row["layer"] in blocks and row["attacker_design"] == "same-architecture" for row in rows)
    assert report["model"]["format"] == "transformers"
    assert report["model"]["loading"]["padding"].startswith("equal-length")
    assert report["environment"]["packages"]["transformers"]

    robust = run_cli("robustness", folder, "--corpus", str(manifest), "--domain", "waveform", "--eps", "0,0.01",
                     "--pgd-steps", "2", "--out", str(tmp_path / "robust.json"), "--quiet")
    assert robust.code == 0, robust.stderr
    robustness = json.loads((tmp_path / "robust.json").read_text())["robustness"]
    assert robustness["results"][1]["snr_db"] is not None  # waveform units, through the folder's own module
    assert robustness["gradient_fallback"] is None
    assert {row["gradient"] for row in robustness["results"]} == {"white-box"}

    hardened = tmp_path / "hardened.pt"
    harden = run_cli("harden", folder, "--method", "vanilla", "--out", str(hardened), "--corpus", str(manifest),
                     "--epochs", "2", "--warmup-epochs", "1", "--quiet")
    assert harden.code == 0, harden.stderr
    assert load_model(str(hardened), cache_dir=tmp_path).frontend.emotions == list(EMOTIONS)


def test_a_checkpoint_without_its_head_is_refused(run_cli, tmp_path) -> None:
    folder = tiny_checkpoint("wav2vec2", tmp_path / "headless", head=False)
    result = run_cli("layers", str(folder))
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert "classifier.weight" in result.stderr and "projector.weight" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_whose_label_count_the_saved_head_does_not_have_is_refused(run_cli, checkpoints, tmp_path) -> None:
    import json
    import shutil

    folder = tmp_path / "six"
    shutil.copytree(checkpoints["wav2vec2"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("label2id", None)
    config["id2label"] = {str(i): name for i, name in enumerate(["anger", "disgust", "fear", "joy", "neutral", "sad"])}
    (folder / "config.json").write_text(json.dumps(config))
    result = run_cli("layers", str(folder))
    assert result.code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "6 labels in the config" in result.stderr and "Traceback" not in result.stderr
    damaged = tmp_path / "damaged"
    shutil.copytree(checkpoints["wav2vec2"], damaged)
    for weights in damaged.glob("*.safetensors"):
        weights.write_bytes(b"\xff" * 1000)
    result = run_cli("layers", str(damaged))
    assert result.code == 2 and "its weights cannot be read" in result.stderr, result.stderr


def test_a_spectrogram_checkpoint_is_refused_naming_what_it_reads(run_cli, tmp_path) -> None:
    """An Audio Spectrogram Transformer was fed the waveform, or with a spec given, audited through waveform
    normalisation applied to its log-mel."""
    import transformers

    emotions = list(EMOTIONS)
    config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                                    num_mel_bins=32, max_length=128, num_labels=len(emotions),
                                    id2label=dict(enumerate(emotions)), label2id={e: i for i, e in enumerate(emotions)})
    folder = tmp_path / "ast"
    transformers.ASTForAudioClassification(config).save_pretrained(folder)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=128).save_pretrained(folder)
    result = run_cli("layers", str(folder))
    assert result.code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "reads the features ASTFeatureExtractor computes (a spectrogram, not the waveform)" in result.stderr


def test_bin_weights_are_loaded_weights_only(run_cli, checkpoints, tmp_path) -> None:
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(checkpoints["hubert"], folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    assert run_cli("layers", str(folder), "--quiet").code == 0

    class Payload:  # unpickling this would run code
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weight": Payload()}, folder / "pytorch_model.bin")
    result = run_cli("layers", str(folder))
    assert result.code == 2 and "weights-only" in result.stderr and "pwned" not in result.stdout


def test_hub_ids_fail_in_one_line_offline(run_cli, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    result = run_cli("layers", "hf:no-such-org/no-such-model")
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert "hf:no-such-org/no-such-model" in result.stderr and "--local-dir" in result.stderr


def test_a_folder_without_config_says_what_to_pass(run_cli, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli("layers", str(tmp_path / "empty"))
    assert result.code == 2 and "config.json" in result.stderr


def test_missing_transformers_gives_the_install_hint(run_cli, checkpoints, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    result = run_cli("layers", str(checkpoints["wav2vec2"]))
    assert result.code == 2 and "pip install 'ser-audit[transformers]'" in result.stderr


@pytest.fixture(scope="module")
def exports(checkpoints, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each audited checkpoint exported to ONNX (dynamic batch and time) from its audited module."""
    from ser_audit.models.export import export_model

    root = tmp_path_factory.mktemp("exports")
    paths = {}
    for kind in AUDITED:
        model = load_model(str(checkpoints[kind]), cache_dir=root)
        paths[kind] = root / f"{kind}.onnx"
        export_model(model.differentiable(), model.frontend, paths[kind])
    return paths


@pytest.mark.parametrize("kind", AUDITED)
def test_an_onnx_export_lists_the_folders_layers_and_taps_them_alike(checkpoints, exports, kind, tmp_path) -> None:
    from ser_audit.leakage.families import target_family

    folder = load_model(str(checkpoints[kind]), cache_dir=tmp_path)
    exported = load_model(str(exports[kind]), cache_dir=tmp_path)
    listed = [layer.name for layer in folder.listed_layers()]
    assert [layer.name for layer in exported.listed_layers()] == listed
    assert [layer.name for layer in exported.default_taps()] == [layer.name for layer in folder.default_taps()]
    assert target_family(exported.layers(), exported.operators()) == "transformer"
    samples = folder.frontend.num_samples or 20_000  # another length than the export's example
    audio = np.random.default_rng(2).standard_normal((3, samples)).astype(np.float32) * 0.1
    ours, theirs = (model.forward({folder.frontend.input_name: audio}, taps=listed) for model in (folder, exported))
    np.testing.assert_allclose(theirs.logits, ours.logits, atol=1e-4)
    for name in listed:
        np.testing.assert_allclose(theirs.layers[name], ours.layers[name], atol=1e-4, err_msg=name)


@pytest.mark.parametrize("kind", AUDITED)
def test_an_onnx_export_is_audited_white_box(run_cli, exports, manifest, kind, tmp_path) -> None:
    model = str(exports[kind])
    out = tmp_path / "leakage.json"
    result = run_cli("leakage", model, "--corpus", str(manifest), "--quick", "--out", str(out), "--format", "json",
                     "--quiet")
    assert result.code == 0, result.stderr
    report = json.loads(out.read_text())
    rows = report["leakage"]["results"]
    blocks = [name for name in (layer["name"] for layer in report["model"]["layers"]) if name.count(".layers.") and
              name.split(".layers.")[1].isdigit()]
    assert {row["layer"] for row in rows if row["attacker_design"] == "linear-probe"} >= set(blocks)
    assert any(row["layer"] in blocks and row["attacker_design"] == "same-architecture" for row in rows)
    assert report["leakage"]["target_family"] == "transformer"

    robust = run_cli("robustness", model, "--corpus", str(manifest), "--domain", "waveform", "--eps", "0,0.01",
                     "--pgd-steps", "2", "--out", str(tmp_path / "robust.json"), "--quiet")
    assert robust.code == 0, robust.stderr
    robustness = json.loads((tmp_path / "robust.json").read_text())["robustness"]
    assert robustness["gradient_fallback"] is None
    assert {row["gradient"] for row in robustness["results"]} == {"white-box"}

    harden = run_cli("harden", model, "--method", "vanilla", "--out", str(tmp_path / "hardened.onnx"), "--corpus",
                     str(manifest), "--epochs", "2", "--warmup-epochs", "1", "--quiet")
    assert harden.code == 0, harden.stderr
    # The trained weights are written into the graph it came from: its layers and its dynamic length stay.
    original, hardened = (load_model(path, cache_dir=tmp_path) for path in (model, str(tmp_path / "hardened.onnx")))
    assert [layer.name for layer in hardened.listed_layers()] == [layer.name for layer in original.listed_layers()]
    samples = original.frontend.num_samples or 23_456
    audio = {original.frontend.input_name: np.random.default_rng(3).standard_normal((2, samples)).astype(np.float32)}
    assert hardened.forward(audio).logits.shape == (2, len(EMOTIONS))
    assert not np.allclose(hardened.forward(audio).logits, original.forward(audio).logits, atol=1e-6)


def test_a_weighted_layer_sum_head_keeps_the_projector_cut(tmp_path) -> None:
    """The projector comes after the weighted sum: its cut is the mean and the head (it was refused with the blocks')."""
    from ser_audit.models.subnetwork import Unavailable

    model = load_model(str(tiny_checkpoint("wav2vec2", tmp_path / "weighted", weighted_layer_sum=True)), cache_dir=tmp_path)
    audio = np.random.default_rng(2).standard_normal((2, 16_000)).astype(np.float32) * 0.1
    result = model.forward({model.frontend.input_name: audio}, taps=["projector"])
    part = model.downstream("projector")
    with torch.no_grad():
        logits = part.head(part.body(torch.from_numpy(result.layers["projector"])))
    np.testing.assert_allclose(logits.numpy(), result.logits, atol=1e-4)
    with pytest.raises(Unavailable, match="weighted sum"):
        model.downstream(model.encoder_blocks()[0])
