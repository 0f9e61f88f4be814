"""The rich progress observer: bars on stderr, so stdout stays parseable."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ser_audit.cli.render import plain
from ser_audit.progress import NullObserver, TaskHandle

STDERR = Console(stderr=True, soft_wrap=True)


class _RichHandle:
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: int = 1) -> None:
        self._progress.advance(self._task_id, amount)


class RichObserver:
    """One transient bar per task on stderr."""

    def __init__(self, console: Console = STDERR) -> None:
        self.console = console

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        columns = [
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
        ]
        with Progress(*columns, console=self.console, transient=True) as progress:
            task_id = progress.add_task(plain(description), total=total)
            yield _RichHandle(progress, task_id)
        self.console.print(f"[dim]done:[/dim] {plain(description)}")

    def note(self, message: str) -> None:
        self.console.print(f"[dim]{plain(message)}[/dim]")


def observer_for(quiet: bool) -> RichObserver | NullObserver:
    return NullObserver() if quiet else RichObserver()
