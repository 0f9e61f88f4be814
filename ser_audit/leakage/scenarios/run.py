"""Running the planned attack jobs through an executor and scoring each like the probe rows.

Attackers trained on the aux corpus have their fold accuracies from the same attacker on each
fold's held-out speakers; their p-value is exact. Attackers refitted on the audit folds get the
probe's refit/fixed ratio as widening (``statistics.resampling``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.base import clone

from ser_audit.corpus.folds import Fold, assert_speaker_disjoint
from ser_audit.execution.interface import Executor
from ser_audit.execution.local import LocalExecutor
from ser_audit.leakage.attacked import AttackedRow, rows_of
from ser_audit.leakage.attackers.neural import NeuralAttacker, Rows, designs
from ser_audit.leakage.scenarios.plan import AttackData, AttackJob, AttackSettings, plan_jobs
from ser_audit.leakage.scenarios.references import ModelOrigin, SharedData
from ser_audit.leakage.scenarios.table import (
    KINDS,
    SAME_ARCHITECTURE_DESIGNS,
    SCENARIOS,
)
from ser_audit.leakage.statistics.inference import SpeakerPermutations, balanced_accuracy_of
from ser_audit.leakage.statistics.resampling import AUX_EXACT, REFITTED_APPROXIMATE, layer_inflation
from ser_audit.leakage.statistics.rows import fixed_prediction_statistics, row_fields, training_gaps
from ser_audit.models.interface import LayerInfo, TargetModel
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import LeakageResult, SkippedAttack


@dataclass
class AttackOutcome:
    job: AttackJob
    truths: list[np.ndarray]
    predictions: list[np.ndarray]
    n_train: int
    parameters: int
    architecture: str
    # Per fold: balanced accuracy on speakers of the fold's training side that the attacker did not
    # train on (None where it could hold none out); the strongest-attacker row chooses by it.
    validation: list[float | None]


def run_attack(job: AttackJob, shared: SharedData) -> AttackOutcome:
    """Fit and test one attacker (per fold on the audit corpus, or once on the aux corpus), on a worker:
    the job's references resolve here, the labels and folds are the run's ``shared`` data."""
    aware = job.kind == "aware"
    audit, folds = shared.audit, shared.folds
    audit_inputs = job.audit_inputs.resolve(shared)
    attacker = job.attacker if job.body is None else clone(job.attacker).set_params(body=job.body.resolve(shared))
    truths, predictions, validation, choices = [], [], [], []
    if job.aux_inputs is None:
        fitted = attacker
        for fold in folds:
            fitted = clone(attacker).fit(
                Rows(audit_inputs, fold.train), audit.attribute[fold.train],
                emotion=audit.emotion[fold.train] if aware else None, groups=audit.speakers[fold.train],
            )
            truths.append(audit.attribute[fold.test])
            predictions.append(fitted.predict(Rows(audit_inputs, fold.test)))
            validation.append(fitted.validation_score_)
            choices.append(f"{fold.name}: {fitted.choice_}" if hasattr(fitted, "choice_") else "")
        n_train = int(np.mean([len(fold.train) for fold in folds]))
    else:
        aux, aux_inputs = shared.aux, job.aux_inputs.resolve(shared)
        assert aux is not None
        fitted = clone(attacker).fit(
            Rows(aux_inputs, np.arange(len(aux_inputs))), aux.attribute,
            emotion=aux.emotion if aware else None, groups=aux.speakers,
        )
        # Every audit utterance is tested by some fold; the attacker never saw any of them.
        predicted = fitted.predict(Rows(audit_inputs, np.arange(len(audit_inputs))))
        classes = np.unique(audit.attribute)
        for fold in folds:
            truths.append(audit.attribute[fold.test])
            predictions.append(predicted[fold.test])
            validation.append(balanced_accuracy_of(audit.attribute[fold.train], predicted[fold.train], classes))
        n_train = len(aux_inputs)
        choices = [getattr(fitted, "choice_", "")]
    architecture = fitted.architecture
    if any(choices):  # the same-architecture attacker: which start and rate held-out training speakers chose
        architecture = f"{_generic_architecture(fitted)}; chosen on held-out training speakers: {'; '.join(choices)}"
    return AttackOutcome(job, truths, predictions, n_train, fitted.parameter_count(), architecture, validation)


def _generic_architecture(fitted: NeuralAttacker) -> str:
    """The same-architecture attacker's description without the start and rate that won the last fit."""
    return f"same-architecture, trained for the attribute (the target's weights or a fresh start): {fitted.body_description}" + (
        " + emotion head (multi-task)" if fitted.aware else "")


@dataclass
class ScenarioResults:
    attacked: list[AttackedRow] = field(default_factory=list)
    skipped: list[SkippedAttack] = field(default_factory=list)
    family: str = "convolutional"

    @property
    def rows(self) -> list[LeakageResult]:
        return rows_of(self.attacked)


def run_scenarios(
    model: TargetModel,
    layers: Sequence[LayerInfo],
    audit: AttackData,
    aux: AttackData | None,
    folds: Sequence[Fold],
    permutations: SpeakerPermutations,
    inflation: dict[str, float],
    *,
    attribute: str = "gender",
    scenarios: Sequence[str] = SCENARIOS,
    kinds: Sequence[str] = KINDS,
    settings: AttackSettings = AttackSettings(),
    executor: Executor | None = None,
    origin: ModelOrigin | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> ScenarioResults:
    """Every planned attack, scored like the probe rows (``stats``) under the shared ``permutations``;
    ``inflation`` (per layer, from the probe) widens the nulls of attackers refitted on the audit folds.

    Jobs name the stored embeddings, and, with ``origin`` (how ``model`` was loaded), the model, where
    ``executor`` says its workers read those files; else the arrays travel once in the shared data.
    """
    assert_speaker_disjoint(audit.corpus, list(folds))
    executor = executor or LocalExecutor()
    plan = plan_jobs(model, layers, audit, aux, folds, scenarios=scenarios, kinds=kinds, settings=settings,
                     sees=executor.sees, origin=origin)
    speakers = np.array(audit.corpus.labels("speaker"))
    results = ScenarioResults(skipped=plan.skipped, family=plan.family)
    # The bar advances by each job's expected work, not by jobs: the same-architecture attacker on an early
    # map costs a hundred times a dense one on the last layer, and a count would make the ETA meaningless.
    costs = [_expected_cost(job, folds, len(aux.attribute) if aux is not None else 0, settings) for job in plan.jobs]
    # Costliest first: on a pool of workers the last job to start then is a short one, not the same-architecture
    # attacker left to run alone at the end. Jobs seed themselves, so the order changes no figure; rows keep the plan's.
    order = sorted(range(len(plan.jobs)), key=lambda i: -costs[i])
    rows: dict[int, AttackedRow] = {}
    with plan.referrer.lend(), observer.task(f"training {len(plan.jobs)} scenario attackers",
                                             total=sum(costs)) as task:
        for i, outcome in zip(order, executor.map(run_attack, [plan.jobs[i] for i in order], plan.shared)):
            rows[i] = _row(outcome, plan.shared, speakers, attribute, settings, permutations, inflation)
            task.advance(costs[i])
    results.attacked.extend(rows[i] for i in range(len(plan.jobs)))
    return results


def _expected_cost(job: AttackJob, folds: Sequence[Fold], aux_rows: int, settings: AttackSettings) -> int:
    """Rough work units of one job: rows read per epoch, times epochs, fits and the size of one input."""
    size = int(np.prod(job.layer.shape[1:])) if len(job.layer.shape) > 1 else 1
    fits = (0.3 if job.attacker.freeze_body else 3.0) if job.design in SAME_ARCHITECTURE_DESIGNS else 1.0
    fitted = [aux_rows] if job.on_aux else [len(fold.train) for fold in folds]
    rows = sum(min(n, settings.epoch_rows) for n in fitted)
    return max(1, int(rows * settings.epochs * size * fits / 1e6))


def _row(
    outcome: AttackOutcome,
    shared: SharedData,
    speakers: np.ndarray,
    attribute: str,
    settings: AttackSettings,
    permutations: SpeakerPermutations,
    inflation: dict[str, float],
) -> AttackedRow:
    job, folds = outcome.job, shared.folds
    tested = np.concatenate([fold.test for fold in folds])
    on_aux = job.on_aux
    statistics = fixed_prediction_statistics(
        outcome.truths, outcome.predictions, folds=folds, units=speakers[tested], permutations=permutations,
        p_value_method=AUX_EXACT if on_aux else REFITTED_APPROXIMATE,
        refitted_widen=None if on_aux else layer_inflation(inflation, job.layer.name), seed=settings.seed,
    )
    family = "same-architecture" if job.design in SAME_ARCHITECTURE_DESIGNS else designs()[job.design].family
    row = LeakageResult(
        layer=job.layer.name, layer_index=job.layer.index, scenario=job.scenario, attacker_kind=job.kind,
        attacker_architecture=outcome.architecture, attacker_design=job.design, attacker_family=family,
        attacker_parameters=outcome.parameters, training_data="aux" if on_aux else "same", attribute=attribute,
        n_features=int(np.prod(job.audit_inputs.shape[1:])), n_train=outcome.n_train, reduction=job.reduction,
        notes=training_gaps(shared.audit.attribute, folds) if not on_aux else [],
        **row_fields(statistics),
    )
    return AttackedRow(row, dict(zip(tested.tolist(), np.concatenate(outcome.predictions).tolist())),
                       statistics.evidence, outcome.validation)
