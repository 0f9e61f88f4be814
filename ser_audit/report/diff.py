"""What got better or worse between two reports of the same kind (``report --baseline``)."""

from __future__ import annotations

import math
from typing import NamedTuple

from ser_audit.report.model import Change, Report, ReportDiff

Z_95 = 1.959964


class _Row(NamedTuple):
    value: float
    interval: list[float] | None
    standard_error: float | None


def _verdict(change: float, higher_is_better: bool, interval: list[float] | None = None) -> str:
    """better or worse; same within 0.005, or when the change's interval (where rows have one) holds 0."""
    if abs(change) < 0.005 or (interval is not None and interval[0] <= 0.0 <= interval[1]):
        return "same"
    return "better" if (change > 0) == higher_is_better else "worse"


def _row(value: float, low: float | None = None, high: float | None = None, error: float | None = None) -> _Row:
    return _Row(value, None if low is None or high is None else [low, high], error)


def compare(before: Report, after: Report) -> ReportDiff:
    diff = ReportDiff(baseline_created=before.created, baseline_model_sha256=before.model.sha256)

    def leakage_rows(report: Report) -> dict[str, _Row]:
        rows = report.leakage.results if report.leakage else []
        return {f"{r.attribute}: {r.key}": _row(r.balanced_accuracy, r.ci_low, r.ci_high, r.standard_error) for r in rows}

    def robustness_rows(report: Report) -> dict[str, _Row]:
        rows = report.robustness.results if report.robustness else []
        return {f"{r.method} / eps {r.eps:g} / {r.domain}": _row(r.uar) for r in rows}

    for table, extract, higher_is_better in ((diff.leakage, leakage_rows, False), (diff.robustness, robustness_rows, True)):
        old, new = extract(before), extract(after)
        for key in new.keys() & old.keys():
            first, second = old[key], new[key]
            change = second.value - first.value
            change_interval = None
            if first.standard_error is not None and second.standard_error is not None:
                half = Z_95 * math.hypot(first.standard_error, second.standard_error)
                change_interval = [change - half, change + half]
            table.append(Change(key=key, before=first.value, after=second.value, change=change,
                                verdict=_verdict(change, higher_is_better, change_interval), before_interval=first.interval,
                                after_interval=second.interval, change_interval=change_interval))
        table.sort(key=lambda c: c.key)
        diff.only_before += sorted(old.keys() - new.keys())
        diff.only_after += sorted(new.keys() - old.keys())
    for name in ("privacy", "robustness"):
        old_score, new_score = getattr(before.scores, name), getattr(after.scores, name)
        if old_score is not None and new_score is not None:
            change = new_score - old_score
            diff.scores.append(Change(key=f"{name} score", before=old_score, after=new_score, change=change,
                                      verdict=_verdict(change / 100, True)))
    return diff


def with_interval(value: float, interval: list[float] | None, *, signed: bool = False) -> str:
    """``0.823 [0.712, 0.901]``, or the value alone where the row has no interval."""
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    if interval is None:
        return text
    low, high = interval
    return f"{text} [{low:+.3f}, {high:+.3f}]" if signed else f"{text} [{low:.3f}, {high:.3f}]"


def render_markdown(diff: ReportDiff) -> str:
    from ser_audit.report.render.escaping import markdown

    lines = [f"# Changes against the baseline of {markdown(diff.baseline_created)}", ""]
    for title, changes in (("Scores", diff.scores), ("Leakage, balanced accuracy (lower is better)", diff.leakage),
                           ("Robustness, UAR (higher is better)", diff.robustness)):
        if not changes:
            continue
        lines += [f"## {title}", "", "| row | before | after | change | |", "|---|---|---|---|---|"]
        lines += [f"| {markdown(c.key)} | {with_interval(c.before, c.before_interval)} | "
                  f"{with_interval(c.after, c.after_interval)} | {with_interval(c.change, c.change_interval, signed=True)} | "
                  f"{c.verdict} |" for c in changes]
        lines.append("")
    if diff.only_before or diff.only_after:
        lines += ["## Rows in one report only", ""]
        lines += [f"- only in the baseline: {markdown(key)}" for key in diff.only_before]
        lines += [f"- only in the new report: {markdown(key)}" for key in diff.only_after]
    return "\n".join(lines) + "\n"
