"""What a model-format plugin must do, as a check its author can run in their own tests.

    from ser_audit.testing.contract import check_model_format, tiny_model

    def test_my_format(tmp_path):
        check_model_format(MY_FORMAT, tiny_model(tmp_path, format="onnx"), cache_dir=tmp_path)

``tiny_model`` writes a small model in one of ser-audit's own formats (the file a plugin's
format would wrap or convert); ``check_model_format`` loads a MODEL string through the format
and checks the contract every command relies on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser_audit.errors import SerAuditError
from ser_audit.models.formats import ModelFormat, ModelRequest
from ser_audit.models.interface import TargetModel

SUFFIXES = {"onnx": "model.onnx", "torchscript": "model.pt", "torch-export": "model.pt2"}
FORMATS = (*SUFFIXES, "transformers")


def tiny_model(folder: Path, *, format: str = "onnx", seed: int = 0) -> str:
    """A small convolutional SER model (or, for ``transformers``, a tiny wav2vec2 classifier folder)
    written in ``format`` under ``folder``; returns the MODEL string that loads it."""
    import torch

    from ser_audit.models.export import export_model
    from ser_audit.testing import LLD_FRONTEND
    from ser_audit.testing.topologies import TinyCNN

    folder.mkdir(parents=True, exist_ok=True)
    if format == "transformers":
        from ser_audit.testing.checkpoints import tiny_checkpoint

        return str(tiny_checkpoint("wav2vec2", folder / "wav2vec2", seed=seed))
    if format not in SUFFIXES:
        raise ValueError(f"format {format!r}: one of {', '.join(FORMATS)}")
    torch.manual_seed(seed)
    path = folder / SUFFIXES[format]
    export_model(TinyCNN(4), LLD_FRONTEND.model_copy(update={"duration_s": 1.0}), path)
    return str(path)


def check_model_format(fmt: ModelFormat, model: str, *, cache_dir: Path) -> TargetModel:
    """Assert that ``fmt`` claims and loads ``model`` into a TargetModel that lists its layers, runs,
    taps every layer at its listed shape, and fails in ser-audit's own errors; returns the model."""
    assert isinstance(fmt, ModelFormat), "a format has name, priority, claims and load"
    assert isinstance(fmt.name, str) and fmt.name and isinstance(fmt.priority, int)
    request = ModelRequest(model, cache_dir=cache_dir)
    assert fmt.claims(request), f"{fmt.name} does not claim {model}"
    assert not fmt.claims(ModelRequest(str(cache_dir / "no-such-model.unknown"), cache_dir=cache_dir)), \
        f"{fmt.name} claims a path that does not exist"
    loaded = fmt.load(request)
    assert isinstance(loaded, TargetModel) and loaded.format
    layers = loaded.layers()
    assert len(layers) >= 2 and len({layer.name for layer in layers}) == len(layers)
    assert [layer.index for layer in layers] == list(range(len(layers)))
    inputs = loaded.example_inputs(batch=2)
    result = loaded.forward(inputs, taps=[layer.name for layer in layers])
    assert result.logits.shape == (2, len(loaded.frontend.emotions)), "logits are [batch, emotions]"
    assert np.isfinite(result.logits).all()
    for layer in layers:
        assert result.layers[layer.name].shape[1:] == tuple(layer.shape[1:]), f"{layer.name}: tapped shape"
    assert loaded.default_taps(), "a model has default taps"
    assert len(loaded.sha256) == 64
    try:
        fmt.load(ModelRequest(str(cache_dir / "no-such-model"), cache_dir=cache_dir))
    except SerAuditError:
        pass
    except Exception as error:  # anything else would reach the user as exit 3
        raise AssertionError(f"{fmt.name} fails on a missing model with {type(error).__name__}, not a "
                             "ser_audit.errors error") from error
    return loaded
