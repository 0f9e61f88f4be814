"""Model families and model formats as plugin kinds: registries, the transformer family, name clashes."""

from __future__ import annotations

import re
import warnings
from importlib.metadata import EntryPoint

import pytest
import torch

from ser_audit.errors import ConfigError
from ser_audit.leakage.attackers.design import designs, family_designs
from ser_audit.leakage.families import Family, families, target_family
from ser_audit.leakage.scenarios.table import choose_designs
from ser_audit.models.interface import LayerInfo


def layers(*kinds: str) -> list[LayerInfo]:
    return [LayerInfo(index=i, name=f"l{i}", kind=kind, shape=(1, 8, 10)) for i, kind in enumerate(kinds)]


def test_families_are_asked_in_priority_order() -> None:
    assert [family.name for family in families()] == ["recurrent", "transformer", "convolutional", "dense"]
    # A convolutional feature encoder in front of attention blocks is a transformer; a CNN before a GRU recurrent.
    assert target_family(layers("Conv1d", "GroupNorm", "Wav2Vec2EncoderLayer", "Linear")) == "transformer"
    assert target_family(layers("Conv1d", "WhisperEncoderLayer")) == "transformer"
    assert target_family(layers("Conv2d", "GRU", "Linear")) == "recurrent"
    assert target_family(layers("Conv2d", "Linear")) == "convolutional"
    assert target_family(layers("Linear", "ReLU")) == "dense"


def test_a_recurrence_no_layer_is_named_for_is_recognised_in_the_graph() -> None:
    """A scripted CNN-GRU's export keeps the GRU as an ONNX node without its module's scope: it read as convolutional,
    so s2 gave it VGG-style attackers and s4 an LSTM."""
    scripted = layers("Conv", "Relu", "Transpose", "Gemm")
    assert target_family(scripted, {"Conv", "Relu", "Transpose", "GRU", "Gemm"}) == "recurrent"
    assert target_family(scripted, {"Conv", "Relu", "Transpose", "Gemm"}) == "convolutional"


def test_attention_is_recognised_in_an_exported_graph_and_a_closing_softmax_is_not() -> None:
    exported = layers("MatMul", "Gemm", "LayerNormalization", "Gemm")
    assert target_family(exported, {"MatMul", "Softmax", "LayerNormalization", "Gemm"}) == "transformer"
    # A classifier whose graph ends in Softmax: the closing node is not counted among the operators.
    assert target_family(layers("Gemm", "Relu", "Gemm"), {"Gemm", "Relu"}) == "dense"
    assert target_family(exported, {"MatMul", "LayerNormalization", "Gemm"}) == "dense"


def test_a_transformer_target_gets_transformer_designs_and_both_other_families() -> None:
    assert choose_designs("s2", "transformer", True).designs == family_designs("transformer")
    assert len(family_designs("transformer")) == 3
    assert choose_designs("s3", "transformer", True, quick=True).designs == ("transformer-2x128",)
    assert choose_designs("s4", "transformer", True).designs == ("vgg", "lstm")
    assert choose_designs("s2", "transformer", False).designs == ("mlp", "wide")  # a vector tap: dense


@pytest.mark.parametrize("shape", [(32, 50), (4, 8, 30), (300, 70)])
def test_transformer_designs_read_any_map_and_learn(shape) -> None:
    torch.manual_seed(0)
    for name in family_designs("transformer"):
        design = designs()[name]
        module = design.build(shape, 0.25)
        assert module(torch.randn(3, *shape)).shape[0] == 3
        assert "transformer encoder" in design.describe(shape, 0.25)
    # It learns a planted attribute (the sign of a mean over time), so it is a real attacker.
    module = torch.nn.Sequential(designs()["transformer-2x128"].build((8, 20), 0.25), torch.nn.LazyLinear(2))
    data = torch.randn(256, 8, 20)
    labels = (data[:, 0].mean(1) > 0).long()
    data[:, 0] += (labels[:, None] * 2 - 1) * 0.5
    optimiser = torch.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(60):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(data), labels)
        loss.backward()
        optimiser.step()
    module.eval()
    assert (module(data).argmax(1) == labels).float().mean() > 0.9


def _with_entries(monkeypatch: pytest.MonkeyPatch, group: str, extra: list[EntryPoint]) -> None:
    import ser_audit.plugins as plugins

    real = plugins.entry_points

    def entry_points(group: str):  # type: ignore[no-untyped-def]
        return [*real(group=group), *(extra if group == wanted else [])]

    wanted = group
    monkeypatch.setattr(plugins, "entry_points", entry_points)


def test_a_family_plugin_joins_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    module = types.ModuleType("ser_audit_conformer_family")
    module.FAMILY = Family("conformer", priority=15, kinds=re.compile("Conformer"), others=("recurrent",))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    _with_entries(monkeypatch, "ser_audit.model_families",
                  [EntryPoint("conformer", f"{module.__name__}:FAMILY", "ser_audit.model_families")])
    assert target_family(layers("Conv1d", "ConformerBlock")) == "conformer"
    assert target_family(layers("Conv1d", "GRU")) == "recurrent"


def test_a_name_clash_between_plugins_warns_and_strict_refuses(monkeypatch: pytest.MonkeyPatch, run_cli) -> None:
    from ser_audit.plugins import load_plugins, strict_plugins

    clash = EntryPoint("onnx", "ser_audit.models.formats.zoo:FORMAT", "ser_audit.model_formats")
    _with_entries(monkeypatch, "ser_audit.model_formats", [clash])
    with pytest.warns(UserWarning, match="two model format plugins are registered as 'onnx'"):
        found = load_plugins("ser_audit.model_formats", kind="model format")
    assert found["onnx"].name == "onnx"  # the first registration is kept
    with strict_plugins(), pytest.raises(ConfigError, match="--strict"):
        load_plugins("ser_audit.model_formats", kind="model format")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_cli("--strict", "layers", "zoo:cnn4")
    assert result.code == 2 and "two model format plugins" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("form", ["onnx", "torchscript", "torch-export", "transformers"])
def test_every_bundled_format_passes_the_plugin_contract(form, tmp_path) -> None:
    from ser_audit.models.formats import claiming_format, model_formats
    from ser_audit.testing.contract import check_model_format, tiny_model

    if form == "transformers":
        pytest.importorskip("transformers")
    model = tiny_model(tmp_path, format=form)
    from ser_audit.models.formats import ModelRequest

    chosen = claiming_format(ModelRequest(model, cache_dir=tmp_path))
    assert chosen is not None and chosen.name == form
    assert chosen in model_formats()
    check_model_format(chosen, model, cache_dir=tmp_path)
