"""The fork server's last preloaded module (``--executor processes``): importing it says the modules before it
are loaded, by creating the file the server's environment names, so that the audit gives back the core the
server's imports took. Imported anywhere else, it does nothing."""

from __future__ import annotations

import os
from pathlib import Path

READY_FLAG = "SER_AUDIT_FORK_SERVER_READY"

if os.environ.get(READY_FLAG):
    Path(os.environ[READY_FLAG]).touch()
