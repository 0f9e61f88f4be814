"""The reference-model zoo and hardening: commands that write a model rather than a report."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ser_audit.config import CorpusSource, ModelSource
from ser_audit.errors import ConfigError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import LayerRow
from ser_audit.runner import sources
from ser_audit.runner.provenance import layer_rows

if TYPE_CHECKING:
    from ser_audit.robustness.hardening import HardeningRecipe

MODEL_SUFFIXES = (".onnx", ".pt", ".pt2", ".ckpt")


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in MODEL_SUFFIXES:
        raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript), .pt2 (torch.export) or .ckpt file name")


def list_layers(source: ModelSource, *, cache_dir: Path | None = None, seed: int = 0,
                observer: ProgressObserver = NULL_OBSERVER, everything: bool = False) -> list[LayerRow]:
    """The model's layers as ``ser-audit layers`` lists them: a transformer's blocks, or with
    ``everything`` the leaves inside them too (other formats list every layer either way)."""
    model = sources.load_model(source, cache_dir=cache_dir or sources.default_cache_dir(), seed=seed, observer=observer)
    listed = {layer.name for layer in model.listed_layers(everything)}
    return [row for row in layer_rows(model) if row.name in listed]


def reference_model_table(*, cache_dir: Path | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Every reference model: what it is, its input and size, its training data, and, where it is
    already trained in the cache, its held-out UAR, training speakers and training time."""
    import json

    from ser_audit.corpus.synthetic.presets import PRESETS
    from ser_audit.models.zoo import checkpoint_path, read_cached_checkpoint, reference_models

    cache = cache_dir or sources.default_cache_dir()
    rows = []
    for model in sorted(reference_models().values(), key=lambda m: m.name):
        features = model.frontend.features
        final = model.stages[-1].corpus
        classes = len(PRESETS[final].emotions) if final in PRESETS else len(model.frontend.emotions) or 4
        path = checkpoint_path(cache, model, seed)
        metrics: dict[str, Any] = {}
        if path.is_file():
            metrics = json.loads(read_cached_checkpoint(path, model.name)["metrics"])
        rows.append({
            "name": model.name, "paper": model.paper, "description": model.description, "version": str(model.version),
            "input": f"{features.kind}, {model.frontend.sample_rate} Hz, {model.frontend.duration_s} s, "
                     f"layout {model.frontend.layout}",
            "inputs": [model.frontend.input_name, *(extra.name for extra in model.frontend.extra_inputs)],
            "parameters": sum(p.numel() for p in model.build(n_classes=classes, **model.config).parameters()),
            "stages": [{"target": stage.target, "corpus": stage.corpus, "epochs": stage.epochs, **_stage_record(record)}
                       for stage, record in zip(model.stages, metrics.get("stages") or [{}] * len(model.stages))],
            "trained": path.is_file(),
            "training_corpus": metrics.get("training_corpus"),
            "held_out_uar": metrics.get("held_out_uar"),
            "training_speakers": metrics.get("training_speakers"),
            "training_seconds": metrics.get("training_seconds"),
        })
    return rows


def _stage_record(record: dict[str, Any]) -> dict[str, Any]:
    """What training recorded of a stage, for the table: its numbers (utterances, a speaker-ID
    stage's held-out accuracy and chance, ...) and how many speakers it trained on."""
    row = {key: value for key, value in record.items()
           if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "target"}
    if "speakers" in record:
        row["n_speakers"] = len(record["speakers"])
    return row


def train_reference_model(name: str, out: Path, *, seed: int = 0, cache_dir: Path | None = None,
                          observer: ProgressObserver = NULL_OBSERVER, device: str = "auto") -> dict[str, Any]:
    """Train (or take from the cache) ``zoo:NAME`` on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and
    write it to ``out`` in the format its suffix names (exported from the CPU, whichever device trained it).

    Returns:
        The held-out metrics recorded at training time.
    """
    import shutil

    from ser_audit.devices import resolve_device
    from ser_audit.models.export import export_model
    from ser_audit.models.loading import load_checkpoint
    from ser_audit.models.zoo import load_or_train, read_cached_checkpoint

    _check_out(out)
    resolved = resolve_device(device)  # a missing GPU fails before any work
    checkpoint = load_or_train(name, cache_dir=cache_dir or sources.default_cache_dir(), seed=seed, observer=observer,
                               device=resolved)
    model = load_checkpoint(checkpoint, payload=read_cached_checkpoint(checkpoint, name))
    if out.suffix.lower() == ".ckpt":
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, out)
    if out.suffix.lower() != ".ckpt":
        export_model(model.module, model.frontend, out)
    return dict(model.training or {})


def harden_model(source: ModelSource, out: Path, *, recipe: "HardeningRecipe", corpus: CorpusSource,
                 cache_dir: Path | None = None, observer: ProgressObserver = NULL_OBSERVER,
                 device: str = "auto") -> dict[str, Any]:
    """Adversarially fine-tune a model (P2's vanilla or similarity-based training) on ``device`` (``auto``,
    ``cpu``, ``cuda``, ``cuda:N``) and write it to ``out`` from the CPU.

    Returns held-out UAR on real and on FGSM data at the recipe's eps, before and after, and the device.
    """
    from ser_audit.defenses import AdversarialTraining, defense
    from ser_audit.devices import resolve_device
    from ser_audit.frontend.features import FrontEnd
    from ser_audit.models.batch_of_one import refuse_training
    from ser_audit.models.differentiable import torch_module
    from ser_audit.models.export import check_exportable, export_model
    from ser_audit.models.training import write_checkpoint_payload
    from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model

    method = defense(recipe.method, purpose="robustness")
    assert isinstance(method, AdversarialTraining)
    recipe.check()
    _check_out(out)
    sources.check_not_an_input(source, out)
    resolved = resolve_device(device)  # a missing GPU fails before any work
    cache = cache_dir or sources.default_cache_dir()
    model = sources.load_model(source, cache_dir=cache, seed=recipe.seed, observer=observer, device=resolved)
    if out.suffix.lower() == ".ckpt" and not (model.path and model.path.suffix == ".ckpt"):
        raise ConfigError(f"--out {out}: .ckpt is for reference-model checkpoints; use .onnx, .pt or .pt2")
    refuse_training(model, "harden")
    original = torch_module(model)
    check_exportable(original, model.frontend, out)  # before the training, not after
    training_corpus = sources.load_corpus(corpus, cache_dir=cache, seed=recipe.seed, observer=observer)
    hardened = method.harden(copy.deepcopy(original), model, training_corpus, recipe, device=resolved, observer=observer)
    settings = ProbeSettings(grid=(0.0, recipe.eps), pgd_eps=None, seed=recipe.seed)
    data = evaluation_set(model, training_corpus, observer)
    frontend = FrontEnd(model.frontend)
    before, _ = probe_model(original, data, settings, frontend, device=resolved)
    after, _ = probe_model(hardened, data, settings, frontend, device=resolved)
    if out.suffix.lower() == ".ckpt":
        assert model.path is not None
        write_checkpoint_payload(model.path, hardened, out, extra_metrics={"hardening": recipe.method})
    elif not _written_into_its_graph(model, hardened, out):
        export_model(hardened, model.frontend, out)
    return {"real_before": before[0].uar, "adversarial_before": before[1].uar, "real_after": after[0].uar,
            "adversarial_after": after[1].uar, "eps": recipe.eps, "n": after[0].n, "evaluation_set": data.description,
            "device": resolved}


def _written_into_its_graph(model: Any, hardened: Any, out: Path) -> bool:
    """An ONNX model hardened to ONNX keeps its own graph (dynamic axes and all) with the trained weights
    written into it, checked with onnxruntime; False where that cannot be done, and the module is exported."""
    import numpy as np

    from ser_audit.errors import ModelError
    from ser_audit.models.onnx_model import OnnxModel
    from ser_audit.models.onnx_weights import check_written, save, write_back

    if not isinstance(model, OnnxModel) or out.suffix.lower() != ".onnx" or model.frontend.extra_inputs:
        return False
    example = model.example_inputs(batch=2)[model.frontend.input_name]
    noise = np.random.default_rng(0).standard_normal(example.shape).astype(example.dtype)
    try:
        proto = write_back(model.proto, hardened)
        check_written(proto, hardened.eval(), {model.frontend.input_name: noise})
    except ModelError:
        return False
    save(proto, out)
    return True
