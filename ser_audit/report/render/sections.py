"""What a report says, in order: sections of text and tables that every text renderer formats.

Markdown and HTML show the same content; this module chooses it (which rows, which
columns, how numbers are written) so the two cannot drift. Nothing here computes a
statistic: every number is read from the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ser_audit.report.diff import with_interval
from ser_audit.report.model import (
    BreakdownRow,
    Comparison,
    Leakage,
    LeakageResult,
    LeakageVerdict,
    Protection,
    Report,
    Robustness,
)
from ser_audit.report.scoring import GRADE_CAP

VERDICTS = {True: "reproduced", False: "not reproduced", None: "cannot tell"}


@dataclass
class Table:
    """``collapsed``: the one-line summary of a table shown folded (HTML ``<details>``, a bold line in Markdown);
    ``key``: an id for renderers that anchor it (HTML)."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    collapsed: str = ""
    key: str = ""


@dataclass
class Section:
    """``key`` names the section for renderers that add figures to it (HTML); ``headline`` is its one sentence
    in front of everything else."""

    key: str
    title: str
    headline: str = ""
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def _interval(low: float, high: float) -> str:
    return f"[{low:.3f}, {high:.3f}]"


def _optional_interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else _interval(low, high)


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _robustness_score(value: float | None, fallback: str | None) -> str:
    """An SPSA-estimated score is an upper bound, and says why the white-box gradient was missing."""
    if value is None or fallback is None:
        return _score(value)
    return f"<= {value:.1f} (upper bound: black-box SPSA gradient; {fallback})"


def row_label(row: LeakageResult | BreakdownRow) -> str:
    return f"{row.layer} / {row.scenario} / {row.attacker_kind} / {row.attacker_design}"


def leakage_interval(row: LeakageResult) -> tuple[float, float]:
    """The 95% interval of L (reports older than schema 1.2 carry only the accuracy's)."""
    if row.ci_low is None or row.ci_high is None:
        return row.accuracy.ci_low, row.accuracy.ci_high
    return row.ci_low, row.ci_high


def _optional(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def leakage_table(rows: Sequence[LeakageResult]) -> Table:
    return Table(
        ["layer", "scenario", "kind", "attacker", "data", "leakage L", "95% interval", "accuracy (P0)", "chance", "p",
         "adjusted p", "q", "severity", "n test"],
        [
            [
                r.layer, r.scenario, r.attacker_kind, r.attacker_design, r.training_data,
                f"{r.balanced_accuracy:.3f}", _interval(*leakage_interval(r)),
                f"{r.accuracy.mean:.3f} ± {r.accuracy.std:.3f}", f"{r.chance:.3f}",
                f"{r.p_value:.3g}" + ("" if r.p_value_exact else " ≈"), _optional(r.p_value_adjusted), _optional(r.q_value),
                r.severity or "", str(r.n_test),
            ]
            for r in rows
        ],
    )


def _layers(rows: Sequence[LeakageResult]) -> list[str]:
    depth = {r.layer: (r.layer_index if r.layer_index is not None else 10**6) for r in rows}
    return sorted(depth, key=lambda name: depth[name])


def rows_per_layer(leakage: Leakage) -> list[Table]:
    """The row-level table cut per layer in depth order, each folded under a line with its strongest row and the
    layer's verdict; the input references last, unfolded."""
    verdicts = {v.layer: v for v in leakage.verdict.layers} if leakage.verdict else {}
    tables = []
    for layer in _layers(leakage.results):
        rows = [r for r in leakage.results if r.layer == layer]
        strongest = max(rows, key=lambda r: r.balanced_accuracy)
        verdict = f"; {verdicts[layer].verdict}, severity {verdicts[layer].severity}" if layer in verdicts else ""
        table = leakage_table(rows)
        table.collapsed = (f"{layer}: {len(rows)} row{'s' if len(rows) > 1 else ''}, strongest L "
                           f"{strongest.balanced_accuracy:.3f} ({strongest.scenario} / {strongest.attacker_kind} / "
                           f"{strongest.attacker_design}){verdict}")
        tables.append(table)
    if leakage.references:
        references = leakage_table(leakage.references)
        references.caption = "Input references: the attribute read from the input itself (the ceiling)"
        tables.append(references)
    return tables


def depth_messages(leakage: Leakage) -> list[str]:
    """What the depth curve shows, in words (for Markdown and screen readers)."""
    if not leakage.results:
        return []
    strongest = {layer: max((r for r in leakage.results if r.layer == layer), key=lambda r: r.balanced_accuracy)
                 for layer in _layers(leakage.results)}
    top = max(strongest.values(), key=lambda r: r.balanced_accuracy)
    low = min(strongest.values(), key=lambda r: r.balanced_accuracy)
    if len(strongest) == 1:
        text = (f"Depth curve: one layer, where the strongest attacker reaches L {top.balanced_accuracy:.3f} at "
                f"{top.layer}, against chance {top.chance:.3f}")
    elif top.balanced_accuracy == low.balanced_accuracy:
        text = (f"Depth curve: flat, the strongest attacker reaches L {top.balanced_accuracy:.3f} at every one of the "
                f"{len(strongest)} layers, against chance {top.chance:.3f}")
    else:
        text = (f"Depth curve: the strongest attacker reaches L {top.balanced_accuracy:.3f} at {top.layer} and "
                f"{low.balanced_accuracy:.3f} at {low.layer}, against chance {top.chance:.3f}")
    if leakage.verdict is not None:
        past = [v.layer for v in leakage.verdict.layers if v.verdict == "leaks"]
        text += (f"; the layers shown to leak past the threshold T {leakage.verdict.threshold:.3f}: "
                 + (", ".join(past) if past else "none"))
    return [text + "."]


def verdict_table(verdict: LeakageVerdict, *, compact: bool = False) -> Table:
    """One line per layer: its verdict, severity, headline leakage and who achieved it (``compact``: only
    those, for a terminal)."""
    headers = ["layer", "verdict", "severity", "leakage L [95%]", "attacker"]
    rows = []
    for v in verdict.layers:
        row = [v.layer, v.verdict, v.severity,
               f"{v.balanced_accuracy:.3f} {_optional_interval(v.ci_low, v.ci_high)}".strip(),
               v.attacker + ("; no other attacker ran here" if v.attackers == "linear probe only" else "")]
        if not compact:
            row += [f"{v.p_value_adjusted:.3g}", f"{v.lower_bound:.3f}", f"{v.upper_bound:.3f}",
                    _optional(v.minimum_detectable_leakage), "" if v.speakers_needed is None else str(v.speakers_needed)]
        rows.append(row)
    if not compact:
        headers += ["layer adjusted p", "lower bound", "upper bound", "detectable from", "speakers to decide"]
    caption = f"threshold T = {verdict.threshold:.3f}; lower and upper bounds each hold jointly at {1 - verdict.alpha:.0%}"
    return Table(headers, rows, caption, key="verdict-table")


def _breakdown_table(rows: Sequence[BreakdownRow], caption: str) -> Table | None:
    if not rows:
        return None
    groups = sorted({r.group for r in rows})
    by_row: dict[str, dict[str, BreakdownRow]] = {}
    for r in rows:
        by_row.setdefault(row_label(r), {})[r.group] = r
    return Table(
        ["layer / scenario / kind / attacker", *groups],
        [
            [label, *(f"{cells[g].accuracy:.3f} (n {cells[g].n})" if g in cells else "" for g in groups)]
            for label, cells in by_row.items()
        ],
        caption,
    )


def _robustness_table(robustness: Robustness) -> Table:
    return Table(
        ["method", "eps", "domain", "gradient", "UAR", "accuracy", "success rate", "prediction change", "n"],
        [
            [
                r.method, f"{r.eps:g}", r.domain, r.gradient, f"{r.uar:.3f}", f"{r.accuracy:.3f}",
                "" if r.success_rate is None else f"{r.success_rate:.2f}", f"{r.prediction_change_rate:.2f}", str(r.n),
            ]
            for r in robustness.results
        ],
    )


def protection_tables(protection: Protection) -> list[Table]:
    """The trade-off per strength, then each tapped layer before and after (informed), with the ignorant probe."""
    tradeoff = Table(
        ["strength", "informed leakage at layer [95%]", "verdict", "attacker", "emotion UAR [95%]", "UAR drop",
         "within budget", "own adversary (contrast)"],
        [[f"{point.strength:g}" + (" (chosen)" if point.strength == protection.chosen_strength else ""),
          f"{point.informed.balanced_accuracy:.3f} {_optional_interval(point.informed.ci_low, point.informed.ci_high)}".strip(),
          point.informed.verdict, point.informed.attacker,
          f"{point.utility.uar:.3f} {_optional_interval(point.utility.ci_low, point.utility.ci_high)}".strip(),
          f"{point.uar_drop:+.3f}", "yes" if point.within_budget else "no", _optional(point.own_adversary)]
         for point in protection.tradeoff],
        f"{protection.method} at {protection.layer}; before: emotion UAR {protection.utility_before.uar:.3f}; "
        f"budget: a UAR drop of at most {protection.max_uar_drop:.3f}",
    )
    after = {v.layer: v for v in protection.after}
    ignorant = {row.layer: row for row in protection.ignorant}
    layers = Table(
        ["layer", "before: L [95%]", "before: verdict", "after: L [95%]", "after: verdict", "ignorant probe [95%]"],
        [[v.layer, f"{v.balanced_accuracy:.3f} {_optional_interval(v.ci_low, v.ci_high)}".strip(), v.verdict,
          *((f"{a.balanced_accuracy:.3f} {_optional_interval(a.ci_low, a.ci_high)}".strip(), a.verdict)
            if (a := after.get(v.layer)) is not None else ("", "")),
          (f"{i.balanced_accuracy:.3f} {_optional_interval(i.ci_low, i.ci_high)}".strip()
           if (i := ignorant.get(v.layer)) is not None else "")]
         for v in protection.before],
        "informed: the strongest of fresh attackers of every scenario, trained on each model; ignorant: the "
        "unprotected model's linear probe applied to the protected model",
    )
    return [tradeoff, layers]


@dataclass(frozen=True)
class ComparisonNames:
    """How a comparison names its two sides: MODEL and the --compare-with model, or before and after hardening in a
    report before 1.8 (its `hardening_effect`)."""

    title: str
    before: str
    after: str
    legacy: bool

    @classmethod
    def of(cls, report: Report) -> ComparisonNames:
        if report.comparison is None:
            return cls("Leakage before and after hardening", "before", "after hardening", legacy=True)
        return cls(f"Comparison with {report.comparison.model.path}", "this model", "compared model", legacy=False)


def comparison_table(comparison: Comparison, names: ComparisonNames) -> Table:
    """One line per layer in both models: each one's linear-probe L with its interval, the change, and (1.8 on) each
    one's verdict on the layer."""
    headers = ["layer", f"{names.before}: L [95%]", f"{names.after}: L [95%]", "change", "significant"]
    if not names.legacy:
        headers += [f"{names.before}: verdict", f"{names.after}: verdict (probe)"]
    rows = []
    for layer in comparison.layers:
        row = [layer.layer, with_interval(layer.leakage_before, layer.before_interval),
               with_interval(layer.leakage_after, layer.after_interval), f"{layer.change:+.3f}",
               "yes" if layer.significant else "no"]
        if not names.legacy:
            row += [layer.verdict_before or "", layer.verdict_after or ""]
        rows.append(row)
    return Table(headers, rows, "linear-probe leakage L; significant when the two 95% intervals do not overlap")


def _comparison(comparison: Comparison, names: ComparisonNames) -> Section:
    section = Section("comparison", names.title)
    if not names.legacy:
        model = comparison.model
        section.paragraphs += [
            f"The same corpus, seed and probes on {model.path} ({model.format}, sha256 {model.sha256}). Layers are "
            "matched by name; each is read by the linear probe on both models. This model's verdict comes from every "
            "attacker of the run, the compared model's from the linear probe alone.",
        ]
        section.bullets += [f"only in this model: {name}" for name in comparison.only_in_model]
        section.bullets += [f"only in the compared model: {name}" for name in comparison.only_in_compared]
    if comparison.layers:
        section.tables.append(comparison_table(comparison, names))
    if comparison.robustness is not None:
        robustness = _robustness_table(comparison.robustness)
        robustness.caption = (f"Robustness, {names.after}: {comparison.model.path}; robustness score "
                              f"{_robustness_score(comparison.robustness.score, comparison.robustness.gradient_fallback)}")
        section.tables.append(robustness)
    return section


def _protection(protection: Protection) -> Section:
    section = Section("protection", f"Protection of {protection.layer} against {protection.attribute} ({protection.method})")
    section.paragraphs += [protection.statement, f"Fitted on {protection.data}. {protection.guarantees}"]
    section.tables += protection_tables(protection)
    return section


def sections(report: Report) -> list[Section]:
    out = [_summary(report)]
    if report.protection is not None:
        out.append(_protection(report.protection))
    if report.leakage:
        out += _leakage(report)
    out.append(_provenance(report))
    if report.robustness:
        robustness = Section("robustness", f"Robustness ({report.robustness.evaluation_set})")
        robustness.paragraphs.append(
            f"eps is relative to the attacked input's spread ({report.robustness.input_spread:.4g}); "
            f"robustness score {_robustness_score(report.robustness.score, report.robustness.gradient_fallback)}."
        )
        robustness.tables.append(_robustness_table(report.robustness))
        out.append(robustness)
    comparison = report.compared
    if comparison is not None:
        out.append(_comparison(comparison, ComparisonNames.of(report)))
    if report.baseline:
        diff = report.baseline
        section = Section("baseline", f"Changes against the baseline of {diff.baseline_created}")
        for caption, changes in (("Scores (higher is better)", diff.scores), ("Leakage (lower is better)", diff.leakage),
                                 ("Robustness, UAR (higher is better)", diff.robustness)):
            if changes:
                section.tables.append(Table(
                    ["row", "before", "after", "change", "verdict"],
                    [[c.key, with_interval(c.before, c.before_interval), with_interval(c.after, c.after_interval),
                      with_interval(c.change, c.change_interval, signed=True), c.verdict] for c in changes],
                    caption,
                ))
        section.bullets += [f"only in the baseline: {key}" for key in diff.only_before]
        section.bullets += [f"only in this report: {key}" for key in diff.only_after]
        out.append(section)
    if report.gates:
        out.append(Section("gates", "Gates", tables=[Table(
            ["gate", "threshold", "value", "outcome", "detail"],
            [[g.name, f"{g.threshold:g}", f"{g.value:.3f}", "pass" if g.passed else "FAIL", g.detail] for g in report.gates],
        )]))
    row_notes = [f"{row_label(r)}: {note}" for r in (report.leakage.results if report.leakage else []) for note in r.notes]
    if report.notes or row_notes:
        out.append(Section("notes", "Notes", bullets=[*report.notes, *row_notes]))
    return out


def _summary(report: Report) -> Section:
    scores = report.scores
    section = Section("summary", "Summary")
    verdict = report.leakage.verdict if report.leakage else None
    if verdict is not None:
        section.headline = f"{report.leakage.attribute if report.leakage else ''} verdict: {verdict.statement}"
    fallback = report.robustness.gradient_fallback if report.robustness else None
    grade = scores.grade or ("none (the robustness score is only an upper bound)" if scores.robustness_upper_bound else "n/a")
    section.bullets.append(
        f"grade {grade}: privacy score {_score(scores.privacy)}, "
        f"robustness score {_robustness_score(scores.robustness, fallback)}"
        + (f" (the {verdict.verdict} verdict allows at best {GRADE_CAP[verdict.verdict]})" if verdict else "")
    )
    if report.leakage and report.leakage.recommendation:
        section.bullets.append(f"recommendation: {report.leakage.recommendation.reason}")
    if report.gates:
        failed = [g.name for g in report.gates if not g.passed]
        section.bullets.append(
            f"gates: {len(report.gates) - len(failed)} of {len(report.gates)} passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    if verdict is not None:
        section.tables.append(verdict_table(verdict))
    return section


def _provenance(report: Report) -> Section:
    model, corpus = report.model, report.corpus
    bullets = [
        f"model: {model.path} ({model.format}), sha256 {model.sha256}",
        f"corpus: {corpus.name}, {corpus.n_utterances} utterances, {corpus.n_speakers} speakers, "
        f"manifest sha256 {corpus.manifest_sha256}",
    ]
    if report.aux_corpus:
        bullets.append(f"aux corpus: {report.aux_corpus.name}, {report.aux_corpus.n_utterances} utterances, "
                       f"manifest sha256 {report.aux_corpus.manifest_sha256}")
    bullets += [
        f"seed {report.seed}; ser-audit {report.tool.version}; python {report.environment.python}; "
        + ", ".join(f"{k} {v}" for k, v in report.environment.packages.items()),
        f"command: {' '.join(report.command)}",
        f"created {report.created}, finished {report.finished}",
    ]
    return Section("provenance", "Provenance", bullets=bullets)


def _leakage(report: Report) -> list[Section]:
    leakage = report.leakage
    assert leakage is not None
    table = Section("leakage", f"Leakage of {leakage.attribute}")
    table.paragraphs.append(
        "Leakage L: the attacker's balanced accuracy on held-out speakers, with its 95% speaker-level interval, "
        "against chance 1/C; P0's plain accuracy (mean ± std over folds) beside it. p: one-sided p-value against "
        "chance (≈: approximate, see README, Statistics); adjusted p: the larger of the layer's (step-down max-T "
        "over layers) and the row's within its layer, which every decision reads; q: false-discovery rate, "
        "descriptive only. Folds: " + "; ".join(leakage.folds) + "."
    )
    if leakage.target_family:
        table.paragraphs.append(f"Target family read from the graph: {leakage.target_family}.")
    if leakage.recommendation:
        table.paragraphs.append(f"Recommendation: {leakage.recommendation.reason}")
    table.paragraphs += depth_messages(leakage)
    table.tables += rows_per_layer(leakage)
    out = [table]
    if leakage.findings:
        out.append(Section("findings", "P0's findings on this run", tables=[Table(
            ["finding", "P0", "this run", "evidence"],
            [[f.name, f.claim, VERDICTS[f.reproduced], f.evidence] for f in leakage.findings],
        )]))
    breakdown = Section("breakdowns", "Breakdowns")
    for rows_of, caption in ((leakage.breakdowns.by_emotion, "Accuracy per emotion"),
                             (leakage.breakdowns.by_spontaneity, "Accuracy per spontaneity"),
                             (leakage.breakdowns.by_gender, "Accuracy per gender")):
        built = _breakdown_table(rows_of, caption)
        if built:
            breakdown.tables.append(built)
    if breakdown.tables:
        out.append(breakdown)
    if leakage.verification:
        out.append(Section("verification", "Speaker verification", paragraphs=[
            "Equal error rate of cosine scoring between held-out speakers (two speaker-disjoint halves, stratified by "
            "gender): over all non-target trials, and over same-gender ones only, which measures identity rather than "
            "gender. Lower means more speaker information."
        ], tables=[Table(
            ["layer", "EER", "95% interval", "EER, same gender", "EER per fold", "target trials", "non-target trials"],
            [[v.layer, f"{v.eer:.3f}", _optional_interval(v.eer_ci_low, v.eer_ci_high),
              _optional(v.eer_same_gender), ", ".join(f"{e:.3f}" for e in v.eer_folds), str(v.n_target),
              str(v.n_nontarget)]
             for v in leakage.verification],
        )]))
    if leakage.skipped:
        out.append(Section("skipped", "Attacks not run", tables=[Table(
            ["layer", "scenario", "kind", "reason"],
            [[s.layer, s.scenario, s.attacker_kind, s.reason] for s in leakage.skipped],
        )]))
    return out
