"""The embedding store: tapped activations on disk, computed once per (model, front-end, corpus, layer).

Each entry is a folder named by a hash of the model's sha256, the front-end spec and the
corpus manifest hash. Per layer it holds the pooled statistics (float32, small) and,
where an attacker needs the whole activation map, the map as a float16 memory map, so
a corpus larger than RAM streams from disk. ``index.json`` lists what is complete.

Integrity: the index records every array file's length and sha256 when it is written, and a
process checks both the first time it reads the file (a truncated, bit-flipped or vanished
file fails). A file that fails is treated as absent, so its layer is computed again, and the
store keeps a line about it (``repairs``) for the report's notes. A file is hashed through the
same open descriptor its memory map is made from, so the bytes checked are the bytes read.

Concurrent runs: write-then-rename for every file, and a short lock around index updates only.

- Every writer writes under a temporary name of its own (``mkstemp``) and renames the finished
  file into place, so two runs never write into the same file and a reader sees a whole file
  or none; an interrupted run leaves only a temporary file that no index names.
- ``index.json`` is read, merged and replaced under an ``flock`` on ``index.lock``, held for the
  milliseconds of that merge, so two runs committing layers at once keep each other's. The
  kernel releases the lock when its holder dies, so a SIGKILL leaves no stale lock to clean up.
  Readers take no lock: the index is replaced atomically and names only finished files.
- Why not per-key lock files around the extraction: the second of two concurrent runs would
  wait (for an hour, on a large corpus) instead of working, and a lock file left by a killed run
  needs staleness rules. The price of not locking is that two concurrent runs may both compute
  an entry. Extraction is deterministic, so they write the same bytes; if a run ever replaced a
  file with other bytes, the checksum check makes the reader compute it again, never use a
  file that does not match its index.

Runs read their embeddings back from these files whether they computed them or not:
the first run and a cached rerun see the same bytes and give the same numbers.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from ser_audit.errors import CacheError, OutputError
from ser_audit.files import publish

STORE_VERSION = 4  # 2: pooled in torch; variable-length inputs never padded within a batch; 3: time axis read from
# the model; 4: length and sha256 of every file in the index
FLOAT16_MAX = float(np.finfo(np.float16).max)
_BLOCK = 1 << 20


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


def _digest(handle: IO[bytes]) -> tuple[int, str]:
    """Length and sha256 of an open file, read from its start."""
    handle.seek(0)
    digest, length = hashlib.sha256(), 0
    for block in iter(lambda: handle.read(_BLOCK), b""):
        digest.update(block)
        length += len(block)
    handle.seek(0)
    return length, digest.hexdigest()


@dataclass
class EmbeddingStore:
    """One entry of the store (a folder); ``temporary=True`` for models that have no file to hash.

    ``description`` (model, corpus) is kept in the index for ``ser-audit cache info``; ``repairs``
    says which files failed their check in this process.
    """

    folder: Path
    temporary: bool = False
    description: dict[str, Any] | None = None
    repairs: list[str] = field(default_factory=list)
    _checked: dict[tuple[int, int, int, int], bool] = field(default_factory=dict, repr=False)
    _written: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"--cache-dir: cannot make {self.folder} ({error.strerror or error}); choose a writable "
                              "--cache-dir or $SER_AUDIT_CACHE") from None

    @classmethod
    def for_run(cls, cache_dir: Path | None, key: str | None, *,
                description: dict[str, Any] | None = None) -> "EmbeddingStore":
        if cache_dir is None or key is None:
            folder = Path(tempfile.mkdtemp(prefix="ser-audit-embeddings-"))
            atexit.register(shutil.rmtree, folder, True)  # the memory maps stay readable until then
            return cls(folder, temporary=True)
        return cls(cache_dir / "embeddings" / key, description=description)

    # -- index ---------------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.folder / "index.json"

    def index(self) -> dict[str, Any]:
        """The entry's index; an unreadable one counts as empty (everything is computed again, and said so)."""
        try:
            index = json.loads(self._index_path().read_text())
        except FileNotFoundError:
            index = {}
        except (OSError, ValueError) as error:
            self._note(f"embedding cache {self.folder.name}/index.json is unreadable ({type(error).__name__}); "
                       "the entry is computed again")
            index = {}
        if not isinstance(index, dict) or not all(isinstance(index.get(k, {}), dict) for k in ("layers", "files")):
            self._note(f"embedding cache {self.folder.name}/index.json is not an index; the entry is computed again")
            index = {}
        index.setdefault("layers", {})
        index.setdefault("logits", None)
        index.setdefault("files", {})
        return index

    def layer(self, name: str) -> StoredLayer | None:
        """The layer's entry when every file of it passes its check, else None (compute it again)."""
        index = self.index()
        entry = index["layers"].get(name)
        if entry is None:
            return None
        entry = dict(entry)
        if entry.get("map_shape") is not None:
            entry["map_shape"] = tuple(entry["map_shape"])
        stored = StoredLayer(**entry)
        files = [stored.pooled] + ([stored.map] if stored.map else [])
        return stored if all(self.check(f, index) for f in files) else None

    def silent(self) -> list[str] | None:
        """Utterances whose input reached the model digitally silent (None: a store written before this was kept)."""
        silent = self.index().get("silent")
        return [str(item) for item in silent] if isinstance(silent, list) else None

    def has_logits(self) -> bool:
        index = self.index()
        name = index.get("logits")
        return name is not None and self.check(name, index)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive ``flock`` on ``index.lock`` (released by the kernel if the holder dies)."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): commits are still atomic, a concurrent one may be lost
            yield
            return
        with open(self.folder / "index.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def commit(self, layers: dict[str, StoredLayer], logits: str | None, *, silent: list[str] | None = None) -> None:
        """Merge finished layers (and the checksums of the files written for them) into the index; ``silent``:
        the utterances whose input reached the model digitally silent, found by the pass that wrote them."""
        with self._locked():
            index = self.index()
            for name, stored in layers.items():
                index["layers"][name] = {k: v for k, v in stored.__dict__.items()}
            if logits:
                index["logits"] = logits
            if silent is not None:
                index["silent"] = silent
            index["files"].update(self._written)
            if self.description:
                index["description"] = self.description
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
        return ArrayWriter(self.folder / name, shape, dtype, on_finish=self._finished)

    def _finished(self, name: str, handle: IO[bytes]) -> None:
        length, sha256 = _digest(handle)
        self._written[name] = {"bytes": length, "sha256": sha256}
        self._checked[self._identity(handle)] = True

    @staticmethod
    def _identity(handle: IO[bytes]) -> tuple[int, int, int, int]:
        stat = os.fstat(handle.fileno())
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _verify(self, name: str, handle: IO[bytes], index: dict[str, Any]) -> str | None:
        """None when the open file matches its recorded length and hash, else what is wrong."""
        identity = self._identity(handle)
        if self._checked.get(identity):
            return None
        expected = index["files"].get(name)
        if expected is None:
            return "no checksum recorded"
        if identity[2] != expected["bytes"]:
            return f"{identity[2]} bytes where {expected['bytes']} were written (truncated or overwritten)"
        if _digest(handle)[1] != expected["sha256"]:
            return "its sha256 differs from the one recorded (the bytes changed on disk)"
        self._checked[identity] = True
        return None

    def check(self, name: str, index: dict[str, Any] | None = None) -> bool:
        """Whether ``name`` exists and matches its checksum; a failure is noted in ``repairs``."""
        try:
            with open(self.folder / name, "rb") as handle:
                problem = self._verify(name, handle, index or self.index())
        except FileNotFoundError:
            problem = "the file is missing"
        if problem is None:
            return True
        self._note(f"embedding cache {self.folder.name}/{name}: {problem}; not used, computed again")
        return False

    def _note(self, note: str) -> None:
        if note not in self.repairs:
            self.repairs.append(note)

    def read(self, name: str) -> np.ndarray:
        """The array as a read-only memory map, made from the very descriptor whose bytes were checked."""
        with open(self.folder / name, "rb") as handle:
            problem = self._verify(name, handle, self.index())
            if problem is not None:
                raise CacheError(f"embedding cache {self.folder}/{name} changed while being read ({problem}); "
                                 "rerun, or check it with `ser-audit cache verify`")
            return _memmap(handle)


def _memmap(handle: IO[bytes]) -> np.ndarray:
    """A read-only memory map of an open ``.npy`` file (``np.load`` maps only by path)."""
    handle.seek(0)
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(handle)
    offset = handle.tell()
    if not shape or 0 in shape:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(handle, dtype=dtype, mode="r", shape=shape, order="F" if fortran_order else "C", offset=offset)


# Temporary files of this process's writers not yet finished or abandoned: removed at exit (Ctrl-C
# included), so only a killed process leaves any (``cache info`` shows them, ``cache clear`` removes them).
_UNFINISHED: set[Path] = set()


@atexit.register
def _remove_unfinished() -> None:
    for path in list(_UNFINISHED):
        path.unlink(missing_ok=True)


class ArrayWriter:
    """Rows appended to a preallocated ``.npy`` memory map under a temporary name of its own; ``finish``
    records the file's checksum and renames it into place."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: type, *,
                 on_finish: Callable[[str, IO[bytes]], None] | None = None) -> None:
        self.path = path
        descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(descriptor)
        self.partial = Path(partial)
        _UNFINISHED.add(self.partial)
        self.on_finish = on_finish
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
        with open(self.partial, "rb") as handle:
            if self.on_finish is not None:
                self.on_finish(self.path.name, handle)
            os.replace(self.partial, self.path)
        _UNFINISHED.discard(self.partial)

    def abandon(self) -> None:
        if hasattr(self, "array"):
            del self.array
        self.partial.unlink(missing_ok=True)
        _UNFINISHED.discard(self.partial)


def cached_array(cache_dir: Path | None, key: str, name: str, compute: Callable[[], np.ndarray], *,
                 corpus: str | None = None) -> tuple[np.ndarray, bool]:
    """Features that depend on no model (input-level references), computed once per ``key`` and kept
    in the store as float32; returns them as read back from the store, and whether they were cached."""
    store = EmbeddingStore.for_run(cache_dir, key, description={"model": name, "corpus": corpus or "unknown"})
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
