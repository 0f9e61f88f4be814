"""The audit config: one frozen object, --quick resolved once, bad values named by their flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser_audit.config import AuditConfig, CorpusSource, ModelSource
from ser_audit.errors import ConfigError
from ser_audit.report.policy import Policy, evaluate, flag_policy


def test_quick_is_resolved_in_one_place_and_explicit_values_win() -> None:
    quick, full = AuditConfig.create("zoo:cnn4", quick=True), AuditConfig.create("zoo:cnn4")
    assert (quick.permutations, quick.attacker_epochs, quick.probes.pgd_steps) == (199, 3, 3)
    assert (full.permutations, full.attacker_epochs, full.probes.pgd_steps) == (999, 8, 10)
    chosen = AuditConfig.create("zoo:cnn4", quick=True, permutations=499, probes={"pgd_steps": 7})
    assert chosen.permutations == 499 and chosen.probes.pgd_steps == 7 and chosen.attacker_epochs == 3


def test_choices_keep_their_canonical_order_and_the_clean_eps_is_always_probed() -> None:
    config = AuditConfig.create(ModelSource("model.onnx"), scenarios="s2, worst", attackers=["aware"],
                                probes={"grid": (0.1, 0.02)}, corpus="iemocap-like")
    assert config.scenarios == ("worst", "s2") and config.attackers == ("aware",)
    assert config.probes.grid == (0.0, 0.02, 0.1) and config.corpus == CorpusSource("iemocap-like")
    assert AuditConfig.create("m.onnx", scenarios=()).scenarios == ()  # API only: the probe alone


@pytest.mark.parametrize("options, flag", [
    ({"scenarios": "worst,s9"}, "--scenarios"),
    ({"scenarios": ""}, "--scenarios"),
    ({"attackers": "greedy"}, "--attackers"),
    ({"attribute": "age"}, "--attribute"),
    ({"device": "tpu"}, "--device"),
    ({"folds": 1}, "--folds"),
    ({"max_gap": 1.5}, "--max-gap"),
    ({"probes": {"domain": "spectrum"}}, "--domain"),
])
def test_a_bad_value_names_its_flag(options: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        AuditConfig.create("m.onnx", **options)


def test_the_config_is_frozen_and_round_trips_through_json() -> None:
    config = AuditConfig.create(ModelSource("python:pkg.mod:factory", weights="w.pt"), quick=True, max_gap=0.1)
    with pytest.raises(Exception):
        config.quick = False  # type: ignore[misc]
    assert AuditConfig.model_validate_json(config.model_dump_json()) == config


def test_gate_flags_are_policy_rules_named_after_their_flags() -> None:
    policy = flag_policy(max_leakage=0.9, max_gap=0.2, min_robust_uar=0.3, at_eps=0.04)
    assert [rule.name for rule in policy.leakage] == ["max-leakage", "max-gap"]
    assert policy.robustness[0].name == "min-robust-uar" and policy.robustness[0].at_eps == 0.04
    assert flag_policy() == Policy()
    from ser_audit.report.model import Report

    empty = Report.model_construct(leakage=None, robustness=None, scores=None)
    assert evaluate(Policy(), empty) == []


def test_seen_speakers_count_every_training_stage_on_the_audit_corpus(tmp_path: Path) -> None:
    from ser_audit.runner.sources import seen_speakers
    from ser_audit.testing import tiny_corpus

    corpus = tiny_corpus(tmp_path, per_speaker=2, seed=0)
    digest, speakers = corpus.manifest_sha256(), sorted(set(corpus.labels("speaker")))
    pretrained_here = {"training_corpus_sha256": "other", "training_speakers": ["x"],
                       "stages": [{"corpus_sha256": digest, "speakers": speakers[:3]}, {"corpus_sha256": "other"}]}
    assert seen_speakers(pretrained_here, corpus) == speakers[:3]
    trained_here = {"training_corpus_sha256": digest, "training_speakers": speakers[3:5]}
    assert seen_speakers(trained_here, corpus) == speakers[3:5]
    assert seen_speakers({"training_corpus_sha256": "other"}, corpus) == [] and seen_speakers(None, corpus) == []


def test_overrides_on_a_config_merge_probe_options_and_rederive_quick() -> None:
    from ser_audit.api import _config, _probe_options

    config = AuditConfig.create("m.onnx", probes={"grid": (0.05,), "pgd_eps": None})
    quick = _config(config, {"quick": True})
    assert (quick.permutations, quick.attacker_epochs, quick.probes.pgd_steps) == (199, 3, 3)
    white_box = _config(config, _probe_options(None, "white-box", {}))
    assert white_box.probes.gradient == "white-box" and white_box.probes.grid == (0.0, 0.05)
    assert white_box.probes.pgd_eps is None


@pytest.mark.parametrize("options, message", [
    ({"corpus": 1}, "--corpus 1"),
    ({"aux_corpus": 1}, "--aux-corpus 1"),
    ({"probes": {"targeted_class": 3}}, "--targeted 3"),
    ({"probes": {"grid": ("a",)}}, "--eps"),
    ({"scenarios": None}, "--scenarios None"),
])
def test_api_values_of_the_wrong_type_name_the_cli_flag(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        AuditConfig.create("m.onnx", **options)


def test_flag_gates_come_first_and_the_policy_file_numbers_its_own_rules(tmp_path: Path) -> None:
    from ser_audit.runner.gating import decide_gates, policies_of

    policy = tmp_path / "policy.toml"
    policy.write_text('[[leakage]]\nlayer = "fc*"\nmax_gap = 0.2\n')
    config = AuditConfig.create("m.onnx", max_leakage=0.9, min_robust_uar=0.1, at_eps=0.02, policy=policy)
    policies = policies_of(config, leakage=True, robustness=True)
    assert [rule.name for rule in policies[0].leakage] == ["max-leakage"] and policies[0].robustness[0].at_eps == 0.02
    assert policies[1].leakage[0].name is None
    from ser_audit.report.model import Report

    empty = Report.model_construct(leakage=None, robustness=None, scores=None)
    names = [gate.name for gate in decide_gates(policies, empty)]
    assert names[-1] == "policy leakage[1] layer=fc* scenario=* matches a row"
    with pytest.raises(ConfigError, match="--at-eps 0.03 is not on the FGSM grid"):
        policies_of(AuditConfig.create("m.onnx", min_robust_uar=0.1, at_eps=0.03), leakage=False, robustness=True)


def test_a_wrong_executor_fails_before_any_work(tmp_path: Path) -> None:
    from ser_audit.api import leakage_audit

    with pytest.raises(ConfigError, match="--executor 'dask'"):
        leakage_audit(str(tmp_path / "missing.onnx"), executor="dask", cache_dir=tmp_path)


def test_hardened_is_the_older_name_of_compare_with() -> None:
    """--hardened and a config recorded before report 1.8 read as compare_with; two different models are refused."""
    assert AuditConfig.create("a.onnx", hardened="b.onnx").compare_with == ModelSource("b.onnx")
    assert AuditConfig.create("a.onnx", hardened="b.onnx", compare_with="b.onnx").compare_with == ModelSource("b.onnx")
    with pytest.raises(ConfigError, match="--hardened 'b.onnx' and --compare-with 'c.onnx'"):
        AuditConfig.create("a.onnx", hardened="b.onnx", compare_with="c.onnx")
    recorded = AuditConfig.create("a.onnx").model_dump(mode="json")
    assert "hardened" not in recorded and recorded["compare_with"] is None
    del recorded["compare_with"]
    for old, read in ((None, None), ({"spec": "b.onnx", "frontend": None, "weights": None, "trust_pickle": False},
                                     ModelSource("b.onnx"))):
        assert AuditConfig.model_validate({**recorded, "hardened": old}).compare_with == read
