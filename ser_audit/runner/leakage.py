"""P0's leakage study on one model, from an :class:`AuditConfig` to a scored report.

The phases, each a function below: load the corpora (before the model, so that a wrong
``--corpus-root`` does not wait for a reference model to train) and the model; choose the
layers; extract every selected layer once into the embedding store; the linear probe and the
input references; the scenario attackers; the strongest-attacker rows; multiplicity
adjustment; breakdowns, findings and the recommendation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ser_audit.config import AuditConfig
from ser_audit.corpus.folds import require_speakers_of_each_gender, speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.devices import CoresLeft, resolve_device
from ser_audit.errors import ConfigError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver, SteppingObserver
from ser_audit.report.model import LeakageResult, Report
from ser_audit.report.scoring import score
from ser_audit.runner import sources
from ser_audit.runner.preflight import audio_notes
from ser_audit.runner.provenance import new_report, now

if TYPE_CHECKING:
    from ser_audit.corpus.folds import Fold
    from ser_audit.execution.interface import Executor
    from ser_audit.leakage.attacked import AttackedRow
    from ser_audit.leakage.statistics.inference import SpeakerPermutations
    from ser_audit.models.interface import LayerInfo, TargetModel


def scenario_layers(selected: Sequence[Any], *, quick: bool = False) -> list[Any]:
    """Where the scenario attackers go by default: every recurrent layer (each is a stage of a
    recurrent model's depth), the first, middle and last other layer that keeps a time axis (the
    shape of the depth curve), and the last vector-shaped one (what a split deployment would send
    last).

    ``quick`` leaves out the first other map layer when there are more than two: its
    same-architecture attacker trains nearly the whole target (two starts and a refit per fold),
    which is most of the time of a quick run.
    """
    from ser_audit.leakage.scenarios.plan import has_time_axis
    from ser_audit.models.interface import is_recurrent

    recurrent = [layer for layer in selected if is_recurrent(layer.kind) and has_time_axis(layer)]
    maps = [layer for layer in selected if has_time_axis(layer) and layer not in recurrent]
    vectors = [layer for layer in selected if not has_time_axis(layer)]
    chosen = maps if len(maps) <= 3 else [maps[0], maps[len(maps) // 2], maps[-1]]
    if quick and len(maps) > 2:
        chosen = chosen[1:]
    chosen += recurrent
    if vectors:
        chosen.append(vectors[-1])
    return sorted(chosen, key=lambda layer: layer.index)


@dataclass
class Inputs:
    """What the study runs on, loaded and checked."""

    model: "TargetModel"
    corpus: Corpus
    aux: Corpus | None
    selected: list["LayerInfo"]
    attacked: list["LayerInfo"]
    folds: list["Fold"]
    run_scenarios: bool
    seen_speakers: list[str]
    notes: list[str] = field(default_factory=list)


def load_inputs(config: AuditConfig, loader: sources.Loader) -> Inputs:
    seed = config.seed
    corpus = loader.corpus(config.corpus)
    run_scenarios = config.attribute == "gender" and bool(config.scenarios)
    needs_aux = run_scenarios and any(s in ("s1", "s3", "s4") for s in config.scenarios)
    aux = None
    if needs_aux and config.aux_corpus is not None:
        aux = loader.corpus(config.aux_corpus, flag="--aux-corpus")
        sources.check_aux_is_other_data(corpus, aux)
        if config.attribute == "gender":
            require_speakers_of_each_gender(aux, flag="--aux-corpus", minimum=1)
    model = loader.model(config.model)
    selected = model.select_layers(config.layers)
    # The probe runs on every selected layer; the costlier scenario attackers on all of them when
    # --layers names them, else on a spread of the default layers.
    attacked = selected if config.layers is not None else scenario_layers(selected, quick=config.quick)
    seen = sources.seen_speakers(model.training, corpus)
    inputs = Inputs(model, corpus, aux, selected, attacked, [], run_scenarios, seen)
    if model.frontend.reference_inputs:
        from ser_audit.models.sampling import fallback_count

        for fed in (c for c in (corpus, aux) if c is not None):
            missing = fallback_count(fed)
            if missing:
                inputs.notes.append(f"{missing} utterances of {fed.name} have no other neutral utterance of their "
                                    "speaker: their reference is another utterance of the speaker, of any emotion")
    from ser_audit.leakage.probe import LLD_SPEC

    inputs.notes += audio_notes(model, corpus, also=[LLD_SPEC])  # the LLD input reference reads the audio too
    if seen:
        inputs.notes.append(
            f"the target was trained on {len(seen)} of the {corpus.summary()['n_speakers']} audit speakers "
            f"({', '.join(seen)}): its layers have heard them, so leakage on them may exceed what new speakers would "
            "show; audit another corpus (or --corpus-option seed=N) to test unseen speakers")
    if config.attribute == "speaker":
        from ser_audit.leakage.speaker import check_verifiable, closed_set_folds

        inputs.folds = closed_set_folds(corpus, n_folds=config.folds or 5, seed=seed)
        check_verifiable(corpus, seed=seed)
        inputs.notes.append("attribute speaker: closed-set identification (every speaker on both sides of a fold) and "
                            "open-set verification EER; P0's scenarios need an attacker trained on other speakers, so "
                            "they do not apply")
    else:
        inputs.folds = speaker_disjoint_folds(corpus, n_folds=config.folds, seed=seed,
                                              sentence_disjoint=config.sentence_disjoint)
    return inputs


def run_leakage(config: AuditConfig, *, command: Sequence[str] = (), observer: ProgressObserver = NULL_OBSERVER,
                loader: sources.Loader | None = None) -> Report:
    """P0's leakage study on ``config.model``: every selected layer, scenario and attacker kind.

    Gates are not decided here (see ``runner.gating``), so that ``audit`` decides once on the
    whole report.
    """
    from ser_audit.embeddings.extract import extract
    from ser_audit.execution.interface import none_taken
    from ser_audit.leakage.probe import attack_units, probe_layers
    from ser_audit.leakage.statistics.inference import SpeakerPermutations

    created = now()
    resolve_device(config.device)  # a missing GPU fails before any work
    runs_on = _scenario_executor(config)  # a wrong --executor fails before any work
    inputs = load_inputs(config, loader or sources.Loader(config, observer))
    taken: Callable[[], int] = none_taken
    if inputs.run_scenarios:
        from ser_audit.leakage.scenarios.run import run_attack

        # Worker processes start, and import what the attackers need, while this process extracts and probes
        # on the cores they leave it (given back between batches as soon as they are ready).
        taken = runs_on.prepare([run_attack.__module__])
    cache, seed, corpus = sources.cache_of(config), config.seed, inputs.corpus
    maps = [layer.name for layer in inputs.attacked] if inputs.run_scenarios else []
    with CoresLeft(taken) as lent:
        stepping = SteppingObserver(observer, lent.check)
        embeddings = extract(inputs.model, corpus, inputs.selected, maps=maps, cache_dir=cache,
                             device=resolve_device(config.device), observer=stepping)
        notes = [*inputs.notes, *_cache_notes(embeddings, corpus.name, observer)]
        # One draw of speaker relabellings for every row, so the family-wise adjustment sees their dependence.
        labels, units = np.array(corpus.labels(config.attribute)), attack_units(corpus, config.attribute)
        relabellings = SpeakerPermutations.draw(labels, units, n=config.permutations, seed=seed)
        probes = probe_layers(embeddings, corpus, inputs.selected, inputs.folds, relabellings,
                              attribute=config.attribute, seed=seed, observer=stepping)
        references = _input_references(config, inputs, relabellings, notes, stepping)
        aux_data = _aux_data(config, inputs, notes, stepping) if inputs.run_scenarios else None
    attacked = list(probes.attacked)
    scenario = None
    if inputs.run_scenarios:
        scenario = _scenarios(config, inputs, embeddings, aux_data, relabellings, probes.inflation, runs_on, notes,
                              observer)
        attacked += scenario.attacked
    if scenario is not None and scenario.attacked:
        from ser_audit.leakage.scenarios.strongest import strongest_rows

        attacked += strongest_rows(attacked, inputs.folds, labels, units, relabellings, probes.inflation, seed=seed)
    verification = _verification(config, inputs, embeddings) if config.attribute == "speaker" else []
    report = new_report(config, inputs.model, corpus, created=created, command=command)
    if inputs.aux is not None:
        from ser_audit.runner.provenance import corpus_info

        report.aux_corpus = corpus_info(inputs.aux, seed=seed)
    report.leakage = _leakage_section(config, inputs, attacked, probes.rows, scenario, references, verification,
                                      relabellings)
    report.notes = [*notes, *(f"{name}: {text}" for name, text in embeddings.reductions.items())]
    if inputs.model.frontend.reference_inputs:
        _add_reference_ablation(report, config, inputs, probes.rows, observer)
    score(report)
    report.finished = now()
    return report


def _add_reference_ablation(report: Report, config: AuditConfig, inputs: Inputs, probe_rows: Sequence[LeakageResult],
                            observer: ProgressObserver) -> None:
    """A two-input model's leakage and UAR with several neutral references (P4's ablation), and which
    tap leaks most: the speaker embedding, if the model conditions on one as P4's does."""
    from ser_audit.leakage.ablation import reference_ablation

    assert report.leakage is not None
    ablation = reference_ablation(inputs.model, inputs.corpus, inputs.selected, inputs.folds,
                                  attribute=config.attribute, cache_dir=sources.cache_of(config),
                                  device=resolve_device(config.device), observer=observer)
    report.leakage.reference_ablation = ablation
    report.notes.append(
        f"neutral-sample ablation ({len(ablation.choices)} references per speaker): UAR {ablation.uar_mean:.3f} "
        f"± {ablation.uar_std:.3f} on {ablation.uar_set}; "
        + "; ".join(f"{row.layer} L {row.mean:.3f} ± {row.std:.3f}" for row in ablation.layers))
    if probe_rows:
        leakiest = max(probe_rows, key=lambda row: row.balanced_accuracy)
        report.notes.append(f"leakiest tap (linear probe): {leakiest.layer}, L {leakiest.balanced_accuracy:.3f} "
                            f"[{leakiest.ci_low or float('nan'):.3f}, {leakiest.ci_high or float('nan'):.3f}]")


def _input_references(config: AuditConfig, inputs: Inputs, relabellings: "SpeakerPermutations", notes: list[str],
                      observer: ProgressObserver) -> tuple[Any, Any]:
    """The probe on the raw audio's LLDs, and on eGeMAPS where the optional extra is installed."""
    from ser_audit.leakage.probe import input_reference

    lld = input_reference(inputs.corpus, inputs.folds, relabellings, attribute=config.attribute, seed=config.seed,
                          cache_dir=sources.cache_of(config), observer=observer)
    if config.quick:
        notes.append("--quick leaves out the eGeMAPS input reference")
        return lld, None
    try:
        egemaps = input_reference(inputs.corpus, inputs.folds, relabellings, source="egemaps", attribute=config.attribute,
                                  seed=config.seed, cache_dir=sources.cache_of(config), observer=observer)
    except ConfigError as missing:  # the optional openSMILE extra: the audit goes on without it
        notes.append(f"no eGeMAPS input reference: {missing}")
        egemaps = None
    return lld, egemaps


def _scenario_executor(config: AuditConfig) -> "Executor":
    """``--executor``'s executor, told the run's device and whether its workers can build the model."""
    from ser_audit.execution import executor
    from ser_audit.execution.auto import AutoExecutor

    runs_on = executor(config.executor)
    if isinstance(runs_on, AutoExecutor):
        runs_on.device = resolve_device(config.device)
        # A factory defined in the calling script exists in this process only: a spawned worker cannot build it.
        runs_on.workers_can_load = not config.model.spec.startswith("python:__main__:")
    return runs_on


def _aux_data(config: AuditConfig, inputs: Inputs, notes: list[str], observer: ProgressObserver) -> Any:
    """The aux corpus as the attackers see it (its embeddings extracted), if the run has one."""
    from ser_audit.embeddings.extract import extract
    from ser_audit.leakage.scenarios.plan import AttackData

    if inputs.aux is None:
        return None
    aux_embeddings = extract(inputs.model, inputs.aux, inputs.selected, maps=[layer.name for layer in inputs.attacked],
                             cache_dir=sources.cache_of(config), device=resolve_device(config.device), observer=observer)
    notes += _cache_notes(aux_embeddings, inputs.aux.name, observer)
    return AttackData.of(inputs.aux, aux_embeddings, config.attribute)


def _scenarios(config: AuditConfig, inputs: Inputs, embeddings: Any, aux_data: Any, relabellings: "SpeakerPermutations",
               inflation: dict[str, float], runs_on: "Executor", notes: list[str], observer: ProgressObserver) -> Any:
    from ser_audit.execution.auto import AutoExecutor
    from ser_audit.execution.processes import ProcessExecutor
    from ser_audit.leakage.scenarios.plan import AttackData, AttackSettings
    from ser_audit.leakage.scenarios.references import ModelOrigin
    from ser_audit.leakage.scenarios.run import run_scenarios

    if len(inputs.attacked) < len(inputs.selected):
        first_left_out = config.quick and inputs.attacked != scenario_layers(inputs.selected)
        spread = "middle and last" if first_left_out else "first, middle and last"
        notes.append(f"scenario attackers ran on {', '.join(l.name for l in inputs.attacked)} ({spread} layer with a "
                     "time axis, last vector layer); the linear probe on every selected layer; --layers chooses the "
                     "layers for both")
    settings = AttackSettings(seed=config.seed, device=resolve_device(config.device), quick=config.quick,
                              epochs=config.attacker_epochs)
    outcome = run_scenarios(inputs.model, inputs.attacked, AttackData.of(inputs.corpus, embeddings, config.attribute),
                            aux_data, inputs.folds, relabellings, inflation, attribute=config.attribute,
                            scenarios=config.scenarios, kinds=config.attackers, settings=settings, executor=runs_on,
                            origin=ModelOrigin.of(config.model, sources.cache_of(config), config.seed), observer=observer)
    if isinstance(runs_on, AutoExecutor) and runs_on.chosen == ProcessExecutor.name:
        # Rows equal --executor local's under one thread; with more, summation order moves them by rounding.
        notes.append("the scenario attackers ran in worker processes, one thread each (--executor auto); "
                     "--executor local runs them in this process")
    return outcome


def _verification(config: AuditConfig, inputs: Inputs, embeddings: Any) -> list[Any]:
    from ser_audit.leakage.speaker import verification, verification_folds

    halves = verification_folds(inputs.corpus, seed=config.seed)
    return [verification(embeddings.layers[layer.name], inputs.corpus, halves, layer=layer.name,
                         layer_index=layer.index, seed=config.seed) for layer in inputs.selected]


def _leakage_section(config: AuditConfig, inputs: Inputs, attacked: list["AttackedRow"], probe_rows: list[LeakageResult],
                     scenario: Any, references: tuple[Any, Any], verification: list[Any],
                     relabellings: "SpeakerPermutations") -> Any:
    """The verdict per layer (adjusted evidence), breakdowns, P0's findings and the split-point recommendation."""
    from ser_audit.leakage.statistics.breakdowns import breakdowns
    from ser_audit.leakage.statistics.findings import p0_findings
    from ser_audit.leakage.statistics.verdicts import decide, recommend
    from ser_audit.report.model import Leakage

    chance = probe_rows[0].chance
    scenario_ran = scenario is not None and bool(scenario.rows)
    # A split point must hold in every scenario, so only layers the scenario attackers audited qualify.
    audited = {layer.name for layer in (inputs.attacked if scenario_ran else inputs.selected)}
    rows = [item.row for item in attacked]
    verdict = decide(attacked, permutations=relabellings,
                     threshold=verdict_threshold(config, chance),
                     n_speakers=inputs.corpus.summary()["n_speakers"])
    splits = breakdowns(rows, [item.predictions for item in attacked], inputs.corpus, config.attribute)
    return Leakage(
        attribute=config.attribute,
        folds=[fold.name for fold in inputs.folds],
        target_family=scenario.family if scenario is not None else None,
        seen_speakers=inputs.seen_speakers,
        results=rows,
        skipped=scenario.skipped if scenario is not None else [],
        breakdowns=splits,
        findings=p0_findings(probe_rows, scenario.rows, splits) if scenario is not None else [],
        verification=verification,
        input_reference=references[0],
        egemaps_reference=references[1],
        recommendation=recommend(verdict, audited),
        verdict=verdict,
    )


def verdict_threshold(config: AuditConfig, chance: float) -> float:
    """T of leaks / private: the strictest of --max-leakage and chance + --max-gap, else chance + DEFAULT_MARGIN."""
    from ser_audit.leakage.statistics.verdicts import DEFAULT_MARGIN

    given = [t for t in (config.max_leakage, None if config.max_gap is None else chance + config.max_gap) if t is not None]
    return min(1.0, min(given) if given else chance + DEFAULT_MARGIN)


def _cache_notes(embeddings: Any, corpus_name: str, observer: ProgressObserver) -> list[str]:
    notes = [*embeddings.repairs, *embeddings.notes]
    if embeddings.reused:
        notes.append(f"embeddings of {len(embeddings.reused)} layer(s) on {corpus_name} taken from the cache "
                     f"({embeddings.location})")
    if embeddings.silent:
        # Every layer maps them to one point whatever the speaker: attackers can only guess on them.
        shown = ", ".join(embeddings.silent[:3]) + (", ..." if len(embeddings.silent) > 3 else "")
        notes.append(f"the audio of {len(embeddings.silent)} of {len(embeddings.logits)} utterances of {corpus_name} is "
                     f"digitally silent ({shown}; every sample within one 16-bit step of zero): they carry no voice "
                     "of their speaker; check the files, or leave them out of the manifest")
    for note in notes:
        observer.note(note)
    return notes
