"""The one place gates are decided: the CLI's gate flags and the policy file, as policies of one engine."""

from __future__ import annotations

from ser_audit.config import AuditConfig
from ser_audit.errors import ConfigError
from ser_audit.report.model import Gate, Report
from ser_audit.report.policy import Policy, evaluate, flag_policy, load_policy


def policies_of(config: AuditConfig, *, leakage: bool, robustness: bool) -> list[Policy]:
    """The gate flags of the parts that run, then the policy file (numbered on its own, so its gate
    names do not depend on the flags).

    Read at the start of a run, so that a bad policy file or ``--at-eps`` fails before any work.
    """
    if robustness and config.min_robust_uar is not None and not any(
            abs(eps - config.at_eps_resolved) < 1e-9 for eps in config.probes.grid):
        grid = ", ".join(str(eps) for eps in config.probes.grid)
        raise ConfigError(f"--at-eps {config.at_eps_resolved} is not on the FGSM grid ({grid}); add it to --eps")
    flags = flag_policy(max_leakage=config.max_leakage if leakage else None,
                        max_gap=config.max_gap if leakage else None,
                        min_robust_uar=config.min_robust_uar if robustness else None, at_eps=config.at_eps_resolved)
    return [flags, *([load_policy(config.policy)] if config.policy is not None else [])]


def decide_gates(policies: list[Policy], report: Report) -> list[Gate]:
    return [gate for policy in policies for gate in evaluate(policy, report)]
