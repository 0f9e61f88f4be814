"""Executors ship references, not arrays: a scenario job names its layer's stored embeddings and the
target's sub-network, a worker resolves them once, and the rows are those of the local executor,
in a worker process of its own, in a pool of them, and on a two-node Ray cluster."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pytest
import torch

from ser_audit.api import ModelSource, leakage_audit
from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import extract
from ser_audit.errors import CacheError, ConfigError, ModelError
from ser_audit.execution.auto import choose, spawnable
from ser_audit.execution.interface import Executor
from ser_audit.execution.local import LocalExecutor
from ser_audit.execution.processes import ProcessExecutor
from ser_audit.leakage.scenarios.plan import AttackData, AttackSettings, plan_jobs
from ser_audit.leakage.scenarios.references import BodyReference, EmbeddingReference, ModelOrigin, StoreFile
from ser_audit.leakage.scenarios.run import run_scenarios
from ser_audit.leakage.statistics.inference import SpeakerPermutations
from ser_audit.models.loading import load_model
from ser_audit.testing import tiny_corpus, write_planted_cnn


@pytest.mark.parametrize("module", ["ser_audit.execution.interface", "ser_audit.execution.resolved",
                                    "ser_audit.execution.processes", "ser_audit.execution.auto"])
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted and not result.failed


def test_shared_data_reaches_every_job_as_it_is_and_without_it_jobs_run_alone() -> None:
    shared = {"labels": np.arange(3)}
    seen = list(LocalExecutor().map(lambda job, data: (job, data), [1, 2], shared))
    assert [job for job, _ in seen] == [1, 2] and all(data is shared for _, data in seen)
    assert list(LocalExecutor().map(lambda job: job * 2, [1, 2, 3])) == [2, 4, 6]


# ----------------------------------------------------------------------------------------------
# A corpus whose layer maps are megabytes, stored; the model is a file.

@pytest.fixture(scope="module")
def stored(onnx_model: Path, small_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cache = tmp_path_factory.mktemp("cache")
    model = load_model(str(onnx_model), cache_dir=cache)
    layers = model.select_layers("relu1,pool3")
    embeddings = extract(model, small_corpus, layers, maps=[layer.name for layer in layers], cache_dir=cache)
    return {"model": model, "layers": layers, "audit": AttackData.of(small_corpus, embeddings, "gender"),
            "origin": ModelOrigin.of(ModelSource(str(onnx_model)), cache, 0), "folds": speaker_disjoint_folds(small_corpus)}


def _plan(stored: dict[str, Any], sees: Callable[[Path], bool] | None) -> Any:
    options = {"sees": sees} if sees is not None else {}
    return plan_jobs(stored["model"], stored["layers"], stored["audit"], None, stored["folds"], scenarios=["worst", "s2"],
                     settings=AttackSettings(quick=True), origin=stored["origin"], **options)


def test_a_pickled_job_names_its_arrays_and_stays_under_a_megabyte(stored: dict[str, Any]) -> None:
    embeddings = stored["audit"].embeddings
    assert embeddings.location is not None and embeddings.maps["relu1"].nbytes > 4 * 2**20  # 160 x 4 x 64 x 63 float16
    plan = _plan(stored, LocalExecutor().sees)
    designs = {job.design for job in plan.jobs}
    assert {"same-architecture", "vgg"} <= designs
    sizes = [len(pickle.dumps(job)) for job in plan.jobs]
    assert max(sizes) < 2**20, sizes  # was 5.3 MB each when jobs carried the map and the sub-network
    assert not plan.shared.shipped, "every worker reads the store and the model file: nothing travels"
    assert all(job.audit_inputs.file is not None for job in plan.jobs)
    assert all(job.body is not None and job.body.origin is not None for job in plan.jobs
               if job.design == "same-architecture")
    assert all(job.attacker.body is None for job in plan.jobs)


def test_where_workers_cannot_read_the_store_each_array_travels_once_in_the_shared_data(stored: dict[str, Any]) -> None:
    plan = _plan(stored, None)  # no executor says its workers read this process's files
    embeddings = stored["audit"].embeddings
    arrays = {key: value for key, value in plan.shared.shipped.items() if not key.startswith("body/")}
    assert arrays.keys() == {"audit/relu1/map", "audit/pool3/map"}  # no pooled: every design here reads the map
    assert arrays["audit/relu1/map"].nbytes == embeddings.maps["relu1"].nbytes
    assert {"body/relu1", "body/pool3"} <= plan.shared.shipped.keys()
    assert max(len(pickle.dumps(job)) for job in plan.jobs) < 2**20
    assert all(job.audit_inputs.file is None and (job.body is None or job.body.origin is None) for job in plan.jobs)


def test_a_reference_to_a_store_the_worker_cannot_read_names_the_folder(tmp_path: Path) -> None:
    missing = EmbeddingReference("audit/conv/map", (3, 4), StoreFile(tmp_path / "elsewhere", "conv.map.f16.npy", "0" * 64))
    with pytest.raises(CacheError, match="elsewhere cannot be read on .*--cache-dir"):
        missing.resolve(None)  # type: ignore[arg-type]  # nothing shipped is needed


def test_a_model_that_is_another_file_on_the_worker_is_refused(onnx_model: Path, tmp_path: Path) -> None:
    origin = ModelOrigin.of(ModelSource(str(onnx_model)), tmp_path, 0)
    other = ModelOrigin(origin.source, origin.cache_dir, origin.seed, identity="0" * 64)
    with pytest.raises(ModelError, match="is not the audited model"):
        BodyReference("relu1", other).resolve(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# A worker process of its own: what reaches it is pickled, and its caches start empty.

_RECEIVED: dict[str, Any] = {}


def _receive(function: Callable[[Any, Any], Any], shared: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    _RECEIVED.update(function=function, shared=shared)


def _apply(job: Any) -> Any:
    return _RECEIVED["function"](job, _RECEIVED["shared"])


class SpawnedExecutor(Executor):
    """One spawned worker process; ``shared`` reaches it once, through its initializer."""

    name = "spawned"

    def run(self, function: Callable[[Any, Any], Any], jobs: Iterable[Any], shared: Any) -> Iterator[Any]:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_receive,
                                 initargs=(function, shared, torch.get_num_threads())) as pool:
            yield from pool.map(_apply, jobs)

    def sees(self, path: Path) -> bool:
        return True


def _scenario_rows(stored: dict[str, Any], executor: Executor) -> list[dict[str, Any]]:
    audit = stored["audit"]
    layers = [layer for layer in stored["layers"] if layer.name == "pool3"]
    permutations = SpeakerPermutations.draw(audit.attribute, audit.speakers, n=19, seed=0)
    results = run_scenarios(stored["model"], layers, audit, None, stored["folds"], permutations, {"pool3": 1.3},
                            scenarios=["worst", "s2"], kinds=["generic"], settings=AttackSettings(quick=True, epochs=1),
                            executor=executor, origin=stored["origin"])
    return [row.model_dump(mode="json") for row in results.rows]


def test_a_worker_process_resolving_the_references_gives_the_local_rows(stored: dict[str, Any]) -> None:
    local = _scenario_rows(stored, LocalExecutor())
    assert {row["attacker_design"] for row in local} >= {"same-architecture", "vgg"}
    assert _scenario_rows(stored, SpawnedExecutor()) == local


class _Recording(LocalExecutor):
    """The local executor, keeping the order its jobs came in."""

    def __init__(self) -> None:
        self.order: list[tuple[str, bool]] = []

    def run(self, function, jobs, shared):  # type: ignore[no-untyped-def]
        jobs = list(jobs)
        self.order = [(job.design, job.attacker.freeze_body) for job in jobs]
        return super().run(function, jobs, shared)


def test_scenario_jobs_start_costliest_first_and_rows_keep_the_plans_order(stored: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """On a pool the costliest attacker must not be left to run alone at the end; no figure moves."""
    import ser_audit.leakage.scenarios.run as run

    plain = _scenario_rows(stored, LocalExecutor())
    plan_order = [row["attacker_design"] for row in plain]
    costs = {design: rank for rank, design in enumerate(plan_order)}  # the plan's last job is made the costliest
    monkeypatch.setattr(run, "_expected_cost", lambda job, *_: costs[job.design] + 1)
    recording = _Recording()
    rows = _scenario_rows(stored, recording)
    assert [design for design, _ in recording.order] == plan_order[::-1]
    assert rows == plain  # rows in the plan's order, every figure as before


# ----------------------------------------------------------------------------------------------
# The process pool: spawned workers, one torch thread each, ``shared`` unpickled once per worker.

def test_a_process_pool_under_one_torch_thread_gives_the_local_rows(stored: dict[str, Any]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: the same float sums
    try:
        local = _scenario_rows(stored, LocalExecutor())
    finally:
        torch.set_num_threads(threads)
    assert len(local) >= 3 and {row["attacker_design"] for row in local} >= {"same-architecture", "vgg"}
    assert _scenario_rows(stored, ProcessExecutor(workers=2)) == local


def _where(delay: float, shared: dict[str, Any]) -> tuple[float, int, int, int]:
    from threadpoolctl import threadpool_info

    time.sleep(delay)
    threads = {torch.get_num_threads(), *(pool["num_threads"] for pool in threadpool_info())}
    return delay, os.getpid(), max(threads), id(shared)


def test_pool_workers_take_one_thread_and_the_shared_data_once_and_results_keep_job_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the workers inherit none: they limit themselves
    delays = [1.0, 0.0, 0.5, 0.0, 0.0]  # the first job finishes last
    seen = list(ProcessExecutor(workers=2).map(_where, delays, {"labels": np.arange(3)}))
    assert [delay for delay, *_ in seen] == delays
    workers = {pid for _, pid, _, _ in seen}
    assert len(workers) == 2 and os.getpid() not in workers
    assert {threads for _, _, threads, _ in seen} == {1}, "torch, BLAS and OpenMP: one thread each"
    assert len({(pid, shared) for _, pid, _, shared in seen}) == 2, "one unpickled copy per worker, kept for its jobs"
    assert ProcessExecutor().sees(tmp_path)


def _fail_on_second(job: int) -> int:
    if job == 1:
        raise ModelError("model m.onnx cannot be tapped at conv9; choose one of conv1, conv2")
    return job


def _killed_on_second(job: int) -> int:
    if job == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return job


def test_a_typed_error_in_a_worker_is_raised_as_it_is_and_a_killed_worker_in_one_line() -> None:
    with pytest.raises(ModelError, match="cannot be tapped at conv9") as raised:
        list(ProcessExecutor(workers=2).map(_fail_on_second, [0, 1, 2]))
    assert type(raised.value) is ModelError
    with pytest.raises(ConfigError, match=r"was killed by SIGKILL \(.*; rerun with --executor local$") as raised:
        list(ProcessExecutor(workers=2).map(_killed_on_second, [0, 1, 2]))
    assert "\n" not in str(raised.value)


def test_leaving_a_run_early_stops_its_workers() -> None:
    before = set(active_children())
    started = time.monotonic()
    results = ProcessExecutor(workers=2).map(time.sleep, [0, 600, 600])
    assert next(results) is None
    results.close()  # as an error or Ctrl-C in the caller does
    assert time.monotonic() - started < 120 and not set(active_children()) - before


_FORK_SERVER_SCRIPT = """
import json, os, sys, time
sys.path.insert(0, os.environ["JOBS"])  # this process's path, not the environment's: the server must take it
from ser_audit.execution.processes import ProcessExecutor
from probe_jobs import where

if __name__ == "__main__":
    executor = ProcessExecutor(workers=2)
    taken = executor.prepare(["heavy_module"])
    first, again = taken(), executor.prepare(["heavy_module"])()
    waited = time.monotonic()
    while taken() and time.monotonic() - waited < 120:
        time.sleep(0.05)
    os.environ["SET_AFTER_THE_SERVER_STARTED"] = "seen"
    print(json.dumps({"taken": [first, again, taken()], "caller": os.getpid(),
                      "seen": list(executor.map(where, [0.5, 0.5]))}))
"""


@pytest.mark.skipif(sys.platform != "linux" or sys.version_info < (3, 11), reason="workers are spawned there")
def test_workers_start_from_a_fork_server_that_imported_their_modules_once_while_the_caller_went_on(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    record = "import os\nwith open(os.environ['IMPORTS'], 'a') as log:\n    log.write(f'{os.getpid()} %s\\n')\n"
    (jobs / "heavy_module.py").write_text(record % "jobs")  # stands for torch and the attackers
    (tmp_path / "heavy_module.py").write_text(record % "decoy")  # in the working folder: never to be imported
    (jobs / "probe_jobs.py").write_text(
        "import os, sys, time\ndef where(delay):\n    time.sleep(delay)\n"
        "    return os.getpid(), 'heavy_module' in sys.modules, os.environ.get('SET_AFTER_THE_SERVER_STARTED')\n")
    (tmp_path / "main.py").write_text(_FORK_SERVER_SCRIPT)
    env = {**os.environ, "IMPORTS": str(tmp_path / "imports.log"), "JOBS": str(jobs),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(tmp_path / "main.py")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    imports = [line.split() for line in (tmp_path / "imports.log").read_text().splitlines()]
    workers = {pid for pid, _, _ in run["seen"]}
    assert [where for _, where in imports] == ["jobs"], "imported once, by the fork server, from this process's path"
    assert len(workers) == 2 and int(imports[0][0]) not in workers | {run["caller"]}
    assert all(loaded for _, loaded, _ in run["seen"]), "every worker starts with it loaded"
    assert all(late == "seen" for _, _, late in run["seen"]), "the run's environment, not the server's"
    assert run["taken"] == [1, 0, 0], "a core while the server imports, none once it is ready or for a second call"


# ----------------------------------------------------------------------------------------------
# Ray: a head and a worker node, each its own `ray start` process with one CPU.

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this `ray start` leads (its GCS, raylet and workers), SIGKILL to what lingers."""
    for sent, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:  # the whole group is gone
            break
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def two_node_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install 'ser-audit[ray]'")
    # Ray's unix sockets live under the temp dir and must stay under 108 characters: a short folder.
    temp = Path(tempfile.mkdtemp(prefix="ray", dir=tmp_path if len(str(tmp_path)) < 40 else "/tmp"))
    command = [str(Path(sys.executable).with_name("ray")), "start", "--num-cpus", "1", "--block",
               "--node-ip-address", "127.0.0.1"]
    # Ray 2.60's `ray start` turns token authentication on by default, while a client reads its auth mode once,
    # when ray is imported: this loopback-only cluster opts out (a Ray without token authentication ignores it).
    environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    address = f"127.0.0.1:{_free_port()}"
    started: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str, name: str) -> None:
        log = open(tmp_path / f"{name}.log", "wb")
        started.append(subprocess.Popen([*command, *arguments, "--temp-dir", str(temp / name)], env=environment,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start("--head", "--port", address.split(":")[1], "--include-dashboard", "false", name="head")
        for _ in range(60):
            if subprocess.run([command[0], "status", "--address", address], env=environment,
                              capture_output=True).returncode == 0:
                break
            time.sleep(1)
        start("--address", address, name="worker")
        ray.init(address=address, log_to_driver=False)
        for _ in range(60):
            if sum(node["Alive"] for node in ray.nodes()) == 2:
                break
            time.sleep(1)
        assert sum(node["Alive"] for node in ray.nodes()) == 2, (tmp_path / "worker.log").read_text()[-2000:]
        monkeypatch.setenv("RAY_ADDRESS", address)
        yield address
    finally:
        ray.shutdown()
        for process in reversed(started):
            _stop(process)
        subprocess.run(["rm", "-rf", str(temp)], check=False)


@pytest.mark.slow
def test_a_two_node_ray_cluster_gives_the_local_rows(two_node_cluster: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from ser_audit.execution.ray import RayExecutor

    corpus = tiny_corpus(tmp_path / "corpus", per_speaker=6, seed=1)
    aux = tiny_corpus(tmp_path / "aux", preset="ravdess-like", per_speaker=3, seed=3)
    spec, weights = write_planted_cnn(tmp_path, leak=True, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as Ray's one-CPU workers: the same float sums

    def rows(executor: str) -> list[dict[str, Any]]:
        report = leakage_audit(ModelSource(spec, weights=weights), corpus=str(corpus.root / "manifest.csv"),
                               aux_corpus=str(aux.root / "manifest.csv"), quick=True, seed=1,
                               cache_dir=tmp_path / "cache", scenarios=["worst", "s1", "s2"], attackers=["generic"],
                               attacker_epochs=2, executor=executor)
        assert report.leakage is not None
        return [row.model_dump(mode="json") for row in report.leakage.results]

    try:
        local = rows("local")
        assert {row["attacker_design"] for row in local} >= {"same-architecture", "vgg"}
        assert {row["training_data"] for row in local} == {"same", "aux"}
        assert rows("ray") == local  # both nodes read tmp_path: jobs name the store and the model file
        monkeypatch.setattr(RayExecutor, "sees", lambda self, path: False)
        assert rows("ray") == local  # arrays and sub-networks through the object store, once
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# --executor auto, the default: worker processes where they pay.

@pytest.mark.parametrize(("device", "jobs", "cores", "can_spawn", "expected"), [
    ("cpu", 12, 2, True, "processes"),
    ("cpu", 12, 16, True, "processes"),
    ("cuda:0", 12, 16, True, "local"),  # one device: a CUDA context per worker buys nothing
    ("cpu", 1, 16, True, "local"),  # one job: spawning would only add start-up
    ("cpu", 12, 1, True, "local"),
    ("cpu", 12, 4, False, "local"),  # a script piped in on stdin cannot be re-imported by a worker
])
def test_auto_runs_jobs_in_processes_only_on_a_multi_core_cpu(device: str, jobs: int, cores: int, can_spawn: bool,
                                                              expected: str) -> None:
    assert choose(device, jobs=jobs, cores=cores, can_spawn=can_spawn) == expected


def test_auto_knows_a_main_script_on_stdin_cannot_be_spawned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import types

    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert spawnable()  # an interactive session or a notebook: no file to re-import
    main.__file__ = "<stdin>"
    assert not spawnable()
    script = tmp_path / "audit.py"
    script.write_text("")
    main.__file__ = str(script)
    assert spawnable()


@pytest.mark.spawns
def test_auto_spawns_workers_on_a_multi_core_cpu_and_gives_the_one_thread_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ser_audit.execution.auto as auto

    monkeypatch.setattr(auto, "usable_cores", lambda: 2)  # read in this process: CI's machine may have one core
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    corpus = tiny_corpus(tmp_path / "corpus", per_speaker=6, seed=1)
    spec, weights = write_planted_cnn(tmp_path, leak=True, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: the same float sums

    def audit(**executor: str) -> Any:
        return leakage_audit(ModelSource(spec, weights=weights), corpus=str(corpus.root / "manifest.csv"),
                             aux_corpus=None, quick=True, seed=1, cache_dir=tmp_path / "cache",
                             scenarios=["worst"], attackers=["generic"], attacker_epochs=1, **executor)

    try:
        default, local = audit(executor="auto"), audit()  # the CLI's default, and the Python API's (local)
    finally:
        torch.set_num_threads(threads)
    assert (default.config.executor, local.config.executor) == ("auto", "local")
    assert any("ran in worker processes" in note for note in default.notes)
    assert not any("ran in worker processes" in note for note in local.notes)
    rows = [[row.model_dump(mode="json") for row in report.leakage.results] for report in (default, local)]
    assert rows[0] == rows[1] and any(row["attacker_design"] == "same-architecture" for row in rows[0])


def test_auto_stays_in_this_process_where_workers_could_not_run_the_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import ser_audit.execution.auto as auto

    monkeypatch.setattr(auto, "usable_cores", lambda: 4)
    monkeypatch.setattr(auto, "choose", choose)  # the real rule (in-process tests pin it to local)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a budget of one core
    assert auto.granted_cores() == 1
    assert auto.AutoExecutor().prepare(["json"])() == 0, "one core granted: no worker starts early"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto.AutoExecutor("cuda").prepare(["json"])() == 0, "on a GPU the jobs stay in this process"
    assert auto.granted_cores() == 3
    lock = threading.Lock()  # does not pickle: the jobs run here, as they would under local
    executor = auto.AutoExecutor()
    assert list(executor.map(lambda job, held: job + held.locked(), [1, 2], lock)) == [1, 2]
    assert executor.chosen == "local"
    executor = auto.AutoExecutor(workers_can_load=False)  # a python:__main__: factory
    assert list(executor.map(_add, [1, 2], 10)) == [11, 12] and executor.chosen == "local"


def _add(job: int, shared: int) -> int:
    return job + shared


def _chosen_in_a_daemon(queue: Any) -> None:
    from ser_audit.execution.auto import spawnable

    queue.put(spawnable())


def test_auto_knows_a_daemonic_worker_cannot_start_workers() -> None:
    context = get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_chosen_in_a_daemon, args=(queue,), daemon=True)
    process.start()
    assert queue.get(timeout=60) is False
    process.join(60)
