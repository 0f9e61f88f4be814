"""Embedding extraction for every tapped layer against a plain forward pass over the same corpus.

Both sides read the audio, compute the front-end and run the model batch by batch; the
extraction also taps the layers, pools them and writes it to a fresh embedding store (the
same work ``ser-audit leakage`` does on a cold cache), once for the layers an audit taps by
default and once for every layer of the model (full-resolution conv/ReLU maps included).
Measured side by side in one run, best of ``--repeats``, for the bundled CNN-4 in eager
torch and as ONNX; the ONNX plain forward runs the graph as shipped, so onnxruntime may fuse
what tapping splits. Target: <= 1.15x.

    python benchmarks/embedding_extraction.py [--repeats 3]
    python benchmarks/embedding_extraction.py --smoke    # a planted CNN on a tiny corpus, seconds (CI)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ser_audit.api import default_cache_dir, load_corpus
from ser_audit.corpus.audio import read_audio
from ser_audit.embeddings.extract import extract
from ser_audit.frontend.features import FrontEnd, fit_length
from ser_audit.models.export import export_model
from ser_audit.models.interface import TargetModel
from ser_audit.models.loading import load_checkpoint, load_model
from ser_audit.models.zoo import load_or_train


def plain_forward(model: TargetModel, corpus, batch_size: int = 32) -> None:
    spec = model.frontend
    frontend = FrontEnd(spec)
    if spec.num_samples is None:  # a variable-length model: one utterance a forward, whole
        batch_size = 1
    for start in range(0, len(corpus), batch_size):
        chunk = corpus.utterances[start : start + batch_size]
        batch = np.stack([fit_length(read_audio(u.path, spec.sample_rate), spec.num_samples, spec.crop) for u in chunk])
        with torch.no_grad():
            features = frontend(torch.from_numpy(batch)).numpy()
        model.forward({spec.input_name: features})


def tapped_extraction(model: TargetModel, corpus, layers) -> None:
    with tempfile.TemporaryDirectory() as folder:
        # A fresh cache folder per repeat keeps every repeat cold.
        extract(model, corpus, layers, cache_dir=Path(folder))


def best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a planted CNN on a tiny corpus, one repeat")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.smoke:
            from ser_audit.testing import tiny_corpus, write_planted_cnn

            cache = Path(scratch) / "cache"
            corpus = tiny_corpus(Path(scratch) / "corpus", per_speaker=2, seed=0)
            spec, weights = write_planted_cnn(Path(scratch), leak=False)
            eager = load_model(spec, weights=weights, cache_dir=cache)
            args.repeats = 1
        else:
            cache = default_cache_dir()
            corpus = load_corpus("synthetic", cache_dir=cache, seed=0)
            eager = load_checkpoint(load_or_train("cnn4", cache_dir=cache))
        compare(eager, corpus, cache, args.repeats)


def compare(eager: TargetModel, corpus, cache: Path, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cnn4.onnx"
        export_model(eager.module, eager.frontend, path)  # type: ignore[attr-defined]
        onnx = load_model(str(path), cache_dir=cache)
        for name, model in (("eager torch", eager), ("onnx", onnx)):
            plain_forward(model, corpus)  # warm-up: file cache, kernels
            plain = best(lambda: plain_forward(model, corpus), repeats)
            for label, layers in (("the default layers", model.select_layers(None)), ("every layer", model.layers())):
                tapped = best(lambda: tapped_extraction(model, corpus, layers), repeats)
                print(f"{name}: {len(corpus)} utterances, plain forward {plain:.2f} s; extraction of {label} "
                      f"({len(layers)}) {tapped:.2f} s, ratio {tapped / plain:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
