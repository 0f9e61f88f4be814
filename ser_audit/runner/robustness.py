"""P2's probes on one model: FGSM over an eps grid (one gradient per batch) and PGD at one eps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ser_audit.config import AuditConfig, ModelSource
from ser_audit.errors import ModelError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import Report, Robustness
from ser_audit.report.scoring import score
from ser_audit.runner import sources
from ser_audit.runner.provenance import new_report, now

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel
    from ser_audit.robustness.evaluate import ProbeSettings


def probe_settings(config: AuditConfig) -> "ProbeSettings":
    """The probes' settings, checked (a bad grid or --probe fails here, before any work)."""
    from ser_audit.robustness.evaluate import ProbeSettings
    from ser_audit.robustness.interface import probe_class

    for name in config.probes.extra_probes:
        probe_class(name)
    return ProbeSettings(**config.probes.model_dump(exclude={"gradient"}), seed=config.seed)


def run_robustness(config: AuditConfig, *, model_source: ModelSource | None = None, command: Sequence[str] = (),
                   observer: ProgressObserver = NULL_OBSERVER, loader: sources.Loader | None = None) -> Report:
    """The probes on ``model_source`` (default ``config.model``), on the emotion predictions, on ``config.device``.

    Without a differentiable torch path, ``gradient="auto"`` falls back to an SPSA estimate: the
    rows say black-box, PGD is skipped, and the score is marked an upper bound; the model's own
    forward passes then run where its format can (``TargetModel.place``).
    """
    from ser_audit.devices import resolve_device
    from ser_audit.frontend.features import FrontEnd
    from ser_audit.robustness.evaluate import evaluation_set, probe_model, robustness_score
    from ser_audit.runner.preflight import audio_notes

    created = now()
    device = resolve_device(config.device)  # a missing GPU fails before any work
    settings = probe_settings(config)
    loader = loader or sources.Loader(config, observer)
    corpus = loader.corpus(config.corpus)
    source = model_source or config.model
    model = loader.model(source)
    notes = audio_notes(model, corpus)
    module, fallback = attackable(model, config.probes.gradient)
    data = evaluation_set(model, corpus, observer)
    black_box = fallback is not None
    # White-box: the torch path runs on the device. Black-box: the model's forward passes do, and the
    # estimate's tensors stay beside the numpy they come from.
    with model.placed(device if black_box else "cpu") as placement:
        rows, spread = probe_model(module, data, settings, FrontEnd(model.frontend), black_box=black_box,
                                   device="cpu" if black_box else device, observer=observer)
    if placement.note:
        notes.append(placement.note)
    report = new_report(config, model, corpus, created=created, command=command, source=source)
    chance = 1 / max(1, len(np.unique(data.labels)))
    clean = [row.uar for row in rows if row.method == "fgsm" and row.eps == 0.0]
    if clean and clean[0] <= chance + 1e-9:
        notes.append(f"the model's clean UAR {clean[0]:.3f} is at chance ({chance:.3f}) on {data.description}: it "
                     "recognises no emotion there, so it has no robustness to measure and gets no robustness score")
    report.robustness = Robustness(evaluation_set=data.description, input_spread=spread, results=rows,
                                   score=robustness_score(rows, chance=chance), gradient_fallback=fallback,
                                   perturbed_input=settings.perturb, reference=data.reference)
    report.notes += notes
    if data.reference is not None:
        report.notes.append(
            "robustness attacked the reference input (a poisoned enrolment: the neutral utterance perturbed, the "
            "utterance itself clean)" if settings.perturb == "reference" else
            "robustness attacked the primary input (the utterance); the neutral reference was fed clean; "
            "--perturb reference attacks the reference instead")
    if fallback is not None:
        report.notes.append(f"{fallback}; FGSM used an SPSA gradient estimate (black-box), PGD was skipped, and the "
                            "robustness score is an upper bound: a white-box attack may do better")
    score(report)
    report.finished = now()
    return report


def _check_gradient(model: "TargetModel", module: Any) -> None:
    """A torch path whose logits do not depend on the input through autograd (an argmax, a detach, a numpy
    step inside) has no gradient to attack with: say so, as for a model with no torch path.

    Raises:
        ModelError: naming what is missing.
    """
    import torch

    example = model.example_inputs(batch=2)
    fed = [torch.as_tensor(example[name]) for name in model.fed_names]
    fed[0] = fed[0].float().requires_grad_(True)
    module.eval()
    try:
        logits = module(*fed)
        # The input's own gradient: weights after a detach still give the logits a grad_fn.
        reached = isinstance(logits, torch.Tensor) and logits.requires_grad and torch.autograd.grad(
            logits.sum(), fed[0], allow_unused=True)[0] is not None
    except Exception as error:  # the user's module, on the example its spec makes
        raise ModelError(f"model {model.path or 'in memory'}: its torch path fails on an example "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''})") from None
    if not reached:
        raise ModelError(f"model {model.path or 'in memory'}: its logits carry no gradient back to its input "
                         "(an argmax, a detach or a step outside torch on the way)")


def attackable(model: "TargetModel", gradient: str) -> tuple[Any, str | None]:
    """The module the probes differentiate, or a forward-only wrapper and why no gradient exists."""
    from ser_audit.models.differentiable import torch_module
    from ser_audit.robustness.spsa import ForwardOnly

    try:
        module = torch_module(model)
        _check_gradient(model, module)
        return module, None
    except ModelError as error:
        if gradient == "white-box":
            raise
        names = model.fed_names  # forward makes the auxiliary inputs

        def logits(primary: Any, *extra: Any) -> Any:
            return model.forward({names[0]: primary, **dict(zip(names[1:], extra))}).logits

        return ForwardOnly(logits), str(error)
