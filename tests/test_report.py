from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from isolation import BLOCK_TORCH

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gated_report(onnx_model, manifest, tmp_path_factory) -> Path:
    from ser_audit.cli.main import main

    out = tmp_path_factory.mktemp("report") / "report.json"
    code = main(["leakage", str(onnx_model), "--corpus", str(manifest), "--layers", "pool1,fc_relu", "--out", str(out),
                 "--scenarios", "worst,s2", "--quick", "--quiet", "--max-leakage", "0.0", "--max-gap", "1.0"])
    assert code == 1
    return out


def _render(report: Path, *args: str, command: str = "report") -> subprocess.CompletedProcess[str]:
    """``ser-audit report`` (or ``gate``) in a fresh interpreter where importing torch fails."""
    call = f"from ser_audit.cli.main import main; sys.exit(main({[command, str(report), *args]!r}))"
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + call], capture_output=True, text=True, timeout=120)


def test_report_renders_without_torch(gated_report: Path) -> None:
    result = _render(gated_report, "--format", "md")
    assert result.returncode == 0, result.stderr
    dash = _render(gated_report, "--format", "md", "--out", "-")  # stdout, as the audit commands read it
    assert dash.returncode == 0 and dash.stdout == result.stdout and not Path("-").exists()
    assert "## Leakage of gender" in result.stdout and "| pool1 |" in result.stdout
    assert "| max-leakage | 0 |" in result.stdout and "| FAIL |" in result.stdout
    assert "## Summary" in result.stdout and "## P0's findings on this run" in result.stdout


def test_junit_has_one_case_per_gate_and_fails_the_failed_one(gated_report: Path, tmp_path: Path) -> None:
    out = tmp_path / "gates.xml"
    result = _render(gated_report, "--format", "junit", "--out", str(out))
    assert result.returncode == 0, result.stderr
    suite = ElementTree.parse(out).getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"max-leakage", "max-gap"} and suite.get("failures") == "1"
    assert cases["max-leakage"].find("failure") is not None and cases["max-gap"].find("failure") is None


def test_report_errors(gated_report: Path, tmp_path: Path) -> None:
    assert _render(gated_report, "--format", "pdf").returncode == 2
    not_a_report = tmp_path / "other.json"
    not_a_report.write_text('{"hello": 1}')
    result = _render(not_a_report)
    assert result.returncode == 2 and "not a ser-audit report" in result.stderr


def test_html_is_self_contained_with_plots(gated_report: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = _render(gated_report, "--format", "html", "--out", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    # Depth curve, scenario bars for each audited layer, per-emotion (and per-spontaneity) bars.
    assert page.count("<svg") >= 4 and "<polyline" in page and "Depth curve" in page
    assert "Scenarios at pool1" in page and "Scenarios at fc_relu" in page and "per emotion" in page
    assert out.stat().st_size < 2_000_000
    external = [token for token in ("src=", "href=", "@import", "url(") if token in page]
    assert not external, external
    assert "<table>" in page and "class='fail'" in page


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_opens_offline_in_headless_chromium_with_every_plot_visible(gated_report: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert _render(gated_report, "--format", "html", "--out", str(page)).returncode == 0
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_html.py"), str(page)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{page.read_text().count('<figure>')} figure(s)" in result.stdout
    assert "network requests: none" in result.stdout


def test_written_files_are_readable_like_any_other(gated_report: Path) -> None:
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(gated_report.stat().st_mode) == 0o666 & ~mask


def test_severity_scores_and_grade_follow_the_documented_formula() -> None:
    from ser_audit.report.model import Accuracy, LeakageResult, LeakageVerdict
    from ser_audit.report.scoring import grade, privacy_score, severity

    def row(layer: str, leakage: float, low: float, q: float, significant: bool = True) -> LeakageResult:
        return LeakageResult(layer=layer, scenario="worst", attacker_kind="generic", attacker_architecture="x",
                             attacker_parameters=1, training_data="same", attribute="gender",
                             accuracy=Accuracy(mean=leakage, std=0.0, folds=[leakage], ci_low=low, ci_high=1.0),
                             balanced_accuracy=leakage, ci_low=low, ci_high=1.0, chance=0.5, p_value=q / 2, q_value=q,
                             significant=significant, gap=leakage - 0.5, normalised_leakage=(leakage - 0.5) / 0.5,
                             n_test=100, n_features=1)

    # A significant row never shows none, whatever its interval; one that is not significant always does.
    assert severity(row("a", 0.55, 0.45, 0.01)) == "low"
    assert severity(row("a", 0.95, 0.90, 0.01, significant=False)) == "none"
    assert severity(row("a", 0.58, 0.52, 0.01)) == "low"  # n(0.52) = 0.04
    assert severity(row("a", 0.70, 0.65, 0.01)) == "medium"  # n = 0.3
    assert severity(row("a", 0.85, 0.72, 0.01)) == "medium"  # n = 0.44
    assert severity(row("a", 0.90, 0.80, 0.01)) == "high"  # n = 0.6
    assert severity(row("a", 0.97, 0.92, 0.01)) == "critical"  # n = 0.84
    # Per layer, n(the headline's lower bound) where the layer is significant; 0 otherwise:
    # 100 * (1 - (0.6 + 0) / 2) = 70.
    verdict = LeakageVerdict(verdict="leaks", statement="", threshold=0.6, relabellings=251, relabellings_exact=True,
                             distinct_relabellings=252, smallest_p_value=1 / 252, decidable=True, layers=[
                                 layer("a", 0.8, significant=True), layer("b", 0.7, significant=False)])
    assert privacy_score(verdict) == 70.0
    assert grade(90.0, None) == "A" and grade(90.0, 54.9) == "D" and grade(None, None) is None and grade(10.0) == "F"
    # The verdict caps the grade: no certified privacy, no A.
    assert grade(97.4, cap="B") == "B" and grade(97.4, cap="C") == "C" and grade(30.0, cap="C") == "F"


def layer(name: str, low: float, *, significant: bool):
    from ser_audit.report.model import LayerVerdict

    return LayerVerdict(layer=name, verdict="leaks" if significant else "inconclusive",
                        severity="high" if significant else "none", headline=f"{name} / probe", attacker="probe",
                        balanced_accuracy=low + 0.05, ci_low=low, ci_high=1.0, chance=0.5, p_value_adjusted=0.01,
                        significant=significant, lower_bound=low, upper_bound=1.0, rows=1, attackers="every attacker of the run",
                        reason="")


def test_gates_decide_on_adjusted_evidence_not_on_the_largest_estimate() -> None:
    from ser_audit.report.gates import max_gap_gate, max_leakage_gate
    from ser_audit.report.model import Accuracy, LeakageResult, Report
    from ser_audit.report.policy import gate_severity

    def row(leakage: float, simultaneous_low: float, significant: bool) -> LeakageResult:
        return LeakageResult(layer="l", scenario="s2", attacker_kind="generic", attacker_architecture="x",
                             attacker_parameters=1, training_data="same", attribute="gender",
                             accuracy=Accuracy(mean=leakage, std=0.0, folds=[leakage], ci_low=0.0, ci_high=1.0),
                             balanced_accuracy=leakage, chance=0.5, p_value=0.01, significant=significant,
                             simultaneous_ci_low=simultaneous_low, simultaneous_ci_high=1.0, gap=leakage - 0.5,
                             normalised_leakage=(leakage - 0.5) / 0.5, n_test=100, n_features=1)

    lucky = row(0.75, 0.45, significant=False)  # the largest of many estimates on a model with no leak
    assert max_gap_gate("max-gap", [lucky], 0.1).passed
    assert gate_severity(lucky, Report.model_construct(leakage=None)) == "none"
    real = row(0.8, 0.65, significant=True)
    assert not max_gap_gate("max-gap", [lucky, real], 0.1).passed  # bound 0.65: 0.15 above chance
    assert max_gap_gate("max-gap", [lucky, real], 0.2).passed  # the estimate is 0.3 above chance, the bound is not
    assert not max_leakage_gate("max-leakage", [real], 0.6).passed and max_leakage_gate("max-leakage", [real], 0.7).passed
    assert gate_severity(real, Report.model_construct(leakage=None)) == "medium"  # n(0.65) = 0.3 (before 1.4)


POLICY = """
[[leakage]]
max_leakage = 1.0

[[leakage]]
layer = "fc*"
attacker_design = "linear-probe"
max_leakage = 0.3

[regression]
max_leakage_increase = 0.5
"""


def test_gate_command_applies_a_policy_with_torch_blocked(gated_report: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    junit = tmp_path / "gates.xml"
    result = _render(gated_report, "--policy", str(policy), "--baseline", str(gated_report), "--junit", str(junit),
                     command="gate")
    assert result.returncode == 1, result.stderr  # no leakage below chance (0.5) can be certified
    suite = ElementTree.parse(junit).getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    failed = [name for name, case in cases.items() if case.find("failure") is not None]
    assert len(cases) == 3 and len(failed) == 1 and "max-leakage" in failed[0] and "fc*" in failed[0]
    broken = tmp_path / "broken.toml"
    broken.write_text("[[leakage]]\nmax_leakage = 2\n")
    result = _render(gated_report, "--policy", str(broken), command="gate")
    assert result.returncode == 2 and "max_leakage" in result.stderr and "Traceback" not in result.stderr


def test_a_regression_gate_with_nothing_to_compare_fails(gated_report: Path) -> None:
    from ser_audit.report.model import Report
    from ser_audit.report.policy import Policy, evaluate

    report = Report.model_validate_json(gated_report.read_text())
    assert report.leakage is not None and report.leakage.results
    policy = Policy.model_validate({"regression": {"max_leakage_increase": 0.05}})
    same = evaluate(policy, report, baseline=report)
    assert [gate.passed for gate in same] == [True]
    other = report.model_copy(deep=True)
    assert other.leakage is not None
    for row in other.leakage.results:
        row.layer = "renamed"
    gate, = evaluate(policy, report, baseline=other)
    assert not gate.passed and "share no leakage row" in gate.detail


def test_report_against_a_baseline_lists_changes(gated_report: Path) -> None:
    result = _render(gated_report, "--format", "md", "--baseline", str(gated_report))
    assert result.returncode == 0, result.stderr
    assert "Changes against the baseline" in result.stdout and "| same |" in result.stdout


def test_example_policy_validates() -> None:
    from ser_audit.report.policy import load_policy

    examples = Path(__file__).resolve().parent.parent / "examples"
    policy = load_policy(examples / "policy.toml")
    assert policy.leakage and policy.robustness and policy.regression is None  # the CI example gates a running audit
    assert load_policy(examples / "regression-policy.toml").regression is not None


def test_a_regression_policy_on_an_audit_is_refused_before_any_work(run_cli, tmp_path: Path) -> None:
    """A [regression] table needs an earlier report; an audit once ran to the end, then failed without a report."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    result = run_cli("leakage", "zoo:nonexistent-model", "--policy", str(examples / "regression-policy.toml"),
                     "--out", str(tmp_path / "out"))
    assert result.code == 2 and "[regression] table, which needs an earlier report" in result.stderr, result.stderr
    assert "--baseline OLD/report.json" in result.stderr and not (tmp_path / "out").exists()
    assert run_cli("leakage", "zoo:nonexistent-model", "--policy", str(examples / "policy.toml"),
                   "--out", str(tmp_path / "out")).stderr.count("[regression]") == 0


def test_baseline_changes_carry_both_intervals_and_the_change_interval(gated_report: Path) -> None:
    """Leakage rows compared across two reports (e.g. two models) show each row's interval and an
    interval for the change from the two speaker-level standard errors."""
    import math

    from ser_audit.report.diff import compare, render_markdown
    from ser_audit.report.model import Report

    before = Report.model_validate_json(gated_report.read_text())
    assert before.leakage is not None
    rows = before.leakage.results
    first = rows[0]
    assert first.standard_error is not None and first.ci_low is not None and first.ci_high is not None
    key = f"{first.attribute}: {first.key}"

    def moved_by(shift: float, standard_error: float) -> Report:
        assert before.leakage is not None and first.ci_low is not None and first.ci_high is not None
        moved = first.model_copy(update={"balanced_accuracy": first.balanced_accuracy + shift, "ci_low": first.ci_low + shift,
                                         "ci_high": first.ci_high + shift, "standard_error": standard_error})
        return before.model_copy(update={"leakage": before.leakage.model_copy(update={"results": [moved, *rows[1:]]})})

    diff = compare(before, moved_by(0.2, 2 * first.standard_error))
    change = next(c for c in diff.leakage if c.key == key)
    assert change.change == pytest.approx(0.2)
    assert change.before_interval == [first.ci_low, first.ci_high]
    assert change.after_interval == pytest.approx([first.ci_low + 0.2, first.ci_high + 0.2])
    half = 1.959964 * math.hypot(first.standard_error, 2 * first.standard_error)
    assert change.change_interval == pytest.approx([0.2 - half, 0.2 + half])
    assert change.verdict == ("worse" if half < 0.2 else "same")  # worse only when the interval excludes 0
    unchanged = [c for c in diff.leakage if c is not change]
    assert all(c.change == 0 and c.change_interval and c.change_interval[0] < 0 < c.change_interval[1] for c in unchanged)
    assert f"+0.200 [{0.2 - half:+.3f}, {0.2 + half:+.3f}]" in render_markdown(diff)
    # The same shift measured precisely is a change; measured loosely it is within noise.
    precise = compare(before.model_copy(update={"leakage": before.leakage.model_copy(update={"results": [
        first.model_copy(update={"standard_error": 0.01}), *rows[1:]]})}), moved_by(0.2, 0.01))
    assert next(c for c in precise.leakage if c.key == key).verdict == "worse"
    assert next(c for c in compare(before, moved_by(0.2, 0.2)).leakage if c.key == key).verdict == "same"


def test_markdown_and_html_summaries_lead_with_the_verdict_the_rows_support(gated_report: Path) -> None:
    import html

    from ser_audit.report.model import Report

    report = Report.model_validate_json(gated_report.read_text())
    verdict = report.leakage.verdict if report.leakage else None
    assert verdict is not None and verdict.layers
    for row in report.leakage.results if report.leakage else []:  # no severity contradicts its own evidence
        assert (row.severity != "none") == bool(row.significant), row.key
    markdown, page = _render(gated_report, "--format", "md").stdout, _render(gated_report, "--format", "html").stdout
    summary = markdown.split("## Summary", 1)[1].split("## Provenance", 1)[0]
    assert f"gender verdict: {verdict.statement}" in summary
    assert verdict.statement in html.unescape(page)
    for layer in verdict.layers:  # one line per layer, with the layer's own verdict and severity
        assert f"| {layer.layer} | {layer.verdict} | {layer.severity} |" in summary


@pytest.fixture(scope="module")
def hardening_report(gated_report: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report as 1.7 wrote it for `audit --hardened`: the three hardening fields, `hardened` in the recorded
    config, no `comparison` (a current report dumped with the old fields)."""
    from ser_audit.report.model import REPORT_SCHEMA_VERSION, Robustness, RobustnessResult

    data = json.loads(gated_report.read_text())
    assert data["schema_version"] == REPORT_SCHEMA_VERSION and "hardening_effect" not in data  # 1.8 on: comparison only
    del data["comparison"], data["config"]["compare_with"]
    data["schema_version"] = "1.7"
    legacy = {"linear-probe": "probe", "nested-choice": "strongest"}  # scenario names before 1.9
    leakage = data["leakage"]
    for row in [*leakage["results"], *(b for rows in leakage["breakdowns"].values() for b in rows)]:
        row["scenario"] = legacy.get(row["attacker_design"], row["scenario"])
    assert {row["scenario"] for row in leakage["results"]} >= {"probe"}
    data["config"]["hardened"] = {"spec": "hardened.onnx", "frontend": None, "weights": None, "trust_pickle": False}
    data["hardened_model"] = {**data["model"], "path": "hardened.onnx", "sha256": "0" * 64}
    data["hardening_effect"] = [
        {"layer": "pool1", "leakage_before": 0.9, "leakage_after": 0.6, "change": -0.3, "significant": True},
        {"layer": "fc_relu", "leakage_before": 0.55, "leakage_after": 0.65, "change": 0.1, "significant": False}]
    rows = [RobustnessResult(method="fgsm", eps=eps, eps_raw=eps * 2, domain="features", gradient="white-box",
                             attack_target="labels", steps=1, uar=uar, accuracy=uar, prediction_change_rate=0.1,
                             mean_linf=eps * 2, mean_l2=eps, n=40) for eps, uar in ((0.0, 0.5), (0.02, 0.4))]
    data["hardened_robustness"] = Robustness(evaluation_set="all of manifest", input_spread=2.0, results=rows,
                                             score=90.0).model_dump(mode="json")
    path = tmp_path_factory.mktemp("old") / "report-1.7.json"
    path.write_text(json.dumps(data))
    return path


def test_a_report_before_1_8_keeps_its_hardening_section(hardening_report: Path) -> None:
    """An `audit --hardened` report of 1.7 still validates against the committed schema, loads, and renders its
    hardening section (as the comparison of 1.8 on, with its old names) in every format, without torch."""
    import jsonschema

    from ser_audit.report.model import Report

    data = json.loads(hardening_report.read_text())
    jsonschema.validate(data, json.loads((ROOT / "schemas" / "report.schema.json").read_text()))
    report = Report.model_validate(data)
    assert report.comparison is None and report.config is not None and report.config.compare_with is not None
    compared = report.compared
    assert compared is not None and compared.model.path == "hardened.onnx"
    assert [(layer.layer, layer.change, layer.before_interval) for layer in compared.layers] == [
        ("pool1", -0.3, None), ("fc_relu", 0.1, None)]
    markdown = _render(hardening_report, "--format", "md")
    assert markdown.returncode == 0, markdown.stderr
    section = markdown.stdout.split("## Leakage before and after hardening", 1)[1].split("\n## ", 1)[0]
    assert "| layer | before: L [95%] | after hardening: L [95%] | change | significant |" in section
    assert "| pool1 | 0.900 | 0.600 | -0.300 | yes |" in section and "| fc_relu | 0.550 | 0.650 | +0.100 | no |" in section
    assert "*Robustness, after hardening: hardened.onnx; robustness score 90.0*" in section
    page = _render(hardening_report, "--format", "html")
    assert page.returncode == 0 and "Linear-probe leakage per layer, before and after hardening" in page.stdout
    again = json.loads(_render(hardening_report, "--format", "json").stdout)  # re-rendered, the old fields stay
    assert again["hardening_effect"] == data["hardening_effect"] and again["hardened_model"]["path"] == "hardened.onnx"
    assert again["schema_version"] == "1.7" and again["comparison"] is None


@pytest.mark.parametrize(("text", "message"), [
    ("", "checks nothing"),
    ('[[leakage]]\nlayer = "pool4"\n', r"\[\[leakage\]\] rule 1 sets no threshold"),
    ("[scores]\n", r"\[scores\] sets no threshold"),
])
def test_a_policy_that_cannot_fail_is_refused(tmp_path: Path, text: str, message: str) -> None:
    from ser_audit.errors import ConfigError
    from ser_audit.report.policy import load_policy

    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_reports_and_policies_before_1_9_name_the_probe_and_the_nested_choice_as_scenarios() -> None:
    """1.9 writes P0's scenario names only (design section 5); older reports and policies still mean the same rows."""
    from ser_audit.report.model import Accuracy, LeakageResult
    from ser_audit.report.policy import LeakageRule

    accuracy = Accuracy(mean=0.6, std=0.0, folds=[0.6], ci_low=0.5, ci_high=0.7)
    base = dict(layer="fc1", attacker_kind="generic", attacker_architecture="x", attacker_parameters=1,
                training_data="same", attribute="gender", accuracy=accuracy,
                balanced_accuracy=0.6, chance=0.5, p_value=0.5, gap=0.1, normalised_leakage=0.2, n_test=10, n_features=1)
    probe = LeakageResult.model_validate({**base, "scenario": "probe"})
    chosen = LeakageResult.model_validate({**base, "scenario": "strongest"})  # before the design was recorded
    attacker = LeakageResult.model_validate({**base, "scenario": "worst", "attacker_design": "vgg"})
    assert (probe.scenario, probe.attacker_design, probe.column) == ("worst", "linear-probe", "probe")
    assert (chosen.scenario, chosen.attacker_design, chosen.column) == ("worst", "nested-choice", "strongest")
    assert attacker.is_scenario_attacker and not probe.is_scenario_attacker and not chosen.is_scenario_attacker
    assert [row.key for row in (probe, chosen)] == ["fc1 / worst / generic / linear-probe",
                                                    "fc1 / worst / generic / nested-choice"]
    rows = (probe, chosen, attacker)
    assert [LeakageRule(scenario="probe").matches(r) for r in rows] == [True, False, False]
    assert [LeakageRule(scenario="strongest").matches(r) for r in rows] == [False, True, False]
    assert [LeakageRule(scenario="worst").matches(r) for r in rows] == [True, True, True]
    assert [LeakageRule(attacker_design="nested-*").matches(r) for r in rows] == [False, True, False]
