"""What the cache holds and whether it is sound: ``ser-audit cache info | verify | clear``.

The cache folder holds ``embeddings/`` (one entry per model, front-end and corpus; see
:mod:`ser_audit.embeddings.store`), ``corpora/`` (synthesised corpora) and ``zoo/`` (trained
reference models). Verification reads every embedding file and compares its length and
sha256 with the entry's index; a run would compute a failing file again by itself, so
verifying is for the curious and for CI caches, never a step a run needs.

Example:
    >>> from pathlib import Path
    >>> import tempfile
    >>> empty = Path(tempfile.mkdtemp())
    >>> inventory(empty), verify(empty)
    ([], [])
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ser_audit.embeddings.store import EmbeddingStore


@dataclass
class Entry:
    """One embedding entry: what it was computed from, its size and any files failing their check."""

    key: str
    model: str
    corpus: str
    layers: int
    bytes: int
    leftover_bytes: int = 0  # temporary files of interrupted runs, named by no index
    failures: list[str] = field(default_factory=list)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _entry(folder: Path, *, check: bool) -> Entry:
    store = EmbeddingStore(folder)
    index = store.index()
    description = index.get("description") or {}
    leftovers = [p for p in folder.iterdir() if p.name.endswith(".partial") or p.name.startswith(".index.")]
    entry = Entry(
        key=folder.name, model=str(description.get("model", "unknown (an entry older than its description)")),
        corpus=str(description.get("corpus", "unknown")), layers=len(index["layers"]), bytes=_size(folder),
        leftover_bytes=sum(p.stat().st_size for p in leftovers),
    )
    if check:
        named = set(index["files"]) | {f for layer in index["layers"].values() for f in (layer.get("pooled"),
                                                                                         layer.get("map")) if f}
        if index.get("logits"):
            named.add(index["logits"])
        for name in sorted(named):
            store.check(name, index)
        entry.failures = list(store.repairs)
    return entry


def _entries(cache_dir: Path, *, check: bool) -> list[Entry]:
    root = cache_dir / "embeddings"
    if not root.is_dir():
        return []
    return [_entry(folder, check=check) for folder in sorted(root.iterdir()) if folder.is_dir()]


def inventory(cache_dir: Path) -> list[Entry]:
    """Every embedding entry with its model, corpus, layer count and size (nothing is hashed)."""
    return _entries(cache_dir, check=False)


def verify(cache_dir: Path) -> list[Entry]:
    """Every embedding entry, each file checked against the length and sha256 in its index."""
    return _entries(cache_dir, check=True)


def totals(entries: list[Entry], by: str) -> dict[str, int]:
    """Bytes of the entries per ``model`` or per ``corpus``."""
    sums: dict[str, int] = {}
    for entry in entries:
        sums[getattr(entry, by)] = sums.get(getattr(entry, by), 0) + entry.bytes
    return dict(sorted(sums.items()))


def other_contents(cache_dir: Path) -> dict[str, int]:
    """Bytes in each top-level cache folder other than ``embeddings`` (corpora, zoo, ...)."""
    if not cache_dir.is_dir():
        return {}
    return {part: _size(cache_dir / part) for part in CACHE_PARTS[1:] if (cache_dir / part).exists()}


# What ser-audit writes into a cache folder; ``clear`` removes these and nothing else, so a cache pointed at a
# folder that also holds a user's files (``--cache-dir .``) loses none of them.
CACHE_PARTS = ("embeddings", "corpora", "zoo", "stages")


def clear(cache_dir: Path, *, everything: bool = False) -> int:
    """Remove the embeddings (with ``everything``, the whole cache: corpora, reference models and cached
    stages too); returns the bytes freed. Clear while no run uses the cache: a run reading memory maps keeps
    them, but one writing an entry at that moment loses its folder and fails."""
    targets = [cache_dir / part for part in (CACHE_PARTS if everything else CACHE_PARTS[:1])]
    freed = 0
    for target in targets:
        if not target.exists():
            continue
        freed += _size(target)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    return freed
