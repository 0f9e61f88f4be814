"""One attacked row and everything the later stages read of it, as one record.

Before this record the runner kept four lists (rows, predictions, evidence, validation) that
had to stay aligned across modules; a row appended to one and not the others would silently
shift every decision after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ser_audit.leakage.statistics.rows import Evidence
from ser_audit.report.model import LeakageResult


@dataclass(frozen=True)
class AttackedRow:
    """A result row with its held-out predictions, its null, and its inner validation.

    Attributes:
        row: The report's row (its statistics filled; adjusted fields filled by ``verdicts.decide``).
        predictions: The held-out prediction of every tested utterance (breakdowns, strongest choice).
        evidence: Statistic, null draws under the shared relabellings and standard error (verdicts).
        validation: Per fold, balanced accuracy on held-out training speakers (strongest choice).
    """

    row: LeakageResult
    predictions: dict[int, str]
    evidence: Evidence
    validation: list[float | None]


def rows_of(attacked: Sequence[AttackedRow]) -> list[LeakageResult]:
    return [item.row for item in attacked]
