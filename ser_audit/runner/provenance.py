"""What a report records about how and on what it was made: versions, hashes, times, the config."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import TYPE_CHECKING, Sequence

from ser_audit import __version__
from ser_audit.config import AuditConfig, ModelSource
from ser_audit.corpus.interface import Corpus
from ser_audit.report.model import CorpusInfo, Environment, LayerRow, ModelInfo, Report, Tool

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel

_PROVENANCE_PACKAGES = ("torch", "torchaudio", "onnx", "onnxruntime", "numpy", "scipy", "scikit-learn", "pydantic",
                        "transformers")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment(device: str | None = None) -> Environment:
    """Versions and platform; with ``device`` (as given to ``--device``), where torch ran (``describe_device``)."""
    packages = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return Environment(python=sys.version.split()[0], platform=platform.platform(), packages=packages,
                       device=None if device is None else describe_device(device))


def describe_device(device: str) -> str:
    """``cpu``, or a GPU's index and name (``cuda:0 (NVIDIA H200)``), ``device`` resolved first."""
    from ser_audit.devices import resolve_device

    resolved = resolve_device(device)
    if resolved == "cpu":
        return "cpu"
    import torch

    index = int(resolved.partition(":")[2] or torch.cuda.current_device())
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def corpus_info(corpus: Corpus, *, seed: int | None = None) -> CorpusInfo:
    from ser_audit.corpus.loader import audio_summary

    summary = corpus.summary()
    return CorpusInfo(manifest_sha256=corpus.manifest_sha256(), seed=seed, audio=audio_summary(corpus), **summary)


def layer_rows(model: "TargetModel") -> list[LayerRow]:
    return [LayerRow(index=l.index, name=l.name, kind=l.kind, shape=list(l.shape), time_axis=l.time_axis,
                     frames=l.frames, refused=l.refused) for l in model.layers()]


def model_info(source: ModelSource, model: "TargetModel") -> ModelInfo:
    fed = {}
    if model.frontend.extra_inputs:
        from ser_audit.models.inputs import describe
        from ser_audit.models.sampling import describe_choice

        fed = {extra.name: describe(extra) if extra.auxiliary else describe_choice(0)
               for extra in model.frontend.extra_inputs}
    return ModelInfo(path=source.spec, file=str(model.path) if model.path else None, sha256=model.sha256,
                     format=model.format, frontend=model.frontend.model_dump(mode="json"), layers=layer_rows(model),
                     training=model.training, extra_inputs=fed, loading=dict(model.loading or {}))


def new_report(config: AuditConfig, model: "TargetModel", corpus: Corpus, *, created: str, command: Sequence[str],
               source: ModelSource | None = None) -> Report:
    """A report with its provenance filled in and nothing measured yet (``source``: default ``config.model``)."""
    return Report(tool=Tool(version=__version__), command=list(command), seed=config.seed, created=created,
                  finished=created, environment=environment(config.device), model=model_info(source or config.model, model),
                  corpus=corpus_info(corpus, seed=config.seed), config=config)
