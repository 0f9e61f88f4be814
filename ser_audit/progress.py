"""Progress reporting injected into the core; the default observer does nothing.

Only ``ser_audit.cli`` knows about rich. The core calls ``observer.task(...)`` and
advances the handle it returns.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Iterator, Protocol


class TaskHandle(Protocol):
    def advance(self, amount: int = 1) -> None: ...


class ProgressObserver(Protocol):
    def task(self, description: str, total: int | None) -> AbstractContextManager[TaskHandle]: ...

    def note(self, message: str) -> None: ...


class _NullHandle:
    def advance(self, amount: int = 1) -> None:
        return None


class NullObserver:
    """Observer that ignores everything (library default)."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        yield _NullHandle()

    def note(self, message: str) -> None:
        return None


NULL_OBSERVER = NullObserver()
