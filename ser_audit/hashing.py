"""Content hashes for provenance and cache keys."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Iterable

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised on (path, size, mtime) within the process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def source_sha256(objects: Iterable[object]) -> str:
    """sha256 of the source code of classes and functions (their qualified names where the source is not
    at hand): a cached result keyed by it does not outlive an edit of the code that computed it."""
    sources = []
    for item in sorted(set(objects), key=lambda o: f"{getattr(o, '__module__', '')}.{getattr(o, '__qualname__', o)}"):
        try:
            sources.append(inspect.getsource(item))  # type: ignore[arg-type]
        except (OSError, TypeError):
            sources.append(f"{getattr(item, '__module__', '')}.{getattr(item, '__qualname__', item)}")
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()
