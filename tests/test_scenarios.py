"""P0's scenario runner on planted ground truth: a map that carries gender must leak in every
scenario, a map of noise must sit at chance, and what cannot run must say why."""

from __future__ import annotations

import numpy as np
import pytest

from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import extract
from ser_audit.leakage.scenarios.plan import AttackData, AttackSettings
from ser_audit.leakage.scenarios.run import run_scenarios
from ser_audit.leakage.scenarios.table import choose_designs, target_family
from ser_audit.leakage.statistics.inference import SpeakerPermutations, permutation_p_value
from ser_audit.leakage.statistics.resampling import fixed_null
from ser_audit.models.interface import LayerInfo
from ser_audit.models.subnetwork import Unavailable
from ser_audit.testing import planted_maps_model, tiny_corpus


def layers(*kinds: str) -> list[LayerInfo]:
    return [LayerInfo(i, f"l{i}", kind, (1, 4, 10)) for i, kind in enumerate(kinds)]


def test_target_family_is_read_from_the_graph() -> None:
    assert target_family(layers("Conv2d", "ReLU", "Linear")) == "convolutional"
    assert target_family(layers("Conv", "Relu", "Gemm")) == "convolutional"  # ONNX op names
    assert target_family(layers("Conv1d", "LSTM", "Linear")) == "recurrent"
    assert target_family(layers("Linear", "ReLU")) == "dense"


def test_scenario_table_picks_designs_by_family() -> None:
    # The frozen remaining layers with a new head (what reaches the last hidden layer), then the sub-network
    # trained for the attribute (the worst case proper).
    assert choose_designs("worst", "convolutional", True).designs == ("frozen-body-readout", "same-architecture")
    assert choose_designs("s1", "recurrent", True).designs == ("frozen-body-readout", "same-architecture")
    assert choose_designs("s2", "convolutional", True).designs == ("vgg", "resnet", "densenet")
    assert choose_designs("s4", "convolutional", True).designs == ("lstm",)
    assert choose_designs("s3", "recurrent", True, cell="lstm").designs == ("gru",)
    assert choose_designs("s4", "recurrent", True).designs == ("vgg",)
    assert choose_designs("s2", "convolutional", True, quick=True).designs == ("vgg",)
    vector = choose_designs("s4", "convolutional", False)
    assert vector.designs == () and "no time axis" in (vector.reason or "")


def test_a_design_plugin_joins_its_family_after_the_bundled_designs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Designs are chosen by family from the registry: a plugin's convolutional design plays s2 and s3
    beside the bundled ones (after them, so --quick still runs the first bundled design)."""
    import ser_audit.plugins as plugins
    from ser_audit.leakage.attackers.convolutional import DESIGNS
    from ser_audit.leakage.attackers.design import Design, designs

    inception = Design("inception", "convolutional", "map", DESIGNS[0].build, lambda shape, width: "Inception-style")

    class Entry:
        name, value = "aaa-plugin", "pkg.inception:DESIGN"

        def load(self) -> Design:
            return inception

    original = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points", lambda group: [Entry(), *original(group=group)]
                        if group == "ser_audit.attacker_designs" else original(group=group))
    assert designs()["inception"] is inception
    assert choose_designs("s2", "convolutional", True).designs == ("vgg", "resnet", "densenet", "inception")
    assert choose_designs("s3", "convolutional", True, quick=True).designs == ("vgg",)


def test_scenario_layers_keep_every_recurrent_layer_and_spread_over_the_others() -> None:
    from ser_audit.api import scenario_layers

    def layer(index: int, name: str, kind: str, time: bool = True) -> LayerInfo:
        return LayerInfo(index, name, kind, (1, 8, 10) if time else (1, 8), 2 if time else None)

    convolutions = [layer(i, f"conv{i}", "Conv2d") for i in range(4)]
    recurrent = [layer(4, "gru1", "GRU"), layer(5, "gru2", "GRU"), layer(6, "gru3", "GRU")]
    vectors = [layer(7, "pool", "AdaptiveAvgPool1d", time=False), layer(8, "fc", "Linear", time=False)]
    crnn = [*convolutions, *recurrent, *vectors]
    assert [l.name for l in scenario_layers(crnn)] == ["conv0", "conv2", "conv3", "gru1", "gru2", "gru3", "fc"]
    assert [l.name for l in scenario_layers(crnn, quick=True)] == ["conv2", "conv3", "gru1", "gru2", "gru3", "fc"]
    lstm = [layer(0, "rnn1", "LSTM"), layer(1, "rnn2", "LSTM"), layer(2, "projection", "Linear"),
            layer(3, "out", "Linear", time=False)]
    assert [l.name for l in scenario_layers(lstm, quick=True)] == ["rnn1", "rnn2", "projection", "out"]


def test_fixed_prediction_test_is_small_for_perfect_predictions_and_large_for_constant_ones() -> None:
    from ser_audit.corpus.folds import Fold

    speakers = np.repeat(np.arange(10), 8)
    truth = np.where(speakers % 2, "male", "female")
    folds = [Fold(name=str(k), train=np.flatnonzero(speakers // 2 != k), test=np.flatnonzero(speakers // 2 == k))
             for k in range(5)]
    permutations = SpeakerPermutations.draw(truth, speakers, n=999, seed=0)
    predictions = [truth[fold.test] for fold in folds]
    perfect = permutation_p_value(1.0, fixed_null(permutations, folds, predictions))
    constant = permutation_p_value(0.5, fixed_null(permutations, folds, [np.full(16, "male")] * 5))
    assert perfect < 0.01  # 1 of C(10, 5) = 252 assignments is the real one
    assert constant == 1.0


@pytest.fixture(scope="module")
def planted_study(small_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory):
    aux = tiny_corpus(tmp_path_factory.mktemp("aux") / "corpus", preset="ravdess-like", per_speaker=5, seed=3)
    model = planted_maps_model()
    tapped = model.select_layers("pitch,noise")
    names = [layer.name for layer in tapped]
    audit = AttackData.of(small_corpus, extract(model, small_corpus, tapped, maps=names), "gender")
    attacker_data = AttackData.of(aux, extract(model, aux, tapped, maps=names), "gender")
    folds = speaker_disjoint_folds(small_corpus)
    settings = AttackSettings(quick=True, epochs=10)
    permutations = SpeakerPermutations.draw(audit.attribute, np.array(small_corpus.labels("speaker")), n=199, seed=0)
    results = run_scenarios(model, tapped, audit, attacker_data, folds, permutations, {"pitch": 1.3, "noise": 1.3},
                            settings=settings)
    return results


def test_every_scenario_and_kind_runs_or_says_why(planted_study) -> None:
    ran = {(r.layer, r.scenario, r.attacker_kind) for r in planted_study.rows}
    skipped = {(s.layer, s.scenario, s.attacker_kind): s.reason for s in planted_study.skipped}
    for layer in ("pitch", "noise"):
        for scenario in ("worst", "s1", "s2", "s3", "s4"):
            for kind in ("generic", "aware"):
                assert ((layer, scenario, kind) in ran) != ((layer, scenario, kind) in skipped)
    # The part after `noise` reads `pitch` too, so the target's own sub-network cannot be cut there.
    assert "skip connection" in skipped[("noise", "worst", "generic")]
    assert planted_study.family == "convolutional"
    entries = [(s.layer, s.scenario, s.attacker_kind, s.reason) for s in planted_study.skipped]
    assert len(entries) == len(set(entries))  # both same-architecture designs once listed each skip twice


def test_planted_gender_map_leaks_in_every_scenario(planted_study) -> None:
    rows = [r for r in planted_study.rows if r.layer == "pitch"]
    assert {r.scenario for r in rows} == {"worst", "s1", "s2", "s3", "s4"}
    for row in rows:
        assert row.balanced_accuracy >= 0.8, (row.scenario, row.attacker_design, row.balanced_accuracy)
        assert row.p_value < 0.05
        assert row.p_value_exact == (row.training_data == "aux")
        assert len(row.accuracy.folds) == 5 and row.n_test == 160
        assert row.attacker_parameters > 0 and row.attacker_architecture
    assert {r.training_data for r in rows if r.scenario in ("s1", "s3", "s4")} == {"aux"}
    assert {r.training_data for r in rows if r.scenario in ("worst", "s2")} == {"same"}


def test_noise_map_sits_at_chance(planted_study) -> None:
    rows = [r for r in planted_study.rows if r.layer == "noise"]
    assert rows
    for row in rows:
        # Never above chance; a nearly constant attacker may sit a hair below it with a narrow interval.
        assert row.ci_low <= row.chance, (row.scenario, row.attacker_design)
    assert sum(row.p_value < 0.05 for row in rows) <= 1


def test_same_architecture_body_reproduces_the_target() -> None:
    import torch

    model = planted_maps_model()
    inputs = model.example_inputs(2)
    part = model.downstream("pitch")
    tapped = model.forward(inputs, ["pitch"])
    # The noise inside the body is redrawn, so compare shapes and the head, not values.
    with torch.no_grad():
        features = part.body(torch.from_numpy(tapped.layers["pitch"]))
    assert features.shape == (2, 8) and part.head is not None and part.head.out_features == 4
    with pytest.raises(Unavailable, match="reads"):
        model.downstream("noise")


def test_time_axis_is_read_from_the_stored_map_when_the_cap_shrank_it() -> None:
    from ser_audit.leakage.scenarios.plan import has_time_axis

    layer = LayerInfo(name="conv", index=0, kind="Conv2d", shape=(1, 8, 16, 40), time_axis=3)
    assert has_time_axis(layer)
    assert not has_time_axis(layer, np.zeros((5, 8, 16, 1), dtype=np.float16))


@pytest.mark.parametrize("design", ["mlp", "vgg"])
def test_in_memory_and_streamed_training_rows_give_the_same_attacker(design: str, monkeypatch) -> None:
    from ser_audit.leakage.attackers import neural

    rng = np.random.default_rng(0)
    shape = (64, 16) if design == "mlp" else (64, 4, 8, 12)
    X = rng.normal(size=shape).astype(np.float16)
    y = np.where(X.reshape(64, -1)[:, 0] > 0, "female", "male")
    fitted = neural.NeuralAttacker(design, epochs=2, seed=0).fit(X, y).decision_function(X)
    monkeypatch.setattr(neural, "IN_MEMORY_BYTES", 0)  # every mini-batch read from X again
    streamed = neural.NeuralAttacker(design, epochs=2, seed=0).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(fitted, streamed)


def test_a_refused_cut_names_what_it_reads_as_a_user_knows_it() -> None:
    """A skip from an intermediate value was named by fx's own node name (``getitem``), which means nothing outside fx."""
    import torch

    from ser_audit.models.subnetwork import split_eager

    class Skip(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            early = x[:, :4]
            return self.head(self.second(self.first(early)) + early)

    with pytest.raises(Unavailable, match=r"reads an intermediate value of the forward \(getitem\)"):
        split_eager(Skip(), "first")


@pytest.mark.parametrize("returns", ["tuple", "dict"])
def test_a_model_returning_logits_and_more_is_cut_at_its_logits(returns: str) -> None:
    """The same-architecture attackers were skipped ("returns more than one tensor") for a (logits, hidden) model."""
    import torch

    from ser_audit.models.subnetwork import split_eager

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> object:
            hidden = torch.relu(self.second(torch.relu(self.first(x))))
            logits = self.head(hidden)
            return (logits, hidden) if returns == "tuple" else {"hidden": hidden, "logits": logits}

    model = Pair().eval()
    part = split_eager(model, "first")
    x = torch.randn(3, 4)
    assert part.head is not None
    torch.testing.assert_close(part.head(part.body(model.first(x))), model.head(model.second(model.first(x).relu()).relu()))
