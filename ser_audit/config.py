"""One frozen description of an audit run, recorded in the report so that a report says how it was made.

The CLI's flags and the API's keyword arguments both become an :class:`AuditConfig`; ``--quick``
and every other default that depends on another setting is resolved here and nowhere else.

Example:
    >>> config = AuditConfig.create("zoo:cnn4", quick=True, max_gap=0.1)
    >>> config.permutations, config.attacker_epochs, config.probes.pgd_steps
    (199, 3, 3)
    >>> config.scenarios
    ('worst', 's1', 's2', 's3', 's4')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ser_audit.devices import parse_device
from ser_audit.errors import ConfigError

SCENARIOS = ("worst", "s1", "s2", "s3", "s4")
ATTACKER_KINDS = ("generic", "aware")
ATTRIBUTES = ("gender", "speaker")
DEFAULT_CORPUS = "synthetic"
DEFAULT_AUX_CORPUS = "ravdess-like"
# P2's FGSM grid, relative to the input's spread.
DEFAULT_EPS_GRID = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)
# Seeds reach numpy, scikit-learn and torch; scikit-learn's random_state takes 32 bits.
MAX_SEED = 2**32 - 1


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Frozen):
    """How to load a model: the MODEL argument and the flags that go with it."""

    spec: str = Field(description="*.onnx, TorchScript *.pt, torch.export *.pt2, zoo:NAME or python:pkg.module:factory.")
    frontend: Path | None = Field(None, description="--frontend: a front-end spec for models that carry none.")
    weights: Path | None = Field(None, description="--weights: a state dict for python: factories.")
    trust_pickle: bool = Field(False, description="--trust-pickle: allow a pickled whole module.")

    def __init__(self, spec: str | None = None, /, **values: Any) -> None:
        super().__init__(**({"spec": spec} if spec is not None else {}), **values)


class CorpusSource(_Frozen):
    """Which corpus to read: --corpus, --corpus-root and --corpus-option."""

    spec: str = Field(DEFAULT_CORPUS, description="Preset, loader plugin name, or a CSV/JSONL manifest.")
    root: Path | None = Field(None, description="Folder holding a real corpus.")
    options: tuple[str, ...] = Field((), description="Corpus-specific name=value options.")

    def __init__(self, spec: str | None = None, root: Path | None = None, options: Sequence[str] = (), /,
                 **values: Any) -> None:
        positional: dict[str, Any] = {"root": root, "options": tuple(options)}
        if spec is not None:
            positional["spec"] = spec
        super().__init__(**{**positional, **values})


class ProbeOptions(_Frozen):
    """What the robustness probes do: FGSM over an eps grid (relative to the input's spread), PGD at one eps."""

    grid: tuple[float, ...] = Field(DEFAULT_EPS_GRID, description="FGSM eps grid; 0 (clean) is always added.")
    eta: float | None = Field(None, description="FGSM clip around x (P2 eq. 2), relative like eps.")
    pgd_eps: float | None = Field(0.02, description="PGD radius, relative; None skips PGD.")
    pgd_steps: int = Field(10, description="PGD iterations (3 under --quick unless given).")
    pgd_step_size: float | None = Field(None, description="Relative; default eps/4.")
    domain: Literal["features", "waveform"] = "features"
    attack_target: Literal["labels", "predictions"] = "labels"
    targeted_class: str | None = Field(None, description="Push every prediction towards this emotion.")
    extra_probes: tuple[str, ...] = Field((), description="--probe: registered plugin probes, run at PGD's eps.")
    perturb: Literal["primary", "reference"] = Field(
        "primary", description="--perturb: the input attacked; primary (the utterance) or reference (a two-input "
        "model's neutral reference: a poisoned enrolment, the utterance left clean).")
    gradient: Literal["auto", "white-box"] = Field(
        "auto", description="auto falls back to an SPSA estimate (an upper bound on robustness) where no gradient exists.")


def _older_names(schema: dict[str, Any]) -> None:
    """The schema also admits what configs recorded before report 1.8 hold, as the model reads them."""
    schema["properties"]["hardened"] = {
        **schema["properties"]["compare_with"], "deprecated": True,
        "description": "Reports before 1.8: audit --hardened, the older name of compare_with, read as it."}


class AuditConfig(_Frozen):
    """Everything that decides an audit's numbers and verdict, with every default resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_older_names)

    model: ModelSource
    compare_with: ModelSource | None = Field(
        None, description="audit --compare-with: another model audited beside this one (a hardened or protected copy, "
                          "another version, another architecture with the same front-end). Reports before 1.8 called "
                          "it `hardened`, which is still read as this.")
    corpus: CorpusSource = CorpusSource()
    aux_corpus: CorpusSource | None = Field(CorpusSource(DEFAULT_AUX_CORPUS),
                                            description="The attackers' own training data for s1, s3 and s4.")
    layers: str | None = Field(None, description="--layers; None: the model's default taps.")
    attribute: Literal["gender", "speaker"] = "gender"
    scenarios: tuple[str, ...] = Field(SCENARIOS, description="P0's scenarios; empty runs the linear probe alone.")
    attackers: tuple[str, ...] = Field(ATTACKER_KINDS, description="generic and/or application-aware attackers.")
    folds: int | None = Field(None, ge=2, description="Speaker-disjoint folds; None: leave-one-session-out, else 5.")
    sentence_disjoint: bool = False
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed for synthesis, training and attackers (0 to 2**32 - 1).")
    quick: bool = False
    device: str = Field("auto", description="auto (CUDA when torch sees it, else the CPU), cpu, cuda or cuda:N.")
    # local for the Python API: spawned workers re-import the calling script, which a script without a main guard
    # cannot survive; the CLI (whose entry point is guarded) passes auto.
    executor: str = Field("local", description="Where the scenario attackers run: local (this process; the Python "
                          "API's default), auto (the CLI's: worker processes on a CPU with two or more cores, else "
                          "this process), processes, ray or a plugin.")
    cache_dir: Path | None = Field(None, description="Cache for corpora, reference models and embeddings.")
    permutations: int = Field(999, ge=19, description="Whole-speaker relabellings shared by every row (199 under --quick).")
    attacker_epochs: int = Field(8, ge=1, description="Epochs of every neural attacker (3 under --quick).")
    probes: ProbeOptions = ProbeOptions()
    max_leakage: float | None = Field(None, ge=0, le=1, description="--max-leakage gate (a policy rule over every row).")
    max_gap: float | None = Field(None, ge=0, le=1, description="--max-gap gate.")
    min_robust_uar: float | None = Field(None, ge=0, le=1, description="--min-robust-uar gate.")
    at_eps: float | None = Field(None, description="Eps of the --min-robust-uar gate; default: the grid's largest.")
    policy: Path | None = Field(None, description="A TOML policy whose rules become gates beside the flags'.")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, values: Any) -> Any:
        """``--quick`` and the choice lists, resolved once: what a caller leaves out follows from the rest."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        quick = bool(values.get("quick", False))
        if values.get("permutations") is None:
            values["permutations"] = 199 if quick else 999
        if values.get("attacker_epochs") is None:
            values["attacker_epochs"] = 3 if quick else 8
        probes = values.get("probes")
        probes = dict(probes.model_dump() if isinstance(probes, ProbeOptions) else probes or {})
        if probes.get("pgd_steps") is None:
            probes["pgd_steps"] = 3 if quick else 10
        if probes.get("grid") is not None:
            try:
                probes["grid"] = tuple(sorted({float(eps) for eps in probes["grid"]} | {0.0}))
            except (TypeError, ValueError):
                raise ConfigError(f"--eps {probes['grid']!r}: give numbers, e.g. 0,0.02,0.04") from None
            check_relative_eps("--eps", probes["grid"], allow_zero=True)
            if max(probes["grid"]) == 0:
                raise ConfigError("--eps: the grid holds no eps above 0 (only the clean input); give e.g. 0,0.02,0.04")
        if isinstance(probes.get("pgd_eps"), (int, float)):
            check_relative_eps("--pgd-eps", (probes["pgd_eps"],), allow_zero=False)
        if isinstance(values.get("at_eps"), (int, float)):
            check_relative_eps("--at-eps", (values["at_eps"],), allow_zero=True)
            if values.get("min_robust_uar") is None:
                raise ConfigError(f"--at-eps {values['at_eps']} sets the eps of the --min-robust-uar gate, which is not "
                                  "given; add --min-robust-uar X (or leave --at-eps out)")
        layers = values.get("layers")
        if isinstance(layers, str) and not any(token.strip() for token in layers.split(",")):
            raise ConfigError(f"--layers {layers!r} names no layer; give names, globs, indices, ranges (2-5) or all "
                              "(`ser-audit layers MODEL` lists them), or leave --layers out for the default taps")
        values["probes"] = {key: value for key, value in probes.items() if value is not None or key in _NULLABLE}
        values["scenarios"] = choices(values.get("scenarios", SCENARIOS), SCENARIOS, "--scenarios", allow_empty=True)
        values["attackers"] = choices(values.get("attackers", ATTACKER_KINDS), ATTACKER_KINDS, "--attackers")
        if values.get("attribute", "gender") not in ATTRIBUTES:
            raise ConfigError(f"--attribute {values['attribute']!r}: choose one of {', '.join(ATTRIBUTES)}")
        values["device"] = parse_device(values.get("device", "auto"))
        _read_hardened(values)
        for key in ("model", "compare_with"):
            if isinstance(values.get(key), str):
                values[key] = ModelSource(values[key])
        for key in ("corpus", "aux_corpus"):
            if isinstance(values.get(key), str):
                values[key] = CorpusSource(values[key])
        return values

    @classmethod
    def create(cls, model: ModelSource | str, **options: Any) -> AuditConfig:
        """The API's keyword arguments (the CLI's flags by their Python names) as a config.

        Raises:
            ConfigError: naming the flag of the first invalid value.
        """
        try:
            return cls(model=model, **options)
        except ValidationError as error:
            first = error.errors()[0]
            where = [str(part) for part in first["loc"]]
            field = where[1] if where[:1] == ["probes"] and len(where) > 1 else where[0] if where else "config"
            flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
            raise ConfigError(f"{flag} {first.get('input')!r}: {first['msg'].lower()}") from None

    @property
    def at_eps_resolved(self) -> float:
        return self.at_eps if self.at_eps is not None else max(self.probes.grid)


_NULLABLE = {"eta", "pgd_eps", "pgd_step_size", "targeted_class"}
# Config fields whose CLI flag is not their own name.
_FLAGS = {"model": "MODEL", "compare_with": "--compare-with", "corpus": "--corpus", "aux_corpus": "--aux-corpus",
          "targeted_class": "--targeted", "grid": "--eps", "extra_probes": "--probe"}


def _read_hardened(values: dict[str, Any]) -> None:
    """``hardened`` (a config before report 1.8, the API's older keyword) is ``compare_with``; both may be given only
    when they name the same model."""
    if "hardened" not in values:
        return
    hardened = values.pop("hardened")
    given = values.get("compare_with")
    if hardened is None:
        return
    if given is not None and _spec(given) != _spec(hardened):
        raise ConfigError(f"--hardened {_spec(hardened)!r} and --compare-with {_spec(given)!r}: give one "
                          "(--hardened is the older name of --compare-with)")
    values["compare_with"] = given if given is not None else hardened


def _spec(source: Any) -> Any:
    """The MODEL spec of a source given as a string, a ModelSource or its JSON form."""
    return source.get("spec") if isinstance(source, dict) else getattr(source, "spec", source)


def check_relative_eps(flag: str, values: Sequence[float], *, allow_zero: bool) -> None:
    """Eps and radii are fractions of the input's spread: finite, at most 1, and above 0 (or 0 for the clean
    point of a grid). Beyond 1 a perturbation swamps the signal and measures nothing about robustness."""
    for value in values:
        low_ok = value >= 0 if allow_zero else value > 0
        if not (low_ok and value <= 1):  # also refuses nan
            bound = "non-negative" if allow_zero else "above 0"
            raise ConfigError(f"{flag} {value:g}: each value must be {bound} and at most 1 (a fraction of the "
                              "input's spread), e.g. 0.02")


def choices(text: str | Sequence[str], allowed: Sequence[str], flag: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A comma-separated flag (or a sequence) as a subset of ``allowed``, in ``allowed``'s order.

    From the CLI (a string) an empty choice is refused; an empty sequence (API only) may mean
    "none of them" where ``allow_empty``.
    """
    if not isinstance(text, (str, list, tuple)) or not all(isinstance(v, str) for v in text):
        raise ConfigError(f"{flag} {text!r}: use a comma-separated subset of {','.join(allowed)}")
    values = [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    wrong = [v for v in values if v not in allowed]
    if wrong or not (values or (allow_empty and not isinstance(text, str))):
        raise ConfigError(f"{flag} {','.join(values) or repr(text)}: use a comma-separated subset of {','.join(allowed)}")
    return tuple(v for v in allowed if v in values)
