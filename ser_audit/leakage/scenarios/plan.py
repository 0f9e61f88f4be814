"""Planning P0's scenarios: which attacker designs run on which tapped layer, as independent jobs.

Attackers trained on the audit corpus (worst, s2) are refitted per fold on the training
speakers and tested on the held-out ones. Attackers trained on the aux corpus (s1, s3,
s4) are fitted once on all of it and tested on every fold's held-out speakers of the
audit corpus. Each job names its inputs rather than carrying them (``references``): its layer's
stored embeddings and the target's sub-network resolve on the worker, and what every job reads
(labels, folds) travels once per run in ``SharedData``, so any executor can run it and a job stays
small whatever the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sklearn.base import clone

from ser_audit.corpus.folds import Fold
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import Embeddings
from ser_audit.leakage.attackers.neural import NeuralAttacker, designs
from ser_audit.leakage.scenarios.references import (
    BodyReference,
    EmbeddingReference,
    Labels,
    ModelOrigin,
    Referrer,
    SharedData,
)
from ser_audit.leakage.scenarios.table import (
    KINDS,
    SAME_ARCHITECTURE_DESIGNS,
    SAME_ARCHITECTURE_FROZEN,
    SCENARIOS,
    TABLE,
    choose_designs,
    recurrent_cell,
    target_family,
)
from ser_audit.models.interface import LayerInfo, TargetModel
from ser_audit.report.model import SkippedAttack


@dataclass(frozen=True)
class AttackSettings:
    """How the scenario attackers are trained.

    Widths scale each family's documented size (``convolutional``, ``recurrent``, ``dense``
    modules); the defaults keep a full default audit of ``zoo:cnn4`` under 15 minutes on
    two CPU cores. ``quick`` keeps one design per scenario and fewer epochs. Every attacker
    trains for up to ``epochs`` and keeps the epoch that did best on held-out training speakers
    (``NeuralAttacker``); the same-architecture one trains for up to ``epochs`` from each
    ``body_candidates`` start and rate, beside a linear readout of the tap, and keeps the one that
    did best there. An epoch reads at most ``rows_per_epoch`` training rows (a fresh sample each
    epoch), so the attackers' cost stops growing with the corpus: ``quick`` bounds it at 512, a full
    audit at 4,096 (both above every fold of the embedded corpora, whose audits they leave as they
    were).
    """

    epochs: int = 8
    learning_rate: float = 1e-3
    # The same-architecture attacker's (start, body learning rate) pairs. P0's 1e-4 for the target's
    # body never won a fold on the demo's layers; 1e-3 from either start did.
    body_candidates: tuple[tuple[str, float], ...] = (("target", 1e-3), ("fresh", 1e-3))
    convolutional_width: float = 0.5
    recurrent_width: float = 0.25
    dense_width: float = 1.0
    quick: bool = False
    device: str = "cpu"
    seed: int = 0
    rows_per_epoch: int | None = None  # None: 512 when quick, else 4,096

    @property
    def epoch_rows(self) -> int:
        return self.rows_per_epoch or (512 if self.quick else 4096)

    def width(self, family: str) -> float:
        return {"convolutional": self.convolutional_width, "recurrent": self.recurrent_width}.get(family, self.dense_width)


@dataclass
class AttackData:
    """A corpus as the attackers see it: its embeddings and labels."""

    corpus: Corpus
    embeddings: Embeddings
    attribute: np.ndarray
    emotion: np.ndarray
    speakers: np.ndarray

    @classmethod
    def of(cls, corpus: Corpus, embeddings: Embeddings, attribute: str) -> "AttackData":
        return cls(corpus, embeddings, np.array(corpus.labels(attribute)), np.array(corpus.labels("emotion")),
                   np.array(corpus.labels("speaker")))


@dataclass
class AttackJob:
    """One attacker design of one kind in one scenario on one layer, small enough to send anywhere.

    It names what it reads: ``audit_inputs`` and ``aux_inputs`` (the layer's stored embeddings in
    the view the design reads) and ``body`` (the target's sub-network, for the same-architecture
    designs, whose ``attacker`` holds none until the worker resolves it). Labels and folds come with
    the run's ``SharedData``.
    """

    layer: LayerInfo
    scenario: str
    kind: str
    design: str
    attacker: NeuralAttacker
    audit_inputs: EmbeddingReference
    aux_inputs: EmbeddingReference | None = None
    body: BodyReference | None = None
    reduction: str | None = None

    @property
    def on_aux(self) -> bool:
        """Trained once on the aux corpus (else refitted per fold on the audit corpus)."""
        return self.aux_inputs is not None


@dataclass
class Plan:
    """The jobs of a run, what every job reads (``shared``), and what cannot run with the reason."""

    jobs: list[AttackJob]
    skipped: list[SkippedAttack]
    family: str
    shared: SharedData
    referrer: Referrer = field(repr=False)


def _nowhere(path: Path) -> bool:
    return False


def has_time_axis(layer: LayerInfo, stored: np.ndarray | None = None) -> bool:
    """Whether the tap keeps at least two time steps: in the stored map, which the memory cap may have shrunk."""
    shape = (1, *stored.shape[1:]) if stored is not None else tuple(layer.shape)
    axis = layer.time_axis
    return axis is not None and axis < len(shape) and shape[axis] >= 2


def _inputs(referrer: Referrer, corpus: str, data: AttackData, layer: LayerInfo, design: str) -> EmbeddingReference:
    """What a design reads: the raw map (same architecture), the map with time last, or a vector."""
    embeddings = data.embeddings
    if design in SAME_ARCHITECTURE_DESIGNS:
        return referrer.embedding(corpus, embeddings, layer.name, "map")
    if designs()[design].input == "pooled":
        if has_time_axis(layer, embeddings.maps[layer.name]):
            return referrer.embedding(corpus, embeddings, layer.name, "pooled")
        return referrer.embedding(corpus, embeddings, layer.name, "map", flatten=True)
    assert layer.time_axis is not None
    return referrer.embedding(corpus, embeddings, layer.name, "map", time_last=layer.time_axis)


def plan_jobs(
    model: TargetModel,
    layers: Sequence[LayerInfo],
    audit: AttackData,
    aux: AttackData | None,
    folds: Sequence[Fold],
    *,
    scenarios: Sequence[str] = SCENARIOS,
    kinds: Sequence[str] = KINDS,
    settings: AttackSettings = AttackSettings(),
    sees: Callable[[Path], bool] = _nowhere,
    origin: ModelOrigin | None = None,
) -> Plan:
    """Every (layer, scenario, design, kind) job, and what cannot run with the reason.

    A job names a stored file or the model where ``sees`` (the executor's) says every worker reads it,
    and ``origin`` says how the model was loaded; else its arrays and sub-network go into the plan's
    ``shared`` data, once.
    """
    from ser_audit.models.subnetwork import Unavailable

    all_layers = model.layers()
    family, cell = target_family(all_layers, model.operators()), recurrent_cell(all_layers)
    shared = SharedData(Labels(audit.attribute, audit.emotion, audit.speakers), list(folds),
                        Labels(aux.attribute, aux.emotion, aux.speakers) if aux is not None else None)
    referrer = Referrer(shared, sees=sees, origin=origin)
    jobs: list[AttackJob] = []
    skipped: list[SkippedAttack] = []

    def skip(layer: LayerInfo, scenario: str, reason: str) -> None:
        # Once per layer, scenario, kind and reason: both same-architecture designs of a scenario meet the same cause.
        for kind in kinds:
            entry = SkippedAttack(layer=layer.name, scenario=scenario, attacker_kind=kind, reason=reason)
            if entry not in skipped:
                skipped.append(entry)

    for layer in layers:
        body = body_reason = body_reference = None
        for scenario in scenarios:
            spec = TABLE[scenario]
            if spec.training_data == "aux" and aux is None:
                skip(layer, scenario, "no aux corpus")
                continue
            if spec.training_data == "aux" and aux is not None and not set(audit.attribute) <= set(aux.attribute):
                missing = ", ".join(sorted(set(audit.attribute) - set(aux.attribute)))
                skip(layer, scenario, f"the aux corpus has no utterance labelled {missing}; an attacker trained on it "
                                      "could never predict that class")
                continue
            temporal = has_time_axis(layer, audit.embeddings.maps.get(layer.name))
            choice = choose_designs(scenario, family, temporal, cell=cell, quick=settings.quick)
            if not choice.designs:
                skip(layer, scenario, choice.reason or "no attacker design applies")
                continue
            for design in choice.designs:
                if design in SAME_ARCHITECTURE_DESIGNS:
                    if body is None and body_reason is None:
                        if tuple(audit.embeddings.maps[layer.name].shape[1:]) != tuple(layer.shape[1:]):
                            body_reason = f"the stored map was reduced ({audit.embeddings.map_reductions[layer.name]})"
                        else:
                            try:
                                body = model.downstream(layer.name)
                            except Unavailable as error:
                                body_reason = str(error)
                    if body is None:
                        skip(layer, scenario, "same-architecture attackers (trained and frozen-body readout) "
                                              f"unavailable: {body_reason}")
                        continue
                    body_reference = body_reference or referrer.body(model, layer.name, body.body)
                    attacker = NeuralAttacker(  # its body comes from ``body_reference`` on the worker
                        design, epochs=settings.epochs, learning_rate=settings.learning_rate,
                        body_description=body.description, body_candidates=settings.body_candidates,
                        freeze_body=design == SAME_ARCHITECTURE_FROZEN,
                        readout_axis="off" if design == SAME_ARCHITECTURE_FROZEN else layer.time_axis,
                        standardise=False, seed=settings.seed, device=settings.device,
                        rows_per_epoch=settings.epoch_rows,
                    )
                else:
                    attacker = NeuralAttacker(
                        design, epochs=settings.epochs, learning_rate=settings.learning_rate,
                        width=settings.width(designs()[design].family), seed=settings.seed, device=settings.device,
                        rows_per_epoch=settings.epoch_rows,
                    )
                audit_inputs = _inputs(referrer, "audit", audit, layer, design)
                aux_inputs = (_inputs(referrer, "aux", aux, layer, design)
                              if spec.training_data == "aux" and aux is not None else None)
                for kind in kinds:
                    jobs.append(AttackJob(
                        layer=layer, scenario=scenario, kind=kind, design=design,
                        attacker=clone(attacker).set_params(aware=kind == "aware"), audit_inputs=audit_inputs,
                        aux_inputs=aux_inputs, body=body_reference if design in SAME_ARCHITECTURE_DESIGNS else None,
                        reduction=audit.embeddings.map_reductions.get(layer.name),
                    ))
    return Plan(jobs, skipped, family, shared, referrer)
