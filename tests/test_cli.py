from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import pytest
import torch
from torch import nn

from ser_audit.config import AuditConfig
from ser_audit.report.model import REPORT_SCHEMA_VERSION
from ser_audit_reference.cnn4 import CNN4

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json").read_text())


def _broken_manifest(original: Path, folder: Path, change) -> Path:
    """A copy of the manifest (audio copied too) with one row or one file changed."""
    folder.mkdir()
    rows = list(csv.DictReader(original.open()))
    for row in rows:
        target = folder / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((original.parent / row["path"]).read_bytes())
    change(folder, rows)
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _missing_audio(folder: Path, rows: list[dict]) -> None:
    (folder / rows[3]["path"]).unlink()


def _corrupt_audio(folder: Path, rows: list[dict]) -> None:
    (folder / rows[3]["path"]).write_bytes(b"RIFF\x00\x00garbage that is not audio")


def _empty_audio(folder: Path, rows: list[dict]) -> None:
    (folder / rows[3]["path"]).write_bytes(b"")


def _escaping_path(folder: Path, rows: list[dict]) -> None:
    rows[3]["path"] = "../../etc/passwd"


@pytest.mark.parametrize(
    "change, message",
    [(_missing_audio, "missing"), (_corrupt_audio, "cannot be decoded"), (_empty_audio, "empty"), (_escaping_path, "escapes")],
)
def test_bad_corpus_gives_exit_2_and_one_line(run_cli, onnx_model, manifest, tmp_path, change, message) -> None:
    broken = _broken_manifest(manifest, tmp_path / "copy", change)
    result = run_cli("leakage", str(onnx_model), "--corpus", str(broken), "--out", str(tmp_path / "out"), "--quiet")
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_model_and_layers_give_exit_2(run_cli, onnx_model, manifest, tmp_path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("just some text\n")
    cases = [
        (("layers", str(tmp_path / "missing.onnx")), "does not exist"),
        (("layers", str(text)), "not a valid ONNX"),
        (("leakage", str(onnx_model), "--corpus", str(manifest), "--layers", "lstm*", "--quiet"), "matches no layer"),
        (("leakage", str(onnx_model), "--corpus", "no-such-corpus", "--quiet"), "neither a known corpus"),
        (("leakage", str(onnx_model), "--no-such-flag"), "No such option"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr


def test_debug_shows_the_traceback_of_a_usage_error_too(run_cli) -> None:
    result = run_cli("leakage", "zoo:cnn4", "--seed", "abc", "--debug")
    assert result.code == 2 and "Traceback" in result.stderr and "--seed" in result.stderr
    assert "Traceback" not in run_cli("leakage", "zoo:cnn4", "--seed", "abc").stderr


def test_debug_shows_the_traceback(run_cli, tmp_path) -> None:
    result = run_cli("layers", str(tmp_path / "missing.onnx"), "--debug")
    assert result.code == 2 and "Traceback" in result.stderr


def test_leakage_end_to_end_on_a_manifest(run_cli, onnx_model, manifest, tmp_path) -> None:
    out = tmp_path / "report"
    result = run_cli("leakage", str(onnx_model), "--corpus", str(manifest), "--layers", "pool1,fc_relu", "--quick",
                     "--out", str(out), "--quiet", "--max-leakage", "1.0", "--format", "json,md,html,junit")
    assert result.code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    rows = report["leakage"]["results"]
    assert [row["layer"] for row in rows if row["attacker_design"] == "linear-probe"] == ["pool1", "fc_relu"]
    assert {row["scenario"] for row in rows} <= {"worst", "s1", "s2", "s3", "s4"}  # exactly P0's (design 5)
    pairs = {(row["scenario"], row["attacker_kind"]) for row in rows
             if row["layer"] == "pool1" and row["attacker_design"] not in ("linear-probe", "nested-choice")}
    assert pairs == {(s, k) for s in ("worst", "s1", "s2", "s3", "s4") for k in ("generic", "aware")}
    designs = [(row["scenario"], row["attacker_kind"], row["attacker_design"]) for row in rows if row["layer"] == "pool1"]
    assert designs.count(("worst", "generic", "linear-probe")) == designs.count(("worst", "generic", "nested-choice")) == 1
    assert all(row["training_data"] == "aux" for row in rows if row["scenario"] in ("s1", "s3", "s4"))
    assert report["aux_corpus"]["name"] == "ravdess-like" and report["leakage"]["target_family"] == "convolutional"
    assert {s["layer"] for s in report["leakage"]["skipped"]} == {"fc_relu"}  # no time axis: no s4 attacker
    assert {f["name"] for f in report["leakage"]["findings"]} >= {"generic-vs-aware", "closeness", "depth", "per-emotion"}
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.html", "report.junit.xml"}
    assert report["model"]["format"] == "onnx" and len(report["model"]["sha256"]) == 64
    assert report["corpus"]["n_utterances"] == 40 and report["corpus"]["n_speakers"] == 10
    assert report["gates"][0]["passed"] is True and report["gates"][0]["name"] == "max-leakage"
    assert report["leakage"]["input_reference"]["layer"] == "input:lld"
    # The report says exactly how it was made: every setting, --quick resolved.
    config = AuditConfig.model_validate(report["config"])
    assert config.model.spec == str(onnx_model) and config.layers == "pool1,fc_relu" and config.max_leakage == 1.0
    assert config.quick and config.permutations == 199 and config.attacker_epochs == 3


def test_failed_gate_gives_exit_1_and_keeps_the_report(run_cli, onnx_model, manifest, tmp_path) -> None:
    out = tmp_path / "gated.json"
    result = run_cli("leakage", str(onnx_model), "--corpus", str(manifest), "--layers", "pool1", "--scenarios", "worst",
                     "--attackers", "generic", "--quick", "--out", str(out), "--quiet", "--max-leakage", "0.0")
    assert result.code == 1
    report = json.loads(out.read_text())
    assert report["gates"][0]["passed"] is False
    assert "gate failed: max-leakage" in result.stderr  # --quiet hides progress, not why the run failed


def test_report_on_stdout(run_cli, onnx_model, manifest) -> None:
    result = run_cli("leakage", str(onnx_model), "--corpus", str(manifest), "--layers", "pool4", "--scenarios", "s2",
                     "--attackers", "generic", "--quick", "--out", "-", "--quiet")
    assert result.code == 0
    assert json.loads(result.stdout)["leakage"]["results"][0]["layer"] == "pool4"


def test_listing_commands_print_json(run_cli, onnx_model, manifest, tmp_path) -> None:
    layers = json.loads(run_cli("layers", str(onnx_model), "--json").stdout)
    assert [layer["name"] for layer in layers][:3] == ["conv1", "relu1", "pool1"]
    zoo = {row["name"]: row for row in json.loads(run_cli("zoo", "list", "--json", "--cache-dir", str(tmp_path)).stdout)}
    assert {"cnn4", "vgg16", "vgg16-lld", "resnet20", "resnet20-finetune", "resnet20-adapter", "resnet50"} <= set(zoo)
    # Built to count its parameters; nothing trained in an empty cache, so no held-out figures yet.
    assert all(row["parameters"] > 10_000 and row["stages"][-1]["target"] == "emotion" for row in zoo.values())
    assert [stage["corpus"] for stage in zoo["resnet20-adapter"]["stages"]] == ["voxceleb-like", "iemocap-like"]
    assert not zoo["cnn4"]["trained"] and zoo["cnn4"]["held_out_uar"] is None and "log_mel" in zoo["cnn4"]["input"]
    corpora = json.loads(run_cli("corpus", "list", "--json").stdout)
    assert {"synthetic", "iemocap-like", "ravdess-like"} <= {row["name"] for row in corpora}
    info = json.loads(run_cli("corpus", "info", str(manifest), "--json").stdout)
    assert info["n_speakers"] == 10 and info["by_gender"] == {"female": 20, "male": 20}


def test_corpus_synth_writes_a_manifest(run_cli, tmp_path) -> None:
    result = run_cli("corpus", "synth", "ravdess-like", "--out", str(tmp_path / "rav"), "--size", "2", "--quiet")
    assert result.code == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "rav" / "manifest.csv").open()))
    assert len(rows) == 48 and {row["gender"] for row in rows} == {"female", "male"}


def test_corpus_synth_fills_an_empty_working_folder(run_cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("corpus", "synth", "ravdess-like", "--out", ".", "--size", "2", "--quiet").code == 0
    assert (tmp_path / "manifest.csv").is_file() and (tmp_path / "wav").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv", "wav"]  # no staging left behind
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))


def test_speaker_attribute_end_to_end(run_cli, onnx_model, manifest, tmp_path) -> None:
    out = tmp_path / "speaker.json"
    result = run_cli("leakage", str(onnx_model), "--corpus", str(manifest), "--layers", "pool1,fc_relu",
                     "--attribute", "speaker", "--quick", "--out", str(out), "--quiet")
    assert result.code == 0, result.stderr
    report = json.loads(out.read_text())
    jsonschema.validate(report, SCHEMA)
    rows = report["leakage"]["results"]
    assert {(row["scenario"], row["attacker_design"]) for row in rows} == {("worst", "linear-probe")}
    assert rows[0]["chance"] == 0.1  # ten speakers
    verification = report["leakage"]["verification"]
    assert [v["layer"] for v in verification] == ["pool1", "fc_relu"]
    assert all(v["eer_same_gender"] is not None and v["eer_ci_low"] <= v["eer"] <= v["eer_ci_high"] for v in verification)


def test_audit_checks_the_compared_model_before_any_work(run_cli, onnx_model, manifest, tmp_path) -> None:
    """A wrong --compare-with path fails at once, not after the leakage study and the probes."""
    missing = tmp_path / "missing.onnx"
    result = run_cli("audit", str(onnx_model), "--corpus", str(manifest), "--compare-with", str(missing), "--quick",
                     "--out", str(tmp_path / "report"), "--quiet")
    assert result.code == 2 and result.stderr.startswith("ser-audit: error: --compare-with:")
    assert str(missing) in result.stderr and not (tmp_path / "report").exists()


class _OtherCNN(nn.Module):
    """Another architecture on the same log-mel front-end as the tiny CNN-4: it shares the names conv1, relu1,
    pool1, global_pool, flatten, fc, fc_relu and classifier, lacks pool2 to pool4, and has a mix block of its own."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.mix, self.mix_relu, self.mix_pool = nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.global_pool, self.flatten = nn.AdaptiveMaxPool2d(1), nn.Flatten()
        self.fc, self.fc_relu, self.classifier = nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(features)))
        x = self.mix_pool(self.mix_relu(self.mix(x)))
        return self.classifier(self.fc_relu(self.fc(self.flatten(self.global_pool(x)))))


def _compare(run_cli, onnx_model: Path, manifest: Path, out: Path, *flags: str):
    result = run_cli("audit", str(onnx_model), *flags, "--corpus", str(manifest), "--layers", "pool1,pool2,fc_relu",
                     "--scenarios", "worst", "--attackers", "generic", "--eps", "0,0.02", "--quick", "--out", str(out),
                     "--format", "json,md,html")
    assert result.code in (0, 1), result.stderr
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["schema_version"] == REPORT_SCHEMA_VERSION and report["config"]["compare_with"] is not None
    assert not {"hardened_model", "hardening_effect", "hardened_robustness"} & set(report)  # 1.8 writes comparison only
    return result, report


def test_audit_compares_a_model_of_another_architecture(run_cli, onnx_model, manifest, tmp_path) -> None:
    """Layers in both get the linear probe on each model; layers of one model only are listed as such."""
    from ser_audit.models.export import export_model
    from ser_audit.models.loading import load_model

    other = tmp_path / "other.onnx"
    torch.manual_seed(1)
    export_model(_OtherCNN(), load_model(str(onnx_model), cache_dir=tmp_path).frontend, other)
    result, report = _compare(run_cli, onnx_model, manifest, tmp_path / "report", "--compare-with", str(other))
    comparison = report["comparison"]
    assert comparison["model"]["path"] == str(other) and comparison["model"]["sha256"] != report["model"]["sha256"]
    assert [layer["layer"] for layer in comparison["layers"]] == ["pool1", "fc_relu"]
    assert comparison["only_in_model"] == ["pool2"] and comparison["only_in_compared"] == ["mix_pool"]
    assert not any("other input features" in note for note in report["notes"])  # the same front-end
    probes = {row["layer"]: row for row in report["leakage"]["results"] if row["attacker_design"] == "linear-probe"}
    verdicts = {layer["layer"]: layer["verdict"] for layer in report["leakage"]["verdict"]["layers"]}
    for layer in comparison["layers"]:
        before, after = layer["before_interval"], layer["after_interval"]
        assert layer["leakage_before"] == probes[layer["layer"]]["balanced_accuracy"]
        assert before == [probes[layer["layer"]]["ci_low"], probes[layer["layer"]]["ci_high"]]
        assert after[0] <= layer["leakage_after"] <= after[1]
        assert layer["change"] == pytest.approx(layer["leakage_after"] - layer["leakage_before"])
        assert layer["significant"] == (after[0] > before[1] or after[1] < before[0])
        assert layer["verdict_before"] == verdicts[layer["layer"]]
        assert layer["verdict_after"] in ("leaks", "private", "inconclusive")
    eps = [row["eps"] for row in report["robustness"]["results"]]
    assert [row["eps"] for row in comparison["robustness"]["results"]] == eps
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"## Comparison with {other}" in markdown and "- only in this model: pool2" in markdown
    assert "- only in the compared model: mix_pool" in markdown and "| pool1 |" in markdown.split("## Comparison")[1]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Linear-probe leakage per layer, this model and compared model" in page
    assert "only in the compared model: mix_pool" in result.stdout


def test_hardened_is_a_deprecated_alias_of_compare_with(run_cli, onnx_model, manifest, tmp_path) -> None:
    """--hardened means --compare-with (here a copy of the same architecture: every layer compared) and says so in
    one line on stderr; given beside --compare-with, it must name the same model."""
    from ser_audit.models.export import export_model
    from ser_audit.models.loading import load_model

    copy = tmp_path / "copy.onnx"
    torch.manual_seed(2)
    export_model(CNN4(4, width=0.0625), load_model(str(onnx_model), cache_dir=tmp_path).frontend, copy)
    result, report = _compare(run_cli, onnx_model, manifest, tmp_path / "report", "--hardened", str(copy))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("ser-audit: warning:")]
    assert warnings == ["ser-audit: warning: --hardened is deprecated; use --compare-with, which means the same"]
    comparison = report["comparison"]
    assert comparison["model"]["path"] == str(copy) and report["config"]["compare_with"]["spec"] == str(copy)
    assert [layer["layer"] for layer in comparison["layers"]] == ["pool1", "pool2", "fc_relu"]
    assert comparison["only_in_model"] == [] and comparison["only_in_compared"] == []
    both = run_cli("audit", str(onnx_model), "--hardened", str(copy), "--compare-with", str(tmp_path / "x.onnx"),
                   "--corpus", str(manifest), "--out", str(tmp_path / "both"), "--quiet")
    assert both.code == 2 and "give one (--hardened is the older name of --compare-with)" in both.stderr
    assert not (tmp_path / "both").exists()
    help_text = " ".join(run_cli("audit", "--help").stdout.replace("│", " ").split())
    assert "--hardened FILE Deprecated: the older name of --compare-with" in help_text


def test_tables_piped_to_a_file_are_not_squeezed(tmp_path) -> None:
    """A CI log is no terminal: rich assumed 80 columns there and cut a leakage table's numbers to '0.…'."""
    import os
    import subprocess
    import sys

    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run([sys.executable, "-m", "ser_audit", "zoo", "list", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout and max(len(line) for line in result.stdout.splitlines()) > 80


def test_audit_takes_every_robustness_option(run_cli) -> None:
    """The README's synopsis promises "[leakage and robustness options]"; audit lacked all but --eps."""
    import re

    def flags(command: str) -> set[str]:
        return set(re.findall(r"--[a-z][a-z-]+", run_cli(command, "--help").stdout))

    probes = {"--eps", "--eta", "--pgd-eps", "--pgd-steps", "--pgd-step-size", "--domain", "--attack-target",
              "--targeted", "--gradient", "--probe", "--perturb"}
    assert probes <= flags("robustness") and probes <= flags("audit"), probes - flags("audit")


def test_a_corpus_folder_is_read_through_its_manifest(run_cli, manifest) -> None:
    """``corpus synth --out DIR`` writes DIR/manifest.csv; DIR itself was refused as "neither a known corpus"."""
    by_folder = json.loads(run_cli("corpus", "info", str(manifest.parent), "--json").stdout)
    by_file = json.loads(run_cli("corpus", "info", str(manifest), "--json").stdout)
    assert by_folder["manifest_sha256"] == by_file["manifest_sha256"] and by_folder["n_speakers"] == 10
