"""P0's findings decide on intervals: alike only within the equivalence margin, higher only when the interval says so."""

from __future__ import annotations

from ser_audit.leakage.statistics.findings import EQUIVALENCE, Estimate, alike, generic_versus_aware, higher, mean_of
from ser_audit.report.model import Accuracy, LeakageResult


def row(kind: str, design: str, leakage: float, error: float) -> LeakageResult:
    return LeakageResult(layer="l", scenario="worst", attacker_kind=kind, attacker_architecture=design,
                         attacker_design=design, attacker_parameters=1, training_data="same", attribute="gender",
                         accuracy=Accuracy(mean=leakage, std=0.0, folds=[leakage], ci_low=0.0, ci_high=1.0),
                         balanced_accuracy=leakage, standard_error=error, chance=0.5, p_value=0.01, gap=leakage - 0.5,
                         normalised_leakage=(leakage - 0.5) / 0.5, n_test=100, n_features=1)


def test_verdicts_follow_the_interval() -> None:
    assert higher(Estimate(0.10, 0.02)) is True and higher(Estimate(-0.10, 0.02)) is False
    assert higher(Estimate(0.10, 0.10)) is None  # ten speakers: a large difference can still be noise
    assert alike(Estimate(0.01, 0.01)) is True
    assert alike(Estimate(0.01, 0.05)) is None  # too uncertain to call alike, not shown to differ either
    assert alike(Estimate(EQUIVALENCE * 2, 0.01)) is False


def test_a_mean_over_rows_is_never_more_certain_than_its_rows() -> None:
    assert mean_of([Estimate(0.1, 0.05), Estimate(0.3, 0.05)]).error == 0.05


def test_generic_versus_aware_leaves_out_pairs_identical_by_construction() -> None:
    rows = [row("generic", "frozen-body-readout", 0.9, 0.01), row("aware", "frozen-body-readout", 0.9, 0.01),
            row("generic", "vgg", 0.80, 0.01), row("aware", "vgg", 0.81, 0.01)]
    finding = generic_versus_aware(rows)
    assert "over 1 pairs" in finding.evidence and "identical by construction" in finding.evidence
    assert finding.reproduced is True


def test_a_flat_depth_curve_is_said_so_without_a_warning() -> None:
    """Silence, or a layer stack that is perfect everywhere: every layer at one value, no rank correlation."""
    import warnings

    from ser_audit.leakage.statistics.findings import depth
    from ser_audit.report.model import Leakage
    from ser_audit.report.render.sections import depth_messages

    rows = [row("generic", "linear-probe", 0.5, 0.05).model_copy(update={"layer": f"pool{i}", "layer_index": i})
            for i in range(1, 5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finding = depth(rows)
    assert "Spearman(depth, leakage) undefined (a flat curve)" in finding.evidence
    [message] = depth_messages(Leakage.model_construct(results=rows, verdict=None))
    assert message.startswith("Depth curve: flat, the strongest attacker reaches L 0.500 at every one of the 4 layers")
