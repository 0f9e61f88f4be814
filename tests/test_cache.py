"""The embedding cache survives faults and concurrent runs (issue #18).

A truncated and a bit-flipped cached array are each detected by their recorded length and
sha256, computed again with a note in the report, and the numbers equal a clean run's; two
audits started at once on one cache both finish with identical leakage sections; ``cache
info | verify | clear`` show and manage what is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from isolation import BLOCK_TORCH

from ser_audit.embeddings.store import EmbeddingStore, StoredLayer

BIN = Path(sys.executable).with_name("ser-audit")
FAST = ["--layers", "pool4", "--scenarios", "s2", "--attackers", "generic", "--quick", "--quiet"]


def _leakage(run_cli, model: Path, manifest: Path, cache: Path, out: Path) -> dict:
    result = run_cli("leakage", str(model), "--corpus", str(manifest), *FAST, "--cache-dir", str(cache),
                     "--out", str(out))
    assert result.code == 0, result.stderr
    return json.loads(out.read_text())


def _entry(cache: Path) -> Path:
    """The model's entry (the input-level LLDs have their own, with no maps)."""
    (folder,) = [entry for entry in (cache / "embeddings").iterdir() if list(entry.glob("*.map.f16.npy"))]
    return folder


def test_a_store_entry_checks_length_and_hash(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    writer = store.writer("a.npy", (4, 3), np.float32)
    writer.append(np.arange(12, dtype=np.float32).reshape(4, 3))
    writer.finish()
    store.commit({"a": StoredLayer(pooled="a.npy")}, None)
    assert EmbeddingStore(tmp_path).layer("a") is not None
    assert np.array_equal(EmbeddingStore(tmp_path).read("a.npy"), np.arange(12).reshape(4, 3))
    data = bytearray((tmp_path / "a.npy").read_bytes())
    data[-5] ^= 0x01
    (tmp_path / "a.npy").write_bytes(bytes(data))
    flipped = EmbeddingStore(tmp_path)
    assert flipped.layer("a") is None and "sha256 differs" in flipped.repairs[0]
    (tmp_path / "a.npy").write_bytes(bytes(data[:100]))
    truncated = EmbeddingStore(tmp_path)
    assert truncated.layer("a") is None and "100 bytes where" in truncated.repairs[0]
    (tmp_path / "a.npy").unlink()
    assert EmbeddingStore(tmp_path).layer("a") is None
    assert not list(tmp_path.glob("*.partial")), "a writer left its temporary file"


def _commit_layers(folder: str, worker: int, count: int) -> None:
    store = EmbeddingStore(Path(folder))
    for i in range(count):
        name = f"w{worker}-layer{i}"
        file_name = store.file_names(name)[0]
        writer = store.writer(file_name, (8, 4), np.float32)
        writer.append(np.full((8, 4), worker * 1000 + i, dtype=np.float32))
        writer.finish()
        store.commit({name: StoredLayer(pooled=file_name)}, None)


def test_concurrent_commits_keep_every_layer(tmp_path: Path) -> None:
    """Four processes commit 25 layers each into one entry at once: the index ends with all 100, each checked."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_commit_layers, args=(str(tmp_path), w, 25)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    store = EmbeddingStore(tmp_path)
    assert len(store.index()["layers"]) == 100
    for w in range(4):
        for i in range(25):
            stored = store.layer(f"w{w}-layer{i}")
            assert stored is not None and store.read(stored.pooled)[0, 0] == w * 1000 + i
    assert not store.repairs and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "index"])
def test_a_damaged_entry_is_recomputed_with_the_same_numbers(damage: str, run_cli, onnx_model: Path, manifest: Path,
                                                              tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    clean = _leakage(run_cli, onnx_model, manifest, cache, tmp_path / "clean.json")
    folder = _entry(cache)
    victim = next(folder.glob("*.map.f16.npy")) if damage != "index" else folder / "index.json"
    data = victim.read_bytes()
    if damage == "index":
        victim.write_bytes(data[: len(data) // 3])
    elif damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    else:
        flipped = bytearray(data)
        flipped[len(data) * 3 // 4] ^= 0x40
        victim.write_bytes(bytes(flipped))
    verify = run_cli("cache", "verify", "--cache-dir", str(cache), "--json")
    assert verify.code == 1 and victim.name in verify.stdout
    again = _leakage(run_cli, onnx_model, manifest, cache, tmp_path / "again.json")
    assert again["leakage"] == clean["leakage"]
    expected = {"truncate": "truncated", "flip": "sha256 differs", "index": "unreadable"}[damage]
    assert any(victim.name in note and expected in note and "computed again" in note for note in again["notes"])
    assert run_cli("cache", "verify", "--cache-dir", str(cache)).code == 0
    third = _leakage(run_cli, onnx_model, manifest, cache, tmp_path / "third.json")
    assert not any("computed again" in note for note in third["notes"])  # repaired for good


def test_two_concurrent_audits_share_a_cache(onnx_model: Path, manifest: Path, tmp_path: Path) -> None:
    """Both runs start on an empty cache at once, both extract and commit, both exit 0 with the same leakage."""
    cache = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = [subprocess.Popen([str(BIN), "leakage", str(onnx_model), "--corpus", str(manifest), *FAST,
                              "--layers", "pool1,pool4,fc_relu", "--cache-dir", str(cache),
                              "--out", str(tmp_path / f"run{i}.json")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    first, second = (json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(2))
    assert first["leakage"] == second["leakage"]
    assert len(first["leakage"]["results"]) > 0
    result = subprocess.run([str(BIN), "cache", "verify", "--cache-dir", str(cache)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(cache.rglob("*.partial"))


@pytest.mark.slow
def test_two_concurrent_audits_synthesise_and_share_a_fresh_cache(onnx_model: Path, tmp_path: Path) -> None:
    """The default corpora too: both runs synthesise the audit and aux corpora into one empty cache at once."""
    cache = tmp_path / "fresh"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = [subprocess.Popen([str(BIN), "leakage", str(onnx_model), "--corpus", "synthetic", "--layers", "pool4",
                              "--scenarios", "s1", "--attackers", "generic", "--quick", "--quiet", "--cache-dir",
                              str(cache), "--out", str(tmp_path / f"run{i}.json")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
    first, second = (json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(2))
    assert first["leakage"] == second["leakage"] and first["corpus"] == second["corpus"]


def test_cache_info_and_clear(run_cli, onnx_model: Path, manifest: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _leakage(run_cli, onnx_model, manifest, cache, tmp_path / "r.json")
    (cache / "zoo").mkdir()
    (cache / "zoo" / "model.ckpt").write_bytes(b"x" * 1000)
    info = json.loads(run_cli("cache", "info", "--cache-dir", str(cache), "--json").stdout)
    # The model's layers, and the audio's own descriptors (the input reference), each an entry.
    entry, lld = sorted(info["embeddings"], key=lambda item: item["model"] != str(onnx_model))
    assert entry["model"] == str(onnx_model) and entry["corpus"] == "manifest" and entry["layers"] == 1
    assert lld["model"] == "input:lld" and lld["corpus"] == "manifest" and lld["layers"] == 1
    assert entry["bytes"] > 0 and info["other"] == {"zoo": 1000}
    assert info["by_model"] == {str(onnx_model): entry["bytes"], "input:lld": lld["bytes"]}
    assert info["by_corpus"] == {"manifest": entry["bytes"] + lld["bytes"]}
    # Like report and gate, the cache commands run where torch cannot be imported.
    blocked = subprocess.run([sys.executable, "-c", BLOCK_TORCH + "from ser_audit.cli.main import main; "
                              f"sys.exit(main(['cache', 'verify', '--cache-dir', {str(cache)!r}]))"],
                             capture_output=True, text=True, timeout=120)
    assert blocked.returncode == 0, blocked.stderr
    assert run_cli("cache", "info", "--cache-dir", str(cache)).code == 0
    cleared = run_cli("cache", "clear", "--cache-dir", str(cache))
    assert cleared.code == 0 and not (cache / "embeddings").exists() and (cache / "zoo").exists()
    (cache / "notes.txt").write_text("the user's, not the cache's")
    assert run_cli("cache", "clear", "--all", "--cache-dir", str(cache)).code == 0
    assert [p.name for p in cache.iterdir()] == ["notes.txt"]
    assert json.loads(run_cli("cache", "info", "--cache-dir", str(cache), "--json").stdout)["embeddings"] == []
