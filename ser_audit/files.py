"""File-system helpers shared by every writer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from ser_audit.errors import OutputError


def publish(path: Path, *, directory: bool = False) -> None:
    """Give a temporary file or folder (created private by tempfile) the permissions a normal one gets.

    ``tempfile`` creates 0600 files and 0700 folders; after the rename they would stay unreadable
    to everyone else, unlike anything else the user writes.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def check_writable(path: Path, *, flag: str, folder: bool = False) -> None:
    """Fail now, before any long work, when ``path`` (a file, or with ``folder`` a folder to write files
    into) cannot be written: a file where a folder must be, a folder where the file must be, or a
    location without write permission. Creates nothing: a probe file in the nearest existing folder
    is made and removed (``os.access`` does not see read-only mounts or what root may not write).

    Raises:
        OutputError: naming ``flag``, the path and why.
    """
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is an existing file, not a folder; give a folder, a new path, or remove it")
    if not folder and path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file path")
    base = path if folder else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"{flag} {path}: {base} is a file, so no folder can be made inside it; choose another path")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".ser-audit-write-test.", dir=base)
    except OSError as error:
        raise OutputError(f"{flag} {path}: cannot write into {base} ({error.strerror or error}); choose a writable "
                          "location") from None
    os.close(descriptor)
    os.unlink(probe)


def atomic_write(out: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary)`` into a file beside ``out``, then rename: a reader sees the old file or the
    whole new one, never half of it, and a failed write leaves nothing behind.

    Raises:
        OutputError: the folder cannot be made or written, or ``out`` is a folder.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    except OSError as error:
        raise OutputError(f"cannot write {out} ({error.strerror or error}); choose a writable location") from None
    os.close(descriptor)
    try:
        write(Path(temporary))
        publish(Path(temporary))
        os.replace(temporary, out)
    except IsADirectoryError:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: it is a folder; give a file path") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(out: Path, text: str) -> None:
    def publish(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    atomic_write(out, publish)
