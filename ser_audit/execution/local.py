"""Jobs one after another in this process: torch already spreads each job over the cores."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

from ser_audit.execution.interface import Executor, Job, Result, Shared


class LocalExecutor(Executor):
    """``shared`` is passed as it is, and every file this process reads, its jobs read."""

    name = "local"

    def run(self, function: Callable[[Job, Shared], Result], jobs: Iterable[Job], shared: Shared) -> Iterator[Result]:
        for job in jobs:
            yield function(job, shared)

    def sees(self, path: Path) -> bool:
        return True
