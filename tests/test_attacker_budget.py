"""A bound on the rows a neural attacker reads per epoch: the cost of a fit stops growing with the corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ser_audit.leakage.attackers import neural


def _planted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    speakers = np.repeat(np.arange(20), n // 20)
    gender = np.where(speakers % 2 == 0, "female", "male")
    X = rng.normal(size=(len(speakers), 16)).astype(np.float32)
    X[:, 0] += np.where(gender == "female", 1.5, -1.5)
    return X, gender, speakers


def test_a_bound_at_or_above_the_rows_changes_nothing() -> None:
    X, y, speakers = _planted(400)
    free = neural.NeuralAttacker("mlp", epochs=3, seed=0).fit(X, y, groups=speakers)
    bounded = neural.NeuralAttacker("mlp", epochs=3, seed=0, rows_per_epoch=10_000).fit(X, y, groups=speakers)
    np.testing.assert_array_equal(free.decision_function(X), bounded.decision_function(X))


def test_each_epoch_reads_a_fresh_sample_of_the_bound_and_still_learns(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, speakers = _planted(2000)
    seen: list[np.ndarray] = []
    original = neural.run_epochs

    def recording(module, optimiser, loss, rows, **kwargs):
        seen.append(np.array(rows))
        return original(module, optimiser, loss, rows, **kwargs)

    monkeypatch.setattr(neural, "run_epochs", recording)
    fitted = neural.NeuralAttacker("mlp", epochs=3, seed=0, rows_per_epoch=256).fit(X, y, groups=speakers)
    assert [len(rows) for rows in seen] == [256] * len(seen) and len(seen) >= 2
    assert not np.array_equal(seen[0], seen[1])  # a new sample each epoch, so every row can be used
    test_X, test_y, _ = _planted(400, seed=1)
    assert np.mean(fitted.predict(test_X) == test_y) > 0.9
    again = neural.NeuralAttacker("mlp", epochs=3, seed=0, rows_per_epoch=256).fit(X, y, groups=speakers)
    np.testing.assert_array_equal(fitted.decision_function(test_X), again.decision_function(test_X))


def test_the_scenario_bar_weighs_jobs_by_their_expected_work() -> None:
    from types import SimpleNamespace

    from ser_audit.corpus.folds import Fold
    from ser_audit.leakage.scenarios.plan import AttackSettings
    from ser_audit.leakage.scenarios.run import _expected_cost

    folds = [Fold(name=f"f{k}", train=np.arange(320), test=np.arange(80)) for k in range(5)]
    settings = AttackSettings(quick=True, epochs=3)

    def job(design: str, shape: tuple[int, ...], *, frozen: bool = False, aux: bool = False) -> SimpleNamespace:
        return SimpleNamespace(layer=SimpleNamespace(shape=shape), design=design, on_aux=aux,
                               attacker=SimpleNamespace(freeze_body=frozen))

    worst = _expected_cost(job("same-architecture", (1, 64, 8, 23)), folds, 400, settings)  # type: ignore[arg-type]
    dense = _expected_cost(job("mlp", (1, 128)), folds, 400, settings)  # type: ignore[arg-type]
    frozen = _expected_cost(job("frozen-body-readout", (1, 64, 8, 23), frozen=True), folds, 400, settings)  # type: ignore[arg-type]
    assert worst > 50 * dense and worst > 5 * frozen >= 1 and dense >= 1
    # A bounded epoch: a corpus ten times larger costs no more per epoch once every fold is past the bound.
    large = [Fold(name="f", train=np.arange(5000), test=np.arange(10))] * 5
    assert _expected_cost(job("mlp", (1, 128)), large, 0, settings) == _expected_cost(  # type: ignore[arg-type]
        job("mlp", (1, 128)), [Fold(name="f", train=np.arange(600), test=np.arange(10))] * 5, 0, settings)  # type: ignore[arg-type]


def _maps(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, 4 channels, 6, 10) maps whose first channel carries gender plainly."""
    X, gender, speakers = _planted(n, seed)
    rng = np.random.default_rng(seed + 7)
    maps = rng.normal(size=(len(X), 4, 6, 10)).astype(np.float32)
    maps[:, 0] += np.where(gender == "female", 1.0, -1.0)[:, None, None]
    return maps, gender, speakers


def _small_body() -> nn.Module:
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def _epochs_trained(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = neural.run_epochs

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(neural, "run_epochs", counting)
    return calls


def test_a_perfect_validation_score_ends_training_with_the_same_attacker(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, speakers = _planted(400)
    X[:, 0] += np.where(y == "female", 4.0, -4.0)  # separable: held-out speakers all right within an epoch or two
    calls = _epochs_trained(monkeypatch)
    early = neural.NeuralAttacker("mlp", epochs=8, patience=8, seed=0).fit(X, y, groups=speakers)
    trained_early = len(calls)
    monkeypatch.setattr(neural, "_perfect", lambda score: False)
    calls.clear()
    full = neural.NeuralAttacker("mlp", epochs=8, patience=8, seed=0).fit(X, y, groups=speakers)
    assert early.validation_score_ == 1.0 and trained_early < len(calls) == 8
    assert early.best_epoch_ == full.best_epoch_
    np.testing.assert_array_equal(early.decision_function(X), full.decision_function(X))


def test_a_later_body_candidate_is_skipped_only_when_it_could_not_win(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, speakers = _maps(400)
    options = dict(body=_small_body(), body_description="a small conv body", epochs=4, seed=0,
                   body_candidates=(("target", 1e-3), ("fresh", 1e-3)))
    early = neural.NeuralAttacker("same-architecture", **options).fit(X, y, groups=speakers)
    monkeypatch.setattr(neural, "_perfect", lambda score: False)
    full = neural.NeuralAttacker("same-architecture", **options).fit(X, y, groups=speakers)
    assert early.candidate_scores_["target@0.001"] == 1.0 and "fresh@0.001" not in early.candidate_scores_
    assert "fresh@0.001" in full.candidate_scores_ and early.choice_ == full.choice_  # the control trained both
    np.testing.assert_array_equal(early.predict(X), full.predict(X))
    np.testing.assert_allclose(early.decision_function(X), full.decision_function(X))


class _Flattening(nn.Module):
    """A target's own layers as people write them: ``.view`` assumes a contiguous activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        out = self.conv(activation)
        return out.view(out.size(0), -1)


def test_a_body_that_views_its_activation_trains_in_the_layout_it_expects() -> None:
    X, y, speakers = _maps(200)
    fitted = neural.NeuralAttacker("same-architecture", body=_Flattening(), body_description="a flattening body",
                                   epochs=2, seed=0).fit(X, y, groups=speakers)
    assert not fitted.channels_last_ and (fitted.predict(X) == y).mean() > 0.9
    plain = neural.NeuralAttacker("same-architecture", body=_small_body(), body_description="a small conv body",
                                  epochs=2, seed=0).fit(X, y, groups=speakers)
    assert plain.channels_last_  # a body that takes either layout gets the faster one
