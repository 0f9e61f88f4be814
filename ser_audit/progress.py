"""Progress reporting injected into the core; the default observer does nothing.

Only ``ser_audit.cli`` knows about rich. The core calls ``observer.task(...)`` and
advances the handle it returns.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterator, Protocol


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


class _Stepping:
    def __init__(self, handle: TaskHandle, step: Callable[[], None]) -> None:
        self.handle, self.step = handle, step

    def advance(self, amount: int = 1) -> None:
        self.handle.advance(amount)
        self.step()


class SteppingObserver:
    """``observer``, calling ``step`` after every advance of every task (a hook between steps of the work)."""

    def __init__(self, observer: ProgressObserver, step: Callable[[], None]) -> None:
        self.observer, self.step = observer, step

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        with self.observer.task(description, total) as handle:
            yield _Stepping(handle, self.step)

    def note(self, message: str) -> None:
        self.observer.note(message)
