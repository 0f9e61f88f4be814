"""Would training the folds' attackers together pay (issue #25, build item 2)? One Adam step of F
same-architecture attackers, one after another against stacked into one call with ``torch.func``.

The attacker is the one the quick demo spends most of its time on: ``zoo:cnn4``'s sub-network after
pool3 (conv 64->128 5x5, max pools, a 128-unit dense layer), the batch norm the attacker puts before
its head, and a two-class head; F = 5 folds of 32 rows each. The stacked step runs every fold's
forward and backward through ``torch.func.vmap`` over the stacked weights (a grouped convolution),
so a device receives one launch where it received F. Both ways compute the same gradients: the
largest difference between them, relative to the largest gradient, is printed beside the times
(Adam's first step is a sign step, so its weights would turn float noise into lr-sized differences).

    OMP_NUM_THREADS=1 python benchmarks/batched_attackers.py          # cpu, and cuda when present
    python benchmarks/batched_attackers.py --smoke                   # tiny sizes, seconds (CI)
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


def attacker(channels: int, width: int) -> nn.Module:
    """The pool3 same-architecture attacker of zoo:cnn4 (channels 64, width 128 there)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(width, width), nn.ReLU(), nn.BatchNorm1d(width, affine=False), nn.Linear(width, 2),
    )


def timed(step: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Seconds per call of ``step``, after one untimed warm-up call."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeats


def compare(device: torch.device, folds: int, rows: int, shape: tuple[int, int, int], width: int,
            repeats: int) -> tuple[float, float, float]:
    """Seconds per step one after another and stacked, and the largest gradient difference (relative) after one step."""
    torch.manual_seed(0)
    models = [attacker(shape[0], width).to(device) for _ in range(folds)]
    inputs = torch.randn(folds, rows, *shape, device=device)
    labels = torch.randint(0, 2, (folds, rows), device=device)

    def one_after_another(ms: list[nn.Module], optimisers: list[torch.optim.Optimizer]) -> Callable[[], None]:
        def step() -> None:
            for model, optimiser, x, y in zip(ms, optimisers, inputs, labels):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimiser.step()
        return step

    base = copy.deepcopy(models[0]).to("meta")

    def loss(parameters: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(base, (parameters, buffers), (x,)), y)

    def stacked(parameters: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                optimiser: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            optimiser.zero_grad()
            # The folds' losses are independent, so the gradient of their sum is each fold's own gradient.
            vmap(loss)(parameters, buffers, inputs, labels).sum().backward()
            optimiser.step()
        return step

    # Equality first: each fold's gradients both ways, from the same weights.
    expected = []
    for model, x, y in zip(models, inputs, labels):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        expected.append({name: value.grad.detach().clone() for name, value in model.named_parameters()
                         if value.grad is not None})
    parameters, buffers = stack_module_state([copy.deepcopy(model) for model in models])
    parameters = {name: value.detach().requires_grad_() for name, value in parameters.items()}
    vmap(loss)(parameters, buffers, inputs, labels).sum().backward()
    scale = max(float(grads[name].abs().max()) for grads in expected for name in grads)
    difference = max(float((parameters[name].grad[i] - grads[name]).abs().max())
                     for i, grads in enumerate(expected) for name in grads) / scale

    sequential = timed(one_after_another(models, [torch.optim.Adam(m.parameters(), 1e-3) for m in models]),
                       repeats, device)
    parameters, buffers = stack_module_state(models)
    parameters = {name: value.detach().requires_grad_() for name, value in parameters.items()}
    together = timed(stacked(parameters, buffers, torch.optim.Adam(parameters.values(), 1e-3)), repeats, device)
    return sequential, together, difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    arguments = parser.parse_args()
    if arguments.smoke:
        folds, rows, shape, width, repeats = 2, 4, (4, 4, 6), 8, 2
    else:
        folds, rows, shape, width, repeats = arguments.folds, 32, (64, 8, 23), 128, arguments.repeats
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"one Adam step of {folds} same-architecture attackers ({rows} rows each, maps {shape}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} cpu thread(s)\n")
    print("| device | one after another | stacked (torch.func.vmap) | stacked / one after another | "
          "largest gradient difference (relative) |\n|---|---|---|---|---|")
    for device in devices:
        sequential, together, difference = compare(device, folds, rows, shape, width, repeats)
        print(f"| {device.type} | {sequential * 1e3:.1f} ms | {together * 1e3:.1f} ms | {together / sequential:.2f} | "
              f"{difference:.1e} |")
    print("\nstacked attackers pay where the ratio is under 1")


if __name__ == "__main__":
    main()
