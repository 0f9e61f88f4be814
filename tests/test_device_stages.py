"""--device reaches every stage: extraction, the robustness probes, hardening and zoo training.

Without a GPU: each stage run on an explicit device (``cpu:0``, a name for the CPU that no default
spells) gives exactly the default run's numbers and moves its model there; the flag given to the
CLI reaches each stage, resolved; a GPU asked for where there is none fails in one line. With a GPU
(skipped otherwise): a tiny leakage audit, robustness probe, hardening and training run on CUDA and
agree with the CPU within the tolerances stated in the test.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.errors import ConfigError
from ser_audit.frontend.features import FrontEnd
from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.interface import Placement
from ser_audit.models.zoo import ReferenceModel, Stage
from ser_audit.testing import tiny_corpus

EMOTIONS = ["neutral", "happy", "sad", "angry"]
SPEC = FrontEndSpec(features=Features(kind="log_mel", n_fft=256, hop_length=128, n_mels=16),
                    layout=["batch", "channel", "freq", "time"], duration_s=0.5, emotions=EMOTIONS)
CROPPED = SPEC.model_copy(update={"duration_s": None, "emotions": []})


class Tracked(nn.Module):
    """A small CNN that remembers every device it is moved to (``moves``)."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6, 6)
        self.head = nn.Linear(6, n_classes)
        self.moves: list[str] = []

    def to(self, *args: Any, **kwargs: Any) -> "Tracked":
        self.moves.append(str(args[0] if args else kwargs["device"]))
        return super().to(*args, **kwargs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.flatten(self.pool(self.relu(self.conv(features)))))))


def tracked(seed: int = 0) -> Tracked:
    torch.manual_seed(seed)
    return Tracked()


def digest(*arrays: Any) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        value = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        sha.update(np.ascontiguousarray(value).tobytes())
    return sha.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return tiny_corpus(tmp_path_factory.mktemp("devices") / "corpus", per_speaker=4, seed=0)


# A device every tensor accepts that no default spells, so a stage that drops the argument is seen.
EXPLICIT = "cpu:0"


def test_extraction_runs_where_the_model_is_placed_and_puts_it_back(corpus: Corpus) -> None:
    from ser_audit.embeddings.extract import extract

    default = EagerTorchModel(tracked(), SPEC)
    explicit = EagerTorchModel(tracked(), SPEC)
    a = extract(default, corpus, default.layers())
    b = extract(explicit, corpus, explicit.layers(), device=EXPLICIT)
    assert digest(*a.layers.values(), a.logits) == digest(*b.layers.values(), b.logits)
    assert a.device == "cpu" and b.device == EXPLICIT and not b.notes
    assert explicit.module.moves == [EXPLICIT, "cpu"] and explicit.device == "cpu"  # placed, then put back
    again = extract(explicit, corpus, explicit.layers(), device=EXPLICIT)  # a temporary store: computed again
    assert again.device == EXPLICIT


def test_a_format_that_cannot_move_says_so_in_the_notes(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    from ser_audit.embeddings.extract import extract

    model = EagerTorchModel(tracked(), SPEC)
    asked: list[str] = []

    def place(device: str) -> Placement:
        asked.append(device)
        return Placement("cpu", None if device == "cpu" else f"stays on the CPU, not {device}")

    monkeypatch.setattr(model, "place", place)
    embeddings = extract(model, corpus, model.layers(), device="cuda:3")
    assert asked == ["cuda:3", "cpu"] and embeddings.device == "cpu"
    assert embeddings.notes == ["stays on the CPU, not cuda:3"]


def test_onnx_without_cudas_provider_stays_on_the_cpu_with_a_note(onnx_model: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    from ser_audit.models.loading import load_model

    model = load_model(str(onnx_model), cache_dir=tmp_path)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    placement = model.place("cuda:1")
    assert placement.device == "cpu" and "onnxruntime-gpu" in (placement.note or "") and model.device == "cpu"
    built: list[Any] = []
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(type(model), "_session", lambda self, proto: built.append(self._providers))
    assert model.place("cuda:1") == Placement("cuda:1") and model.device == "cuda:1"
    assert built == [[("CUDAExecutionProvider", {"device_id": "1"}), "CPUExecutionProvider"]]
    model.place("cpu")
    assert built[-1] == ["CPUExecutionProvider"] and model.device == "cpu"


def test_probes_and_hardening_on_an_explicit_device_give_the_cpu_numbers(corpus: Corpus) -> None:
    from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model
    from ser_audit.robustness.hardening import HardeningRecipe, harden

    def rows(result: tuple[list[Any], float]) -> list[Any]:
        return [(r.method, r.eps, r.uar, r.mean_linf, r.mean_l2, r.snr_db) for r in result[0]] + [result[1]]

    module = tracked()
    model = EagerTorchModel(module, SPEC)
    data = evaluation_set(model, corpus)
    for settings in (ProbeSettings(grid=(0.0, 0.1), pgd_eps=0.05, pgd_steps=2, seed=3),
                     ProbeSettings(grid=(0.0, 0.05), pgd_eps=0.05, pgd_steps=2, domain="waveform", seed=1)):
        assert model.differentiable() is module
        default = probe_model(module, data, settings, FrontEnd(SPEC))
        module.moves.clear()
        explicit = probe_model(module, data, settings, FrontEnd(SPEC), device=EXPLICIT)
        assert rows(default) == rows(explicit)
        assert module.moves == [EXPLICIT, "cpu"]
    recipe = HardeningRecipe(method="similarity", epochs=2, warmup_epochs=1, batch_size=16)
    default_module, explicit_module = tracked(), tracked()
    harden(default_module, model, corpus, recipe)
    harden(explicit_module, model, corpus, recipe, device=EXPLICIT)
    assert digest(*default_module.state_dict().values()) == digest(*explicit_module.state_dict().values())
    assert explicit_module.moves == [EXPLICIT, "cpu"]


@pytest.mark.parametrize("spec, stage", [(SPEC, Stage(epochs=2, batch_size=16)),
                                         (CROPPED, Stage(epochs=2, batch_size=16, random_crop_s=0.3))],
                         ids=["fixed-length", "random-crops"])
def test_zoo_training_on_an_explicit_device_gives_the_cpu_checkpoint(corpus: Corpus, tmp_path: Path, spec: FrontEndSpec,
                                                                     stage: Stage) -> None:
    from ser_audit.models.training import train_reference, write_checkpoint

    built: list[Tracked] = []

    def build(n_classes: int) -> nn.Module:
        built.append(Tracked(n_classes))
        return built[-1]

    reference = ReferenceModel("tracked", "test", "moves", build, spec, training=stage)
    default = train_reference(reference, cache_dir=tmp_path, corpora={"iemocap-like": corpus})
    explicit = train_reference(reference, cache_dir=tmp_path, corpora={"iemocap-like": corpus}, device=EXPLICIT)
    assert built[-1].moves == [EXPLICIT, "cpu"]  # trained there, handed back on the CPU
    assert digest(*default.module.state_dict().values()) == digest(*explicit.module.state_dict().values())
    assert default.metrics["held_out_uar"] == explicit.metrics["held_out_uar"]
    assert (default.metrics["training_device"], explicit.metrics["training_device"]) == ("cpu", EXPLICIT)
    write_checkpoint(explicit, tmp_path / "explicit.ckpt")
    saved = torch.load(str(tmp_path / "explicit.ckpt"), weights_only=True)["state_dict"]
    assert all(value.device.type == "cpu" for value in saved.values())


class _Stop(Exception):
    """Ends a stage once the spy has seen its device (training a reference model here would take minutes)."""


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """CUDA devices as far as ``--device`` resolution goes (torch itself is left alone: its optimisers would
    look for a driver), and a spy on every stage: each records the device it is given and runs on the CPU."""
    from ser_audit import devices
    from ser_audit.embeddings import extract as extraction
    from ser_audit.leakage.scenarios import run as scenarios
    from ser_audit.models import training, zoo
    from ser_audit.robustness import evaluate, hardening
    from ser_audit.runner import leakage

    def resolve(text: str) -> str:
        device = devices.parse_device(text)
        return "cuda" if device == "auto" else device

    for owner in (devices, leakage):
        monkeypatch.setattr(owner, "resolve_device", resolve)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Test GPU")
    seen: dict[str, list[str]] = {}

    def spy(owner: Any, name: str, stage: str, run: Callable[..., Any] | None = None) -> None:
        real = getattr(owner, name)

        def recording(*args: Any, device: str = "cpu", **kwargs: Any) -> Any:
            seen.setdefault(stage, []).append(device)
            if run is not None:
                return run(*args, device=device, **kwargs)
            return real(*args, device="cpu", **kwargs)

        monkeypatch.setattr(owner, name, recording)

    def stop(*_args: Any, **_kwargs: Any) -> Any:
        raise _Stop

    spy(extraction, "extract", "extraction")
    spy(evaluate, "probe_model", "probes")
    spy(hardening, "harden", "hardening")
    spy(training, "train_reference", "training", run=stop)
    spy(zoo, "load_or_train", "zoo", run=zoo.load_or_train)  # passes its device on, to the training spy
    real_scenarios = scenarios.run_scenarios

    def attackers(*args: Any, settings: Any, **kwargs: Any) -> Any:
        seen.setdefault("attackers", []).append(settings.device)
        return real_scenarios(*args, settings=dataclasses.replace(settings, device="cpu"), **kwargs)

    monkeypatch.setattr(scenarios, "run_scenarios", attackers)
    return seen


def test_the_device_flag_reaches_every_stage(fake_gpus: dict[str, list[str]], run_cli: Callable[..., Any], onnx_model: Path,
                                             manifest: Path, tmp_path: Path) -> None:
    common = ["--corpus", str(manifest), "--device", "cuda:1", "--cache-dir", str(tmp_path), "--quiet"]
    leakage = run_cli("leakage", str(onnx_model), "--layers", "pool4", "--scenarios", "s2", "--attackers", "generic",
                      "--quick", "--out", str(tmp_path / "leakage.json"), *common)
    assert leakage.code == 0, leakage.stderr
    assert set(fake_gpus.pop("extraction")) == {"cuda:1"}
    assert fake_gpus.pop("attackers") == ["cuda:1"]
    report = json.loads((tmp_path / "leakage.json").read_text())
    assert report["environment"]["device"] == "cuda:1 (Test GPU)" and report["config"]["device"] == "cuda:1"

    robustness = run_cli("robustness", str(onnx_model), "--eps", "0,0.1", "--pgd-steps", "1",
                         "--out", str(tmp_path / "robustness.json"), *common)
    assert robustness.code == 0, robustness.stderr
    assert fake_gpus.pop("probes") == ["cuda:1"]
    assert json.loads((tmp_path / "robustness.json").read_text())["environment"]["device"] == "cuda:1 (Test GPU)"

    harden = run_cli("harden", str(onnx_model), "--method", "vanilla", "--epochs", "1", "--warmup-epochs", "0",
                     "--out", str(tmp_path / "hardened.onnx"), *common)
    assert harden.code == 0, harden.stderr
    assert fake_gpus.pop("hardening") == ["cuda:1"] and fake_gpus.pop("probes") == ["cuda:1", "cuda:1"]

    run_cli("zoo", "train", "cnn4", "--out", str(tmp_path / "cnn4.onnx"), "--device", "cuda:1",
            "--cache-dir", str(tmp_path), "--quiet")
    assert fake_gpus.pop("zoo") == ["cuda:1"] and fake_gpus.pop("training") == ["cuda:1"]
    assert not fake_gpus


def test_a_zoo_model_trained_on_first_use_trains_on_the_device(fake_gpus: dict[str, list[str]], tmp_path: Path) -> None:
    from ser_audit.config import AuditConfig
    from ser_audit.runner.sources import Loader

    config = AuditConfig(model="zoo:cnn4", device="cuda:1", cache_dir=tmp_path)
    with pytest.raises(_Stop):
        Loader(config).model(config.model)
    assert fake_gpus == {"zoo": ["cuda:1"], "training": ["cuda:1"]}


@pytest.mark.parametrize("command", [
    ["robustness", "MODEL"],
    ["harden", "MODEL", "--method", "vanilla", "--out", "OUT/hardened.onnx"],
    ["zoo", "train", "cnn4", "--out", "OUT/cnn4.onnx"],
], ids=["robustness", "harden", "zoo-train"])
def test_a_gpu_that_is_not_there_fails_in_one_line(run_cli: Callable[..., Any], onnx_model: Path, manifest: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [part.replace("MODEL", str(onnx_model)).replace("OUT", str(tmp_path)) for part in command]
    corpus = ["--corpus", str(manifest)] if command[0] != "zoo" else []
    result = run_cli(*args, *corpus, "--device", "cuda", "--cache-dir", str(tmp_path), "--quiet")
    assert result.code == 2 and "no CUDA device" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "zoo").exists()  # nothing trained


def test_a_bad_device_name_is_a_config_error_before_any_work(tmp_path: Path) -> None:
    from ser_audit import api
    from ser_audit.robustness.hardening import HardeningRecipe

    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        api.harden_model("missing.onnx", tmp_path / "out.onnx", recipe=HardeningRecipe(method="vanilla"), device="tpu",
                         cache_dir=tmp_path)


# With a GPU: the same tiny runs on CUDA and on the CPU. GPU kernels round differently (and TF32 convolutions
# are on by default), and noise layers draw from the GPU's generator, so numbers are compared with tolerances:
# the leakage verdict of each layer must be the same, balanced accuracies within 0.1; robustness UAR within 0.1
# per row; hardening and training must run there and hand back CPU tensors, held-out UAR within 0.25.
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_leakage_verdicts_on_cuda_match_the_cpu(tmp_path: Path, corpus: Corpus) -> None:
    from ser_audit.api import leakage_audit
    from ser_audit.config import ModelSource
    from ser_audit.testing import write_planted_cnn

    spec, weights = write_planted_cnn(tmp_path, leak=True)
    reports = {device: leakage_audit(ModelSource(spec, weights=weights), corpus=str(corpus.root / "manifest.csv"),
                                     layers="pool1,fc_relu", scenarios="worst", attackers="generic", quick=True,
                                     device=device, cache_dir=tmp_path / device)
               for device in ("cpu", "cuda")}
    cpu, gpu = (reports[d].leakage for d in ("cpu", "cuda"))
    assert cpu is not None and gpu is not None and cpu.verdict is not None and gpu.verdict is not None
    assert (reports["cuda"].environment.device or "").startswith("cuda:")
    assert [(v.layer, v.verdict) for v in cpu.verdict.layers] == [(v.layer, v.verdict) for v in gpu.verdict.layers]
    for before, after in zip(cpu.results, gpu.results):
        assert (before.layer, before.scenario) == (after.layer, after.scenario)
        assert abs(before.balanced_accuracy - after.balanced_accuracy) <= 0.1


@cuda
def test_robustness_hardening_and_training_on_cuda_match_the_cpu(tmp_path: Path, corpus: Corpus) -> None:
    from ser_audit.embeddings.extract import extract
    from ser_audit.models.training import train_reference
    from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model
    from ser_audit.robustness.hardening import HardeningRecipe, harden

    model = EagerTorchModel(tracked(), SPEC)
    cpu_embeddings = extract(model, corpus, model.layers())
    gpu_embeddings = extract(model, corpus, model.layers(), device="cuda")
    assert gpu_embeddings.device == "cuda" and model.device == "cpu"
    assert np.abs(cpu_embeddings.logits - gpu_embeddings.logits).max() <= 1e-2
    data = evaluation_set(model, corpus)
    settings = ProbeSettings(grid=(0.0, 0.05, 0.1), pgd_eps=0.05, pgd_steps=3, seed=0)
    cpu_rows, _ = probe_model(model.differentiable(), data, settings, FrontEnd(SPEC))
    gpu_rows, _ = probe_model(model.differentiable(), data, settings, FrontEnd(SPEC), device="cuda")
    assert all(p.device.type == "cpu" for p in model.module.parameters())  # back where it was
    for before, after in zip(cpu_rows, gpu_rows):
        assert (before.method, before.eps) == (after.method, after.eps) and abs(before.uar - after.uar) <= 0.1
    hardened = harden(copy.deepcopy(model.module), model, corpus, HardeningRecipe(method="vanilla", epochs=2,
                                                                                 warmup_epochs=1), device="cuda")
    assert all(p.device.type == "cpu" for p in hardened.parameters())
    reference = ReferenceModel("tracked", "test", "cuda", lambda n_classes: Tracked(n_classes), SPEC,
                               training=Stage(epochs=3, batch_size=16))
    trained = {device: train_reference(reference, cache_dir=tmp_path, corpora={"iemocap-like": corpus}, device=device)
               for device in ("cpu", "cuda")}
    assert all(p.device.type == "cpu" for p in trained["cuda"].module.parameters())
    assert trained["cuda"].metrics["training_device"] == "cuda"
    assert abs(trained["cpu"].metrics["held_out_uar"] - trained["cuda"].metrics["held_out_uar"]) <= 0.25
