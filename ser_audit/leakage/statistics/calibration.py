"""The audit's statistics run on planted data whose truth is known: how often they cry wolf.

One repetition synthesises a corpus of clustered speakers (``clustered_layers``)
and audits its layers as ``leakage_audit`` does, with the same functions: the linear probe
(refitting test), an attacker trained on a separate aux corpus (fixed-prediction test), and a
refitted attacker too costly to refit per relabelling (here k-nearest neighbours, whose
cross-fold coupling is strong; its widened, approximate test). The same predictions are also
tested the way ser-audit did before schema 1.2 (fixed predictions, no widening), so the old
figures can be reproduced beside the new ones. Then the family-wise adjustment, the severity,
the gate and the privacy score decide, as on a real report.

With ``coverage``, each attacker's 95% interval on the first layer is also checked against
the leakage it estimates (``Estimate``): the mean, over the attackers the audit fitted per
fold, of their balanced accuracy on 10,000 new speakers of the same population (same
"model" rotation, same leak). That is the leakage of *these* attackers (conditional on the
audited corpus), the quantity a cross-validated L is read as; the expected leakage over
corpora (averaged over training sets too) is another estimand, not the one scored here.

``benchmarks/calibration.py`` prints the tables; ``tests/test_calibration.py`` keeps a small
version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ser_audit.corpus.folds import Fold, inner_split, speaker_folds
from ser_audit.leakage.attacked import AttackedRow, rows_of
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.probe import attack, cross_validate
from ser_audit.leakage.statistics.inference import (
    SpeakerPermutations,
    balanced_accuracy_of,
    inflation,
    permutation_p_value,
    speaker_bootstrap,
    widened_null,
)
from ser_audit.leakage.statistics.resampling import (
    AUX_EXACT,
    REFITTED_APPROXIMATE,
    fixed_null,
    fixed_spread,
    refitted_probe_null,
)
from ser_audit.leakage.statistics.rows import (
    LeakageStatistics,
    fixed_prediction_statistics,
    leakage_statistics,
    row_fields,
)
from ser_audit.leakage.statistics.verdicts import DEFAULT_MARGIN, decide
from ser_audit.report.gates import leakage_bound
from ser_audit.report.model import PROBE_DESIGN, LeakageResult
from ser_audit.report.scoring import GRADE_CAP, grade, privacy_score

# The audit's three kinds of row, one each per layer: the linear probe (P0's worst case), a refitted attacker costly to
# refit per relabelling (k-NN, standing for the neural worst-case attackers), and one trained on the aux corpus (s1).
KNN_DESIGN, AUX_DESIGN = "k-nn", "linear-aux"

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
    dim: int = 16  # features per layer
    within: float = 0.5  # utterance noise sd; a speaker's voice has sd 1 per coordinate

    def draw(self, *, leak: float, seed: int, n_layers: int, prefix: str = "spk", model_seed: int | None = None,
             women: int | None = None, men: int | None = None) -> PlantedLayers:
        """The audited corpus (``model_seed`` = ``seed``), or with other counts an aux corpus of the same model."""
        return clustered_layers(women=self.women if women is None else women, men=self.men if men is None else men,
                                leak=leak, n_layers=n_layers, sessions=self.sessions and women is None, seed=seed,
                                model_seed=seed if model_seed is None else model_seed, prefix=prefix, dim=self.dim,
                                within=self.within)

    def population(self, *, leak: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return population_sample(leak=leak, model_seed=seed, dim=self.dim, within=self.within, seed=seed)


DESIGNS = (
    Design("10 speakers, balanced, leave-one-session-out", 5, 5, sessions=True),
    Design("24 speakers, balanced, 5-fold", 12, 12),
    Design("30 speakers, 21 women and 9 men, 5-fold", 21, 9),
)
# Nulls large enough for a layer to be certified private.
LARGE_DESIGNS = (
    Design("48 speakers, balanced, 5-fold", 24, 24),
    Design("96 speakers, balanced, 5-fold", 48, 48),
)


@dataclass
class Outcome:
    """One repetition: each method's raw p-value on the first layer, and the audit-level decisions."""

    p_values: dict[str, float] = field(default_factory=dict)
    gate_failed: bool = False  # --max-gap 0.1
    any_significant: bool = False  # any row significant after family-wise adjustment (a gate at chance)
    any_severity: bool = False  # any row with a severity above none
    privacy_score: float = 100.0
    # The model's at T = chance + DEFAULT_MARGIN: leaks, private or inconclusive (``verdicts.decide``).
    verdict: str = "inconclusive"
    layer_verdicts: list[str] = field(default_factory=list)
    leaks_at_gap: bool = False  # the verdict is leaks at T = chance + max_gap, as under --max-gap
    # The largest layer upper bound above chance: the smallest margin T - chance at which this model would
    # be certified private (upper bounds do not depend on T).
    private_margin: float = 1.0
    grade: str = "A"  # from the privacy score, capped by the verdict (no robustness part)
    balanced_accuracy: float = 0.0  # the probe's L on the first layer
    # Per attacker on the first layer: its interval beside the leakage it estimates.
    intervals: dict[str, Estimate] = field(default_factory=dict)
    # The looser rule a 90% detection of the 21/9 leak would need: a significant row whose reported 95%
    # interval starts past T (one row at a time, no share of the error for the other rows).
    leaks_marginal: bool = False
    # With ``boundary``: T moved to the largest true leakage of the audit's rows, where every "leaks" is false.
    largest_truth: float | None = None
    boundary_leaks: bool | None = None  # the audit's verdict (simultaneous bounds) there
    boundary_marginal: bool | None = None  # the looser rule there


@dataclass(frozen=True)
class Estimate:
    """One row's estimate, its unwidened speaker-bootstrap bounds, and its true leakage.

    ``truth`` is the mean, over the row's per-fold attackers as fitted in the audit, of each
    one's balanced accuracy on a large sample of new speakers (``population_sample``): the
    leakage of the attackers this audit trained, which the cross-validated L estimates. The
    widening rules are applied afterwards (``covered``), so one simulation scores them all.
    """

    estimate: float
    low: float  # the speaker bootstrap as the audit computes it, not widened
    high: float
    standard_error: float
    plain_low: float  # the plain percentile bootstrap (before the small-sample corrections), not widened
    plain_high: float
    widen: float  # the probe's refit/fixed ratio on this layer (1 for the aux-trained attacker)
    refit_spread: float  # the probe's refitted null sd on this layer
    fixed_spread: float  # its fixed-prediction null sd (``resampling.fixed_spread``)
    truth: float


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
    gender = np.array(["female"] * women + ["male"] * men)
    voice = _voices(rng, gender, leak, dim)
    speaker_of = np.repeat(np.arange(women + men), utterances)
    layers = [voice[speaker_of] @ _rotation(model_seed, layer, dim) + within * rng.standard_normal((len(speaker_of), dim))
              for layer in range(n_layers)]
    if sessions:
        if women != men:
            raise ValueError("sessions pair one woman with one man: give as many of each")
        session_of: list[str | None] = [f"S{(s % women) + 1:02d}" for s in speaker_of.tolist()]
    else:
        session_of = [None] * len(speaker_of)
    return PlantedLayers(layers, gender[speaker_of], np.array([f"{prefix}{s:03d}" for s in speaker_of]),
                         session_of)


def _voices(rng: np.random.Generator, gender: np.ndarray, leak: float, dim: int) -> np.ndarray:
    voice = rng.standard_normal((len(gender), dim))
    voice[:, 0] += np.where(gender == "female", leak, -leak)
    return voice


def _rotation(model_seed: int, layer: int, dim: int) -> np.ndarray:
    rotation, _ = np.linalg.qr(np.random.default_rng([model_seed, layer]).standard_normal((dim, dim)))
    return rotation


def population_sample(*, leak: float, model_seed: int, layer: int = 0, per_class: int = 5000, utterances: int = 2,
                      dim: int = 16, within: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fresh speakers of the population ``clustered_layers`` draws from (same "model", same leak), as
    (features of one layer, gender of each utterance): a held-out sample large enough to stand in for
    the expectation over new speakers. Balanced accuracy weighs the classes equally, so the sample
    holds as many women as men whatever the audited design.
    """
    rng = np.random.default_rng([seed, 0xF12E5])
    gender = np.array(["female"] * per_class + ["male"] * per_class)
    voice = _voices(rng, gender, leak, dim)
    speaker_of = np.repeat(np.arange(len(gender)), utterances)
    features = voice[speaker_of] @ _rotation(model_seed, layer, dim) + within * rng.standard_normal((len(speaker_of), dim))
    return features, gender[speaker_of]


def _knn() -> object:
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15))


def _row(layer: str, design: str, statistics: LeakageStatistics) -> LeakageResult:
    scenario, training = ("s1", "aux") if design == AUX_DESIGN else ("worst", "same")
    return LeakageResult(layer=layer, scenario=scenario, attacker_kind="generic", attacker_architecture=design,
                         attacker_design=design, attacker_parameters=0, training_data=training, attribute="gender",
                         n_features=0, **row_fields(statistics))


def _fitted_per_fold(make: Callable[[], Any], features: np.ndarray, labels: np.ndarray,
                     folds: Sequence[Fold]) -> list[Any]:
    return [make().fit(features[fold.train], labels[fold.train]) for fold in folds]


def _inner_scores(make: Callable[[], Any], features: np.ndarray, labels: np.ndarray, units: np.ndarray,
                  folds: Sequence[Fold], seed: int) -> list[float]:
    """Per fold, balanced accuracy on held-out training speakers (as the strongest row chooses)."""
    scores = []
    for fold in folds:
        split = inner_split(units[fold.train], labels[fold.train], 0.2, seed)
        assert split is not None
        train, held_out = fold.train[split[0]], fold.train[split[1]]
        predicted = make().fit(features[train], labels[train]).predict(features[held_out])
        scores.append(balanced_accuracy_of(labels[held_out], predicted, np.unique(labels)))
    return scores


def first_layer_intervals(design: Design, data: PlantedLayers, aux: PlantedLayers, folds: Sequence[Fold],
                          permutations: SpeakerPermutations, *, leak: float, seed: int) -> dict[str, Estimate]:
    """Every interval method on the first layer, beside each attacker's true leakage (``Estimate``)."""
    features, labels, classes = data.layers[0], data.labels, permutations.classes
    tested = np.concatenate([fold.test for fold in folds])
    units = data.speakers[tested]
    fresh, fresh_labels = design.population(leak=leak, seed=seed)
    refitted, refitted_predictions = refitted_probe_null(LinearProbe(), features, folds, permutations)
    refit_sd = float(np.std(refitted))
    fixed_sd = fixed_spread(permutations, folds, refitted_predictions)
    factor = inflation(refitted, fixed_sd)

    def truth_of(attacker: Any) -> float:
        return balanced_accuracy_of(fresh_labels, attacker.predict(fresh), classes)

    def record(fold_predictions: Sequence[np.ndarray], truth: float, widen: float) -> Estimate:
        predicted = np.concatenate(fold_predictions)
        interval, _ = speaker_bootstrap(labels[tested], predicted, units, classes, seed=seed)
        plain, _ = speaker_bootstrap(labels[tested], predicted, units, classes, seed=seed, small_sample=False)
        return Estimate(balanced_accuracy_of(labels[tested], predicted, classes), interval.low, interval.high,
                        interval.standard_error, plain.low, plain.high, widen, refit_sd, fixed_sd, truth)

    candidates = {"probe": LinearProbe, "k-NN": _knn}
    fitted = {name: _fitted_per_fold(make, features, labels, folds) for name, make in candidates.items()}
    predictions = {name: [f.predict(features[fold.test]) for f, fold in zip(attackers, folds)]
                   for name, attackers in fitted.items()}
    truths = {name: [truth_of(f) for f in attackers] for name, attackers in fitted.items()}
    scores = {name: _inner_scores(make, features, labels, data.speakers, folds, seed)
              for name, make in candidates.items()}
    aux_attacker = LinearProbe().fit(aux.layers[0], aux.labels)
    predictions["aux"] = [aux_attacker.predict(features[fold.test]) for fold in folds]
    truths["aux"] = [truth_of(aux_attacker)] * len(folds)
    scores["aux"] = [balanced_accuracy_of(labels[fold.train], aux_attacker.predict(features[fold.train]), classes)
                     for fold in folds]
    # The strongest row's choice: per fold, the attacker best on held-out training speakers.
    chosen = [max(scores, key=lambda name: scores[name][k]) for k in range(len(folds))]
    return {
        "probe": record(predictions["probe"], float(np.mean(truths["probe"])), factor),
        "aux": record(predictions["aux"], truths["aux"][0], 1.0),
        "k-NN": record(predictions["k-NN"], float(np.mean(truths["k-NN"])), factor),
        "strongest": record([predictions[name][k] for k, name in enumerate(chosen)],
                            float(np.mean([truths[name][k] for k, name in enumerate(chosen)])), factor),
    }


def _marginally_past(rows: Sequence[LeakageResult], threshold: float) -> bool:
    return any(row.significant and row.ci_low is not None and row.ci_low > threshold for row in rows)


def repetition(design: Design, *, leak: float, seed: int, n_layers: int = 4, n_permutations: int = 199,
               max_gap: float = 0.1, margin: float = DEFAULT_MARGIN, coverage: bool = False,
               boundary: bool = False) -> Outcome:
    """Audit one planted corpus (see the module docstring) and record what each statistic decided.

    With ``boundary``, every row's true leakage is measured too (its per-fold attackers, or the aux-trained one,
    scored on new speakers of each layer) and the verdict taken again with T at the largest of them: the least
    favourable threshold, where any ``leaks`` is a false claim.
    """
    data = design.draw(leak=leak, seed=seed, n_layers=n_layers)
    aux = design.draw(leak=leak, seed=seed + 10**6, n_layers=n_layers, prefix="aux", model_seed=seed, women=12, men=12)
    folds = speaker_folds(data.speakers, data.labels, data.sessions, seed=seed)
    permutations = SpeakerPermutations.draw(data.labels, data.speakers, n=n_permutations, seed=seed)
    classes = permutations.classes
    tested = np.concatenate([fold.test for fold in folds])
    outcome = Outcome()
    attacked: list[AttackedRow] = []
    truths: list[float] = []

    def add(layer: int, design: str, statistics: LeakageStatistics) -> None:
        attacked.append(AttackedRow(_row(f"layer{layer}", design, statistics), {}, statistics.evidence, []))

    for layer, features in enumerate(data.layers):
        probe = attack(LinearProbe(), features, data.labels, data.speakers, folds, permutations, seed=seed)
        add(layer, PROBE_DESIGN, probe.statistics)
        knn = cross_validate(_knn(), features, data.labels, folds)  # type: ignore[arg-type]
        knn_null = fixed_null(permutations, folds, knn.predictions)
        knn_statistics = leakage_statistics(
            knn.truths, knn.predictions, units=data.speakers[tested], classes=classes,
            null=widened_null(knn_null, probe.inflation), p_value_method=REFITTED_APPROXIMATE, exact=False,
            widen=probe.inflation, seed=seed)
        add(layer, KNN_DESIGN, knn_statistics)
        aux_attacker = LinearProbe().fit(aux.layers[layer], aux.labels)
        aux_predictions = aux_attacker.predict(features)
        by_fold = [aux_predictions[fold.test] for fold in folds]
        aux_statistics = fixed_prediction_statistics(
            [data.labels[fold.test] for fold in folds], by_fold, folds=folds, units=data.speakers[tested],
            permutations=permutations, p_value_method=AUX_EXACT, seed=seed)
        add(layer, AUX_DESIGN, aux_statistics)
        if boundary:
            fresh, fresh_labels = population_sample(leak=leak, model_seed=seed, layer=layer, dim=design.dim,
                                                    within=design.within, seed=seed)
            for attackers in (_fitted_per_fold(LinearProbe, features, data.labels, folds),
                              _fitted_per_fold(_knn, features, data.labels, folds), [aux_attacker]):
                truths.append(float(np.mean([balanced_accuracy_of(fresh_labels, attacker.predict(fresh), classes)
                                             for attacker in attackers])))
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
    if coverage:
        outcome.intervals = first_layer_intervals(design, data, aux, folds, permutations, leak=leak, seed=seed)
    # The verdict at the audit's default T; the gate at --max-gap max_gap, as a user would set it.
    decision = decide(attacked, permutations=permutations, threshold=1 / len(classes) + margin)
    rows = rows_of(attacked)
    outcome.verdict = decision.verdict
    outcome.layer_verdicts = [layer.verdict for layer in decision.layers]
    outcome.leaks_at_gap = decide(attacked, permutations=permutations,
                                  threshold=1 / len(classes) + max_gap).verdict == "leaks"
    outcome.private_margin = max(layer.upper_bound - layer.chance for layer in decision.layers)
    outcome.any_significant = any(row.significant for row in rows)
    outcome.gate_failed = any(leakage_bound(row) - row.chance > max_gap for row in rows)
    outcome.any_severity = any(row.severity != "none" for row in rows)
    outcome.privacy_score = privacy_score(decision) or 100.0
    outcome.grade = grade(outcome.privacy_score, cap=GRADE_CAP[decision.verdict]) or "A"
    outcome.leaks_marginal = _marginally_past(rows, decision.threshold)
    if boundary:
        outcome.largest_truth = max(truths)
        outcome.boundary_leaks = decide(attacked, permutations=permutations,
                                        threshold=outcome.largest_truth).verdict == "leaks"
        outcome.boundary_marginal = _marginally_past(rows, outcome.largest_truth)
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
        ("any row significant (layer step-down max-T, then rows)", lambda o: o.any_significant),
        ("gate --max-gap 0.1 fails", lambda o: o.gate_failed),
        ("any severity above none", lambda o: o.any_severity),
        ("privacy score below 90", lambda o: o.privacy_score < 90),
        (f"verdict leaks (T = chance + {DEFAULT_MARGIN}, the default)", lambda o: o.verdict == "leaks"),
        (f"verdict private (T = chance + {DEFAULT_MARGIN})", lambda o: o.verdict == "private"),
        (f"verdict inconclusive (T = chance + {DEFAULT_MARGIN})", lambda o: o.verdict == "inconclusive"),
        ("verdict leaks under --max-gap 0.1 (T = chance + 0.1)", lambda o: o.leaks_at_gap),
        ("clean: no leaks verdict, no severity, --max-gap 0.1 passes",
         lambda o: o.verdict != "leaks" and not o.any_severity and not o.gate_failed),
    ]
    found += [Rate(name, sum(check(o) for o in outcomes), n) for name, check in checks]
    layers = [verdict for o in outcomes for verdict in o.layer_verdicts]
    found += [Rate(f"layers {verdict} (each layer of each data set)", layers.count(verdict), len(layers))
              for verdict in ("leaks", "private")]
    return found


ATTACKERS = ("probe", "aux", "k-NN", "strongest")
ATTACKER_NAMES = {
    "probe": "probe, refitted (exact); widened by its own ratio",
    "aux": "aux-trained, fixed predictions (not widened)",
    "k-NN": "k-NN refitted, widened by the probe's ratio",
    "strongest": "strongest-style per-fold choice, widened by the probe's ratio",
}


def _stretch(estimate: float, low: float, high: float, factor: float) -> tuple[float, float]:
    return max(0.0, estimate - factor * (estimate - low)), min(1.0, estimate + factor * (high - estimate))


def interval_of(record: Estimate, attacker: str, *, rule: str = "audit") -> tuple[float, float]:
    """The row's 95% interval: as the audit now reports it (``audit``), or as it did before the
    small-sample corrections (``before``: the plain percentile bootstrap, same widening)."""
    factor = 1.0 if attacker == "aux" else record.widen
    if rule == "before":
        return _stretch(record.estimate, record.plain_low, record.plain_high, factor)
    return _stretch(record.estimate, record.low, record.high, factor)


@dataclass(frozen=True)
class Coverage:
    attacker: str
    covered: int
    trials: int
    median_width: float
    median_width_ratio: float  # this row's width over the probe's on the same data set and layer

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.covered, self.trials)


def coverage(outcomes: Sequence[Outcome], attacker: str, *, rule: str = "audit") -> Coverage:
    """How often ``attacker``'s interval holds its true leakage (``Estimate.truth``), and how wide it is."""
    records = [o.intervals[attacker] for o in outcomes]
    intervals = [interval_of(r, attacker, rule=rule) for r in records]
    probes = [interval_of(o.intervals["probe"], "probe", rule=rule) for o in outcomes]
    widths = np.array([high - low for low, high in intervals])
    probe_widths = np.array([high - low for low, high in probes])
    return Coverage(attacker, sum(low <= r.truth <= high for (low, high), r in zip(intervals, records)),
                    len(records), float(np.median(widths)),
                    float(np.median(widths / np.maximum(probe_widths, 1e-9))))


def run(design: Design, *, leak: float, repetitions: int, first_seed: int = 0, **options: Any) -> list[Outcome]:
    # Many small matrices: BLAS threads only fight over them.
    with threadpool_limits(1):
        return [repetition(design, leak=leak, seed=first_seed + r, **options) for r in range(repetitions)]

