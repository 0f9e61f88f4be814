"""Jobs in a pool of worker processes on this machine, one torch thread each (``--executor processes``).

One small attacker keeps torch's threads on a second core mostly waiting (#25); here each core
trains an attacker of its own. On Linux workers fork from a fork server; elsewhere they are spawned;
never are they forked from this process, whose torch thread pools a fork would copy in whatever
state they are in. The fork server is a fresh process that imports the jobs' modules once
(``prepare`` starts it while this process still extracts and probes, and says when it is ready):
each worker then starts with them loaded instead of importing torch, scikit-learn and torch's
compiler stack anew (about 3 s of CPU a worker on this project's machine), and shares their pages.
The server stays, idle, until this process ends.

Each worker receives the function and ``shared`` once, as one pickle made here and handed over by
its initializer, and unpickles it on its first job, so that what fails there fails as that job;
the BLAS and OpenMP thread pools loaded by then are set to one thread as well. Jobs seed
themselves, and one thread sums as the local executor sums under one thread: the rows are the
local executor's.

A job's error (``ConfigError``, ``CacheError``, ``ModelError``, ...) is pickled back and raised here
as the job raised it. A worker that ends without answering (the kernel's out-of-memory killer, say)
ends the run with a one-line ``ConfigError`` that says how it ended and names ``--executor local``.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import sys
import tempfile
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import context as contexts
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ser_audit.devices import usable_cores
from ser_audit.errors import ConfigError
from ser_audit.execution.interface import Executor, Job, Result, Shared, _JobOnly
from ser_audit.execution.preloaded import READY_FLAG


class ProcessExecutor(Executor):
    """``workers`` worker processes: by default one per core this process may use, never more than jobs.

    >>> from operator import add
    >>> list(ProcessExecutor(workers=2).map(add, [1, 2, 3], 10))
    [11, 12, 13]
    """

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers

    def run(self, function: Callable[[Job, Shared], Result], jobs: Iterable[Job], shared: Shared) -> Iterator[Result]:
        """Submits every job at once and yields their results in job order, each as soon as it and those
        before it are done. Leaving early (an error, Ctrl-C, a caller that stops reading) stops the workers."""
        jobs = list(jobs)
        if not jobs:
            return
        payload = pickle.dumps((function, shared), protocol=pickle.HIGHEST_PROTOCOL)
        job_function = function.function if isinstance(function, _JobOnly) else function
        context = _recording_context([getattr(job_function, "__module__", None) or __name__])
        workers = max(1, min(self.workers or usable_cores(), len(jobs)))
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_initialise,
                                   initargs=(payload, dict(os.environ)))
        finished = False
        try:
            for future in [pool.submit(_apply, job) for job in jobs]:
                yield future.result()
            finished = True
        except BrokenProcessPool as error:
            pool.shutdown(wait=True)  # the pool has reaped its workers: their exit codes are known
            raise ConfigError(_lost(context.started)) from error
        finally:
            if not finished:  # the run is over: its running jobs are not waited for
                for process in context.started:
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def prepare(self, modules: Sequence[str]) -> Callable[[], int]:
        """Starts the fork server, which imports ``modules`` on one core while this process goes on; that
        core is taken until the server says it is ready."""
        if not _fork_server() or "server" in _SERVER:  # none here, or already importing (or ready)
            return super().prepare(modules)
        return _start_server(modules)

    def sees(self, path: Path) -> bool:
        return True


# Training imports torch's compiler stack on its first optimiser (torch.optim calls into torch._dynamo):
# 0.8 s in every worker unless the fork server has it. The last module says the server is ready.
_ALWAYS_PRELOADED = ("torch", "torch._dynamo")
_READY = "ser_audit.execution.preloaded"
_SERVER: dict[str, "_Preloading"] = {}  # the fork server this process started (multiprocessing keeps one)


def _fork_server() -> bool:
    """Linux only: on macOS, forking a process that has imported torch and numpy is what made CPython spawn by
    default; 3.11 and later for ``PYTHONSAFEPATH`` (below)."""
    return sys.platform == "linux" and sys.version_info >= (3, 11)


class _Preloading:
    """The cores the fork server takes while it imports: 1 until its last preloaded module has left ``flag``."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag
        self.ready = False

    def __call__(self) -> int:
        if not self.ready and self.flag.exists():
            self.ready = True
            self.flag.unlink(missing_ok=True)
        return 0 if self.ready else 1


def _start_server(modules: Sequence[str]) -> "_Preloading":
    """The fork server, importing ``modules``, unless this process started it already (it keeps its modules)."""
    from multiprocessing import forkserver

    if "server" in _SERVER:
        return _SERVER["server"]
    flag = Path(tempfile.gettempdir()) / f"ser-audit-fork-server-{os.getpid()}-{uuid.uuid4().hex}"
    atexit.register(flag.unlink, missing_ok=True)
    forkserver.set_forkserver_preload(list(dict.fromkeys([*_ALWAYS_PRELOADED, *modules, _READY])))
    # Before 3.12.8 and 3.13.1 CPython does not apply the sys.path it hands the server (gh-117378): the server
    # would import from its working folder first. It takes this process's path from the environment instead.
    with _environment(PYTHONPATH=os.pathsep.join(entry for entry in sys.path if entry), PYTHONSAFEPATH="1",
                      **{READY_FLAG: str(flag)}), _interrupts_ignored():
        forkserver.ensure_running()
    _SERVER["server"] = _Preloading(flag)
    return _SERVER["server"]


@contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """SIGINT ignored while the server starts, so that it ignores Ctrl-C from the first line it runs (it would
    only from after its imports, and print their traceback); this process stops the pool on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _recording_context(modules: Sequence[str]) -> "_RecordingSpawn | _RecordingForkServer":
    """A context whose workers start from the fork server, or spawned where there is none."""
    if not _fork_server():
        return _RecordingSpawn()
    _start_server(modules)
    return _RecordingForkServer()


class _RecordingSpawn(contexts.SpawnContext):
    """The spawn context, keeping the processes it starts (to stop them, and to say how one ended)."""

    def __init__(self) -> None:
        self.started: list[BaseProcess] = []

    def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:  # type: ignore[override]  # a class attribute there
        self.started.append(contexts.SpawnProcess(*args, **kwargs))
        return self.started[-1]


if sys.platform != "win32":
    class _RecordingForkServer(contexts.ForkServerContext):
        """The fork server's context, keeping the processes it starts."""

        def __init__(self) -> None:
            self.started: list[BaseProcess] = []

        def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:  # type: ignore[override]  # as above
            self.started.append(contexts.ForkServerProcess(*args, **kwargs))
            return self.started[-1]


def _lost(processes: list[BaseProcess]) -> str:
    """One line on a worker that ended without answering, from the exit codes of the pool's processes."""
    codes = [process.exitcode for process in processes if process.exitcode not in (None, 0)]
    codes.sort(key=lambda code: code == -signal.SIGTERM)  # the pool terminates the others once one is lost
    code = codes[0] if codes else None
    if code is None:
        how = "ended"
    elif code == -signal.SIGKILL:
        how = "was killed by SIGKILL (as the kernel kills the largest process when memory runs out)"
    elif code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code} (what it wrote is above)"
    return f"--executor processes: a worker process {how} before its job finished; rerun with --executor local"


# In a worker: the pickled (function, shared) until its first job, then the two.
_WORKER: dict[str, Any] = {}


def _initialise(payload: bytes, environment: dict[str, str]) -> None:
    # A fork server started earlier kept the environment of then (multiprocessing sends the working directory
    # and sys.path with every worker); a job sees this run's, as a spawned worker would. What a library read from
    # it at import (OMP_NUM_THREADS, say) stays as the server read it: thread counts are set here and on the
    # first job instead.
    os.environ.clear()
    os.environ.update(environment)
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops the pool
    _WORKER["payload"] = payload


def _apply(job: Any) -> Any:
    if "function" not in _WORKER:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        _WORKER["function"], _WORKER["shared"] = pickle.loads(_WORKER["payload"])
        del _WORKER["payload"]
        # The BLAS and OpenMP pools loaded by now (numpy's, torch's, scikit-learn's) take one thread too:
        # without OMP_NUM_THREADS they would take every core, and the workers would spend ~15% more.
        threadpool_limits(1)
    return _WORKER["function"](job, _WORKER["shared"])
