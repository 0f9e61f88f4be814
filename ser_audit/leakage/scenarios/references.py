"""What a scenario job names instead of carrying: its layer's embeddings and the target's sub-network.

A layer's map is up to the 512 MiB map budget, and the same-architecture attacker starts from the
target's sub-network after the tap; a job that carried them would copy them to a worker once per
job. A job names them instead, and a worker resolves each name once per process
(``execution.resolved``):

- embeddings: the store entry's folder, the file, and the sha256 the planning process's index
  records for it. The worker memory-maps the file (its checksum checked once per process, and
  compared with the planner's, so a node holding another copy of the cache cannot give other
  numbers), then takes the view the attacker design reads (flattened, or time axis last).
- the sub-network: the MODEL source, the cache folder and seed it was loaded with, and its identity.
  The worker loads the model through ``models.loading.load_model`` (checking its identity) and cuts
  the layer's sub-network (``TargetModel.downstream``).

Where the workers cannot read the file (a temporary store, embeddings or a model in memory, a cache
that is not on storage every node sees, as ``Executor.sees`` tells), the array or sub-network
travels once in the run's ``SharedData`` instead, and the reference names its entry there. What
every job reads (labels, speakers, folds) travels there too.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

import numpy as np

from ser_audit.config import ModelSource
from ser_audit.corpus.folds import Fold
from ser_audit.embeddings.store import EmbeddingStore
from ser_audit.errors import CacheError, ModelError
from ser_audit.execution.resolved import ProcessCache

if TYPE_CHECKING:
    from torch import nn

    from ser_audit.embeddings.extract import Embeddings
    from ser_audit.models.interface import TargetModel


@dataclass
class Labels:
    """One corpus's labels, rows aligned with its embeddings."""

    attribute: np.ndarray
    emotion: np.ndarray
    speakers: np.ndarray


@dataclass
class SharedData:
    """What the jobs of a run read in common, sent to each worker once.

    Attributes:
        audit: The audit corpus's labels.
        folds: The speaker-disjoint folds of the audit corpus.
        aux: The aux corpus's labels, where a scenario trains on it.
        shipped: Arrays and sub-networks the workers cannot read from a file, by reference key.
    """

    audit: Labels
    folds: list[Fold]
    aux: Labels | None = None
    shipped: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreFile:
    """A file of an embedding store entry, and the sha256 its index recorded when it was written."""

    folder: Path
    name: str
    sha256: str


@dataclass(frozen=True)
class EmbeddingReference:
    """One layer's stored array as an attacker design reads it.

    Attributes:
        key: Its entry in ``SharedData.shipped`` when ``file`` is None (``audit/LAYER/map``).
        shape: The shape the design reads (after the view), for the report's feature count.
        file: The store file, where every worker reads the store.
        flatten: Read ``[n, features]``: the map flattened per utterance.
        time_last: Read the map with this (time) axis moved last.
    """

    key: str
    shape: tuple[int, ...]
    file: StoreFile | None = None
    flatten: bool = False
    time_last: int | None = None

    @classmethod
    def shipped(cls, key: str, array: np.ndarray) -> "EmbeddingReference":
        """A reference to ``SharedData.shipped[key]``, read as it is."""
        return cls(key, tuple(array.shape))

    def resolve(self, shared: SharedData) -> np.ndarray:
        array = shared.shipped[self.key] if self.file is None else _ARRAYS.get(self.file, lambda: _read(self.file))
        return _view(array, flatten=self.flatten, time_last=self.time_last)


@dataclass(frozen=True)
class ModelOrigin:
    """How a worker loads the target: the MODEL source and the cache folder and seed it was loaded
    with (as ``runner.sources.load_model`` does), and the identity it must find (``TargetModel.cache_identity``:
    the file's sha256, with a ``python:`` factory's code)."""

    source: ModelSource
    cache_dir: Path
    seed: int
    identity: str = ""

    @classmethod
    def of(cls, source: ModelSource, cache_dir: Path, seed: int) -> "ModelOrigin":
        """With every path made absolute: a worker does not start in this process's folder."""
        def absolute(path: Path | None) -> Path | None:
            return None if path is None else path.resolve()

        spec = str(Path(source.spec).resolve()) if Path(source.spec).exists() else source.spec
        return cls(source.model_copy(update={"spec": spec, "weights": absolute(source.weights),
                                             "frontend": absolute(source.frontend)}), cache_dir.resolve(), seed)

    def files(self, model: "TargetModel") -> list[Path]:
        """What a worker must read to load the model."""
        assert model.path is not None
        return [model.path, *(p for p in (self.source.weights, self.source.frontend) if p is not None)]


@dataclass(frozen=True)
class BodyReference:
    """The target's sub-network after ``layer``: loaded from ``origin``, or ``SharedData.shipped`` when None."""

    layer: str
    origin: ModelOrigin | None = None

    @property
    def key(self) -> str:
        return f"body/{self.layer}"

    def resolve(self, shared: SharedData) -> "nn.Module":
        if self.origin is None:
            return shared.shipped[self.key]
        origin = self.origin
        return _BODIES.get((origin, self.layer), lambda: _MODELS.get(origin, lambda: _load(origin)).downstream(self.layer).body)


# Per worker process: a store's files are checked once, a model is loaded once.
_STORES: ProcessCache[Path, EmbeddingStore] = ProcessCache(size=4)
_ARRAYS: ProcessCache[StoreFile, np.ndarray] = ProcessCache(size=32)  # memory maps: pages, not copies
_MODELS: ProcessCache[ModelOrigin, "TargetModel"] = ProcessCache(size=2)
_BODIES: ProcessCache[tuple[ModelOrigin, str], "nn.Module"] = ProcessCache(size=4)


def _view(array: np.ndarray, *, flatten: bool, time_last: int | None) -> np.ndarray:
    if flatten:
        return array.reshape(len(array), -1)
    return array if time_last is None else np.moveaxis(array, time_last, -1)


def _read(file: StoreFile | None) -> np.ndarray:
    """The stored file as a memory map, checked against the sha256 the planner's index recorded."""
    assert file is not None
    if not (file.folder / "index.json").is_file():
        raise CacheError(f"embedding cache {file.folder} cannot be read on {socket.gethostname()}: put --cache-dir "
                         "(or $SER_AUDIT_CACHE) on storage every node of the cluster sees")
    store = _STORES.get(file.folder, lambda: EmbeddingStore(file.folder))
    recorded = store.index()["files"].get(file.name, {}).get("sha256")
    if recorded != file.sha256:
        raise CacheError(f"embedding cache {file.folder}/{file.name} on {socket.gethostname()} is not the file the "
                         f"audit planned with (sha256 {recorded} where {file.sha256} was recorded); put --cache-dir on "
                         "storage every node of the cluster shares")
    return np.asarray(store.read(file.name))


def _load(origin: ModelOrigin) -> "TargetModel":
    from ser_audit.models.loading import load_model

    source = origin.source
    model = load_model(source.spec, frontend=source.frontend, weights=source.weights, trust_pickle=source.trust_pickle,
                       cache_dir=origin.cache_dir, seed=origin.seed)
    found = model.cache_identity if model.path is not None else None
    if found != origin.identity:
        raise ModelError(f"model {source.spec} on {socket.gethostname()} is not the audited model (its file, or a python: "
                         f"factory's code, differs: {found} where {origin.identity} was audited); put the model, its "
                         "code and --cache-dir on storage every node sees")
    return model


class Referrer:
    """Makes the references of one run's jobs: a file where ``sees`` says every worker reads it, else
    an entry of ``shared``. Keeps the planner's own arrays and sub-networks to ``lend`` to jobs that
    run in its process."""

    def __init__(self, shared: SharedData, *, sees: Callable[[Path], bool], origin: ModelOrigin | None = None) -> None:
        self.shared = shared
        self.sees = sees
        self.origin = origin
        self._indexes: dict[Path, dict[str, Any]] = {}
        self._lent_arrays: dict[StoreFile, np.ndarray] = {}
        self._lent_bodies: dict[tuple[ModelOrigin, str], "nn.Module"] = {}

    def embedding(self, corpus: str, embeddings: "Embeddings", layer: str, kind: Literal["map", "pooled"], *,
                  flatten: bool = False, time_last: int | None = None) -> EmbeddingReference:
        """``corpus``'s (``audit``, ``aux``) map or pooled statistics of ``layer``, in the view a design reads."""
        array = np.asarray(embeddings.maps[layer] if kind == "map" else embeddings.layers[layer])
        key = f"{corpus}/{layer}/{kind}"
        file = self._stored(embeddings.location, layer, kind)
        if file is None:
            self.shared.shipped.setdefault(key, array)
        else:
            self._lent_arrays[file] = array
        shape = _view(array, flatten=flatten, time_last=time_last).shape
        return EmbeddingReference(key, tuple(shape), file, flatten, time_last)

    def body(self, model: "TargetModel", layer: str, body: "nn.Module") -> BodyReference:
        """The sub-network ``body`` of ``model`` after ``layer``."""
        origin = self._origin(model)
        if origin is None:
            reference = BodyReference(layer)
            self.shared.shipped.setdefault(reference.key, body)
            return reference
        self._lent_bodies[(origin, layer)] = body
        return BodyReference(layer, origin)

    @contextlib.contextmanager
    def lend(self) -> Iterator[None]:
        """Within the block, jobs run in this process resolve to the planner's own objects."""
        with _ARRAYS.lend(self._lent_arrays), _BODIES.lend(self._lent_bodies):
            yield

    def _stored(self, folder: Path | None, layer: str, kind: str) -> StoreFile | None:
        if folder is None:
            return None
        folder = folder.resolve()
        if folder not in self._indexes:
            self._indexes[folder] = EmbeddingStore(folder).index()
        index = self._indexes[folder]
        name = index["layers"].get(layer, {}).get(kind)
        recorded = index["files"].get(name, {}).get("sha256") if name else None
        if recorded is None or not self.sees(folder / name):
            return None
        return StoreFile(folder, name, recorded)

    def _origin(self, model: "TargetModel") -> ModelOrigin | None:
        if self.origin is None or model.path is None or not all(self.sees(path) for path in self.origin.files(model)):
            return None
        if not self.origin.identity:
            self.origin = ModelOrigin(self.origin.source, self.origin.cache_dir, self.origin.seed, model.cache_identity)
        return self.origin
