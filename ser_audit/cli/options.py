"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit.config import MAX_SEED, CorpusSource, ModelSource
from ser_audit.errors import ConfigError

ModelArgument = Annotated[
    str,
    typer.Argument(help="*.onnx, TorchScript *.pt, torch.export *.pt2, a transformers save_pretrained folder, zoo:NAME "
                        "or python:pkg.module:factory (with --weights)."),
]
FrontendOption = Annotated[
    Optional[Path],
    typer.Option("--frontend", help="Front-end spec JSON for models that carry none."),
]
WeightsOption = Annotated[
    Optional[Path],
    typer.Option("--weights", help="State dict for python:module:factory models (loaded with weights_only=True)."),
]
TrustPickleOption = Annotated[
    bool,
    typer.Option("--trust-pickle", help="Allow loading a pickled whole module (runs code from the file)."),
]
CorpusOption = Annotated[
    str,
    typer.Option(
        "--corpus", help="Corpus name (synthetic, iemocap-like, ravdess-like, a loader plugin) or a CSV/JSONL manifest."
    ),
]
CorpusRootOption = Annotated[
    Optional[Path],
    typer.Option("--corpus-root", envvar="SER_AUDIT_DATA", help="Folder holding a real corpus."),
]
CorpusOptionOption = Annotated[
    Optional[list[str]],
    typer.Option("--corpus-option", help="Corpus-specific name=value (repeatable); `corpus info NAME` lists them."),
]
SentenceDisjointOption = Annotated[
    bool,
    typer.Option("--sentence-disjoint", help="Also keep test sentences out of training (content control)."),
]
LayersOption = Annotated[
    Optional[str],
    typer.Option(
        "--layers",
        help="Names, globs, indices, ranges (2-5) or 'all'; default: pooling layers and the last hidden layer.",
    ),
]
AttributeOption = Annotated[
    str,
    typer.Option("--attribute", help="Private attribute to attack: gender or speaker."),
]
FoldsOption = Annotated[
    Optional[int],
    typer.Option("--folds", min=2, help="Speaker-disjoint folds (default: leave-one-session-out, else 5)."),
]
SeedOption = Annotated[
    int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed for synthesis, training and attackers (0 to 2**32 - 1).")
]
OutOption = Annotated[str, typer.Option("--out", help="Report folder, a .json path, or - for stdout.")]
CacheDirOption = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", envvar="SER_AUDIT_CACHE", help="Cache for synthetic corpora and reference models."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
MaxLeakageOption = Annotated[
    Optional[float],
    typer.Option("--max-leakage", min=0.0, max=1.0,
                 help="Gate: fail (exit 1) if a layer is shown to leak past this L (significant, lower bound above it)."),
]
MaxGapOption = Annotated[
    Optional[float],
    typer.Option("--max-gap", min=0.0, max=1.0,
                 help="Gate: fail (exit 1) if a layer is shown to leak past chance + this (significant, lower bound "
                      "above it)."),
]
EpsOption = Annotated[
    str, typer.Option("--eps", help="FGSM eps grid, relative to the input's spread (P2's grid by default).")
]
MinRobustUarOption = Annotated[
    Optional[float], typer.Option("--min-robust-uar", min=0.0, max=1.0,
                                 help="Gate: FGSM UAR at --at-eps (default: the grid's largest eps) must reach this.")
]
AtEpsOption = Annotated[Optional[float], typer.Option(
    "--at-eps", help="Eps of the --min-robust-uar gate (needs it); default: the grid's largest.")]


def parse_eps_grid(text: str) -> tuple[float, ...]:
    """``0,0.02,0.04`` to a sorted grid that always starts at 0 (clean); the range is checked by the config."""
    try:
        values = {float(v) for v in text.split(",") if v.strip()}
    except ValueError:
        raise ConfigError(f"--eps {text!r}: give comma-separated numbers, e.g. 0,0.02,0.04") from None
    if not values:
        raise ConfigError(f"--eps {text!r}: the grid is empty; give comma-separated numbers, e.g. 0,0.02,0.04")
    return tuple(sorted(values | {0.0}))
AuxCorpusOption = Annotated[
    str,
    typer.Option("--aux-corpus", help="The attacker's own training corpus for s1, s3, s4 (name or manifest)."),
]
ScenariosOption = Annotated[
    str, typer.Option("--scenarios", help="Comma-separated subset of worst,s1,s2,s3,s4 (P0's attacker scenarios).")
]
AttackersOption = Annotated[
    str, typer.Option("--attackers", help="generic (attribute only), aware (attribute + emotion), or both.")
]
QuickLeakageOption = Annotated[
    bool,
    typer.Option("--quick", help="Without --layers, leave the first of more than two map layers to the probe; one "
                                 "design per scenario, fewer epochs and permutations."),
]
DeviceOption = Annotated[str, typer.Option(
    "--device", help="Where every stage runs (extraction, attackers, probes, training): auto (CUDA when torch sees "
                     "it), cpu, cuda or cuda:N.")]
ExecutorOption = Annotated[str, typer.Option(
    "--executor", help="auto (processes on a CPU with two or more cores, else local), local (this process), "
                       "processes (one worker process per core, one torch thread each), or ray (needs the ray extra).")]
FormatOption = Annotated[
    str, typer.Option("--format", help="Report files to write: comma-separated json,md,html,junit (json always).")
]
PolicyOption = Annotated[
    Optional[Path], typer.Option("--policy", help="TOML policy of thresholds (schemas/policy.schema.json); adds gates.")
]


def model_source(model: str, frontend: Path | None, weights: Path | None, trust_pickle: bool) -> ModelSource:
    return ModelSource(model, frontend=frontend, weights=weights, trust_pickle=trust_pickle)


def corpus_source(corpus: str, root: Path | None, corpus_options: list[str] | None) -> CorpusSource:
    return CorpusSource(corpus, root, tuple(corpus_options or ()))


# The robustness probes' settings, shared by ``robustness`` and ``audit``.
EtaOption = Annotated[Optional[float], typer.Option("--eta", help="FGSM clip around x (P2 eq. 2), relative like eps.")]
PgdEpsOption = Annotated[float, typer.Option("--pgd-eps", help="PGD radius, relative.")]
PgdStepsOption = Annotated[Optional[int], typer.Option("--pgd-steps",
                                                       help="PGD iterations (default 10, 3 with --quick).")]
PgdStepSizeOption = Annotated[Optional[float], typer.Option("--pgd-step-size", help="Relative; default 2.5 eps / steps.")]
DomainOption = Annotated[str, typer.Option("--domain", help="features (model input) or waveform.")]
AttackTargetOption = Annotated[str, typer.Option("--attack-target", help="labels or predictions.")]
TargetedOption = Annotated[Optional[str], typer.Option("--targeted",
                                                       help="Push every prediction towards this emotion.")]
GradientOption = Annotated[str, typer.Option("--gradient", help="auto (SPSA fallback) or white-box.")]
ProbeOption = Annotated[Optional[list[str]], typer.Option(
    "--probe", help="A registered plugin probe to run too, at --pgd-eps (repeatable).")]
PerturbOption = Annotated[str, typer.Option(
    "--perturb", help="Input to attack: primary (the utterance) or reference (a two-input model's neutral "
    "reference, a poisoned enrolment).")]


def probe_settings(eps: str, eta: float | None, pgd_eps: float, pgd_steps: int | None, pgd_step_size: float | None,
                   domain: str, attack_target: str, targeted: str | None, gradient: str, probe: list[str] | None,
                   perturb: str) -> dict[str, object]:
    """The probes' part of an ``AuditConfig`` from the flags."""
    return dict(grid=parse_eps_grid(eps), eta=eta, pgd_eps=pgd_eps, pgd_steps=pgd_steps, pgd_step_size=pgd_step_size,
                domain=domain, attack_target=attack_target, targeted_class=targeted, gradient=gradient,
                extra_probes=tuple(probe or ()), perturb=perturb)
