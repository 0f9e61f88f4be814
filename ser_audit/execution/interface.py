"""Executors run independent jobs (one attacker each) and yield their results in job order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Iterable, Iterator, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


class Executor(ABC):
    name: str

    @abstractmethod
    def map(self, function: Callable[[Job], Result], jobs: Iterable[Job]) -> Iterator[Result]:
        """``function`` applied to every job; results in the order of ``jobs``."""
