"""Reference models: plugins registered under the ``ser_audit.models`` entry-point group.

A plugin exposes a ``ReferenceModel`` (its module builder, front-end spec with any further
inputs, and a recipe of training ``Stage``s with frozen or re-rated ``ParameterGroup``s);
``zoo:NAME`` trains it on the embedded corpora on first use and caches the checkpoint, keyed
by name, seed and the plugin's version (not the device that trained it: the checkpoint holds CPU
tensors either way, and its metrics say which device it was).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ser_audit.errors import ConfigError, ModelError
from ser_audit.models.reference import ParameterGroup, ReferenceModel, Stage, Training  # noqa: F401  (for plugins)
from ser_audit.plugins import load_plugins
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

ENTRY_POINT_GROUP = "ser_audit.models"


def reference_models(*, strict: bool = False) -> dict[str, ReferenceModel]:
    """Every installed reference model; a broken plugin is named in a warning (an error when strict)."""
    return load_plugins(ENTRY_POINT_GROUP, kind="reference model", strict=strict)


def get_reference_model(name: str) -> ReferenceModel:
    models = reference_models()
    if name not in models:
        raise ConfigError(f"unknown reference model zoo:{name}; available: {', '.join(sorted(models)) or 'none'}")
    return models[name]


def checkpoint_path(cache_dir: Path, model: ReferenceModel, seed: int) -> Path:
    return cache_dir / "zoo" / f"{model.name}-seed{seed}-v{model.version}.ckpt"


def load_or_train(
    name: str,
    *,
    cache_dir: Path,
    seed: int = 0,
    observer: ProgressObserver = NULL_OBSERVER,
    device: str = "cpu",
) -> Path:
    """Path of the cached checkpoint of ``zoo:NAME``, training it first if needed, on ``device`` (resolved)."""
    from ser_audit.models.training import train_reference, write_checkpoint

    model = get_reference_model(name)
    path = checkpoint_path(cache_dir, model, seed)
    if not path.is_file():
        observer.note(f"zoo:{name} is not cached; training it on the embedded corpus (once)")
        trained = train_reference(model, cache_dir=cache_dir, seed=seed, observer=observer, device=device)
        write_checkpoint(trained, path)
    return path


def read_cached_checkpoint(path: Path, name: str) -> dict[str, Any]:
    """The payload of a cached reference checkpoint; a damaged file (a disk filled mid-write by another
    tool, a copy cut short) is named with the fix, not left to fail deep inside torch."""
    import pickle

    import torch

    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or "reference_model" not in payload or "metrics" not in payload:
            raise ValueError("not a reference-model checkpoint")
        return payload
    except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise ModelError(f"the cached zoo:{name} checkpoint {path} is unreadable ({reason}); delete it (or run "
                         "ser-audit cache clear --all) and it is trained again on first use") from None
