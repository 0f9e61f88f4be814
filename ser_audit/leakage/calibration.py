"""The audit's statistics run on planted data whose truth is known: how often they cry wolf.

One repetition synthesises a corpus of clustered speakers (``clustered_layers``)
and audits its layers as ``leakage_audit`` does, with the same functions: the linear probe
(refitting test), an attacker trained on a separate aux corpus (fixed-prediction test), and a
refitted attacker too costly to refit per relabelling (here k-nearest neighbours, whose
cross-fold coupling is strong; its widened, approximate test). The same predictions are also
tested the way ser-audit did before schema 1.2 (fixed predictions, no widening), so the old
figures can be reproduced beside the new ones. Then the family-wise adjustment, the severity,
the gate and the privacy score decide, as on a real report.

``benchmarks/calibration.py`` prints the tables; ``tests/test_calibration.py`` keeps a small
version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import stats
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ser_audit.corpus.folds import speaker_folds
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.inference import SpeakerPermutations, permutation_p_value, widened_null
from ser_audit.leakage.multiplicity import adjust
from ser_audit.leakage.resampling import AUX_EXACT, REFITTED_APPROXIMATE, fixed_null
from ser_audit.leakage.runner import attack, cross_validate
from ser_audit.leakage.stats import (
    Evidence,
    LeakageStatistics,
    fixed_prediction_statistics,
    leakage_statistics,
    row_fields,
)
from ser_audit.report.gates import leakage_bound
from ser_audit.report.model import LeakageResult
from ser_audit.report.scoring import privacy_score, severity

METHODS = ("probe, refitted (exact)", "aux-trained, fixed predictions (exact)",
           "k-NN refitted, widened (approximate)", "probe, fixed predictions (before 1.2)",
           "k-NN, fixed predictions (before 1.2)")


@dataclass(frozen=True)
class Design:
    """A corpus design: how many women and men, and whether sessions pair them (IEMOCAP)."""

    name: str
    women: int
    men: int
    sessions: bool = False

    def draw(self, *, leak: float, seed: int, n_layers: int, prefix: str = "spk") -> PlantedLayers:
        return clustered_layers(women=self.women, men=self.men, leak=leak, n_layers=n_layers, sessions=self.sessions,
                                seed=seed, model_seed=seed, prefix=prefix)


DESIGNS = (
    Design("10 speakers, balanced, leave-one-session-out", 5, 5, sessions=True),
    Design("24 speakers, balanced, 5-fold", 12, 12),
    Design("30 speakers, 21 women and 9 men, 5-fold", 21, 9),
)


@dataclass
class Outcome:
    """One repetition: each method's raw p-value on the first layer, and the audit-level decisions."""

    p_values: dict[str, float] = field(default_factory=dict)
    gate_failed: bool = False  # --max-gap 0.1
    any_significant: bool = False  # any row significant after family-wise adjustment (a gate at chance)
    any_severity: bool = False  # any row with a severity above none
    privacy_score: float = 100.0
    balanced_accuracy: float = 0.0  # the probe's L on the first layer



@dataclass(frozen=True)
class PlantedLayers:
    """Pooled features of planted layers over speakers who cluster their utterances (one entry per utterance)."""

    layers: list[np.ndarray]
    labels: np.ndarray
    speakers: np.ndarray
    sessions: list[str | None]


def clustered_layers(
    *,
    women: int,
    men: int,
    utterances: int = 16,
    dim: int = 16,
    n_layers: int = 1,
    leak: float = 0.0,
    within: float = 0.5,
    sessions: bool = False,
    seed: int = 0,
    model_seed: int = 0,
    prefix: str = "spk",
) -> PlantedLayers:
    """Layers that look like real data to an attacker: every speaker has a voice vector (standard
    normal, the same for all of its utterances) and each utterance adds its own noise (sd ``within``).

    With ``leak = 0`` nothing in any layer depends on gender, yet speakers of one gender can
    happen to sound alike, which is what fools tests that treat utterances as independent.
    ``leak`` shifts the voice's first coordinate by +leak for women and -leak for men. Each
    layer sees the voices through its own random rotation (drawn from ``model_seed``: the same
    "model" for an audit corpus and its aux corpus), so layers are dependent, as a network's are.
    ``sessions`` pairs one woman and one man per session (IEMOCAP's design; needs ``women == men``).
    """
    rng = np.random.default_rng([seed, 0xCA1])
    n_speakers = women + men
    gender = np.array(["female"] * women + ["male"] * men)
    voice = rng.standard_normal((n_speakers, dim))
    voice[:, 0] += np.where(gender == "female", leak, -leak)
    speaker_of = np.repeat(np.arange(n_speakers), utterances)
    layers = []
    for layer in range(n_layers):
        rotation, _ = np.linalg.qr(np.random.default_rng([model_seed, layer]).standard_normal((dim, dim)))
        layers.append(voice[speaker_of] @ rotation + within * rng.standard_normal((len(speaker_of), dim)))
    if sessions:
        if women != men:
            raise ValueError("sessions pair one woman with one man: give as many of each")
        session_of: list[str | None] = [f"S{(s % women) + 1:02d}" for s in speaker_of.tolist()]
    else:
        session_of = [None] * len(speaker_of)
    return PlantedLayers(layers, gender[speaker_of], np.array([f"{prefix}{s:03d}" for s in speaker_of]),
                         session_of)


def _knn() -> object:
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15))


def _row(layer: str, scenario: str, statistics: LeakageStatistics) -> LeakageResult:
    return LeakageResult(layer=layer, scenario=scenario, attacker_kind="generic", attacker_architecture=scenario,
                         attacker_design=scenario, attacker_parameters=0, training_data="same", attribute="gender",
                         n_features=0, **row_fields(statistics))


def repetition(design: Design, *, leak: float, seed: int, n_layers: int = 4, n_permutations: int = 199,
               max_gap: float = 0.1) -> Outcome:
    """Audit one planted corpus (see the module docstring) and record what each statistic decided."""
    data = design.draw(leak=leak, seed=seed, n_layers=n_layers)
    aux = clustered_layers(women=12, men=12, leak=leak, n_layers=n_layers, seed=seed + 10**6, model_seed=seed,
                           prefix="aux")
    folds = speaker_folds(data.speakers, data.labels, data.sessions, seed=seed)
    permutations = SpeakerPermutations.draw(data.labels, data.speakers, n=n_permutations, seed=seed)
    classes = permutations.classes
    tested = np.concatenate([fold.test for fold in folds])
    outcome = Outcome()
    rows: list[LeakageResult] = []
    evidence: list[Evidence] = []

    def add(layer: int, name: str, statistics: LeakageStatistics) -> None:
        rows.append(_row(f"layer{layer}", name, statistics))
        evidence.append(statistics.evidence)

    for layer, features in enumerate(data.layers):
        probe = attack(LinearProbe(), features, data.labels, data.speakers, folds, permutations, seed=seed)
        add(layer, "probe", probe.statistics)
        knn = cross_validate(_knn(), features, data.labels, folds)  # type: ignore[arg-type]
        knn_null = fixed_null(permutations, folds, knn.predictions)
        knn_statistics = leakage_statistics(
            knn.truths, knn.predictions, units=data.speakers[tested], classes=classes,
            null=widened_null(knn_null, probe.inflation), p_value_method=REFITTED_APPROXIMATE, exact=False,
            widen=probe.inflation, seed=seed)
        add(layer, "worst", knn_statistics)
        aux_predictions = LinearProbe().fit(aux.layers[layer], aux.labels).predict(features)
        by_fold = [aux_predictions[fold.test] for fold in folds]
        aux_statistics = fixed_prediction_statistics(
            [data.labels[fold.test] for fold in folds], by_fold, folds=folds, units=data.speakers[tested],
            permutations=permutations, p_value_method=AUX_EXACT, seed=seed)
        add(layer, "s1", aux_statistics)
        if layer == 0:
            outcome.balanced_accuracy = probe.statistics.balanced_accuracy
            outcome.p_values = {
                METHODS[0]: probe.statistics.p_value,
                METHODS[1]: aux_statistics.p_value,
                METHODS[2]: knn_statistics.p_value,
                METHODS[3]: permutation_p_value(probe.statistics.balanced_accuracy,
                                                fixed_null(permutations, folds, probe.outcome.predictions)),
                METHODS[4]: permutation_p_value(knn_statistics.balanced_accuracy, knn_null),
            }
    adjust(rows, evidence)
    for row in rows:
        row.severity = severity(row)
    outcome.any_significant = any(row.significant for row in rows)
    outcome.gate_failed = any(leakage_bound(row) - row.chance > max_gap for row in rows)
    outcome.any_severity = any(row.severity != "none" for row in rows)
    outcome.privacy_score = privacy_score(rows) or 100.0
    return outcome


def clopper_pearson(successes: int, trials: int) -> tuple[float, float]:
    """Exact two-sided 95% interval for a binomial rate."""
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="exact")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class Rate:
    name: str
    count: int
    trials: int

    @property
    def rate(self) -> float:
        return self.count / self.trials

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.count, self.trials)


def rates(outcomes: list[Outcome], *, alpha: float = 0.05) -> list[Rate]:
    """How often each method rejects at ``alpha``, and how often each decision fires."""
    n = len(outcomes)
    found = [Rate(f"p < {alpha}: {method}", sum(o.p_values[method] < alpha for o in outcomes), n) for method in METHODS]
    checks: list[tuple[str, Callable[[Outcome], bool]]] = [
        ("any row significant after max-T adjustment", lambda o: o.any_significant),
        ("gate --max-gap 0.1 fails", lambda o: o.gate_failed),
        ("any severity above none (BH q < 0.05)", lambda o: o.any_severity),
        ("privacy score below 90", lambda o: o.privacy_score < 90),
    ]
    found += [Rate(name, sum(check(o) for o in outcomes), n) for name, check in checks]
    return found


def run(design: Design, *, leak: float, repetitions: int, first_seed: int = 0, **options: Any) -> list[Outcome]:
    # Many small matrices: BLAS threads only fight over them.
    with threadpool_limits(1):
        return [repetition(design, leak=leak, seed=first_seed + r, **options) for r in range(repetitions)]

