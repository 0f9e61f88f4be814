"""Executors run independent jobs (one attacker each) and yield their results in job order.

What every job reads (labels, folds) travels once per run as ``shared``, not once per job; what a
job reads alone it names (a file, a model) rather than carries, where ``sees`` says the workers can
read it. An executor plugin implements ``run`` and, if its workers share this process's files,
``sees``; one whose workers take long to start may start them in ``prepare``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar, overload

Job = TypeVar("Job")
Result = TypeVar("Result")
Shared = TypeVar("Shared")


class Executor(ABC):
    name: str

    @overload
    def map(self, function: Callable[[Job], Result], jobs: Iterable[Job], shared: None = None) -> Iterator[Result]: ...

    @overload
    def map(self, function: Callable[[Job, Shared], Result], jobs: Iterable[Job], shared: Shared) -> Iterator[Result]: ...

    def map(self, function: Callable[..., Result], jobs: Iterable[Job], shared: Any = None) -> Iterator[Result]:
        """``function(job)`` for every job, or ``function(job, shared)`` when ``shared`` is given; results
        in the order of ``jobs``.

        ``shared`` reaches each worker once, however many jobs it runs.

        >>> from ser_audit.execution.local import LocalExecutor
        >>> list(LocalExecutor().map(lambda job, offset: job + offset, [1, 2], 10))
        [11, 12]
        """
        if shared is None:
            return self.run(_JobOnly(function), jobs, None)
        return self.run(function, jobs, shared)

    @abstractmethod
    def run(self, function: Callable[[Job, Shared], Result], jobs: Iterable[Job], shared: Shared) -> Iterator[Result]:
        """What an executor implements: ``function(job, shared)`` for every job, results in job order,
        ``shared`` sent to each worker once."""

    def prepare(self, modules: Sequence[str]) -> Callable[[], int]:
        """A hint, before the jobs are known, that jobs importing ``modules`` will run soon: an executor may
        start its workers and import those modules meanwhile. Returns a function that says how many of this
        machine's cores that work takes at the moment (the caller keeps its own threads off them, and asks
        again between steps); nothing starts and none are taken by default."""
        return none_taken

    def sees(self, path: Path) -> bool:
        """Whether every worker reads ``path`` as this process does (one file system), so that a job may
        name the file instead of carrying its bytes. False unless an executor knows better: carrying
        is always correct, only slower."""
        return False


def none_taken() -> int:
    """What ``prepare`` returns where nothing starts early: no core is taken."""
    return 0


@dataclass(frozen=True)
class _JobOnly(Generic[Job, Result]):
    """``function(job)`` called as ``function(job, shared)`` (picklable, for executors that ship it)."""

    function: Callable[[Job], Result]

    def __call__(self, job: Job, shared: None) -> Result:
        return self.function(job)
