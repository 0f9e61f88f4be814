"""The layer's headline: its strongest attacker, chosen without looking at the test speakers.

The largest of a layer's rows is biased upward: it was picked because it did well on the
very speakers it is scored on. Here the choice is nested instead. Every attacker already
reports, per outer fold, its balanced accuracy on speakers of that fold's training side that
it did not train on (an inner speaker-disjoint split for attackers refitted on the folds; the
whole training side for attackers trained on the aux corpus, which never saw it). Per fold,
the attacker that did best there is chosen, and its predictions on the fold's test speakers
become the row's. The choice is a function of training speakers only, so the row is scored
like any refitted attacker (approximate p-value, widened interval).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from ser_audit.corpus.folds import Fold
from ser_audit.leakage.attacked import AttackedRow
from ser_audit.leakage.statistics.inference import SpeakerPermutations
from ser_audit.leakage.statistics.resampling import layer_inflation
from ser_audit.leakage.statistics.rows import fixed_prediction_statistics, row_fields
from ser_audit.report.model import NESTED_CHOICE_DESIGN, LeakageResult

STRONGEST_APPROXIMATE = (
    "speaker permutation with the chosen predictions fixed, widened by the linear probe's refit/fixed null ratio "
    "(approximate, as for refitted attackers)"
)


def _name(row: LeakageResult) -> str:
    return f"{row.scenario}/{row.attacker_design} ({row.attacker_kind})"


def strongest_rows(
    candidates: Sequence[AttackedRow],
    folds: Sequence[Fold],
    labels: np.ndarray,
    units: np.ndarray,
    permutations: SpeakerPermutations,
    inflation: dict[str, float],
    *,
    seed: int = 0,
) -> list[AttackedRow]:
    """One ``strongest`` row per layer with at least two candidates (see the module docstring)."""
    by_layer: dict[str, list[AttackedRow]] = defaultdict(list)
    for candidate in candidates:
        by_layer[candidate.row.layer].append(candidate)
    chosen_rows: list[AttackedRow] = []
    tested = np.concatenate([fold.test for fold in folds])
    for layer, group in by_layer.items():
        if len(group) < 2:
            continue
        chosen = [_choose(group, k) for k in range(len(folds))]
        fold_predictions = [np.array([c.predictions[int(i)] for i in fold.test]) for c, fold in zip(chosen, folds)]
        statistics = fixed_prediction_statistics(
            [labels[fold.test] for fold in folds], fold_predictions, folds=folds, units=units[tested],
            permutations=permutations, p_value_method=STRONGEST_APPROXIMATE,
            refitted_widen=layer_inflation(inflation, layer),
            seed=seed,
        )
        first = group[0].row
        picks = "; ".join(f"{fold.name}: {_name(c.row)}" for c, fold in zip(chosen, folds))
        row = LeakageResult(
            layer=layer, layer_index=first.layer_index, scenario="worst", attacker_kind="generic",
            attacker_architecture=f"per fold, the best of {len(group)} attackers on held-out training speakers: {picks}",
            attacker_design=NESTED_CHOICE_DESIGN, attacker_family="chosen",
            attacker_parameters=max(c.row.attacker_parameters for c in chosen), training_data="same",
            attribute=first.attribute, n_features=first.n_features, reduction=first.reduction,
            notes=[f"chosen among: {', '.join(sorted({_name(c.row) for c in group}))}"],
            **row_fields(statistics),
        )
        predicted = {int(i): p for fold, fp in zip(folds, fold_predictions) for i, p in zip(fold.test, fp.tolist())}
        chosen_rows.append(AttackedRow(row, predicted, statistics.evidence, [c.validation[k] for k, c in enumerate(chosen)]))
    return chosen_rows


def _choose(group: Sequence[AttackedRow], fold: int) -> AttackedRow:
    """The candidate with the best validation score on this fold (the first on ties; any if none has one)."""
    scored = [c for c in group if c.validation[fold] is not None]
    if not scored:
        return group[0]
    return max(scored, key=lambda c: c.validation[fold])  # type: ignore[arg-type,return-value]
