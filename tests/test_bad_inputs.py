"""The bad-input matrix: what a new or a hostile user hands ser-audit, and what must come back.

Each case is one command line. It asserts the exit code (2 for bad input, with one line on
stderr naming the file or flag and no traceback; 0 or 1 for inputs that must work), a piece of
the message, and that nothing written before the run was changed or lost: every case runs
beside a folder of precious files (an earlier report among them) whose bytes are compared
afterwards. Cases run in-process (``main``); ``test_bad_input_in_a_fresh_interpreter`` runs a few
as a user would, through the ``ser-audit`` console script.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

import numpy as np
import pytest
import soundfile
import torch

from ser_audit.testing import write_planted_cnn

BIN = Path(sys.executable).with_name("ser-audit")


@dataclass
class Context:
    """Paths a case builds its command line from (all inside one temporary folder)."""

    root: Path
    model: Path
    manifest: Path
    precious: Path  # a folder of earlier results: must come out byte-identical
    report: Path  # an earlier report.json (inside ``precious``)
    read_only: Path  # a folder no one may write into (root included)

    def manifest_copy(self, name: str, change: Callable[[Path, list[dict]], list[dict] | None] | None = None,
                      *, suffix: str = ".csv", encoding: str = "utf-8", newline: str = "\n") -> Path:
        """A copy of the test manifest and its audio in a folder of its own, rows changed by ``change``."""
        folder = self.root / name
        rows = list(csv.DictReader(self.manifest.open()))
        shutil.copytree(self.manifest.parent / "wav", folder / "wav")
        rows = (change(folder, rows) if change else None) or rows
        path = folder / f"manifest{suffix}"
        if suffix == ".jsonl":
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        else:
            with path.open("w", newline="", encoding=encoding) as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator=newline)
                writer.writeheader()
                writer.writerows(rows)
        return path

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path


@dataclass
class Case:
    id: str
    args: Callable[[Context], list[str]]
    code: int = 2
    message: str = ""
    stdout: str = ""  # must appear on stdout (cases that pass)
    marks: list = field(default_factory=list)

    def param(self):
        return pytest.param(self, id=self.id, marks=self.marks)


# -- building blocks ------------------------------------------------------------------------------

FAST_LEAKAGE = ["--layers", "pool4", "--scenarios", "s2", "--attackers", "generic", "--quick", "--quiet"]


def leakage(ctx: Context, *extra: str, corpus: Path | str | None = None, out: Path | str | None = None) -> list[str]:
    return ["leakage", str(ctx.model), "--corpus", str(corpus or ctx.manifest), *FAST_LEAKAGE,
            "--out", str(out if out is not None else ctx.precious), *extra]


def robustness(ctx: Context, *extra: str) -> list[str]:
    return ["robustness", str(ctx.model), "--corpus", str(ctx.manifest), "--quick", "--quiet",
            "--out", str(ctx.precious), *extra]


def _wav(folder: Path, rows: list[dict], index: int, signal: np.ndarray, subtype: str = "FLOAT") -> None:
    soundfile.write(str(folder / rows[index]["path"]), signal, 16_000, subtype=subtype)


def nan_weights(ctx: Context) -> str:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(ctx.model))
    for tensor in graph.graph.initializer:
        if tensor.name == "fc.weight":
            tensor.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(tensor), np.nan), tensor.name))
    path = ctx.root / "nan.onnx"
    onnx.save(graph, str(path))  # its front-end spec travels in the graph's metadata
    return str(path)


def flip_one_row(folder: Path, rows: list[dict]) -> list[dict]:
    later = next(i for i, row in enumerate(rows) if i and row["speaker"] == rows[0]["speaker"])
    rows[later]["gender"] = "male" if rows[0]["gender"] == "female" else "female"
    return rows


def ragged(ctx: Context) -> Path:
    path = ctx.manifest_copy("ragged")
    lines = path.read_text().splitlines()
    lines[2] += ",extra,stuff"  # row 3: two cells more than the header
    path.write_text("\n".join(lines) + "\n")
    return path


def one_gender(folder: Path, rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["gender"] == "female"]


def two_speakers(folder: Path, rows: list[dict]) -> list[dict]:
    keep = sorted({row["speaker"] for row in rows})[:2]
    return [row for row in rows if row["speaker"] in keep]


def with_nan(folder: Path, rows: list[dict]) -> None:
    signal = np.zeros(16_000, dtype=np.float32)
    signal[1234] = np.nan
    _wav(folder, rows, 3, signal)


def with_inf(folder: Path, rows: list[dict]) -> None:
    signal = np.zeros(16_000, dtype=np.float32)
    signal[77] = np.inf
    _wav(folder, rows, 3, signal)


def one_sample(folder: Path, rows: list[dict]) -> None:
    _wav(folder, rows, 3, np.array([0.1], dtype=np.float32), subtype="PCM_16")


def missing_audio(folder: Path, rows: list[dict]) -> None:
    (folder / rows[3]["path"]).unlink()


def corrupt_audio(folder: Path, rows: list[dict]) -> None:
    (folder / rows[3]["path"]).write_bytes(b"RIFF\x00\x00garbage that is not audio")


def empty_audio(folder: Path, rows: list[dict]) -> None:
    (folder / rows[3]["path"]).write_bytes(b"")


def dotdot_path(folder: Path, rows: list[dict]) -> None:
    rows[3]["path"] = "../../etc/passwd"


def absolute_path(folder: Path, rows: list[dict]) -> None:
    rows[3]["path"] = "/etc/hostname"


def symlink_out(folder: Path, rows: list[dict]) -> None:
    outside = folder.parent / "outside.wav"
    shutil.copy(folder / rows[3]["path"], outside)
    link = folder / "wav" / "link.wav"
    link.symlink_to(outside)
    rows[3]["path"] = "wav/link.wav"


def symlink_in(folder: Path, rows: list[dict]) -> None:
    link = folder / "wav" / "inside-link.wav"
    link.symlink_to((folder / rows[3]["path"]).resolve())
    rows[3]["path"] = "wav/inside-link.wav"


def duplicate_id(folder: Path, rows: list[dict]) -> None:
    rows[3]["id"] = rows[2]["id"]


def odd_gender(folder: Path, rows: list[dict]) -> None:
    rows[3]["gender"] = "femal"


def spelled_genders(folder: Path, rows: list[dict]) -> None:
    for row in rows:
        row["gender"] = {"female": " F", "male": "Man"}[row["gender"]]


def empty_speaker(folder: Path, rows: list[dict]) -> None:
    rows[3]["speaker"] = ""


def header_only(folder: Path, rows: list[dict]) -> list[dict]:
    return [{key: "" for key in rows[0]}]


def no_gender_column(folder: Path, rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "gender"} for row in rows]


def terminal_hostile(folder: Path, rows: list[dict]) -> None:
    """Labels that a terminal or rich would act on: markup that closes no tag, and an ESC sequence."""
    for row in rows:
        row["emotion"] = {"happy": "[/bold]happy"}.get(row["emotion"], row["emotion"])
        row["speaker"] = "\x1b[2J" + row["speaker"]


def policy(ctx: Context, name: str, text: str | bytes) -> str:
    return str(ctx.file(name, text))


def pickled_module(ctx: Context) -> str:
    path = ctx.root / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    return str(path)


def weights_only(ctx: Context) -> str:
    path = ctx.root / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    return str(path)


def planted(ctx: Context) -> tuple[str, str]:
    model, weights = write_planted_cnn(ctx.root / "planted", leak=False)
    return model, str(weights)


def weights_with_config(ctx: Context, config: dict) -> str:
    path = ctx.root / "with-config.pt"
    torch.save({"state_dict": {}, "config": config}, path)
    return str(path)


def integer_input_onnx(ctx: Context) -> str:
    """The tiny model with its input declared int64 (a token model, say)."""
    import onnx

    proto = onnx.load(str(ctx.model))
    proto.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    path = ctx.root / "tokens.onnx"
    onnx.save(proto, str(path))
    return str(path)


def planted_leak(ctx: Context) -> str:
    from ser_audit.testing import PlantedLeak

    path = ctx.root / "planted-leak.pt"
    torch.save(PlantedLeak().state_dict(), path)
    return str(path)


def wrong_spec(ctx: Context) -> str:
    """A log-mel spec with 7 bands for a module that reads the 15th LLD row."""
    from ser_audit.frontend.spec import Features
    from ser_audit.testing import LLD_FRONTEND

    spec = LLD_FRONTEND.model_copy(update={"features": Features(kind="log_mel", n_fft=400, hop_length=160, n_mels=7)})
    return str(ctx.file("wrong.frontend.json", spec.model_dump_json()))


def contradicting_spec(ctx: Context) -> str:
    """The tiny ONNX model beside a sidecar spec with another n_mels than its graph takes."""
    import onnx

    from ser_audit.frontend.spec import METADATA_KEY, parse_spec

    proto = onnx.load(str(ctx.model))
    spec = parse_spec(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY), origin="test")
    wrong = spec.model_copy(update={"features": spec.features.model_copy(update={"n_mels": spec.features.n_mels + 8})})
    folder = ctx.root / "contradicting"
    folder.mkdir()
    shutil.copy(ctx.model, folder / "model.onnx")
    (folder / "model.frontend.json").write_text(wrong.model_dump_json())
    return str(folder / "model.onnx")


def without_spec(ctx: Context) -> str:
    import onnx

    proto = onnx.load(str(ctx.model))
    del proto.metadata_props[:]
    path = ctx.root / "bare.onnx"
    onnx.save(proto, str(path))
    return str(path)


def future_report(ctx: Context) -> str:
    data = json.loads(ctx.report.read_text())
    data["schema_version"] = "99.0"
    return str(ctx.file("future.json", json.dumps(data)))


def hostile_gate_report(ctx: Context) -> str:
    """An earlier report whose gate names and details carry XML-forbidden and control characters."""
    data = json.loads(ctx.report.read_text())
    data["gates"] = [{"name": "gate\x01<script>\ufffe\x1b[31m", "threshold": 0.5, "value": 0.7, "passed": False,
                      "detail": "layer\x00 ]]> & <b>" + "x" * 5000}]
    return str(ctx.file("hostile-gates.json", json.dumps(data)))


# -- the matrix -----------------------------------------------------------------------------------

CASES = [
    # Models.
    Case("model-missing", lambda c: ["layers", str(c.root / "nope.onnx")], message="does not exist"),
    Case("model-is-a-folder", lambda c: ["layers", str(c.precious)], message="is a folder"),
    Case("model-empty", lambda c: ["layers", str(c.file("empty.onnx", b""))], message="empty"),
    Case("model-text-as-onnx", lambda c: ["layers", str(c.file("notes.onnx", "hello\n"))], message="not a valid ONNX"),
    Case("model-random-bytes", lambda c: ["layers", str(c.file("noise.pt", os.urandom(256)))],
         message="neither ONNX"),
    Case("model-pickled-module-refused", lambda c: ["layers", pickled_module(c)], message="unpickling runs arbitrary code"),
    Case("model-weights-without-factory", lambda c: ["layers", weights_only(c)], message="holds weights only"),
    Case("model-python-without-weights", lambda c: ["layers", "python:ser_audit.testing:PlantedCNN"],
         message="needs --weights"),
    Case("model-python-missing-module", lambda c: ["layers", "python:no_such_module_x:Net", "--weights",
                                                   planted(c)[1]], message="cannot import"),
    Case("model-python-no-colon", lambda c: ["layers", "python:ser_audit.testing"], message="python:package.module:factory"),
    Case("model-python-not-callable", lambda c: ["layers", "python:ser_audit.testing:F0_CHANNEL", "--weights",
                                                 planted(c)[1]], message="not a callable"),
    Case("model-python-returns-no-module", lambda c: ["layers", "python:builtins:str", "--weights", weights_only(c)],
         message="not a torch.nn.Module"),
    Case("model-python-wrong-arguments", lambda c: ["layers", "python:ser_audit.testing:VoicedPitch", "--weights",
                                                    planted(c)[1]], message="failed"),
    Case("model-python-weights-do-not-fit", lambda c: ["layers", "python:ser_audit.testing:PlantedLeak", "--weights",
                                                       weights_only(c)], message="do not fit"),
    Case("model-python-weights-missing", lambda c: ["layers", "python:ser_audit.testing:PlantedCNN", "--weights",
                                                    str(c.root / "nope.pt")], message="does not exist"),
    Case("model-python-state-dict-works", lambda c: ["layers", planted(c)[0], "--weights", planted(c)[1], "--json"],
         code=0, stdout='"pool1"'),
    Case("model-symlink-works", lambda c: ["layers", str(_symlink(c.model, c.root / "link.onnx")), "--json"],
         code=0, stdout='"pool1"'),
    Case("model-without-frontend-spec", lambda c: ["layers", without_spec(c)], message="front-end"),
    Case("model-spec-contradicts-graph", lambda c: ["layers", contradicting_spec(c)], message="graph declares"),
    Case("model-python-spec-does-not-fit", lambda c: ["layers", "python:ser_audit.testing:PlantedLeak", "--weights",
                                                      planted_leak(c), "--frontend", wrong_spec(c)],
         message="fails on the input its front-end spec makes"),
    Case("model-python-factory-raises", lambda c: ["layers", "python:ser_audit.testing:planted_maps_model",
                                                   "--weights", weights_with_config(c, {"seed": "not a number"})],
         message="raised ValueError"),
    Case("model-onnx-int-input", lambda c: ["layers", integer_input_onnx(c)], message="takes int64"),
    Case("model-frontend-file-missing", lambda c: ["layers", str(c.model), "--frontend", str(c.root / "no.json")],
         message="no.json"),
    Case("model-computes-nan", lambda c: ["leakage", nan_weights(c), "--corpus", str(c.manifest), *FAST_LEAKAGE[2:],
                                          "--layers", "fc_relu", "--out", str(c.precious)],
         message="layer fc_relu of model"),
    Case("model-frontend-file-not-utf8", lambda c: ["layers", str(c.model), "--frontend",
                                                     str(c.file("f8.json", b"\xff\xfegarbage"))], message="not UTF-8"),
    Case("model-python-weights-empty", lambda c: ["layers", "python:ser_audit.testing:PlantedLeak", "--weights",
                                                  str(c.file("empty.pt", b""))], message="is empty or cut short"),
    Case("layers-cache-dir-is-a-file", lambda c: ["layers", str(c.model), "--cache-dir", str(c.precious / "notes.txt")],
         message="--cache-dir"),
    Case("model-frontend-file-not-json", lambda c: ["layers", str(c.model), "--frontend", str(c.file("f.json", "{x"))],
         message="f.json"),
    Case("model-unknown-zoo-name", lambda c: ["layers", "zoo:no-such-model"], message="no-such-model"),
    Case("model-path-with-a-newline", lambda c: ["layers", "tiny.onnx\nsecond line\x1b[2J"], message="\\n"),
    Case("model-weights-a-folder", lambda c: ["layers", "python:ser_audit.testing:PlantedCNN", "--weights",
                                              str(c.precious)], message="is a folder"),
    # Corpora.
    Case("corpus-unknown-name", lambda c: leakage(c, corpus="no-such-corpus"), message="neither a known corpus"),
    Case("corpus-speaker-with-two-genders", lambda c: leakage(c, corpus=c.manifest_copy("two-genders", flip_one_row)),
         message="is female in utterance 'Ses01F_000' and male in"),
    Case("corpus-aux-unknown-name", lambda c: ["leakage", str(c.model), "--corpus", str(c.manifest), "--aux-corpus",
                                               "no-such-corpus", "--scenarios", "s1", "--quick", "--quiet",
                                               "--out", str(c.precious)],
         message="--aux-corpus 'no-such-corpus' is neither a known corpus"),
    Case("corpus-row-with-more-cells-than-the-header",
         lambda c: leakage(c, corpus=ragged(c)), message="row 3 has more cells than its header"),
    Case("corpus-option-negative-seed", lambda c: ["corpus", "info", "synthetic", "--corpus-option", "seed=-1"],
         message="from 0 to 2**32 - 1"),
    Case("corpus-missing-audio", lambda c: leakage(c, corpus=c.manifest_copy("m1", missing_audio)), message="missing"),
    Case("corpus-corrupt-audio", lambda c: leakage(c, corpus=c.manifest_copy("m2", corrupt_audio)),
         message="cannot be decoded"),
    Case("corpus-empty-audio", lambda c: leakage(c, corpus=c.manifest_copy("m3", empty_audio)), message="empty"),
    Case("corpus-path-escapes-dotdot", lambda c: leakage(c, corpus=c.manifest_copy("m4", dotdot_path)),
         message="escapes"),
    Case("corpus-path-absolute-outside", lambda c: leakage(c, corpus=c.manifest_copy("m5", absolute_path)),
         message="escapes"),
    Case("corpus-symlink-outside", lambda c: leakage(c, corpus=c.manifest_copy("m6", symlink_out)), message="escapes"),
    Case("corpus-symlink-inside-works", lambda c: ["corpus", "info", str(c.manifest_copy("m7", symlink_in)), "--json"],
         code=0, stdout='"n_utterances": 40'),
    Case("corpus-one-gender", lambda c: leakage(c, corpus=c.manifest_copy("m8", one_gender)),
         message="need at least 2 speakers of each gender, found 5 female, 0 male"),
    Case("corpus-two-speakers", lambda c: leakage(c, corpus=c.manifest_copy("m9", two_speakers)),
         message="need at least 2 speakers of each gender, found 1 female, 1 male"),
    Case("corpus-nan-sample", lambda c: leakage(c, corpus=c.manifest_copy("m10", with_nan)),
         message="first at sample 1234"),
    Case("corpus-inf-sample", lambda c: leakage(c, corpus=c.manifest_copy("m11", with_inf)),
         message="NaN or infinite value(s), the first at sample 77"),
    Case("corpus-one-sample-wav-padded", lambda c: leakage(c, "--format", "json", corpus=c.manifest_copy("m12", one_sample),
                                                           out=c.root / "short"), code=0),
    Case("corpus-too-short-for-a-variable-length-model",
         lambda c: ["leakage", planted(c)[0], "--weights", planted(c)[1], "--corpus", str(c.manifest_copy("m22", one_sample)),
                    "--layers", "pool2", "--scenarios", "s2", "--attackers", "generic", "--quick", "--quiet",
                    "--out", str(c.precious)], message="too short for it"),
    Case("robustness-too-short-for-a-variable-length-model",
         lambda c: ["robustness", planted(c)[0], "--weights", planted(c)[1], "--corpus",
                    str(c.manifest_copy("m23", one_sample)), "--quick", "--quiet", "--out", str(c.precious)],
         message="too short for it"),
    Case("terminal-labels-in-corpus-info", lambda c: ["corpus", "info", str(c.manifest_copy("m24", terminal_hostile))],
         code=0, stdout="[/bold]happy"),
    Case("terminal-labels-in-the-summary",
         lambda c: ["leakage", str(c.model), "--corpus", str(c.manifest_copy("m25", terminal_hostile)), "--layers",
                    "pool4", "--scenarios", "s2", "--attackers", "generic", "--quick", "--out", str(c.root / "t"),
                    "--policy", policy(c, "t.toml", '[[leakage]]\nlayer = "[/red]\\u001b[2J*"\nmax_leakage = 1.0\n')],
         code=1, stdout="[/red]"),  # the rule's layer glob matches no row: that gate fails
    Case("corpus-duplicate-ids", lambda c: leakage(c, corpus=c.manifest_copy("m13", duplicate_id)), message="duplicate"),
    Case("corpus-unknown-gender-spelling", lambda c: leakage(c, corpus=c.manifest_copy("m14", odd_gender)),
         message="not understood"),
    Case("corpus-gender-spellings-work", lambda c: ["corpus", "info", str(c.manifest_copy("m15", spelled_genders)),
                                                    "--json"], code=0, stdout='"female": 20'),
    Case("corpus-empty-speaker", lambda c: leakage(c, corpus=c.manifest_copy("m16", empty_speaker)),
         message="empty 'speaker'"),
    Case("corpus-header-only", lambda c: leakage(c, corpus=c.manifest_copy("m17", header_only)), message="empty"),
    Case("corpus-missing-column", lambda c: leakage(c, corpus=c.manifest_copy("m18", no_gender_column)),
         message="lacks column(s) gender"),
    Case("corpus-bom-manifest-works", lambda c: ["corpus", "info", str(c.manifest_copy("m19", encoding="utf-8-sig")),
                                                 "--json"], code=0, stdout='"n_speakers": 10'),
    Case("corpus-crlf-manifest-works", lambda c: ["corpus", "info", str(c.manifest_copy("m20", newline="\r\n")),
                                                  "--json"], code=0, stdout='"n_speakers": 10'),
    Case("corpus-jsonl-not-json", lambda c: leakage(c, corpus=c.file("bad/manifest.jsonl", '{"path": 1}\nnot json\n')),
         message="not valid JSON"),
    Case("corpus-manifest-not-utf8", lambda c: leakage(c, corpus=c.file("bin/manifest.csv", b"\xff\xfe\x00garbage")),
         message="cannot be read"),
    Case("corpus-aux-one-gender", lambda c: ["leakage", str(c.model), "--corpus", str(c.manifest), "--aux-corpus",
                                             str(c.manifest_copy("m21", one_gender)), "--layers", "pool4",
                                             "--scenarios", "s1", "--attackers", "generic", "--quick", "--quiet",
                                             "--out", str(c.precious)], message="--aux-corpus"),
    # Options.
    Case("layers-empty", lambda c: leakage(c, "--layers", ""), message="names no layer"),
    Case("layers-only-commas", lambda c: leakage(c, "--layers", " , "), message="names no layer"),
    Case("layers-match-nothing", lambda c: leakage(c, "--layers", "lstm*"), message="matches no layer"),
    Case("seed-negative", lambda c: leakage(c, "--seed", "-1"), message="--seed"),
    Case("seed-huge", lambda c: leakage(c, "--seed", "99999999999999999999"), message="--seed"),
    Case("seed-not-a-number", lambda c: leakage(c, "--seed", "abc"), message="--seed"),
    Case("eps-above-one", lambda c: robustness(c, "--eps", "2"), message="--eps 2"),
    Case("eps-empty", lambda c: robustness(c, "--eps", ""), message="--eps"),
    Case("eps-only-zero", lambda c: robustness(c, "--eps", "0"), message="no eps above 0"),
    Case("eps-nan", lambda c: robustness(c, "--eps", "0,nan"), message="--eps nan"),
    Case("eps-negative", lambda c: robustness(c, "--eps", "0,-0.1"), message="non-negative"),
    Case("eps-words", lambda c: robustness(c, "--eps", "abc"), message="comma-separated"),
    Case("pgd-eps-above-one", lambda c: robustness(c, "--pgd-eps", "5"), message="--pgd-eps 5"),
    Case("at-eps-above-one", lambda c: robustness(c, "--min-robust-uar", "0.5", "--at-eps", "3"), message="--at-eps"),
    Case("at-eps-without-its-gate", lambda c: robustness(c, "--at-eps", "0.02"), message="add --min-robust-uar X"),
    Case("harden-eps-above-one", lambda c: ["harden", str(c.model), "--method", "vanilla", "--eps", "3",
                                            "--out", str(c.root / "h.onnx")], message="--eps 3"),
    Case("scenarios-unknown", lambda c: leakage(c, "--scenarios", "worst,s9"), message="--scenarios"),
    Case("attackers-empty", lambda c: leakage(c, "--attackers", ""), message="--attackers"),
    Case("attribute-unknown", lambda c: leakage(c, "--attribute", "age"), message="--attribute"),
    Case("folds-one", lambda c: leakage(c, "--folds", "1"), message="--folds"),
    Case("format-unknown", lambda c: leakage(c, "--format", "json,pdf"), message="--format pdf"),
    Case("format-md-on-stdout", lambda c: leakage(c, "--format", "md", out="-"), message="needs --out DIR"),
    Case("device-unknown", lambda c: leakage(c, "--device", "tpu"), message="--device"),
    Case("device-cuda-without-a-gpu", lambda c: leakage(c, "--device", "cuda"), message="no CUDA device",
         marks=[pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")]),
    Case("executor-unknown", lambda c: leakage(c, "--executor", "slurm"), message="--executor"),
    Case("max-leakage-above-one", lambda c: leakage(c, "--max-leakage", "2"), message="--max-leakage"),
    Case("group-without-command", lambda c: ["cache"], message="missing command"),
    Case("unknown-flag", lambda c: leakage(c, "--no-such-flag"), message="No such option"),
    Case("policy-missing", lambda c: leakage(c, "--policy", str(c.root / "no.toml")), message="no.toml"),
    Case("policy-not-utf8", lambda c: leakage(c, "--policy", policy(c, "p8.toml", b"\xff\xfe[[leakage]]\n")),
         message="not UTF-8"),
    Case("policy-robustness-rules-on-leakage",
         lambda c: leakage(c, "--policy", policy(c, "p9.toml", "[[robustness]]\nat_eps = 0.02\nmin_uar = 0.3\n")),
         message="has [[robustness]] rules, which this command does not measure"),
    Case("policy-robustness-score-on-leakage",
         lambda c: leakage(c, "--policy", policy(c, "p10.toml", "[scores]\nmin_robustness = 50\n")),
         message="[scores] min_robustness needs the robustness study"),
    Case("policy-protection-on-leakage",
         lambda c: leakage(c, "--policy", policy(c, "p11.toml", "[protection]\nmax_uar_drop = 0.05\n")),
         message="only ser-audit protect measures"),
    Case("policy-is-a-folder", lambda c: leakage(c, "--policy", str(c.precious)), message="is a folder"),
    Case("model-weights-for-a-file-that-has-its-own", lambda c: ["layers", str(c.model), "--weights", weights_only(c)],
         message="--weights is for python:module:factory models"),
    Case("model-empty-string", lambda c: ["layers", ""], message="MODEL is empty"),
    Case("corpus-manifest-is-a-folder", lambda c: leakage(c, corpus=str(c.precious)), message="is a folder"),
    Case("out-empty", lambda c: leakage(c, out=""), message="--out is empty"),
    Case("cache-clear-cache-dir-is-a-file", lambda c: ["cache", "clear", "--cache-dir", str(c.precious / "notes.txt")],
         message="is an existing file, not a folder"),
    Case("policy-not-toml", lambda c: leakage(c, "--policy", policy(c, "p1.toml", "[[leakage]\nmax = ")),
         message="p1.toml"),
    Case("policy-unknown-key", lambda c: leakage(c, "--policy", policy(c, "p2.toml", "[[leakage]]\nmax_leakag = 0.5\n")),
         message="p2.toml"),
    Case("policy-threshold-out-of-range", lambda c: leakage(c, "--policy", policy(c, "p3.toml",
                                                                                   "[[leakage]]\nmax_leakage = 7\n")),
         message="p3.toml"),
    # Outputs: checked before any work.
    Case("out-existing-file", lambda c: leakage(c, out=c.precious / "notes.txt"), message="is an existing file"),
    Case("out-read-only-folder", lambda c: leakage(c, out=c.read_only), message="cannot write into"),
    Case("out-json-in-read-only-folder", lambda c: leakage(c, out=c.read_only / "r.json"), message="cannot write into"),
    Case("out-below-a-file", lambda c: leakage(c, out=c.precious / "notes.txt" / "sub"), message="is a file"),
    Case("out-json-is-a-folder", lambda c: leakage(c, out=_folder(c.root / "x.json")), message="is a folder"),
    Case("out-html-beside-is-a-folder", lambda c: leakage(c, "--format", "json,html",
                                                          out=_beside_folder(c.root / "y" / "r.json", "r.html")),
         message="is a folder"),
    Case("cache-dir-is-a-file", lambda c: leakage(c, "--cache-dir", str(c.precious / "notes.txt")),
         message="--cache-dir"),
    Case("cache-dir-read-only", lambda c: leakage(c, "--cache-dir", str(c.read_only / "cache")),
         message="--cache-dir"),
    Case("harden-cache-dir-read-only", lambda c: ["harden", str(c.model), "--method", "vanilla", "--cache-dir",
                                                  str(c.read_only), "--out", str(c.root / "h.onnx")],
         message="--cache-dir"),
    Case("robustness-out-read-only", lambda c: robustness(c, "--out", str(c.read_only)), message="cannot write into"),
    Case("protect-report-read-only", lambda c: ["protect", str(c.model), "--corpus", str(c.manifest), "--layer", "pool1",
                                                "--out", str(c.root / "p.onnx"), "--report", str(c.read_only)],
         message="--report"),
    Case("protect-layer-unknown", lambda c: ["protect", str(c.model), "--corpus", str(c.manifest), "--layer", "nosuch",
                                             "--out", str(c.root / "p.onnx"), "--report", str(c.root / "pr")],
         message="--layer 'nosuch' matches no layer"),
    Case("audit-out-existing-file", lambda c: ["audit", str(c.model), "--corpus", str(c.manifest), "--quick", "--quiet",
                                               "--out", str(c.precious / "notes.txt")], message="is an existing file"),
    Case("harden-out-read-only", lambda c: ["harden", str(c.model), "--method", "vanilla",
                                            "--out", str(c.read_only / "h.onnx")], message="cannot write into"),
    # torch.export cannot capture an onnx2torch conversion: said before any training, not after it.
    Case("harden-out-pt2-of-an-onnx-graph", lambda c: ["harden", str(c.model), "--method", "vanilla", "--corpus",
                                                       str(c.manifest), "--out", str(c.root / "h.pt2")],
         message="torch.export cannot capture the model"),
    Case("harden-out-is-the-model", lambda c: ["harden", str(c.model), "--method", "vanilla", "--corpus",
                                                str(c.manifest), "--out", str(c.model)], message="is the model's own file"),
    Case("protect-out-is-the-model", lambda c: ["protect", str(c.model), "--corpus", str(c.manifest), "--layer", "pool1",
                                                 "--out", str(c.model), "--report", str(c.root / "pr3")],
         message="is the model's own file"),
    Case("zoo-train-out-read-only", lambda c: ["zoo", "train", "cnn4", "--out", str(c.read_only / "m.onnx")],
         message="cannot write into"),
    Case("corpus-synth-out-not-empty", lambda c: ["corpus", "synth", "iemocap-like", "--out", str(c.precious)],
         message="is a folder that is not empty"),
    Case("corpus-synth-out-existing-file", lambda c: ["corpus", "synth", "iemocap-like", "--out",
                                                      str(c.precious / "notes.txt")], message="is an existing file"),
    Case("report-out-read-only", lambda c: ["report", str(c.report), "--format", "md", "--out",
                                            str(c.read_only / "r.md")], message="cannot write into"),
    Case("report-out-is-a-folder", lambda c: ["report", str(c.report), "--format", "md", "--out", str(c.precious)],
         message="is a folder"),
    Case("gate-junit-read-only", lambda c: ["gate", str(c.report), "--policy", policy(c, "ok.toml", _POLICY),
                                            "--junit", str(c.read_only / "g.xml")], message="cannot write into"),
    # Saved reports and gates.
    Case("report-missing", lambda c: ["report", str(c.root / "none.json")], message="does not exist"),
    Case("report-truncated", lambda c: ["report", str(c.file("cut.json", c.report.read_text()[:500]))],
         message="not a ser-audit report"),
    Case("report-future-schema", lambda c: ["report", future_report(c)], message="schema_version"),
    Case("report-binary", lambda c: ["report", str(c.file("bin.json", os.urandom(64) + b"\xff"))],
         message="not a ser-audit report"),
    Case("report-format-unknown", lambda c: ["report", str(c.report), "--format", "pdf"], message="--format"),
    Case("gate-passes", lambda c: ["gate", str(c.report), "--policy", policy(c, "pass.toml", _POLICY)], code=0,
         stdout="pass"),
    Case("gate-fails-exit-1", lambda c: ["gate", str(c.report), "--policy",
                                         policy(c, "fail.toml", "[[leakage]]\nmax_leakage = 0.0\n")], code=1,
         stdout="FAIL"),
    Case("gate-policy-missing", lambda c: ["gate", str(c.report), "--policy", str(c.root / "none.toml")],
         message="none.toml"),
    # Output injection through a saved report: JUnit stays well-formed (checked below).
    Case("junit-hostile-gate-names", lambda c: ["report", hostile_gate_report(c), "--format", "junit",
                                                "--out", str(c.root / "hostile.xml")], code=0),
    Case("md-hostile-gate-names", lambda c: ["report", hostile_gate_report(c), "--format", "md",
                                             "--out", str(c.root / "hostile.md")], code=0),
]

_POLICY = "[[leakage]]\nmax_leakage = 1.0\n"


def _symlink(target: Path, link: Path) -> Path:
    link.symlink_to(target)
    return link


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _beside_folder(report: Path, name: str) -> Path:
    (report.parent / name).mkdir(parents=True)
    return report


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _unwritable_folder(tmp: Path) -> Path:
    """A folder that cannot be written into: a 0555 folder, or (for root, who writes anywhere) /sys."""
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            descriptor, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(descriptor)
        os.unlink(probe)
    pytest.skip("no folder here refuses writes")


@pytest.fixture(scope="module")
def earlier_report(onnx_model: Path, manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ser_audit.cli.main import main

    out = tmp_path_factory.mktemp("earlier")
    assert main(["leakage", str(onnx_model), "--corpus", str(manifest), *FAST_LEAKAGE, "--out", str(out)]) == 0
    return out / "report.json"


@pytest.fixture
def context(onnx_model: Path, manifest: Path, earlier_report: Path, tmp_path: Path) -> Context:
    precious = tmp_path / "precious"
    precious.mkdir()
    shutil.copy(earlier_report, precious / "report.json")
    (precious / "notes.txt").write_text("written before the run\n")
    return Context(tmp_path, onnx_model, manifest, precious, precious / "report.json", _unwritable_folder(tmp_path))


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_bad_input_matrix(case: Case, context: Context, run_cli) -> None:
    args = case.args(context)
    before = _snapshot(context.precious)
    result = run_cli(*args)
    assert result.code == case.code, (args, result.stderr)
    assert "Traceback" not in result.stderr
    assert "\x1b" not in result.stdout + result.stderr, "a terminal escape from the data reached the terminal"
    if case.code == 2:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("ser-audit: error: "), result.stderr
        assert "internal error" not in result.stderr
    assert case.message in result.stderr, result.stderr
    assert case.stdout in result.stdout, result.stdout
    assert _snapshot(context.precious) == before, "a file written before the run changed"
    assert not list(context.root.rglob(".ser-audit-write-test.*")), "a writability probe was left behind"


def test_matrix_size() -> None:
    assert len(CASES) >= 60


def test_short_audio_is_padded_with_a_note(context: Context, run_cli) -> None:
    out = context.root / "short"
    result = run_cli(*leakage(context, corpus=context.manifest_copy("short-corpus", one_sample), out=out))
    assert result.code == 0, result.stderr
    notes = json.loads((out / "report.json").read_text())["notes"]
    assert any("shorter than one analysis window" in note and "zero-padded" in note for note in notes), notes


def test_hostile_gate_names_give_well_formed_junit_and_inert_markdown(context: Context, run_cli) -> None:
    report = hostile_gate_report(context)
    junit, markdown = context.root / "g.xml", context.root / "g.md"
    assert run_cli("report", report, "--format", "junit", "--out", str(junit)).code == 0
    assert run_cli("report", report, "--format", "md", "--out", str(markdown)).code == 0
    case = ElementTree.parse(junit).getroot().find("testcase")
    assert case is not None and "<script>" in case.get("name", "") and "\x01" not in case.get("name", "")
    text = markdown.read_text()
    assert "<script>" not in text and "<b>" not in text and "&lt;script>" in text


def test_bad_input_in_a_fresh_interpreter(context: Context) -> None:
    """A few cases through the installed console script: one line on stderr, no traceback."""
    cases = [
        (["layers", str(context.precious)], "is a folder"),
        (leakage(context, "--seed", "-1"), "--seed"),
        (leakage(context, out=context.precious / "notes.txt"), "is an existing file"),
        (["report", str(context.file("cut.json", "{"))], "not a ser-audit report"),
    ]
    for args, message in cases:
        result = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_pickle_is_never_loaded_without_trust(context: Context, run_cli) -> None:
    """The refused pickle's code does not run: a payload that would write a file leaves none."""
    marker = context.root / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    path = context.root / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump(Payload(), handle)
    data = path.read_bytes()
    import zipfile

    with zipfile.ZipFile(context.root / "evil.zip.pt", "w") as archive:
        archive.writestr("archive/data.pkl", data)
    for candidate in (path, context.root / "evil.zip.pt"):
        result = run_cli("layers", str(candidate))
        assert result.code == 2 and not marker.exists(), result.stderr


@pytest.mark.parametrize("content", [b"garbage\n", b"PK\x03\x04 cut short"])
def test_a_damaged_cached_zoo_model_is_named_with_the_fix(run_cli, tmp_path: Path, content: bytes) -> None:
    """A cached checkpoint cut short or overwritten ended in exit 3 with torch's advice to load it unsafely."""
    from ser_audit.models.zoo import checkpoint_path, get_reference_model

    cache = tmp_path / "cache"
    path = checkpoint_path(cache, get_reference_model("cnn4"), 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    for command in (("layers", "zoo:cnn4"), ("zoo", "list")):
        result = run_cli(*command, "--cache-dir", str(cache))
        assert result.code == 2, (command, result.stderr)
        assert f"the cached zoo:cnn4 checkpoint {path} is unreadable" in result.stderr and "cache clear" in result.stderr
        assert "weights_only set to False" not in result.stderr and "Traceback" not in result.stderr
