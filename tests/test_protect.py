"""``ser-audit protect``: judged by attackers trained afterwards, never by the protection's own adversary.

Honesty: a layer carries gender twice, linearly and only nonlinearly. Projection removes the linear
copy (after the mean over time, the ignorant probe trained on the unprotected model drops towards
chance), and the informed re-audit must still find gender: the protection must not be called private.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ser_audit.api import ModelSource, ProtectSettings, leakage_audit, protect_model
from ser_audit.report.model import Report
from ser_audit.testing import tiny_corpus
from ser_audit.testing.protection import write_twice_leaking


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path, Path, Path]:
    folder = tmp_path_factory.mktemp("protect")
    audit = tiny_corpus(folder / "audit", per_speaker=8, seed=2)
    aux = tiny_corpus(folder / "aux", preset="ravdess-like", per_speaker=6, seed=3)
    spec, weights = write_twice_leaking(folder)
    out = folder / "protected.onnx"
    report = protect_model(ModelSource(spec, weights=weights), ProtectSettings(layer="both", out=out, strengths=(0.5, 1.0)),
                           corpus=str(audit.root / "manifest.csv"), aux_corpus=str(aux.root / "manifest.csv"),
                           quick=True, seed=0, cache_dir=folder / "cache", scenarios=["worst", "s2"])
    return report, out, audit.root / "manifest.csv", folder


def test_linear_removal_does_not_pass_for_protection(protected) -> None:
    report, out, _, _ = protected
    protection = report.protection
    assert protection is not None and out.is_file()
    assert [point.strength for point in protection.tradeoff] == [0.5, 1.0]
    before = next(v for v in protection.before if v.layer == "both")
    after = next(v for v in protection.after if v.layer == "both")
    assert before.verdict == "leaks"
    # The informed attackers still find gender in the spread the eraser cannot touch.
    assert after.verdict != "private" and protection.verdict == after.verdict
    assert after.balanced_accuracy > 0.8, after
    assert "not protection" in protection.statement or after.verdict == "inconclusive"


def test_the_ignorant_probe_is_fooled_where_the_informed_one_is_not(protected) -> None:
    report, _, _, _ = protected
    protection = report.protection
    # After the mean over time only the linear copy could reach `pool`: the unprotected model's probe is fooled
    # there, while attackers trained on the protected model still read what the eraser, fitted on other
    # speakers, left behind.
    ignorant = next(row for row in protection.ignorant if row.layer == "pool")
    after = next(v for v in protection.after if v.layer == "pool")
    assert ignorant.balanced_accuracy < after.balanced_accuracy - 0.1, (ignorant, after)


def test_the_written_model_reaudits_to_the_reported_rows(protected) -> None:
    report, out, manifest, folder = protected
    again = leakage_audit(str(out), corpus=str(manifest), quick=True, seed=0, cache_dir=folder / "cache",
                          scenarios=["worst", "s2"])
    assert again.leakage is not None and report.leakage is not None
    reported = {row.key: row for row in report.leakage.results}
    for row in again.leakage.results:
        if row.key in reported:
            assert reported[row.key].ci_low <= row.balanced_accuracy <= reported[row.key].ci_high, row.key
    assert {v.layer for v in again.leakage.verdict.layers} == {v.layer for v in report.protection.after}


def test_policy_gates_read_the_protected_layer_after_protection(protected) -> None:
    from ser_audit.report.policy import Policy, ProtectionRule, evaluate

    report, _, _, _ = protected
    gates = {g.name: g for g in evaluate(Policy(protection=ProtectionRule(max_informed_leakage=0.6, max_uar_drop=0.5)),
                                         report)}
    leak, drop = gates["policy protection max-informed-leakage"], gates["policy protection max-uar-drop"]
    assert not leak.passed and leak.value > 0.6  # the layer still leaks: the gate sees it
    assert drop.passed and drop.value <= 0.5
    assert all(g.passed for g in report.gates)  # a strength was within the budget, and written


def test_the_html_report_draws_the_tradeoff(protected) -> None:
    from ser_audit.report.render.html import HtmlRenderer

    report, _, _, _ = protected
    page = HtmlRenderer().render(report)
    assert "Trade-off at both" in page and "(chosen)" in page


def test_the_choice_is_the_least_informed_leakage_within_the_budget() -> None:
    from ser_audit.report.model import LayerVerdict, ProtectionPoint, Utility
    from ser_audit.runner.protect import _choose

    def point(strength: float, leakage: float, within: bool) -> ProtectionPoint:
        verdict = LayerVerdict(layer="x", verdict="inconclusive", severity="none", headline="", attacker="",
                               balanced_accuracy=leakage, chance=0.5, p_value_adjusted=1.0, significant=False,
                               lower_bound=0.5, upper_bound=1.0, rows=1, attackers="", reason="")
        return ProtectionPoint(strength=strength, description="", informed=verdict, utility=Utility(
            uar=0.5, n=1, evaluation_set=""), uar_drop=0.0, within_budget=within)

    assert _choose([point(0.5, 0.8, True), point(1.0, 0.6, True), point(2.0, 0.5, False)]) == 1
    assert _choose([point(0.5, 0.8, False)]) is None
