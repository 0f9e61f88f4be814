"""Wall time of each stage of an audit on the CPU against CUDA, side by side in one run (issue #25).

Stages: embedding extraction, the linear probe with its permutation nulls, the scenario
attackers (from one quick leakage audit), the robustness probes (FGSM grid and PGD, from one
quick robustness audit), adversarial hardening, and training a reference model, each through
the public API (``ser_audit.api``). A stage's time is read from the progress tasks the library
reports (a recording observer), so one audit gives several stages; each API call's whole wall
time is a row too. Every device gets a fresh embedding store, so extraction is cold on both;
the corpora are read once before any timing so that neither device gets a warmer page cache.

A call gets ``device=`` only where it takes one (``AuditConfig.device`` for the audits; a
``device`` parameter, or a ``device`` field of the hardening recipe, elsewhere); a call that
takes none runs once, on the CPU, and its row says so. On CUDA, a stage that allocated nothing
on the GPU is flagged: it was given the device but ran on the CPU. CUDA work is synchronised
before each stage's clock stops. Without CUDA the cpu column is printed and cuda is said absent.

    OMP_NUM_THREADS=1 python benchmarks/device.py        # zoo:cnn4 on the synthetic corpus (400 utterances)
    python benchmarks/device.py --smoke                  # a planted CNN and a toy recipe on tiny corpora (CI)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ser_audit import api
from ser_audit.devices import configure_threads
from ser_audit.robustness.hardening import HardeningRecipe


@dataclass(frozen=True)
class Stage:
    """One row of the table: which API call runs it, and which of its progress tasks are this stage
    (``None``: the whole call)."""

    name: str
    call: str
    tasks: Callable[[str], bool] | None = None


STAGES = (
    Stage("extraction", "leakage audit", lambda label: label.startswith("extracting")),
    Stage("linear probe + permutation nulls", "leakage audit", lambda label: label.startswith("fitting linear-probe")),
    Stage("scenario attackers", "leakage audit", lambda label: label.endswith("scenario attackers")),
    Stage("leakage audit, whole call", "leakage audit"),
    Stage("robustness: FGSM grid + PGD", "robustness audit", lambda label: label.startswith("probing")),
    Stage("robustness audit, whole call", "robustness audit"),
    Stage("hardening: adversarial training", "hardening", lambda label: label.startswith("adversarial training")),
    Stage("hardening, whole call", "hardening"),
    Stage("reference-model training, whole call", "zoo training"),
)


def cuda_allocations() -> int:
    """CUDA allocations so far in this process (a cumulative count, so nested stages cannot reset it)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0
    return int(torch.cuda.memory_stats().get("allocation.all.allocated", 0))


def synchronise() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Task:
    label: str
    seconds: float
    cuda_allocations: int


class _Handle:
    def advance(self, amount: int = 1) -> None:
        return None


@dataclass
class StageClock:
    """A progress observer that records every task's wall time and CUDA allocations."""

    tasks: list[Task] = field(default_factory=list)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[_Handle]:
        started, allocated = time.perf_counter(), cuda_allocations()
        try:
            yield _Handle()
        finally:
            synchronise()
            self.tasks.append(Task(description, time.perf_counter() - started, cuda_allocations() - allocated))

    def note(self, message: str) -> None:
        return None


@dataclass(frozen=True)
class Timing:
    seconds: float
    cuda_allocations: int


@dataclass(frozen=True)
class Workload:
    """What every device runs: the model and corpora, and the calls by name."""

    model: api.ModelSource
    corpus: str
    aux_corpus: str
    shared_cache: Path
    hardening_epochs: int
    train: Callable[[Path, dict[str, Any]], Any]
    train_takes_device: bool

    def fresh_cache(self, folder: Path, *, with_zoo: bool = True) -> Path:
        """A cache with the shared corpora (and trained models) linked in and a new embedding store."""
        folder.mkdir(parents=True)
        for item in ("zoo", "corpora") if with_zoo else ("corpora",):
            (folder / item).symlink_to(self.shared_cache / item)
        return folder

    def calls(self) -> dict[str, tuple[bool, Callable[[Path, str | None, StageClock], Any]]]:
        """Each call by name: (whether it takes a device, the call on a scratch folder, a device or None)."""
        audit_options: dict[str, Any] = {"corpus": self.corpus, "quick": True}

        def leakage(folder: Path, device: str | None, clock: StageClock) -> Any:
            return api.leakage_audit(self.model, aux_corpus=self.aux_corpus, cache_dir=self.fresh_cache(folder),
                                     observer=clock, **audit_options, **_device(device))

        def robustness(folder: Path, device: str | None, clock: StageClock) -> Any:
            return api.robustness_audit(self.model, cache_dir=self.fresh_cache(folder), observer=clock,
                                        **audit_options, **_device(device))

        def hardening(folder: Path, device: str | None, clock: StageClock) -> Any:
            recipe = HardeningRecipe("vanilla", epochs=self.hardening_epochs, warmup_epochs=1)
            options: dict[str, Any] = {}
            if device is not None and "device" in _parameters(api.harden_model):
                options["device"] = device
            elif device is not None:
                recipe = dataclasses.replace(recipe, device=device)  # type: ignore[call-arg]
            return api.harden_model(self.model, folder / "hardened.pt2", recipe=recipe, corpus=self.corpus,
                                    cache_dir=self.fresh_cache(folder), observer=clock, **options)

        def training(folder: Path, device: str | None, clock: StageClock) -> Any:
            return self.train(self.fresh_cache(folder, with_zoo=False), {"observer": clock, **_device(device)})

        hardening_takes_device = ("device" in _parameters(api.harden_model)
                                  or "device" in {f.name for f in dataclasses.fields(HardeningRecipe)})
        return {
            "leakage audit": ("device" in api.AuditConfig.model_fields, leakage),
            "robustness audit": ("device" in api.AuditConfig.model_fields, robustness),
            "hardening": (hardening_takes_device, hardening),
            "zoo training": (self.train_takes_device, training),
        }


def _parameters(function: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(function).parameters)


def _device(device: str | None) -> dict[str, Any]:
    return {} if device is None else {"device": device}


def run_device(workload: Workload, device: str, scratch: Path) -> tuple[dict[str, Timing], list[str]]:
    """Every stage's timing on ``device``; calls that take no device run only when ``device`` is the CPU."""
    timings: dict[str, Timing] = {}
    skipped = []
    for call, (takes_device, function) in workload.calls().items():
        if not takes_device and device != "cpu":
            skipped.append(call)
            continue
        clock = StageClock()
        started, allocated = time.perf_counter(), cuda_allocations()
        function(scratch / f"{device}-{call.replace(' ', '-')}", device if takes_device else None, clock)
        synchronise()
        whole = Timing(time.perf_counter() - started, cuda_allocations() - allocated)
        for stage in (stage for stage in STAGES if stage.call == call):
            if stage.tasks is None:
                timings[stage.name] = whole
                continue
            mine = [task for task in clock.tasks if stage.tasks(task.label)]
            if mine:
                timings[stage.name] = Timing(sum(t.seconds for t in mine), sum(t.cuda_allocations for t in mine))
    return timings, skipped


def table(results: dict[str, dict[str, Timing]], takes_device: dict[str, bool], cuda: str | None) -> list[str]:
    lines = ["| stage | API call | cpu | cuda | cpu / cuda | note |", "|---|---|---|---|---|---|"]
    for stage in STAGES:
        on_cpu = results["cpu"].get(stage.name)
        on_cuda = results[cuda].get(stage.name) if cuda else None
        note = ""
        if not takes_device[stage.call]:
            note = f"the {stage.call} call takes no device yet: cpu only"
        elif cuda is None:
            note = "cuda absent"
        elif on_cuda is not None and on_cuda.cuda_allocations == 0:
            note = "given cuda but allocated nothing there: ran on the CPU"
        if on_cpu is None and on_cuda is None:
            note = "no such progress task in this run"
        ratio = f"{on_cpu.seconds / on_cuda.seconds:.2f}x" if on_cpu and on_cuda and on_cuda.seconds > 0 else "-"
        lines.append(f"| {stage.name} | {stage.call} | {_seconds(on_cpu)} | {_seconds(on_cuda)} | {ratio} | {note} |")
    return lines


def _seconds(timing: Timing | None) -> str:
    return "-" if timing is None else f"{timing.seconds:.2f} s"


def warm_page_cache(folders: list[Path]) -> None:
    """Read every file once, so that the first device measured does not pay for a cold disk."""
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                path.read_bytes()


def warm_cuda(device: str) -> None:
    """Create the CUDA context and cuDNN handles outside any stage's clock."""
    layer = torch.nn.Conv2d(1, 4, 3).to(device)
    layer(torch.randn(2, 1, 16, 16, device=device, requires_grad=True)).sum().backward()
    synchronise()


def cnn4_workload(folder: Path, *, hardening_epochs: int, zoo: str) -> Workload:
    """zoo:cnn4 on the synthetic corpus; the model trained and the corpora synthesised first, untimed."""
    from ser_audit.models.zoo import load_or_train

    cache = api.default_cache_dir()
    load_or_train("cnn4", cache_dir=cache)
    for name in ("synthetic", "ravdess-like"):
        api.load_corpus(name, cache_dir=cache, seed=0)

    def train(cache_dir: Path, options: dict[str, Any]) -> Any:
        return api.train_reference_model(zoo, cache_dir / f"{zoo}.ckpt", cache_dir=cache_dir, **options)

    return Workload(api.ModelSource("zoo:cnn4"), "synthetic", "ravdess-like", cache, hardening_epochs, train,
                    "device" in _parameters(api.train_reference_model))


def smoke_workload(folder: Path) -> Workload:
    """A planted CNN on a 40-utterance corpus, and a two-epoch toy recipe for the training stage.

    The toy recipe goes through ``models.training.train_reference`` (the API trains only registered
    ``zoo:`` models, which take minutes)."""
    from ser_audit.frontend.spec import Features, FrontEndSpec
    from ser_audit.models.training import train_reference
    from ser_audit.models.zoo import ReferenceModel
    from ser_audit.models.zoo import Stage as TrainingStage
    from ser_audit.testing import tiny_corpus, write_planted_cnn

    corpus = tiny_corpus(folder / "corpus", per_speaker=4, seed=0)
    aux = tiny_corpus(folder / "aux", preset="ravdess-like", per_speaker=2, seed=0)
    spec, weights = write_planted_cnn(folder / "model", leak=True)
    cache = folder / "shared-cache"
    for item in ("zoo", "corpora"):
        (cache / item).mkdir(parents=True)
    toy = ReferenceModel(
        "toy", "benchmark", "a one-conv toy",
        lambda n_classes: torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                              torch.nn.Linear(4, n_classes)),
        FrontEndSpec(features=Features(kind="log_mel", n_fft=256, hop_length=128, n_mels=16),
                     layout=["batch", "channel", "freq", "time"], duration_s=0.5, emotions=[]),
        training=TrainingStage(corpus="iemocap-like", epochs=2, batch_size=16))

    def train(cache_dir: Path, options: dict[str, Any]) -> Any:
        return train_reference(toy, cache_dir=cache_dir, corpora={"iemocap-like": corpus}, **options)

    return Workload(api.ModelSource(spec, weights=weights), str(corpus.root / "manifest.csv"),
                    str(aux.root / "manifest.csv"), cache, 2, train, "device" in _parameters(train_reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", default="cuda", help="the CUDA device to compare with (cuda or cuda:N)")
    parser.add_argument("--hardening-epochs", type=int, default=3)
    parser.add_argument("--zoo", default="cnn4", help="the reference model the training stage trains from scratch")
    parser.add_argument("--smoke", action="store_true", help="a planted CNN and a toy recipe on tiny corpora")
    args = parser.parse_args()
    threads = configure_threads()
    cuda = args.cuda if torch.cuda.is_available() else None
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        workload = (smoke_workload(folder) if args.smoke
                    else cnn4_workload(folder, hardening_epochs=args.hardening_epochs, zoo=args.zoo))
        warm_page_cache([workload.shared_cache / "corpora", folder])
        results: dict[str, dict[str, Timing]] = {}
        for device in ("cpu", cuda) if cuda else ("cpu",):
            if device != "cpu":
                warm_cuda(device)
            results[device], skipped = run_device(workload, device, folder)
            print(f"{device}: {len(results[device])} stages timed"
                  + (f"; not run here (no device= taken): {', '.join(skipped)}" if skipped else ""), flush=True)
        takes_device = {call: takes for call, (takes, _) in workload.calls().items()}
    where = (f"cuda: {torch.cuda.get_device_name(cuda)}" if cuda
             else "cuda: absent (torch sees no CUDA device); the cpu column alone")
    print(f"\ntorch {torch.__version__}, {threads} CPU thread(s) (OMP_NUM_THREADS "
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}); {where}\n")
    print("\n".join(table(results, takes_device, cuda)))
    missing = [stage.name for stage in STAGES if stage.name not in results["cpu"]]
    if missing:  # a progress task renamed in the library: fail, so that the smoke test sees it
        sys.exit(f"no progress task matched these stages: {', '.join(missing)}")


if __name__ == "__main__":
    main()
