"""What got better or worse between two reports of the same kind (``report --baseline``)."""

from __future__ import annotations

from ser_audit.report.model import Change, Report, ReportDiff


def _verdict(change: float, higher_is_better: bool) -> str:
    if abs(change) < 0.005:
        return "same"
    return "better" if (change > 0) == higher_is_better else "worse"


def compare(before: Report, after: Report) -> ReportDiff:
    diff = ReportDiff(baseline_created=before.created, baseline_model_sha256=before.model.sha256)

    def leakage_rows(report: Report) -> dict[str, float]:
        rows = report.leakage.results if report.leakage else []
        return {f"{r.attribute}: {r.key}": r.balanced_accuracy for r in rows}

    def robustness_rows(report: Report) -> dict[str, float]:
        rows = report.robustness.results if report.robustness else []
        return {f"{r.method} / eps {r.eps:g} / {r.domain}": r.uar for r in rows}

    for table, extract, higher_is_better in ((diff.leakage, leakage_rows, False), (diff.robustness, robustness_rows, True)):
        old, new = extract(before), extract(after)
        for key in new.keys() & old.keys():
            change = new[key] - old[key]
            table.append(Change(key=key, before=old[key], after=new[key], change=change,
                                verdict=_verdict(change, higher_is_better)))
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


def render_markdown(diff: ReportDiff) -> str:
    from ser_audit.report.render.escaping import markdown

    lines = [f"# Changes against the baseline of {markdown(diff.baseline_created)}", ""]
    for title, changes in (("Scores", diff.scores), ("Leakage, balanced accuracy (lower is better)", diff.leakage),
                           ("Robustness, UAR (higher is better)", diff.robustness)):
        if not changes:
            continue
        lines += [f"## {title}", "", "| row | before | after | change | |", "|---|---|---|---|---|"]
        lines += [f"| {markdown(c.key)} | {c.before:.3f} | {c.after:.3f} | {c.change:+.3f} | {c.verdict} |" for c in changes]
        lines.append("")
    if diff.only_before or diff.only_after:
        lines += ["## Rows in one report only", ""]
        lines += [f"- only in the baseline: {markdown(key)}" for key in diff.only_before]
        lines += [f"- only in the new report: {markdown(key)}" for key in diff.only_after]
    return "\n".join(lines) + "\n"
