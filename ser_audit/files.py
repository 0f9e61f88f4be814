"""File-system helpers shared by every writer."""

from __future__ import annotations

import os
from pathlib import Path


def publish(path: Path, *, directory: bool = False) -> None:
    """Give a temporary file or folder (created private by tempfile) the permissions a normal one gets.

    ``tempfile`` creates 0600 files and 0700 folders; after the rename they would stay unreadable
    to everyone else, unlike anything else the user writes.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)
