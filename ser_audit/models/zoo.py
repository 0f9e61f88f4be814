"""Reference models: plugins registered under the ``ser_audit.models`` entry-point group.

A plugin exposes a ``ReferenceModel`` (its module builder, front-end spec with any further
inputs, and a recipe of training ``Stage``s with frozen or re-rated ``ParameterGroup``s);
``zoo:NAME`` trains it on the embedded corpora on first use and caches the checkpoint, keyed
by name, seed and the plugin's version (not the device that trained it: the checkpoint holds CPU
tensors either way, and its metrics say which device it was).
"""

from __future__ import annotations

from pathlib import Path

from ser_audit.errors import ConfigError
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
