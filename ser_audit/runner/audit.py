"""The three report-making runs, each deciding its gates once through one policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ser_audit.config import AuditConfig
from ser_audit.errors import LayerSelectionError, SerAuditError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import Comparison, LayerComparison, LeakageResult, Report, Verdict
from ser_audit.report.scoring import score
from ser_audit.runner.gating import decide_gates, policies_of
from ser_audit.runner.leakage import run_leakage
from ser_audit.runner.provenance import model_info, now
from ser_audit.runner.robustness import probe_settings, run_robustness
from ser_audit.runner.sources import Loader

if TYPE_CHECKING:
    from ser_audit.models.interface import LayerInfo, TargetModel


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
    """Leakage and robustness in one report; with ``config.compare_with``, also the same linear probe and
    robustness probes on the other model, layer by layer (``report.comparison``)."""
    policies = policies_of(config, leakage=True, robustness=True)
    probe_settings(config)  # a bad eps grid fails before the leakage study runs
    loader = Loader(config, observer)
    if config.compare_with is not None:
        _load_compared(config, loader)
    report = run_leakage(config, command=command, observer=observer, loader=loader)
    robust = run_robustness(config, observer=observer, loader=loader)
    report.robustness = robust.robustness
    report.notes = [*report.notes, *robust.notes]
    if config.compare_with is not None:
        report.comparison = _comparison(config, report, observer, loader)
    score(report)
    report.gates = decide_gates(policies, report)
    report.finished = now()
    return report


def _load_compared(config: AuditConfig, loader: Loader) -> None:
    """Load the compared model before any work (the loader keeps it), so a wrong path fails at once."""
    assert config.compare_with is not None
    try:
        loader.model(config.compare_with)
    except SerAuditError as error:
        raise type(error)(f"--compare-with: {error}") from None


def _comparison(config: AuditConfig, report: Report, observer: ProgressObserver, loader: Loader) -> Comparison:
    """The linear probe on every tapped layer of MODEL that the other model has by name, and the same
    robustness probes; layers of one model only are listed."""
    source = config.compare_with
    assert source is not None and report.leakage is not None
    model, other = loader.model(config.model), loader.model(source)
    probe_rows = [row for row in report.leakage.results if row.is_probe]
    tappable = {layer.name for layer in other.layers() if layer.refused is None}
    shared = [row for row in probe_rows if row.layer in tappable]
    own_names = {layer.name for layer in model.layers()}
    robustness = run_robustness(config, model_source=source, observer=observer, loader=loader).robustness
    if _features(model) != _features(other):
        report.notes.append(f"--compare-with {source.spec} computes other input features than MODEL: leakage is "
                            "measured on the same audio, but each model's eps is relative to its own input's spread")
    layers: list[LayerComparison] = []
    if shared:
        after = run_leakage(config.model_copy(update={"model": source, "scenarios": (),
                                                      "layers": ",".join(row.layer for row in shared)}),
                            observer=observer, loader=loader)
        assert after.leakage is not None
        info = after.model
        after_rows = {row.layer: row for row in after.leakage.results if row.is_probe}
        before_verdicts, after_verdicts = _verdicts(report), _verdicts(after)
        for row in shared:
            other_row = after_rows[row.layer]
            layers.append(LayerComparison(
                layer=row.layer, leakage_before=row.balanced_accuracy, before_interval=_interval(row),
                leakage_after=other_row.balanced_accuracy, after_interval=_interval(other_row),
                change=other_row.balanced_accuracy - row.balanced_accuracy, significant=_disjoint(row, other_row),
                verdict_before=before_verdicts.get(row.layer), verdict_after=after_verdicts.get(row.layer)))
    else:
        info = model_info(source, other)
        report.notes.append(f"--compare-with {source.spec} has none of MODEL's tapped layers by name: no layer "
                            "compared")
    return Comparison(model=info, layers=layers, robustness=robustness,
                      only_in_model=[row.layer for row in probe_rows if row.layer not in tappable],
                      only_in_compared=[layer.name for layer in _taps(other, config.layers)
                                        if layer.name not in own_names])


def _features(model: "TargetModel") -> dict[str, object]:
    """What a front-end spec says about the input features (not the layout, labels or taps a copy may change)."""
    return model.frontend.model_dump(include={"sample_rate", "features", "normalisation", "mean", "std", "duration_s",
                                              "crop"})


def _taps(model: "TargetModel", layers: str | None) -> list["LayerInfo"]:
    """The layers ``--layers`` selects in ``model``; its default taps where the spec names layers it lacks."""
    try:
        return model.select_layers(layers)
    except LayerSelectionError:
        return model.default_taps()


def _verdicts(report: Report) -> dict[str, Verdict]:
    verdict = report.leakage.verdict if report.leakage else None
    return {layer.layer: layer.verdict for layer in verdict.layers} if verdict else {}


def _interval(row: LeakageResult) -> list[float] | None:
    return None if row.ci_low is None or row.ci_high is None else [row.ci_low, row.ci_high]


def _disjoint(before: LeakageResult, after: LeakageResult) -> bool:
    """Whether two rows' 95% intervals of L do not overlap."""
    if None in (before.ci_low, before.ci_high, after.ci_low, after.ci_high):
        return False
    return bool(after.ci_low > before.ci_high or after.ci_high < before.ci_low)  # type: ignore[operator]
