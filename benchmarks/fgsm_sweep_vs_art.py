"""Six-eps FGSM sweep: ser-audit (one gradient, reused) against ART's FastGradientMethod called once per eps.

Same model (the bundled CNN-4, trained on first use), same inputs (its held-out session's
log-mel features), same eps grid (P2's), measured side by side in one run, the two sides
alternating within each repeat. Each side takes its gradients in batches of 32 utterances, as it
runs: the robustness audit sweeps its evaluation set's batches (``robustness.evaluate.BATCH``),
ART its ``batch_size`` (32 by default). The ratio is ART's time over ours, best of ``--repeats`` on each
side (the least disturbed run, as ``timeit`` advises on a shared machine); the median ratio is
printed beside it. Target: >= 6x (ART takes one gradient per eps, we take one per grid).

    python benchmarks/fgsm_sweep_vs_art.py [--repeats 5]
    python benchmarks/fgsm_sweep_vs_art.py --smoke     # an untrained tiny CNN on random features, seconds (CI)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from art.attacks.evasion import FastGradientMethod
from art.estimators.classification import PyTorchClassifier

from ser_audit.api import default_cache_dir, load_corpus
from ser_audit.models.loading import load_checkpoint
from ser_audit.models.zoo import load_or_train
from ser_audit.robustness.evaluate import evaluation_set
from ser_audit.robustness.fgsm import FGSM, P2_EPS_GRID
from ser_audit.testing.topologies import TinyCNN

TARGET = 6.0


Batches = list[tuple[torch.Tensor, torch.Tensor]]


def cnn4_inputs() -> tuple[torch.nn.Module, Batches, int]:
    """The bundled CNN-4 and its held-out session's log-mel features and labels, in the audit's batches."""
    cache = default_cache_dir()
    model = load_checkpoint(load_or_train("cnn4", cache_dir=cache))
    data = evaluation_set(model, load_corpus("synthetic", cache_dir=cache, seed=0))
    batches = [(features, torch.from_numpy(data.labels[rows])) for features, rows in zip(data.features, data.batches)]
    return model.module.eval(), batches, len(data.emotions)


def smoke_inputs() -> tuple[torch.nn.Module, Batches, int]:
    torch.manual_seed(0)
    inputs, labels = torch.randn(16, 32, 50), torch.randint(0, 4, (16,))
    return TinyCNN().eval(), [(inputs[:8], labels[:8]), (inputs[8:], labels[8:])], 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a tiny untrained CNN on random features, one repeat")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    module, batches, n_classes = smoke_inputs() if args.smoke else cnn4_inputs()
    repeats = 1 if args.smoke else args.repeats
    inputs, labels = torch.cat([features for features, _ in batches]), torch.cat([truth for _, truth in batches])
    grid = [eps * float(inputs.std()) for eps in P2_EPS_GRID]
    batch_size = len(batches[0][0])
    # ART cuts the concatenated inputs into batch_size rows: the same batches only if ours are all full but the last.
    assert all(len(features) == batch_size for features, _ in batches[:-1])
    classifier = PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(inputs.shape[1:]),
                                   nb_classes=n_classes)
    x, y = inputs.numpy(), np.eye(n_classes)[labels.numpy()]

    def ours() -> list[torch.Tensor]:
        swept = [FGSM().sweep(module, features, truth, grid) for features, truth in batches]
        return [torch.cat([per_batch[k] for per_batch in swept]) for k in range(len(grid))]

    def art() -> list[np.ndarray]:
        return [FastGradientMethod(classifier, eps=eps, eps_step=max(eps, 1e-12), norm=np.inf,
                                   batch_size=batch_size).generate(x, y=y)
                for eps in grid]

    ours_first, art_first = ours(), art()  # warm-up, and a check that both agree
    worst = max(float(np.abs(a.numpy() - b).max()) for a, b in zip(ours_first, art_first))
    timings: dict[str, list[float]] = {"ser-audit": [], "ART": []}
    for _ in range(repeats):
        for name, run in (("ser-audit", ours), ("ART", art)):
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    ours_best, art_best = min(timings["ser-audit"]), min(timings["ART"])
    ours_median, art_median = np.median(timings["ser-audit"]), np.median(timings["ART"])
    ratio = art_best / ours_best
    print(f"inputs {tuple(inputs.shape)} in batches of {batch_size}, eps grid {P2_EPS_GRID} (relative), {repeats} repeats, "
          f"{torch.get_num_threads()} threads; max |ours - ART| = {worst:.2e}")
    print(f"ser-audit sweep: best {ours_best * 1000:.1f} ms (median {ours_median * 1000:.1f})  "
          f"ART per-eps: best {art_best * 1000:.1f} ms (median {art_median * 1000:.1f})")
    print(f"ratio {ratio:.2f}x best of {repeats} (median {art_median / ours_median:.2f}x); target >= {TARGET:g}x: "
          f"{'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
