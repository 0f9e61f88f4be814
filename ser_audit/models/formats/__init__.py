"""Model formats: one module per format behind ``ModelFormat``, found through entry points.

A MODEL argument is offered to each registered format in priority order; the first that
claims it loads it. A plugin adds a format by registering an object with ``name``,
``priority``, ``claims`` and ``load`` under the ``ser_audit.model_formats`` group
(``ser_audit.testing.contract.check_model_format`` checks one).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ser_audit.progress import NULL_OBSERVER, ProgressObserver

if TYPE_CHECKING:
    from ser_audit.frontend.spec import FrontEndSpec
    from ser_audit.models.interface import TargetModel

GROUP = "ser_audit.model_formats"


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked to load: the MODEL string and the flags that go with it."""

    spec: str
    frontend: "FrontEndSpec | None" = None  # --frontend, parsed
    weights: Path | None = None
    trust_pickle: bool = False
    cache_dir: Path = Path(".")
    seed: int = 0
    observer: ProgressObserver = field(default=NULL_OBSERVER, compare=False)
    device: str = "cpu"  # where a format that trains on loading (zoo:NAME on first use) trains; resolved

    @property
    def path(self) -> Path:
        return Path(self.spec)

    def file(self) -> Path:
        """The model file, or a ModelError saying it is not there (a format called directly, by a plugin's test)."""
        from ser_audit.errors import ModelError

        if not self.path.is_file():
            raise ModelError(f"model {self.path} is not a file; pass the model file itself")
        return self.path

    @cached_property
    def archive_entries(self) -> tuple[str, ...]:
        """The names inside a zip archive (torch's formats), empty for anything else."""
        path = self.path
        if not path.is_file() or not zipfile.is_zipfile(path):
            return ()
        with zipfile.ZipFile(path) as archive:
            return tuple(archive.namelist())


@runtime_checkable
class ModelFormat(Protocol):
    """One way a model arrives: a file type, a folder layout or a URI scheme. A format that reads
    ``request.weights`` says so with a class attribute ``takes_weights = True``; others refuse --weights."""

    name: str
    priority: int  # lower is asked first; schemes before folders before file suffixes before sniffing

    def claims(self, request: ModelRequest) -> bool:
        """Whether this format reads ``request`` (cheap: a prefix, a suffix, a file name)."""
        ...

    def load(self, request: ModelRequest) -> "TargetModel":
        """The model, or a ModelError in one line saying what is wrong and what to do."""
        ...


def model_formats(*, strict: bool = False) -> list[ModelFormat]:
    """Every registered format, in the order they are asked."""
    from ser_audit.plugins import load_plugins

    found = load_plugins(GROUP, kind="model format", strict=strict)
    return sorted(found.values(), key=lambda fmt: (fmt.priority, fmt.name))


def claiming_format(request: ModelRequest, *, strict: bool = False) -> ModelFormat | None:
    return next((fmt for fmt in model_formats(strict=strict) if fmt.claims(request)), None)
