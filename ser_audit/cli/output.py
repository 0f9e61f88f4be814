"""Writing a finished report in the asked formats, the summary, and the gate verdict as the exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import typer

from ser_audit.cli.progress import STDERR
from ser_audit.cli.render import plain
from ser_audit.errors import ConfigError
from ser_audit.files import check_writable
from ser_audit.report.model import Report
from ser_audit.report.writer import check_report_out, parse_formats, write_report


def check_outputs(formats: str, policy: Path | None = None, out: str | None = None, cache_dir: Path | None = None, *,
                  uses_cache: bool = True, out_flag: str = "--out",
                  studies: tuple[str, ...] = ("leakage", "robustness")) -> None:
    """Fail on a bad --format, --policy, or an --out or --cache-dir that cannot be written, before any work.
    ``uses_cache=False`` (commands that may not write the cache) checks --cache-dir only when it is given."""
    parsed = parse_formats(formats)
    if out is not None:
        check_report_out(out, parsed, flag=out_flag)
    if uses_cache or cache_dir is not None:
        check_cache_dir(cache_dir)
    if policy is not None:
        from ser_audit.report.policy import load_policy

        loaded = load_policy(policy)
        for study in ("leakage", "robustness"):
            if getattr(loaded, study) and study not in studies:
                # Its gate would fail after the whole run, on rows this command never computes.
                raise ConfigError(f"--policy {policy} has [[{study}]] rules, which this command does not measure; "
                                  "run ser-audit audit for both studies, or give a policy without them")
        for study, rule in (("leakage", "min_privacy"), ("robustness", "min_robustness")):
            if getattr(loaded.scores, rule, None) is not None and study not in studies:
                raise ConfigError(f"--policy {policy}: [scores] {rule} needs the {study} study, which this command does "
                                  "not run; run ser-audit audit for both studies, or drop the rule")
        if loaded.protection is not None:
            # Only protect measures it, and protect writes its report for ser-audit gate to judge.
            raise ConfigError(f"--policy {policy} has a [protection] table, which only ser-audit protect measures: run "
                              "protect, then ser-audit gate PROTECT_REPORT/report.json --policy "
                              f"{policy}")
        if loaded.regression is not None:
            # An audit has no earlier report to compare with; failing after the whole run would lose it.
            raise ConfigError(f"--policy {policy} has a [regression] table, which needs an earlier report: audit with a "
                              "policy without it, then run ser-audit gate NEW/report.json --policy "
                              f"{policy} --baseline OLD/report.json")


def check_cache_dir(cache_dir: Path | None) -> None:
    """The cache (--cache-dir, $SER_AUDIT_CACHE or the default) must be a folder we can write into."""
    from ser_audit.runner.sources import default_cache_dir

    check_writable(cache_dir or default_cache_dir(), flag="--cache-dir", folder=True)


def finish(report: Report, out: str, formats: str, *, quiet: bool, summary: Callable[[Report], None]) -> None:
    """Write every format, print the summary; exit 1 when a gate failed (the runner decided the gates)."""
    written = write_report(report, out, parse_formats(formats))
    if written:
        if not quiet:
            summary(report)
        for path in written:
            STDERR.print(plain(f"report written to {path}"))
    failed = [gate for gate in report.gates if not gate.passed]
    if failed:
        if quiet:  # the summary that names them was not printed; exit 1 must not come unexplained
            for gate in failed:
                STDERR.print(plain(f"gate failed: {gate.name}: {gate.value:.3f} against {gate.threshold:.3f}"
                                   + (f" ({gate.detail})" if gate.detail else "")))
        raise typer.Exit(1)
