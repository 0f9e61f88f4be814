"""P4's neutral-sample ablation: leakage and UAR of a two-input model under several references.

P4 conditions its eResNet on one neutral utterance of the speaker and asks how much the choice
matters. Here the audit repeats the linear probe on every selected layer, and the emotion UAR,
with each of ``choices`` fixed references per speaker (``models.sampling``: candidate 0, 1, ...
of the speaker's other neutral utterances) and reports each figure's mean and standard deviation
over the choices. A layer that only sees the reference (the speaker embedding) changes with it;
one that ignores it does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ser_audit.corpus.folds import Fold
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import extract
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.probe import cross_validate
from ser_audit.models.interface import LayerInfo, TargetModel
from ser_audit.models.sampling import describe_choice
from ser_audit.models.training import unweighted_average_recall
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import AblationRow, ReferenceAblation

DEFAULT_CHOICES = 5


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``truth``."""
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def uar_rows(model: TargetModel, corpus: Corpus) -> tuple[np.ndarray, str]:
    """Utterances the UAR is read on: a reference model's held-out session of its training corpus, else
    every utterance with one of the model's emotions (as the robustness probes choose)."""
    training = model.training or {}
    held_out = training.get("held_out_session") if training.get("training_corpus") == corpus.name else None
    rows = np.array([i for i, u in enumerate(corpus)
                     if u.emotion in model.frontend.emotions and (held_out is None or u.session == held_out)])
    return rows, f"held-out session {held_out} of {corpus.name}" if held_out else f"all of {corpus.name}"


def reference_ablation(
    model: TargetModel,
    corpus: Corpus,
    layers: Sequence[LayerInfo],
    folds: Sequence[Fold],
    *,
    attribute: str = "gender",
    choices: int = DEFAULT_CHOICES,
    cache_dir: Path | None = None,
    device: str = "cpu",
    observer: ProgressObserver = NULL_OBSERVER,
) -> ReferenceAblation:
    """The linear probe's leakage on each layer, and the UAR, with each of ``choices`` references (extracted on
    ``device``, resolved).

    The probe and folds are the audit's own, so choice 0 reproduces its probe rows.
    """
    labels = np.array(corpus.labels(attribute))
    rows, description = uar_rows(model, corpus)
    truth = np.array([model.frontend.emotions.index(corpus.utterances[i].emotion) for i in rows])
    leakage: dict[str, list[float]] = {layer.name: [] for layer in layers}
    uars = []
    for choice in range(choices):
        observer.note(f"neutral-sample ablation: reference choice {choice + 1} of {choices}")
        embeddings = extract(model, corpus, layers, cache_dir=cache_dir, reference_choice=choice, device=device,
                             observer=observer)
        predicted = embeddings.logits[rows].argmax(1)
        uars.append(unweighted_average_recall(truth, predicted, len(model.frontend.emotions)))
        for layer in layers:
            outcome = cross_validate(LinearProbe(), embeddings.layers[layer.name], labels, folds)
            leakage[layer.name].append(balanced_accuracy(np.concatenate(outcome.truths),
                                                         np.concatenate(outcome.predictions)))
    return ReferenceAblation(
        choices=[describe_choice(k) for k in range(choices)],
        attribute=attribute,
        uar_set=description,
        uar=uars,
        uar_mean=float(np.mean(uars)),
        uar_std=float(np.std(uars, ddof=1)) if choices > 1 else 0.0,
        layers=[AblationRow(layer=name, leakage=values, mean=float(np.mean(values)),
                            std=float(np.std(values, ddof=1)) if choices > 1 else 0.0)
                for name, values in leakage.items()],
    )
