"""The three report-making runs, each deciding its gates once through one policy."""

from __future__ import annotations

from typing import Sequence

from ser_audit.config import AuditConfig
from ser_audit.errors import SerAuditError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import HardeningEffect, LeakageResult, Report
from ser_audit.report.scoring import score
from ser_audit.runner.gating import decide_gates, policies_of
from ser_audit.runner.leakage import run_leakage
from ser_audit.runner.provenance import now
from ser_audit.runner.robustness import probe_settings, run_robustness
from ser_audit.runner.sources import Loader


def leakage(config: AuditConfig, *, command: Sequence[str] = (), observer: ProgressObserver = NULL_OBSERVER) -> Report:
    policies = policies_of(config, leakage=True, robustness=False)
    report = run_leakage(config, command=command, observer=observer)
    report.gates = decide_gates(policies, report)
    return report


def robustness(config: AuditConfig, *, command: Sequence[str] = (),
               observer: ProgressObserver = NULL_OBSERVER) -> Report:
    policies = policies_of(config, leakage=False, robustness=True)
    report = run_robustness(config, command=command, observer=observer)
    report.gates = decide_gates(policies, report)
    return report


def audit(config: AuditConfig, *, command: Sequence[str] = (), observer: ProgressObserver = NULL_OBSERVER) -> Report:
    """Leakage and robustness in one report; with ``config.hardened``, also how hardening moved each
    layer's leakage (the linear probe's, layer by layer) and its robustness."""
    policies = policies_of(config, leakage=True, robustness=True)
    probe_settings(config)  # a bad eps grid fails before the leakage study runs
    loader = Loader(config, observer)
    if config.hardened is not None:
        _load_hardened(config, loader)
    report = run_leakage(config, command=command, observer=observer, loader=loader)
    robust = run_robustness(config, observer=observer, loader=loader)
    report.robustness = robust.robustness
    report.notes = [*report.notes, *robust.notes]
    if config.hardened is not None:
        report.hardened_robustness = run_robustness(config, model_source=config.hardened, observer=observer,
                                                    loader=loader).robustness
        _hardening_effect(config, report, observer, loader)
    score(report)
    report.gates = decide_gates(policies, report)
    report.finished = now()
    return report


def _load_hardened(config: AuditConfig, loader: Loader) -> None:
    """Load the hardened copy before any work (the loader keeps it), so a wrong path fails at once."""
    assert config.hardened is not None
    try:
        loader.model(config.hardened)
    except SerAuditError as error:
        raise type(error)(f"--hardened: {error}") from None


def _hardening_effect(config: AuditConfig, report: Report, observer: ProgressObserver, loader: Loader) -> None:
    assert config.hardened is not None and report.leakage is not None
    probe_rows = [row for row in report.leakage.results if row.scenario == "probe"]
    after = run_leakage(config.model_copy(update={"model": config.hardened, "scenarios": (),
                                                  "layers": ",".join(row.layer for row in probe_rows)}),
                        observer=observer, loader=loader)
    report.hardened_model = after.model
    after_rows = {row.layer: row for row in after.leakage.results} if after.leakage else {}
    for row in probe_rows:
        other = after_rows[row.layer]
        report.hardening_effect.append(HardeningEffect(
            layer=row.layer, leakage_before=row.balanced_accuracy, leakage_after=other.balanced_accuracy,
            change=other.balanced_accuracy - row.balanced_accuracy, significant=_disjoint(row, other)))


def _disjoint(before: LeakageResult, after: LeakageResult) -> bool:
    """Whether two rows' 95% intervals of L do not overlap."""
    if None in (before.ci_low, before.ci_high, after.ci_low, after.ci_high):
        return False
    return bool(after.ci_low > before.ci_high or after.ci_high < before.ci_low)  # type: ignore[operator]
