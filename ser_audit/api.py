"""Python entry points. Each returns data (a Report, a list of layers); nothing here prints.

Example:
    >>> from ser_audit.api import leakage_audit                       # doctest: +SKIP
    >>> report = leakage_audit("zoo:cnn4", corpus="synthetic", seed=0)  # doctest: +SKIP
    >>> [(r.layer, round(r.accuracy.mean, 2)) for r in report.leakage.results]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ser_audit import __version__
from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.registry import DEFAULT_CORPUS, resolve_corpus
from ser_audit.errors import ConfigError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.gates import leakage_gates
from ser_audit.report.model import CorpusInfo, Environment, LayerRow, Leakage, ModelInfo, Report, Robustness, Tool
from ser_audit.report.scoring import score

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel
    from ser_audit.robustness.evaluate import ProbeSettings
    from ser_audit.robustness.hardening import HardeningRecipe

_PROVENANCE_PACKAGES = ("torch", "torchaudio", "onnx", "onnxruntime", "numpy", "scipy", "scikit-learn", "pydantic")
ATTRIBUTES = ("gender", "speaker")


def default_cache_dir() -> Path:
    """``$SER_AUDIT_CACHE``, else ``$XDG_CACHE_HOME/ser-audit``, else ``~/.cache/ser-audit``."""
    if os.environ.get("SER_AUDIT_CACHE"):
        return Path(os.environ["SER_AUDIT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ser-audit"


@dataclass(frozen=True)
class ModelSource:
    """How to load the model under audit (mirrors the MODEL argument and its flags)."""

    spec: str
    frontend: Path | None = None
    weights: Path | None = None
    trust_pickle: bool = False


@dataclass(frozen=True)
class CorpusSource:
    """Which corpus to read (mirrors --corpus, --corpus-root and --corpus-option)."""

    spec: str = DEFAULT_CORPUS
    root: Path | None = None
    options: tuple[str, ...] = ()


def _model(source: ModelSource | str, cache_dir: Path, seed: int, observer: ProgressObserver) -> "TargetModel":
    from ser_audit.models.loading import load_model

    source = ModelSource(source) if isinstance(source, str) else source
    return load_model(source.spec, frontend=source.frontend, weights=source.weights, trust_pickle=source.trust_pickle,
                      cache_dir=cache_dir, seed=seed, observer=observer)


def _corpus(corpus: CorpusSource | str, cache_dir: Path, seed: int, observer: ProgressObserver) -> Corpus:
    corpus = CorpusSource(corpus) if isinstance(corpus, str) else corpus
    return load_corpus(corpus.spec, cache_dir=cache_dir, seed=seed, corpus_root=corpus.root, options=corpus.options,
                       observer=observer)


def environment() -> Environment:
    packages = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return Environment(python=sys.version.split()[0], platform=platform.platform(), packages=packages)


def corpus_info(corpus: Corpus, *, seed: int | None = None) -> CorpusInfo:
    from ser_audit.corpus.loader import audio_summary

    summary = corpus.summary()
    return CorpusInfo(manifest_sha256=corpus.manifest_sha256(), seed=seed, audio=audio_summary(corpus), **summary)


def load_corpus(spec: str, *, cache_dir: Path, seed: int, corpus_root: Path | None = None,
                options: Sequence[str] = (), observer: ProgressObserver = NULL_OBSERVER) -> Corpus:
    return resolve_corpus(spec, cache_dir=cache_dir, seed=seed, corpus_root=corpus_root, options=options,
                          observer=observer)


def list_layers(source: ModelSource, *, cache_dir: Path | None = None, seed: int = 0,
                observer: ProgressObserver = NULL_OBSERVER) -> list[LayerRow]:
    model = _model(source, cache_dir or default_cache_dir(), seed, observer)
    return [LayerRow(index=l.index, name=l.name, kind=l.kind, shape=list(l.shape)) for l in model.layers()]


DEFAULT_AUX_CORPUS = "ravdess-like"


def _choices(text: str | Sequence[str], allowed: Sequence[str], flag: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    values = [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    wrong = [v for v in values if v not in allowed]
    if wrong or not (values or allow_empty):
        raise ConfigError(f"{flag} {','.join(values) or repr(text)}: use a comma-separated subset of {','.join(allowed)}")
    return tuple(v for v in allowed if v in values)


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: use cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: torch sees no CUDA device on this machine; use --device cpu")


def scenario_layers(selected: Sequence[Any], *, quick: bool = False) -> list[Any]:
    """Where the scenario attackers go by default: the first, middle and last selected layer that keeps
    a time axis (the shape of the depth curve), and the last vector-shaped one (what a split
    deployment would send last).

    ``quick`` leaves out the first map layer when there are more than two: its same-architecture
    attacker fine-tunes nearly the whole target, which is half the time of a quick run.
    """
    from ser_audit.leakage.scenario_runner import has_time_axis

    maps = [layer for layer in selected if has_time_axis(layer)]
    vectors = [layer for layer in selected if not has_time_axis(layer)]
    chosen = maps if len(maps) <= 3 else [maps[0], maps[len(maps) // 2], maps[-1]]
    if quick and len(maps) > 2:
        chosen = chosen[1:]
    if vectors:
        chosen.append(vectors[-1])
    return sorted(chosen, key=lambda layer: layer.index)


def leakage_audit(
    source: ModelSource | str,
    *,
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    aux_corpus: CorpusSource | str | None = DEFAULT_AUX_CORPUS,
    sentence_disjoint: bool = False,
    layers: str | None = None,
    attribute: str = "gender",
    scenarios: str | Sequence[str] = "worst,s1,s2,s3,s4",
    attackers: str | Sequence[str] = "generic,aware",
    folds: int | None = None,
    seed: int = 0,
    quick: bool = False,
    device: str = "cpu",
    executor: str = "local",
    cache_dir: Path | None = None,
    max_leakage: float | None = None,
    max_gap: float | None = None,
    command: Sequence[str] = (),
    observer: ProgressObserver = NULL_OBSERVER,
) -> Report:
    """P0's leakage study on one model: every selected layer, every scenario and attacker kind.

    A linear probe on pooled statistics gives the depth curve over all selected layers; the
    scenario attackers (same architecture, other designs of the same family, the other
    family; on audit-corpus folds or on ``aux_corpus``) run on the same layers. Folds are
    speaker-disjoint (leave-one-session-out where sessions exist). ``attribute="speaker"``
    runs closed-set identification and open-set verification instead of the scenarios.
    ``quick`` leaves the first map layer to the probe (see ``scenario_layers``) and runs one
    design per scenario with fewer epochs and permutations. Returns the report; gate outcomes
    are in ``report.gates``.
    """
    from ser_audit.embeddings.extract import extract
    from ser_audit.execution import executor as make_executor
    from ser_audit.leakage.breakdowns import breakdowns
    from ser_audit.leakage.findings import p0_findings
    from ser_audit.leakage.inference import SpeakerPermutations
    from ser_audit.leakage.multiplicity import adjust
    from ser_audit.leakage.resampling import DEFAULT_PERMUTATIONS
    from ser_audit.leakage.runner import attack_units, input_reference, probe_layers, recommend
    from ser_audit.leakage.scenario_runner import AttackData, AttackSettings, ScenarioResults, run_scenarios
    from ser_audit.leakage.scenarios import KINDS, SCENARIOS
    from ser_audit.leakage.strongest import Candidate, strongest_rows

    if attribute not in ATTRIBUTES:
        raise ConfigError(f"--attribute {attribute!r}: choose one of {', '.join(ATTRIBUTES)}")
    # An empty sequence (API only) runs the linear probe alone.
    chosen_scenarios = _choices(scenarios, SCENARIOS, "--scenarios", allow_empty=not isinstance(scenarios, str))
    kinds = _choices(attackers, KINDS, "--attackers")
    _check_device(device)
    jobs = make_executor(executor)
    source = ModelSource(source) if isinstance(source, str) else source
    cache = cache_dir or default_cache_dir()
    created = _now()
    permutations = 199 if quick else DEFAULT_PERMUTATIONS
    settings = AttackSettings(seed=seed, device=device, quick=quick,
                              **({"epochs": 3} if quick else {}))
    # The corpora first: a wrong --corpus-root should not wait for a reference model to train.
    audit_corpus = _corpus(corpus, cache, seed, observer)
    run_scenarios_now = attribute == "gender" and bool(chosen_scenarios)
    needs_aux = run_scenarios_now and any(s in ("s1", "s3", "s4") for s in chosen_scenarios)
    aux = _corpus(aux_corpus, cache, seed, observer) if needs_aux and aux_corpus is not None else None
    if aux is not None:
        _check_aux_is_other_data(audit_corpus, aux)
    model = _model(source, cache, seed, observer)
    selected = model.select_layers(layers)
    # The linear probe runs on every selected layer; the costlier scenario attackers on all of
    # them when --layers names them, else on a spread of the default layers.
    attacked = selected if layers is not None else scenario_layers(selected, quick=quick)
    notes: list[str] = []
    seen = seen_speakers(model.training, audit_corpus)
    if seen:
        notes.append(f"the target was trained on {len(seen)} of the {audit_corpus.summary()['n_speakers']} audit speakers "
                     f"({', '.join(seen)}): its layers have heard them, so leakage on them may exceed what new "
                     "speakers would show; audit another corpus (or --corpus-option seed=N) to test unseen speakers")
    if attribute == "speaker":
        from ser_audit.leakage.speaker import closed_set_folds

        corpus_folds = closed_set_folds(audit_corpus, n_folds=folds or 5, seed=seed)
        notes.append("attribute speaker: closed-set identification (every speaker on both sides of a fold) and open-set "
                     "verification EER; P0's scenarios need an attacker trained on other speakers, so they do not apply")
    else:
        corpus_folds = speaker_disjoint_folds(audit_corpus, n_folds=folds, seed=seed, sentence_disjoint=sentence_disjoint)
    maps = [layer.name for layer in attacked] if run_scenarios_now else []
    embeddings = extract(model, audit_corpus, selected, maps=maps, cache_dir=cache, observer=observer)
    notes += _cache_notes(embeddings, audit_corpus.name, observer)
    # One draw of speaker relabellings for every row, so the family-wise adjustment sees their dependence.
    attribute_labels, units = np.array(audit_corpus.labels(attribute)), attack_units(audit_corpus, attribute)
    relabellings = SpeakerPermutations.draw(attribute_labels, units, n=permutations, seed=seed)
    probes = probe_layers(embeddings, audit_corpus, selected, corpus_folds, relabellings, attribute=attribute, seed=seed,
                          observer=observer)
    rows = probes.rows
    reference = input_reference(audit_corpus, corpus_folds, relabellings, attribute=attribute, seed=seed,
                                observer=observer)
    egemaps_reference = None
    if quick:
        notes.append("--quick leaves out the eGeMAPS input reference")
    else:
        try:
            egemaps_reference = input_reference(audit_corpus, corpus_folds, relabellings, source="egemaps",
                                                attribute=attribute, seed=seed, cache_dir=cache, observer=observer)
        except ConfigError as missing:  # the optional openSMILE extra: the audit goes on without it
            notes.append(f"no eGeMAPS input reference: {missing}")
    scenario = ScenarioResults()
    if run_scenarios_now:
        aux_data = None
        if aux is not None:
            aux_embeddings = extract(model, aux, selected, maps=maps, cache_dir=cache, observer=observer)
            notes += _cache_notes(aux_embeddings, aux.name, observer)
            aux_data = AttackData.of(aux, aux_embeddings, attribute)
        if len(attacked) < len(selected):
            first_left_out = quick and attacked != scenario_layers(selected)
            spread = "middle and last" if first_left_out else "first, middle and last"
            notes.append(f"scenario attackers ran on {', '.join(l.name for l in attacked)} ({spread} layer with a time "
                         "axis, last vector layer); the linear probe on every selected layer; --layers chooses the "
                         "layers for both")
        scenario = run_scenarios(
            model, attacked, AttackData.of(audit_corpus, embeddings, attribute), aux_data, corpus_folds, relabellings,
            probes.inflation, attribute=attribute, scenarios=chosen_scenarios, kinds=kinds, settings=settings, executor=jobs,
            observer=observer,
        )
    verification = []
    if attribute == "speaker":
        from ser_audit.leakage.speaker import verification as verify
        from ser_audit.leakage.speaker import verification_folds

        halves = verification_folds(audit_corpus, seed=seed)
        verification = [verify(embeddings.layers[layer.name], audit_corpus, halves, layer=layer.name,
                               layer_index=layer.index, seed=seed) for layer in selected]
    all_rows, predictions = [*rows, *scenario.rows], [*probes.predictions, *scenario.predictions]
    evidence = [*probes.evidence, *scenario.evidence]
    if scenario.rows:
        candidates = [Candidate(row, predicted, checked) for row, predicted, checked in
                      zip(all_rows, predictions, [*probes.validation, *scenario.validation])]
        strongest = strongest_rows(candidates, corpus_folds, attribute_labels, units, relabellings, probes.inflation,
                                   seed=seed)
        all_rows, predictions, evidence = [*all_rows, *strongest[0]], [*predictions, *strongest[1]], [*evidence, *strongest[2]]
    adjust(all_rows, evidence)
    splits = breakdowns(all_rows, predictions, audit_corpus, attribute)
    chance = rows[0].chance
    threshold = max_leakage if max_leakage is not None else min(1.0, chance + 0.1)
    # A split point must hold in every scenario, so only layers the scenario attackers audited qualify.
    audited = {layer.name for layer in attacked} if scenario.rows else {layer.name for layer in selected}
    report = Report(
        tool=Tool(version=__version__),
        command=list(command),
        seed=seed,
        created=created,
        finished=_now(),
        environment=environment(),
        model=_model_info(source, model),
        corpus=corpus_info(audit_corpus, seed=seed),
        aux_corpus=corpus_info(aux, seed=seed) if aux is not None else None,
        leakage=Leakage(
            attribute=attribute,
            folds=[fold.name for fold in corpus_folds],
            target_family=scenario.family if run_scenarios_now else None,
            seen_speakers=seen,
            results=all_rows,
            skipped=scenario.skipped,
            breakdowns=splits,
            findings=p0_findings(rows, scenario.rows, splits) if run_scenarios_now else [],
            verification=verification,
            input_reference=reference,
            egemaps_reference=egemaps_reference,
            recommendation=recommend([row for row in all_rows if row.layer in audited], threshold),
        ),
        notes=[*notes, *(f"{name}: {text}" for name, text in embeddings.reductions.items())],
    )
    score(report)
    report.gates = leakage_gates(report, max_leakage=max_leakage, max_gap=max_gap)
    return report


def _check_aux_is_other_data(audit: Corpus, aux: Corpus) -> None:
    """s1, s3 and s4 promise an attacker trained on other data: never on the audit corpus or its speakers."""
    if audit.manifest_sha256() == aux.manifest_sha256():
        raise ConfigError(f"--aux-corpus {aux.name}: it is the audit corpus itself; the aux corpus must be other data "
                          "(another corpus, or other speakers)")
    shared = sorted(set(audit.labels("speaker")) & set(aux.labels("speaker")))
    if shared:
        raise ConfigError(f"--aux-corpus {aux.name}: shares {len(shared)} speaker id(s) with the audit corpus "
                          f"({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''}); attackers trained on it would "
                          "have heard test speakers; give a corpus with other speakers")


def seen_speakers(training: dict[str, Any] | None, corpus: Corpus) -> list[str]:
    """Audit speakers the target was trained on, where its training record names the corpus (zoo models).

    Synthetic speakers are known by corpus hash, not by id: another seed reuses the ids for new voices.
    """
    if not training or training.get("training_corpus_sha256") != corpus.manifest_sha256():
        return []
    if "training_speakers" in training:
        return sorted(training["training_speakers"])
    held_out = training.get("held_out_session")
    return sorted({u.speaker for u in corpus if u.session != held_out})


def _disjoint(before: Any, after: Any) -> bool:
    """Whether two rows' 95% intervals of L do not overlap."""
    return bool(after.ci_low > before.ci_high or after.ci_high < before.ci_low)


def _cache_notes(embeddings: Any, corpus_name: str, observer: ProgressObserver) -> list[str]:
    if not embeddings.reused:
        return []
    note = (f"embeddings of {len(embeddings.reused)} layer(s) on {corpus_name} taken from the cache "
            f"({embeddings.location})")
    observer.note(note)
    return [note]


def _model_info(source: ModelSource, model: TargetModel) -> ModelInfo:
    return ModelInfo(
        path=source.spec,
        file=str(model.path) if model.path else None,
        sha256=model.sha256,
        format=model.format,
        frontend=model.frontend.model_dump(mode="json"),
        layers=[LayerRow(index=l.index, name=l.name, kind=l.kind, shape=list(l.shape)) for l in model.layers()],
        training=model.training,
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def reference_model_table() -> list[dict[str, str]]:
    from ser_audit.models.zoo import reference_models

    return [
        {"name": m.name, "paper": m.paper, "description": m.description, "version": str(m.version)}
        for m in sorted(reference_models().values(), key=lambda m: m.name)
    ]


def train_reference_model(name: str, out: Path, *, seed: int = 0, cache_dir: Path | None = None,
                          observer: ProgressObserver = NULL_OBSERVER) -> dict:
    """Train (or take from the cache) ``zoo:NAME`` and write it to ``out`` in the format its suffix names.

    Returns:
        The held-out metrics recorded at training time.
    """
    from ser_audit.models.export import export_model
    from ser_audit.models.loading import load_checkpoint
    from ser_audit.models.zoo import load_or_train

    if out.suffix.lower() not in (".onnx", ".pt", ".pt2", ".ckpt"):
        raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript), .pt2 (torch.export) or .ckpt file name")
    checkpoint = load_or_train(name, cache_dir=cache_dir or default_cache_dir(), seed=seed, observer=observer)
    if out.suffix.lower() == ".ckpt":
        import shutil

        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, out)
    model = load_checkpoint(checkpoint)
    if out.suffix.lower() != ".ckpt":
        export_model(model.module, model.frontend, out)
    return dict(model.training or {})


def robustness_audit(
    source: ModelSource | str,
    *,
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    settings: "ProbeSettings | None" = None,
    gradient: str = "auto",
    seed: int = 0,
    cache_dir: Path | None = None,
    min_robust_uar: float | None = None,
    at_eps: float | None = None,
    command: Sequence[str] = (),
    observer: ProgressObserver = NULL_OBSERVER,
) -> Report:
    """FGSM over an eps grid (one gradient per batch) and PGD at one eps, on the emotion predictions.

    ``gradient="auto"`` falls back to an SPSA estimate (rows say black-box) when an ONNX graph
    has no differentiable torch conversion; ``"white-box"`` makes that an error.
    """
    from ser_audit.frontend.features import FrontEnd
    from ser_audit.report.gates import robustness_gates
    from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model, robustness_score
    from ser_audit.robustness.fgsm import P2_EPS_GRID

    source = ModelSource(source) if isinstance(source, str) else source
    settings = settings or ProbeSettings(grid=P2_EPS_GRID, seed=seed)
    cache = cache_dir or default_cache_dir()
    created = _now()
    audit_corpus = _corpus(corpus, cache, seed, observer)
    model = _model(source, cache, seed, observer)
    module, black_box, notes = _attackable(model, gradient)
    data = evaluation_set(model, audit_corpus, observer)
    rows, spread = probe_model(module, data, settings, FrontEnd(model.frontend), black_box=black_box, observer=observer)
    report = Report(
        tool=Tool(version=__version__), command=list(command), seed=seed, created=created, finished=_now(),
        environment=environment(), model=_model_info(source, model), corpus=corpus_info(audit_corpus, seed=seed),
        robustness=Robustness(evaluation_set=data.description, input_spread=spread, results=rows,
                              score=robustness_score(rows)),
        notes=notes,
    )
    score(report)
    report.gates = robustness_gates(report, min_robust_uar=min_robust_uar, at_eps=at_eps)
    return report


def _attackable(model: "TargetModel", gradient: str) -> tuple[Any, bool, list[str]]:
    """The module probes differentiate (black_box False), or a forward-only wrapper (black_box True)."""
    from ser_audit.errors import ModelError
    from ser_audit.models.differentiable import torch_module
    from ser_audit.robustness.spsa import ForwardOnly

    if gradient not in ("auto", "white-box"):
        raise ConfigError(f"--gradient {gradient!r}: use auto or white-box")
    try:
        return torch_module(model), False, []
    except ModelError as error:
        if gradient == "white-box":
            raise
        names = model.input_names

        def logits(primary, *extra):  # type: ignore[no-untyped-def]
            return model.forward({names[0]: primary, **dict(zip(names[1:], extra))}).logits

        note = f"{error}; FGSM used an SPSA gradient estimate (black-box) and PGD was skipped"
        return ForwardOnly(logits), True, [note]


def harden_model(
    source: ModelSource | str,
    out: Path,
    *,
    recipe: "HardeningRecipe",
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    cache_dir: Path | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> dict[str, float]:
    """Adversarially fine-tune a model (P2's vanilla or similarity-based training) and write it to ``out``.

    Returns held-out UAR on real and on FGSM data at the recipe's eps, before and after.
    """
    import copy

    from ser_audit.frontend.features import FrontEnd
    from ser_audit.models.differentiable import torch_module
    from ser_audit.models.export import export_model
    from ser_audit.models.training import write_checkpoint_payload
    from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model
    from ser_audit.robustness.hardening import harden

    recipe.check()
    if out.suffix.lower() not in (".onnx", ".pt", ".pt2", ".ckpt"):
        raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript), .pt2 (torch.export) or .ckpt file name")
    source = ModelSource(source) if isinstance(source, str) else source
    cache = cache_dir or default_cache_dir()
    training_corpus = _corpus(corpus, cache, recipe.seed, observer)
    model = _model(source, cache, recipe.seed, observer)
    if out.suffix.lower() == ".ckpt" and not (model.path and model.path.suffix == ".ckpt"):
        raise ConfigError(f"--out {out}: .ckpt is for reference-model checkpoints; use .onnx, .pt or .pt2")
    original = torch_module(model)
    hardened = harden(copy.deepcopy(original), model, training_corpus, recipe, observer=observer)
    settings = ProbeSettings(grid=(0.0, recipe.eps), pgd_eps=None, seed=recipe.seed)
    data = evaluation_set(model, training_corpus, observer)
    frontend = FrontEnd(model.frontend)
    before, _ = probe_model(original, data, settings, frontend)
    after, _ = probe_model(hardened, data, settings, frontend)
    if out.suffix.lower() == ".ckpt":
        assert model.path is not None
        write_checkpoint_payload(model.path, hardened, out, extra_metrics={"hardening": recipe.method})
    else:
        export_model(hardened, model.frontend, out)
    return {
        "real_before": before[0].uar, "adversarial_before": before[1].uar,
        "real_after": after[0].uar, "adversarial_after": after[1].uar,
        "eps": recipe.eps, "n": after[0].n, "evaluation_set": data.description,  # type: ignore[dict-item]
    }


def full_audit(
    source: ModelSource | str,
    *,
    hardened: ModelSource | None = None,
    corpus: CorpusSource | str = DEFAULT_CORPUS,
    aux_corpus: CorpusSource | str | None = DEFAULT_AUX_CORPUS,
    layers: str | None = None,
    scenarios: str | Sequence[str] = "worst,s1,s2,s3,s4",
    attackers: str | Sequence[str] = "generic,aware",
    quick: bool = False,
    device: str = "cpu",
    executor: str = "local",
    seed: int = 0,
    cache_dir: Path | None = None,
    settings: "ProbeSettings | None" = None,
    max_leakage: float | None = None,
    max_gap: float | None = None,
    min_robust_uar: float | None = None,
    at_eps: float | None = None,
    command: Sequence[str] = (),
    observer: ProgressObserver = NULL_OBSERVER,
) -> Report:
    """Leakage and robustness in one report; with ``hardened``, also how hardening moved each layer's
    leakage (the linear probe's, layer by layer)."""
    from ser_audit.report.model import HardeningEffect

    common = dict(corpus=corpus, seed=seed, cache_dir=cache_dir, observer=observer)
    report = leakage_audit(source, layers=layers, aux_corpus=aux_corpus, scenarios=scenarios, attackers=attackers,
                           quick=quick, device=device, executor=executor, max_leakage=max_leakage, max_gap=max_gap,
                           command=command, **common)
    robust = robustness_audit(source, settings=settings, min_robust_uar=min_robust_uar, at_eps=at_eps, **common)
    report.robustness = robust.robustness
    score(report)
    report.gates = [*report.gates, *robust.gates]
    report.notes = [*report.notes, *robust.notes]
    if hardened is not None:
        report.hardened_robustness = robustness_audit(hardened, settings=settings, **common).robustness
    if hardened is not None and report.leakage is not None:
        probe_rows = [row for row in report.leakage.results if row.scenario == "probe"]
        names = ",".join(row.layer for row in probe_rows)
        after = leakage_audit(hardened, layers=names, scenarios=(), quick=quick, **common)
        report.hardened_model = after.model
        after_rows = {row.layer: row for row in after.leakage.results} if after.leakage else {}
        for row in probe_rows:
            other = after_rows[row.layer]
            report.hardening_effect.append(HardeningEffect(
                layer=row.layer, leakage_before=row.balanced_accuracy, leakage_after=other.balanced_accuracy,
                change=other.balanced_accuracy - row.balanced_accuracy,
                significant=_disjoint(row, other),
            ))
    report.finished = _now()
    return report
