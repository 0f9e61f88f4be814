"""A Markdown summary: provenance, the leakage table, the robustness table and the gates."""

from __future__ import annotations

from ser_audit.report.model import LeakageResult, Report


def _leakage_line(row: LeakageResult) -> str:
    a = row.accuracy
    return (f"| {row.layer} | {row.scenario} | {row.attacker_kind} | {row.attacker_architecture} | "
            f"{a.mean:.3f} ± {a.std:.3f} | [{a.ci_low:.3f}, {a.ci_high:.3f}] | {row.chance:.3f} | {row.p_value:.3g} |")


class MarkdownRenderer:
    suffix = ".md"

    def render(self, report: Report) -> str:
        lines = [
            f"# ser-audit report: {report.model.path}",
            "",
            f"- model: `{report.model.path}` ({report.model.format}), sha256 `{report.model.sha256[:16]}…`",
            f"- corpus: {report.corpus.name}, {report.corpus.n_utterances} utterances, {report.corpus.n_speakers} speakers, "
            f"manifest sha256 `{report.corpus.manifest_sha256[:16]}…`",
            f"- seed {report.seed}; ser-audit {report.tool.version}; "
            + ", ".join(f"{k} {v}" for k, v in report.environment.packages.items()),
            f"- created {report.created}",
        ]
        if report.leakage:
            leakage = report.leakage
            lines += ["", f"## Leakage of {leakage.attribute}", "",
                      "| layer | scenario | kind | attacker | accuracy | 95% interval | chance | p |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [_leakage_line(row) for row in leakage.results]
            if leakage.input_reference:
                lines.append(_leakage_line(leakage.input_reference))
            if leakage.recommendation:
                lines += ["", f"**Recommendation:** {leakage.recommendation.reason}"]
        if report.robustness:
            robustness = report.robustness
            score = "n/a" if robustness.score is None else f"{robustness.score:.1f}"
            lines += ["", f"## Robustness ({robustness.evaluation_set}; score {score})", "",
                      "| method | eps | UAR | accuracy | success rate | gradient |", "|---|---|---|---|---|---|"]
            lines += [
                f"| {r.method} | {r.eps:g} | {r.uar:.3f} | {r.accuracy:.3f} | "
                f"{'' if r.success_rate is None else f'{r.success_rate:.2f}'} | {r.gradient} |"
                for r in robustness.results
            ]
        if report.hardening_effect:
            lines += ["", "## Leakage before and after hardening", "", "| layer | before | after | change |", "|---|---|---|---|"]
            lines += [f"| {e.layer} | {e.leakage_before:.3f} | {e.leakage_after:.3f} | {e.change:+.3f} |"
                      for e in report.hardening_effect]
        if report.gates:
            lines += ["", "## Gates", "", "| gate | threshold | value | outcome |", "|---|---|---|---|"]
            lines += [f"| {g.name} | {g.threshold:g} | {g.value:.3f} | {'pass' if g.passed else '**FAIL**'} |"
                      for g in report.gates]
        if report.notes:
            lines += ["", "## Notes", "", *(f"- {note}" for note in report.notes)]
        return "\n".join(lines) + "\n"
