"""Policy files: per-layer, per-scenario, per-attribute thresholds in TOML, checked against a report.

Example (``examples/policy.toml``)::

    [[leakage]]                 # every row
    max_leakage = 0.98

    [[leakage]]                 # rows matching all the given globs
    layer = "fc*"
    scenario = "worst"
    attribute = "gender"
    max_gap = 0.25

    [[robustness]]
    at_eps = 0.02
    min_uar = 0.3

    [scores]
    min_privacy = 10

    [protection]                # a report of `ser-audit protect`
    max_informed_leakage = 0.6  # the protected layer, after, on adjusted evidence
    max_uar_drop = 0.05

    [regression]                # needs a baseline report
    max_leakage_increase = 0.05
    max_uar_decrease = 0.05

The schema is ``schemas/policy.schema.json``.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ser_audit.errors import ConfigError
from ser_audit.report.gates import describe, leakage_bound, max_gap_gate, max_leakage_gate
from ser_audit.report.model import Gate, LeakageResult, Report
from ser_audit.report.scoring import SEVERITIES, level, normalised


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeakageRule(_Strict):
    """Thresholds for the leakage rows whose layer, scenario, attacker kind and attribute match the globs."""

    name: str | None = Field(None, description="Gate name; default: built from the globs (the CLI's flags name theirs).")
    layer: str = Field("*", description="Glob over layer names.")
    scenario: str = Field("*", description="Glob over worst, s1-s4 (probe and strongest, the names of reports before "
                                           "1.9, match the linear probe and the nested choice).")
    attacker_kind: str = Field("*", description="generic, aware or a glob.")
    attacker_design: str = Field("*", description="Glob over attacker designs: linear-probe, nested-choice, "
                                                  "same-architecture, vgg, ...")
    attribute: str = Field("*", description="gender, speaker or a glob.")
    max_leakage: float | None = Field(
        None, ge=0, le=1, description="Highest allowed leakage (balanced accuracy), judged on adjusted evidence (README)."
    )
    max_gap: float | None = Field(None, ge=0, le=1, description="Highest allowed leakage above chance (1/C).")
    max_severity: Literal["none", "low", "medium", "high", "critical"] | None = None

    def matches(self, row: LeakageResult) -> bool:
        # A policy written for reports before 1.9 names the probe and the nested choice as scenarios: it still means them.
        scenario = row.column if self.scenario in ("probe", "strongest") else row.scenario
        return all(fnmatch.fnmatchcase(value, pattern) for value, pattern in (
            (row.layer, self.layer), (scenario, self.scenario), (row.attacker_kind, self.attacker_kind),
            (row.attacker_design, self.attacker_design), (row.attribute, self.attribute)))


class RobustnessRule(_Strict):
    name: str | None = Field(None, description="Gate name; default: built from the method and eps.")
    at_eps: float = Field(ge=0, description="Eps on the probe's grid, relative to the input's spread.")
    min_uar: float = Field(ge=0, le=1, description="Lowest allowed UAR under attack at that eps.")
    method: Literal["fgsm", "pgd"] = "fgsm"


class ScoreRule(_Strict):
    min_privacy: float | None = Field(None, ge=0, le=100)
    min_robustness: float | None = Field(None, ge=0, le=100)


class RegressionRule(_Strict):
    """Against a baseline report (``gate --baseline``): how much worse a matching row may get."""

    max_leakage_increase: float | None = Field(None, ge=0, le=1)
    max_uar_decrease: float | None = Field(None, ge=0, le=1)


class ProtectionRule(_Strict):
    """Against a ``ser-audit protect`` report: what the protected layer may still leak, and what emotion may lose."""

    max_informed_leakage: float | None = Field(
        None, ge=0, le=1, description="Highest allowed informed leakage at the protected layer after protection, judged "
                                      "like a leakage gate: the layer's simultaneous lower bound where it is significant, "
                                      "else chance.")
    max_uar_drop: float | None = Field(None, ge=0, le=1, description="Largest allowed emotion UAR drop.")


class Policy(_Strict):
    """A CI policy: every rule becomes one gate in the report and one JUnit test case."""

    leakage: list[LeakageRule] = Field(default_factory=list)
    robustness: list[RobustnessRule] = Field(default_factory=list)
    scores: ScoreRule | None = None
    protection: ProtectionRule | None = None
    regression: RegressionRule | None = None


def flag_policy(*, max_leakage: float | None = None, max_gap: float | None = None, min_robust_uar: float | None = None,
                at_eps: float | None = None) -> Policy:
    """The CLI's gate flags as policy rules over every row, so that one engine decides every gate."""
    leakage = []
    if max_leakage is not None:
        leakage.append(LeakageRule(name="max-leakage", max_leakage=max_leakage))
    if max_gap is not None:
        leakage.append(LeakageRule(name="max-gap", max_gap=max_gap))
    robustness = ([RobustnessRule(name="min-robust-uar", at_eps=at_eps, min_uar=min_robust_uar)]
                  if min_robust_uar is not None and at_eps is not None else [])
    return Policy(leakage=leakage, robustness=robustness)


def load_policy(path: Path) -> Policy:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    if not path.is_file():
        raise ConfigError(f"--policy {path} is a folder; pass the policy's TOML file" if path.is_dir()
                          else f"--policy {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--policy {path} is not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--policy {path} is not UTF-8 text; write the policy as TOML "
                          "(examples/policy.toml)") from None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"--policy {path}: {where}: {first['msg']} (see schemas/policy.schema.json)") from None
    # A rule without a threshold would pass whatever the report says: a CI gate that cannot fail.
    for number, rule in enumerate(policy.leakage, start=1):
        if rule.max_leakage is None and rule.max_gap is None and rule.max_severity is None:
            raise ConfigError(f"--policy {path}: [[leakage]] rule {number} sets no threshold; give it max_leakage, "
                              "max_gap or max_severity")
    tables: list[tuple[str, BaseModel | None]] = [
        ("[scores]", policy.scores), ("[protection]", policy.protection), ("[regression]", policy.regression)]
    for table, thresholds in tables:
        if thresholds is not None and all(value is None for value in thresholds.model_dump().values()):
            raise ConfigError(f"--policy {path}: {table} sets no threshold")
    if not (policy.leakage or policy.robustness or policy.scores or policy.protection or policy.regression):
        raise ConfigError(f"--policy {path} checks nothing; add a [[leakage]], [[robustness]], [scores], [protection] "
                          "or [regression] rule (see examples/policy.toml)")
    return policy


def gate_severity(row: LeakageResult, report: Report) -> str:
    """A row's severity as a gate sees it: the row's own (from the verdict, schema 1.4 on); for older reports
    from the lower bound that the gates use (``leakage_bound``)."""
    if row.significant is None:  # a report older than schema 1.2
        return row.severity or "none"
    if report.leakage is not None and report.leakage.verdict is not None:
        return row.severity or "none"
    bound = leakage_bound(row)
    return "none" if bound <= row.chance else level(normalised(row, bound))


def evaluate(policy: Policy, report: Report, baseline: Report | None = None) -> list[Gate]:
    """One gate per threshold of each rule, measured on the worst matching row."""
    from ser_audit.report.diff import compare

    gates: list[Gate] = []
    rows = report.leakage.results if report.leakage else []
    for number, rule in enumerate(policy.leakage, start=1):
        matching = [row for row in rows if rule.matches(row)]
        label = rule.name or (f"policy leakage[{number}] layer={rule.layer} scenario={rule.scenario}"
                              + (f" design={rule.attacker_design}" if rule.attacker_design != "*" else ""))
        if not matching:
            gates.append(Gate(name=f"{label} matches a row", threshold=1, value=0, passed=False,
                              detail="no result row matches this rule; fix the globs or the audit's --layers/--scenarios"))
            continue
        if rule.max_leakage is not None:
            gates.append(max_leakage_gate(rule.name or f"{label} max-leakage", matching, rule.max_leakage))
        if rule.max_gap is not None:
            gates.append(max_gap_gate(rule.name or f"{label} max-gap", matching, rule.max_gap))
        if rule.max_severity is not None:
            worst = max(matching, key=lambda row: SEVERITIES.index(gate_severity(row, report)))
            found = SEVERITIES.index(gate_severity(worst, report))
            gates.append(Gate(name=f"{label} max-severity {rule.max_severity}", threshold=SEVERITIES.index(rule.max_severity),
                              value=found, passed=found <= SEVERITIES.index(rule.max_severity),
                              detail=f"{describe(worst)}: {gate_severity(worst, report)}"))
    results = report.robustness.results if report.robustness else []
    for number, robust in enumerate(policy.robustness, start=1):
        probed = [r for r in results if r.method == robust.method and abs(r.eps - robust.at_eps) < 1e-9]
        name = robust.name or f"policy robustness[{number}] {robust.method} min-uar at eps {robust.at_eps}"
        if not probed:
            gates.append(Gate(name=name, threshold=robust.min_uar, value=0, passed=False,
                              detail=f"the report has no {robust.method} row at eps {robust.at_eps}"))
        else:
            gates.append(Gate(name=name, threshold=robust.min_uar, value=probed[0].uar,
                              passed=probed[0].uar >= robust.min_uar,
                              detail=f"{robust.method} eps {robust.at_eps} ({probed[0].domain})"))
    if policy.scores is not None:
        for key, minimum in (("privacy", policy.scores.min_privacy), ("robustness", policy.scores.min_robustness)):
            if minimum is None:
                continue
            value = getattr(report.scores, key)
            gates.append(Gate(name=f"policy min-{key}-score", threshold=minimum, value=value or 0.0,
                              passed=value is not None and value >= minimum,
                              detail="" if value is not None else f"the report has no {key} score"))
    if policy.protection is not None:
        gates += _protection_gates(policy.protection, report)
    if policy.regression is not None:
        if baseline is None:
            raise ConfigError("the policy has a [regression] table; give the earlier report with --baseline OLD.json")
        diff = compare(baseline, report)
        # A regression gate that finds nothing to compare would pass whatever changed: it fails, saying why.
        if policy.regression.max_leakage_increase is not None:
            gates.append(_regression_gate("policy regression max-leakage-increase", policy.regression.max_leakage_increase,
                                          [(c.key, c.change) for c in diff.leakage], "leakage row (layer, scenario, "
                                          "attacker design and attribute)"))
        if policy.regression.max_uar_decrease is not None:
            gates.append(_regression_gate("policy regression max-uar-decrease", policy.regression.max_uar_decrease,
                                          [(c.key, -c.change) for c in diff.robustness], "robustness row (method "
                                          "and eps)"))
    return gates


def _regression_gate(name: str, threshold: float, changes: list[tuple[str, float]], kind: str) -> Gate:
    """The worst change for the worse among the rows both reports share."""
    if not changes:
        return Gate(name=name, threshold=threshold, value=1.0, passed=False,
                    detail=f"the baseline and this report share no {kind}; compare reports of the same audit settings")
    key, value = max(changes, key=lambda change: change[1])
    return Gate(name=name, threshold=threshold, value=value, passed=value <= threshold, detail=key)


def _protection_gates(rule: ProtectionRule, report: Report) -> list[Gate]:
    protection = report.protection
    gates = []
    after = next((v for v in protection.after if v.layer == protection.layer), None) if protection else None
    if rule.max_informed_leakage is not None:
        if after is None:
            gates.append(Gate(name="policy protection max-informed-leakage", threshold=rule.max_informed_leakage,
                              value=1.0, passed=False, detail="the report has no protected model's audit (run protect)"))
        else:
            value = after.lower_bound if after.significant else after.chance
            gates.append(Gate(name="policy protection max-informed-leakage", threshold=rule.max_informed_leakage,
                              value=value, passed=value <= rule.max_informed_leakage,
                              detail=f"{after.layer}: L {after.balanced_accuracy:.3f}, verdict {after.verdict} "
                                     f"({after.attacker})"))
    if rule.max_uar_drop is not None:
        if protection is None or protection.utility_after is None:
            gates.append(Gate(name="policy protection max-uar-drop", threshold=rule.max_uar_drop, value=1.0, passed=False,
                              detail="the report has no protected model (run protect)"))
        else:
            drop = protection.utility_before.uar - protection.utility_after.uar
            gates.append(Gate(name="policy protection max-uar-drop", threshold=rule.max_uar_drop, value=drop,
                              passed=drop <= rule.max_uar_drop,
                              detail=f"emotion UAR {protection.utility_before.uar:.3f} -> {protection.utility_after.uar:.3f}"))
    return gates
