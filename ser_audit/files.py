"""File-system helpers shared by every writer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def publish(path: Path, *, directory: bool = False) -> None:
    """Give a temporary file or folder (created private by tempfile) the permissions a normal one gets.

    ``tempfile`` creates 0600 files and 0700 folders; after the rename they would stay unreadable
    to everyone else, unlike anything else the user writes.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def atomic_write(out: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary)`` into a file beside ``out``, then rename: a reader sees the old file or the
    whole new one, never half of it, and a failed write leaves nothing behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(descriptor)
    try:
        write(Path(temporary))
        publish(Path(temporary))
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(out: Path, text: str) -> None:
    def publish(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    atomic_write(out, publish)
