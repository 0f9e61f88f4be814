"""The embedding store: tapped activations on disk, computed once per (model, front-end, corpus, layer).

Each entry is a folder named by a hash of the model's sha256, the front-end spec and the
corpus manifest hash. Per layer it holds the pooled statistics (float32, small) and,
where an attacker needs the whole activation map, the map as a float16 memory map, so
a corpus larger than RAM streams from disk. ``index.json`` lists what is complete;
files are written under temporary names and renamed when their last row is in, so an
interrupted run leaves nothing that a later run would trust.

Runs read their embeddings back from these files whether they computed them or not:
the first run and a cached rerun see the same bytes and give the same numbers.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ser_audit.files import publish

STORE_VERSION = 3  # 2: pooled in torch; variable-length inputs never padded within a batch; 3: time axis read from the model
FLOAT16_MAX = float(np.finfo(np.float16).max)


def store_key(model_sha256: str, frontend_json: str, manifest_sha256: str) -> str:
    payload = json.dumps([STORE_VERSION, model_sha256, frontend_json, manifest_sha256])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) + "-" + hashlib.sha1(name.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class StoredLayer:
    """What the store holds for one layer."""

    pooled: str
    reduction: str | None = None
    map: str | None = None
    map_shape: tuple[int, ...] | None = None
    map_reduction: str | None = None
    map_budget: int | None = None


class EmbeddingStore:
    """One entry of the store (a folder); ``temporary=True`` for models that have no file to hash."""

    def __init__(self, folder: Path, *, temporary: bool = False) -> None:
        self.folder = folder
        self.temporary = temporary
        folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_run(cls, cache_dir: Path | None, key: str | None) -> "EmbeddingStore":
        if cache_dir is None or key is None:
            folder = Path(tempfile.mkdtemp(prefix="ser-audit-embeddings-"))
            atexit.register(shutil.rmtree, folder, True)  # the memory maps stay readable until then
            return cls(folder, temporary=True)
        return cls(cache_dir / "embeddings" / key)

    # -- index ---------------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.folder / "index.json"

    def index(self) -> dict[str, Any]:
        try:
            return json.loads(self._index_path().read_text())
        except (OSError, ValueError):
            return {"layers": {}, "logits": None}

    def layer(self, name: str) -> StoredLayer | None:
        entry = self.index()["layers"].get(name)
        if entry is None:
            return None
        entry = dict(entry)
        if entry.get("map_shape") is not None:
            entry["map_shape"] = tuple(entry["map_shape"])
        stored = StoredLayer(**entry)
        files = [stored.pooled] + ([stored.map] if stored.map else [])
        return stored if all((self.folder / f).is_file() for f in files) else None

    def has_logits(self) -> bool:
        name = self.index().get("logits")
        return name is not None and (self.folder / name).is_file()

    def commit(self, layers: dict[str, StoredLayer], logits: str | None) -> None:
        """Merge finished layers into the index (atomic rename)."""
        index = self.index()
        for name, stored in layers.items():
            index["layers"][name] = {k: v for k, v in stored.__dict__.items()}
        if logits:
            index["logits"] = logits
        descriptor, temporary = tempfile.mkstemp(prefix=".index.", dir=self.folder)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(index, handle, indent=1)
        publish(Path(temporary))
        os.replace(temporary, self._index_path())

    # -- files ---------------------------------------------------------------------------------
    def file_names(self, layer: str) -> tuple[str, str]:
        safe = _safe(layer)
        return f"{safe}.pooled.npy", f"{safe}.map.f16.npy"

    def writer(self, name: str, shape: tuple[int, ...], dtype: type) -> "ArrayWriter":
        return ArrayWriter(self.folder / name, shape, dtype)

    def read(self, name: str) -> np.ndarray:
        return np.load(self.folder / name, mmap_mode="r")


class ArrayWriter:
    """Rows appended to a preallocated ``.npy`` memory map under a temporary name; ``finish`` renames it."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: type) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.array = np.lib.format.open_memmap(self.partial, mode="w+", dtype=dtype, shape=shape)
        self.row = 0
        self.clipped = 0

    def append(self, block: np.ndarray) -> None:
        if self.array.dtype == np.float16:
            over = np.abs(block) > FLOAT16_MAX
            if over.any():
                self.clipped += int(over.sum())
                block = np.clip(block, -FLOAT16_MAX, FLOAT16_MAX)
        self.array[self.row : self.row + len(block)] = block
        self.row += len(block)

    def finish(self) -> None:
        if self.row != self.array.shape[0]:
            raise RuntimeError(f"{self.path.name}: {self.row} of {self.array.shape[0]} rows written")
        self.array.flush()
        del self.array
        publish(self.partial)
        os.replace(self.partial, self.path)

    def abandon(self) -> None:
        if hasattr(self, "array"):
            del self.array
        self.partial.unlink(missing_ok=True)


def cached_array(cache_dir: Path | None, key: str, name: str, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """Features that depend on no model (input-level references), computed once per ``key`` and kept
    in the store as float32; returns them as read back from the store, and whether they were cached."""
    store = EmbeddingStore.for_run(cache_dir, key)
    stored = store.layer(name)
    if stored is None:
        values = np.asarray(compute(), dtype=np.float32)
        file_name, _ = store.file_names(name)
        writer = store.writer(file_name, values.shape, np.float32)
        writer.append(values)
        writer.finish()
        store.commit({name: StoredLayer(pooled=file_name)}, None)
        return np.asarray(store.read(file_name)), False
    return np.asarray(store.read(stored.pooled)), True
