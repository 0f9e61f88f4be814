"""Accuracy of each result row within groups of the test utterances: emotion, spontaneity, gender.

Intervals resample speakers within the group (``inference.speaker_bootstrap``): a group's
utterances come from few speakers, and its interval must say so.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.leakage.statistics.inference import speaker_bootstrap
from ser_audit.report.model import BreakdownRow, Breakdowns, LeakageResult

_GROUPINGS: dict[str, Callable[[Utterance], str | None]] = {
    "by_emotion": lambda u: u.emotion,
    "by_spontaneity": lambda u: u.spontaneity,
    "by_gender": lambda u: u.gender,
}


def breakdowns(
    rows: Sequence[LeakageResult], predictions: Sequence[dict[int, str]], corpus: Corpus, attribute: str
) -> Breakdowns:
    """For every row, accuracy with a speaker-level interval per group; groups the corpus lacks are left out."""
    truth = np.array(corpus.labels(attribute))
    classes = np.unique(truth)
    units = np.array(corpus.labels("speaker")) if attribute != "speaker" else np.arange(len(truth))
    result = Breakdowns()
    for row, predicted in zip(rows, predictions):
        index = np.fromiter(predicted.keys(), dtype=int)
        guess = np.array(list(predicted.values()))
        correct = guess == truth[index]
        for name, group_of in _GROUPINGS.items():
            groups = np.array([group_of(corpus.utterances[i]) or "" for i in index])
            for group in sorted(set(groups) - {""}):
                members = groups == group
                hits, n = int(correct[members].sum()), int(members.sum())
                selected = index[members]
                _, plain = speaker_bootstrap(truth[selected], guess[members], units[selected], classes)
                low, high = plain.low, plain.high
                getattr(result, name).append(BreakdownRow(
                    layer=row.layer, scenario=row.scenario, attacker_kind=row.attacker_kind,
                    attacker_design=row.attacker_design, group=group, accuracy=hits / n, n=n, ci_low=low, ci_high=high,
                ))
    return result
