"""The worst case earns its name: on every audited layer of a planted leak, the same-architecture
attacker (the target's sub-network after the tap, trained for the attribute, start and rate chosen on
held-out training speakers, then refitted on the whole training side; or a linear readout of the tap
where those speakers prefer it) is at least the linear probe's
lower 95% bound on the same layer. The frozen body with a new head stays beside it, named for what it
measures (the last hidden layer), and says nothing about the tap."""

from __future__ import annotations

import pytest

from ser_audit.api import ModelSource, leakage_audit
from ser_audit.leakage.scenarios.table import SAME_ARCHITECTURE, SAME_ARCHITECTURE_FROZEN
from ser_audit.report.model import Report
from ser_audit.testing import tiny_corpus, write_planted_cnn


@pytest.fixture(scope="module")
def planted_leak(tmp_path_factory: pytest.TempPathFactory) -> Report:
    folder = tmp_path_factory.mktemp("worst")
    corpus = tiny_corpus(folder / "corpus", per_speaker=8, seed=1)
    spec, weights = write_planted_cnn(folder, leak=True, seed=1)
    return leakage_audit(ModelSource(spec, weights=weights), corpus=str(corpus.root / "manifest.csv"), quick=True,
                         seed=1, cache_dir=folder / "cache", scenarios=["worst"], attackers=["generic"])


def test_the_worst_case_reaches_the_probe_lower_bound_on_every_layer(planted_leak: Report) -> None:
    assert planted_leak.leakage is not None
    rows = planted_leak.leakage.results
    probe = {row.layer: row for row in rows if row.is_probe}
    worst = [row for row in rows if row.scenario == "worst" and row.attacker_design == SAME_ARCHITECTURE]
    assert worst, "no same-architecture row"
    for row in worst:
        assert row.balanced_accuracy >= (probe[row.layer].ci_low or 0.0), (
            row.layer, row.balanced_accuracy, probe[row.layer].ci_low)
        # Which start and rate (or the linear readout of the tap) won is said per fold.
        text = row.attacker_architecture
        assert text.count("start, body at") + text.count("linear readout of the tap") == len(row.accuracy.folds)


def test_the_frozen_readout_is_named_for_what_it_measures(planted_leak: Report) -> None:
    assert planted_leak.leakage is not None
    frozen = [row for row in planted_leak.leakage.results if row.attacker_design == SAME_ARCHITECTURE_FROZEN]
    assert frozen and SAME_ARCHITECTURE_FROZEN == "frozen-body-readout"
    assert all(row.attacker_architecture.startswith("frozen body, new linear head") for row in frozen)
