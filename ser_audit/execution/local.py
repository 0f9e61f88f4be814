"""Jobs one after another in this process: torch already spreads each job over the cores."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from ser_audit.execution.interface import Executor, Job, Result


class LocalExecutor(Executor):
    name = "local"

    def map(self, function: Callable[[Job], Result], jobs: Iterable[Job]) -> Iterator[Result]:
        for job in jobs:
            yield function(job)
