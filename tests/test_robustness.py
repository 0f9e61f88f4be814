from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json").read_text())


def test_robustness_of_an_onnx_model_through_onnx2torch(run_cli, onnx_model, manifest, tmp_path) -> None:
    out = tmp_path / "rob.json"
    result = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--out", str(out), "--quiet",
                     "--pgd-steps", "2", "--min-robust-uar", "0.0", "--at-eps", "0.1")
    assert result.code == 0, result.stderr
    report = json.loads(out.read_text())
    jsonschema.validate(report, SCHEMA)
    rows = report["robustness"]["results"]
    assert [(r["method"], r["eps"]) for r in rows] == [("fgsm", e) for e in (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)] + [("pgd", 0.02)]
    assert all(r["gradient"] == "white-box" and r["n"] == 40 for r in rows)
    assert rows[0]["success_rate"] == 0.0 and rows[0]["mean_linf"] == 0.0
    assert rows[-2]["mean_linf"] == pytest.approx(0.1 * report["robustness"]["input_spread"], rel=1e-4)
    assert report["gates"][0]["name"] == "min-robust-uar" and report["gates"][0]["passed"]
    assert report["robustness"]["evaluation_set"].startswith("all of")


def test_unconvertible_onnx_falls_back_to_black_box(run_cli, onnx_model, manifest, tmp_path, monkeypatch) -> None:
    import onnx2torch

    def refuse(*_args, **_kwargs):
        raise NotImplementedError("Converter is not implemented (OperatorDescription(domain='', operation_type='Foo'))")

    monkeypatch.setattr(onnx2torch, "convert", refuse)
    out = tmp_path / "rob.json"
    result = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--out", str(out), "--quiet",
                     "--eps", "0,0.1")
    assert result.code == 0, result.stderr
    report = json.loads(out.read_text())
    assert {r["gradient"] for r in report["robustness"]["results"]} == {"black-box"}
    assert all(r["method"] == "fgsm" for r in report["robustness"]["results"])
    assert any("SPSA" in note and "upper bound" in note for note in report["notes"]), report["notes"]
    # An estimated gradient can only understate vulnerability: the score is an upper bound and earns no grade.
    assert "Foo" in report["robustness"]["gradient_fallback"]
    assert report["scores"]["robustness_upper_bound"] is True and report["scores"]["grade"] is None
    rendered = run_cli("report", str(out), "--format", "md")
    assert rendered.code == 0 and "upper bound" in rendered.stdout
    # This untrained model predicts at chance (clean UAR 0.25): no score at all, and a note says why.
    assert report["robustness"]["score"] is None and any("at chance" in note for note in report["notes"])
    from ser_audit.report.render.sections import _robustness_score

    assert _robustness_score(41.25, "no converter for Foo").startswith("<= 41.2 (upper bound")
    strict = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--gradient", "white-box", "--quiet")
    assert strict.code == 2 and "no differentiable path" in strict.stderr and strict.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--eps", "0,-0.1"), "non-negative"),
        (("--eps", "abc"), "comma-separated"),
        (("--eta", "0"), "--eta must be positive"),
        (("--pgd-steps", "0"), "--pgd-steps must be at least 1"),
        (("--domain", "spectrum"), "--domain"),
        (("--min-robust-uar", "0.5", "--at-eps", "0.03"), "not on the FGSM grid"),
    ],
)
def test_bad_probe_settings_give_exit_2(run_cli, onnx_model, manifest, tmp_path, flags, message) -> None:
    result = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--out", str(tmp_path / "r.json"),
                     "--quiet", *flags)
    assert result.code == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_waveform_domain_reports_snr(run_cli, onnx_model, manifest, tmp_path) -> None:
    out = tmp_path / "wave.json"
    result = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--domain", "waveform",
                     "--eps", "0,0.05", "--pgd-steps", "2", "--out", str(out), "--quiet")
    assert result.code == 0, result.stderr
    rows = json.loads(out.read_text())["robustness"]["results"]
    assert rows[0]["snr_db"] is None and 15 < rows[1]["snr_db"] < 40


def test_harden_keeps_format_and_spec(run_cli, onnx_model, manifest, tmp_path) -> None:
    out = tmp_path / "hardened.onnx"
    result = run_cli("harden", str(onnx_model), "--method", "similarity", "--out", str(out), "--corpus", str(manifest),
                     "--epochs", "2", "--warmup-epochs", "1", "--quiet")
    assert result.code == 0, result.stderr
    assert "held-out UAR" in result.stderr or "UAR real" in result.stderr
    from ser_audit.models.loading import load_model

    original, hardened = load_model(str(onnx_model), cache_dir=tmp_path), load_model(str(out), cache_dir=tmp_path)
    assert hardened.format == "onnx" and hardened.frontend == original.frontend
    bad = run_cli("harden", str(onnx_model), "--method", "magic", "--out", str(out), "--corpus", str(manifest), "--quiet")
    assert bad.code == 2 and "similarity or vanilla" in bad.stderr


def test_a_probe_plugin_runs_beside_fgsm_and_pgd(run_cli, onnx_model, manifest, tmp_path, monkeypatch) -> None:
    """Probes register through entry points like the bundled two; --probe runs a plugin's at PGD's eps."""
    import ser_audit.plugins as plugins
    from ser_audit.robustness.interface import Probe

    class SignNoise(Probe):
        """Random signs of size eps: a weak baseline any real attack must beat."""

        name = "sign-noise"

        def __init__(self, eps: float, *, targeted: bool = False) -> None:
            super().__init__(targeted=targeted)
            self.eps = eps

        def perturb(self, model, inputs, labels):
            generator = torch.Generator().manual_seed(0)
            return inputs + self.eps * torch.randint(0, 2, inputs.shape, generator=generator).mul(2).sub(1)

    class Entry:
        name, value = "sign-noise", "pkg.noise:SignNoise"

        def load(self):
            return SignNoise

    original = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points", lambda group: [*original(group=group), Entry()]
                        if group == "ser_audit.probes" else original(group=group))
    out = tmp_path / "plugin.json"
    result = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--eps", "0,0.05", "--pgd-eps", "0.05",
                     "--pgd-steps", "3", "--probe", "sign-noise", "--out", str(out), "--quiet")
    assert result.code == 0, result.stderr
    rows = {row["method"]: row for row in json.loads(out.read_text())["robustness"]["results"] if row["eps"] == 0.05}
    assert set(rows) == {"fgsm", "pgd", "sign-noise"}
    assert rows["sign-noise"]["mean_linf"] == pytest.approx(rows["pgd"]["eps_raw"], rel=1e-4)
    # A white-box attack of the same size does at least as much damage as random signs.
    assert rows["pgd"]["uar"] <= rows["sign-noise"]["uar"] + 1e-9
    unknown = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--probe", "deepfool", "--quiet")
    assert unknown.code == 2 and "--probe 'deepfool': choose one of fgsm, pgd, sign-noise" in unknown.stderr


def test_audit_loads_the_model_and_corpus_once(onnx_model, manifest, tmp_path, monkeypatch) -> None:
    from ser_audit import api
    from ser_audit.runner import sources

    loads: list[str] = []
    real_model, real_corpus = sources.load_model, sources.load_corpus
    monkeypatch.setattr(sources, "load_model", lambda source, **kw: loads.append("model") or real_model(source, **kw))
    monkeypatch.setattr(sources, "load_corpus", lambda source, **kw: loads.append("corpus") or real_corpus(source, **kw))
    report = api.full_audit(str(onnx_model), corpus=str(manifest), scenarios=(), layers="fc_relu", quick=True,
                            probes={"grid": (0.05,), "pgd_eps": None}, cache_dir=tmp_path, min_robust_uar=0.0,
                            at_eps=0.05)
    assert sorted(loads) == ["corpus", "model"]
    assert report.leakage is not None and report.robustness is not None
    assert [gate.name for gate in report.gates] == ["min-robust-uar"] and report.config is not None


def test_a_model_at_chance_gets_no_robustness_score() -> None:
    """Predicting one class everywhere: clean UAR at chance and no loss under attack, which scored 100 (grade A)."""
    from ser_audit.report.model import RobustnessResult
    from ser_audit.robustness.evaluate import robustness_score

    def rows(*uars: float) -> list[RobustnessResult]:
        return [RobustnessResult.model_construct(method="fgsm", eps=eps, uar=uar) for eps, uar in zip((0.0, 0.02, 0.04), uars)]

    assert robustness_score(rows(0.25, 0.25, 0.25), chance=0.25) is None
    assert robustness_score(rows(0.8, 0.6, 0.4), chance=0.25) == pytest.approx(100 * (0.875 + 0.625) / 2)


def test_emotions_the_model_lacks_are_named_and_one_shared_emotion_is_refused(run_cli, onnx_model, manifest,
                                                                              tmp_path) -> None:
    """Scoring 10 of 40 utterances, or a UAR over one class, used to pass without a word."""
    import csv

    rows = list(csv.DictReader(manifest.open()))
    renamed = {"angry": "ang", "sad": "sad", "happy": "hap", "neutral": "neutral"}
    import shutil

    shutil.copytree(manifest.parent / "wav", tmp_path / "wav")
    edited = tmp_path / "manifest.csv"  # beside a copy of the audio it names
    with edited.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**row, "emotion": renamed[row["emotion"]]} for row in rows])
    out = tmp_path / "rob.json"
    result = run_cli("robustness", str(onnx_model), "--corpus", str(edited), "--out", str(out), "--quiet",
                     "--pgd-steps", "1")
    assert result.code == 0, result.stderr
    assert "utterances of ang, hap left out: the model has no such output" in \
        json.loads(out.read_text())["robustness"]["evaluation_set"]
    with edited.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**row, "emotion": renamed[row["emotion"]] if row["emotion"] != "sad" else "blue"} for row in rows])
    result = run_cli("robustness", str(onnx_model), "--corpus", str(edited), "--out", str(tmp_path / "r2"), "--quiet")
    assert result.code == 2 and "only 'neutral' of the model's emotions" in result.stderr, result.stderr


class _Argmax(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from ser_audit_reference.cnn4 import CNN4

        self.body = CNN4(4, width=0.0625)

        self.head = torch.nn.Linear(4, 4)
        self.detach = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.detach:  # weights after the break still give the logits a grad_fn
            return self.head(self.body(x).detach())
        return torch.nn.functional.one_hot(self.body(x).argmax(-1), 4).float()


def test_a_torch_path_without_a_gradient_falls_back_to_spsa_or_is_refused_in_white_box() -> None:
    """Its FGSM ended in exit 3 ("element 0 of tensors does not require grad")."""
    from ser_audit.errors import ModelError
    from ser_audit.models.eager import EagerTorchModel
    from ser_audit.robustness.spsa import ForwardOnly
    from ser_audit.runner.robustness import attackable
    from ser_audit_reference.cnn4 import LOG_MEL_P2

    model = EagerTorchModel(_Argmax(), LOG_MEL_P2.model_copy(update={"emotions": ["neutral", "angry", "sad", "happy"]}))
    module, fallback = attackable(model, "auto")
    assert isinstance(module, ForwardOnly) and fallback is not None and "carry no gradient" in fallback
    with pytest.raises(ModelError, match="its logits carry no gradient back to its input"):
        attackable(model, "white-box")
    model.module.detach = True
    with pytest.raises(ModelError, match="its logits carry no gradient back to its input"):
        attackable(model, "white-box")
    assert attackable(EagerTorchModel(model.module.body, model.frontend), "white-box")[1] is None
