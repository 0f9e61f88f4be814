"""``ser-audit protect``: remove an attribute from one layer, then judge the copy with attackers trained afterwards.

The loop (VoicePrivacy's attacker knowledge levels on a model's layers):

1. The unprotected model is audited as ``ser-audit leakage`` would (informed, before).
2. For each strength, the defense makes a protected copy from the protection corpus (``--aux-corpus``:
   other speakers than the audit's, so every audit speaker is held out from the protection), and the
   copy is audited at LAYER with fresh attackers of every scenario (informed) and scored for emotion
   on the audit speakers (utility).
3. The chosen strength is the one with the least informed leakage at LAYER whose UAR drop stays
   within ``max_uar_drop``. It is written to ``--out``, and that file is audited as ``ser-audit leakage
   FILE`` would, at every tapped layer (informed, after). The unprotected model's linear probes,
   applied to the file's layers, are the ignorant attackers.

The defense's own adversary is reported as a contrast only. The protected layer's verdict is the
informed audit's: ``private`` only when certified.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ser_audit.config import AuditConfig, ModelSource
from ser_audit.errors import ConfigError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import (
    Gate,
    IgnorantAttack,
    LayerVerdict,
    Protection,
    ProtectionPoint,
    Report,
    Utility,
)
from ser_audit.runner import sources
from ser_audit.runner.leakage import run_leakage
from ser_audit.runner.provenance import corpus_info, model_info, now

if TYPE_CHECKING:
    from torch import nn

    from ser_audit.corpus.interface import Corpus
    from ser_audit.defenses import Protected, ProtectionData
    from ser_audit.models.interface import LayerInfo, TargetModel

BOOTSTRAP = 999
GUARANTEES = (
    "Judged only by attackers trained after protection (informed) and by the unprotected model's attackers "
    "(ignorant), on audit speakers the protection never saw. `private` is claimed only when the informed "
    "audit certifies it; it holds for the attackers this audit trains, at this corpus's size, and says nothing "
    "about attackers with other data or designs. Layers before LAYER are untouched by projection, and may "
    "still carry the attribute: a split deployment must cut at LAYER or later.")


@dataclass(frozen=True)
class ProtectSettings:
    layer: str
    out: Path
    method: str = "projection"
    strengths: tuple[float, ...] | None = None
    max_uar_drop: float = 0.05

    def check(self) -> None:
        if not 0 <= self.max_uar_drop <= 1:
            raise ConfigError(f"--max-uar-drop must be between 0 and 1 (got {self.max_uar_drop})")
        if self.strengths is not None and (not self.strengths or any(not s >= 0 for s in self.strengths)):
            raise ConfigError("--strength takes a comma-separated list of non-negative numbers, e.g. 0.5,1,2")
        if self.out.suffix.lower() not in (".onnx", ".pt", ".pt2"):
            raise ConfigError(f"--out {self.out}: write the protected model as .onnx, .pt (TorchScript) or .pt2")


def run_protect(config: AuditConfig, settings: ProtectSettings, *, command: Sequence[str] = (),
                observer: ProgressObserver = NULL_OBSERVER) -> Report:
    """Protect ``settings.layer`` of ``config.model``, write the chosen copy to ``settings.out``, and report."""
    from ser_audit.defenses import AttributeRemoval, defense
    from ser_audit.defenses.tap import submodule
    from ser_audit.devices import resolve_device
    from ser_audit.models.batch_of_one import refuse_training
    from ser_audit.models.differentiable import torch_module
    from ser_audit.models.export import check_exportable

    settings.check()
    sources.check_not_an_input(config.model, settings.out)
    method = defense(settings.method, purpose="attribute")
    assert isinstance(method, AttributeRemoval)
    strengths = settings.strengths or method.default_strengths
    if config.aux_corpus is None:
        raise ConfigError("protect trains on the aux corpus (other speakers than the audit's); give --aux-corpus")
    created = now()
    loader = sources.Loader(config, observer)
    model = loader.model(config.model)
    layer = _the_layer(model, settings.layer)
    refuse_training(model, "protect")
    module = torch_module(model)
    submodule(module, layer.name)  # a layer protect cannot reach fails before any work
    check_exportable(module, model.frontend, settings.out)  # and so does an --out it cannot write
    protection_corpus = loader.corpus(config.aux_corpus, flag="--aux-corpus")
    audit_corpus = loader.corpus(config.corpus)
    sources.check_aux_is_other_data(audit_corpus, protection_corpus)
    data = protection_data(model, protection_corpus, layer, config.attribute, seed=config.seed, observer=observer)
    device = resolve_device(config.device)

    # Every audit of the loop taps LAYER beside its own choice of layers, whatever operator ends it.
    model.frontend = model.frontend.model_copy(update={"audit_taps": [*model.frontend.audit_taps, layer.name]})
    before = run_leakage(config, command=command, observer=observer, loader=loader)
    utility_before = utility(module, model, audit_corpus, seed=config.seed)
    at_layer = config.model_copy(update={"layers": layer.name})
    points: list[ProtectionPoint] = []
    copies: list[Protected] = []
    for strength in strengths:
        protected = method.protect(copy.deepcopy(module), layer.name, data, strength, quick=config.quick,
                                   seed=config.seed, device=device, observer=observer)
        target = _in_memory(protected.module, model)
        source = ModelSource(f"protected:{settings.method}:{strength:g}")
        loader.provide(source, target)  # the copy is audited exactly as a loaded model is
        informed = run_leakage(at_layer.model_copy(update={"model": source}), observer=observer, loader=loader)
        kept = utility(protected.module, model, audit_corpus, seed=config.seed)
        points.append(ProtectionPoint(
            strength=strength, description=protected.description, informed=_layer_verdict(informed, layer.name),
            utility=kept, uar_drop=utility_before.uar - kept.uar,
            within_budget=utility_before.uar - kept.uar <= settings.max_uar_drop, own_adversary=protected.own_adversary))
        copies.append(protected)
    chosen = _choose(points)
    protection = Protection(
        method=settings.method, layer=layer.name, attribute=config.attribute,
        trained_on=corpus_info(protection_corpus, seed=config.seed), data=data.description,
        strengths=list(strengths), max_uar_drop=settings.max_uar_drop, tradeoff=points,
        chosen_strength=None if chosen is None else points[chosen].strength, original_model=before.model,
        utility_before=utility_before, before=_layers(before), guarantees=GUARANTEES,
        verdict="inconclusive", statement="")
    if chosen is None:
        protection.statement = (f"no strength kept the emotion UAR within {settings.max_uar_drop:.3f} of "
                                f"{utility_before.uar:.3f}; nothing was written. Try smaller strengths, or allow a "
                                "larger --max-uar-drop.")
        report = before
        report.protection = protection
        report.gates = [_budget_gate(settings, protection)]
        report.finished = now()
        return report
    from ser_audit.models.export import export_model

    written = settings.out
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.out.parent) as scratch:
        staged = Path(scratch) / settings.out.name
        spec = model.frontend.model_copy(update={"audit_taps": [v.layer for v in protection.before]})
        export_model(copies[chosen].module, spec, staged)
        staged.replace(written)  # never a half-written model under the user's name
    artifact = config.model_copy(update={"model": ModelSource(str(written), frontend=config.model.frontend)})
    after_loader = sources.Loader(artifact, observer)
    after = run_leakage(artifact, command=command, observer=observer, loader=after_loader)
    written_model = after_loader.model(artifact.model)
    protection.after = _layers(after)
    protection.utility_after = points[chosen].utility
    protection.ignorant = ignorant_attacks(before_model=model, after_model=written_model, corpus=audit_corpus,
                                           layers=[v.layer for v in protection.after], config=config)
    verdict = next(v for v in protection.after if v.layer == layer.name)
    protection.verdict = verdict.verdict
    protection.protected_model = model_info(artifact.model, written_model)
    protection.statement = _statement(protection, verdict, points[chosen])
    after.protection = protection
    after.gates = [_budget_gate(settings, protection)]
    after.created, after.finished = created, now()
    return after


def _budget_gate(settings: ProtectSettings, protection: Protection) -> Gate:
    """Exit 1 when no strength kept emotion within the budget (nothing was written)."""
    drops = [point.uar_drop for point in protection.tradeoff]
    chosen = protection.chosen_strength
    return Gate(name="protect max-uar-drop", threshold=settings.max_uar_drop,
                value=min(drops) if chosen is None else next(p.uar_drop for p in protection.tradeoff if p.strength == chosen),
                passed=chosen is not None,
                detail="no strength qualified" if chosen is None else f"strength {chosen:g} chosen")


def _the_layer(model: "TargetModel", name: str) -> "LayerInfo":
    chosen = model.select_layers(name, flag="--layer")
    if len(chosen) != 1:
        raise ConfigError(f"--layer {name!r} names {len(chosen)} layers; name exactly one (see `ser-audit layers`)")
    return chosen[0]


def protection_data(model: "TargetModel", corpus: "Corpus", layer: "LayerInfo", attribute: str, *, seed: int,
                    observer: ProgressObserver = NULL_OBSERVER) -> "ProtectionData":
    """The protection corpus as the model's inputs, with emotion and attribute classes per utterance."""
    import torch

    from ser_audit.defenses import ProtectionData
    from ser_audit.frontend.inputs import TrainingInputs
    from ser_audit.robustness.hardening import training_indices

    indices = training_indices(model, corpus)
    if not len(indices):
        raise ConfigError(f"--aux-corpus {corpus.name}: no utterance carries one of the model's emotions "
                          f"{model.frontend.emotions}; protect trains on them")
    subset = corpus.subset(indices)
    values = np.array(subset.labels(attribute))
    classes = sorted(set(values.tolist()))
    if len(classes) < 2:
        raise ConfigError(f"--aux-corpus {corpus.name}: every utterance has {attribute} {classes[0]!r}; "
                          "protection needs both classes")
    inputs = TrainingInputs.fine_tuning(model.frontend, corpus, indices, seed=seed, observer=observer)
    return ProtectionData(
        inputs=inputs, emotion=torch.tensor([model.frontend.emotions.index(u.emotion) for u in subset]),
        attribute=torch.tensor([classes.index(v) for v in values]), attribute_classes=classes,
        time_axis=layer.time_axis,
        description=f"{len(indices)} utterances of {corpus.name} ({len(set(subset.labels('speaker')))} speakers)")


def _in_memory(module: "nn.Module", model: "TargetModel") -> "TargetModel":
    """The protected copy as a loaded model, named by the digest of its weights (its embeddings cache apart)."""
    import hashlib

    from ser_audit.models.differentiable import WithAuxiliaryInputs
    from ser_audit.models.eager import EagerTorchModel, LogitsOnly

    inner = module.module if isinstance(module, (LogitsOnly, WithAuxiliaryInputs)) else module
    digest = hashlib.sha256()
    for name, tensor in sorted(inner.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())

    class ProtectedCopy(EagerTorchModel):
        sha256 = digest.hexdigest()

    target = ProtectedCopy(inner, model.frontend)
    target.training = model.training
    return target


def utility(module: "nn.Module", model: "TargetModel", corpus: "Corpus", *, seed: int) -> Utility:
    """Emotion UAR and recall per class on ``corpus``, with a 95% speaker-bootstrap interval of the UAR."""
    import torch

    from ser_audit.models.training import unweighted_average_recall
    from ser_audit.robustness.evaluate import evaluation_set

    data = evaluation_set(model, corpus)
    module.eval()
    with torch.no_grad():
        predicted = np.concatenate([_logits(module, features, extra).argmax(1).numpy()
                                    for features, extra in zip(data.features, data.extra)])
    order = np.concatenate(data.batches)  # batches group equal lengths: rows of the subset, reordered
    truth, speakers = data.labels[order], data.speakers[order]
    n_classes = len(data.emotions)
    uar = unweighted_average_recall(truth, predicted, n_classes)
    rng = np.random.default_rng([seed, 0xA7])
    names = np.unique(speakers)
    rows = {name: np.flatnonzero(speakers == name) for name in names}
    draws = [unweighted_average_recall(truth[picked], predicted[picked], n_classes)
             for picked in (np.concatenate([rows[s] for s in rng.choice(names, len(names))]) for _ in range(BOOTSTRAP))]
    low, high = (float(v) for v in np.quantile(draws, [0.025, 0.975]))
    recall = {emotion: float(np.mean(predicted[truth == c] == c)) for c, emotion in enumerate(data.emotions)
              if np.any(truth == c)}
    return Utility(uar=uar, ci_low=low, ci_high=high, recall_by_class=recall, n=len(predicted),
                   evaluation_set=f"{data.description} ({len(names)} speakers)")


def _logits(module: "nn.Module", features: Any, extra: Sequence[Any]) -> Any:
    from ser_audit.models.eager import logits_of

    return logits_of(module(features, *extra))


def _layer_verdict(report: Report, layer: str) -> LayerVerdict:
    assert report.leakage is not None and report.leakage.verdict is not None
    return next(v for v in report.leakage.verdict.layers if v.layer == layer)


def _layers(report: Report) -> list[LayerVerdict]:
    assert report.leakage is not None and report.leakage.verdict is not None
    return list(report.leakage.verdict.layers)


def _choose(points: list[ProtectionPoint]) -> int | None:
    """The least informed leakage at LAYER within the UAR budget (the smaller strength on a tie)."""
    eligible = [k for k, point in enumerate(points) if point.within_budget]
    if not eligible:
        return None
    return min(eligible, key=lambda k: (points[k].informed.balanced_accuracy, points[k].strength))


def ignorant_attacks(*, before_model: "TargetModel", after_model: "TargetModel", corpus: "Corpus",
                     layers: list[str], config: AuditConfig) -> list[IgnorantAttack]:
    """The unprotected model's linear probe per fold, applied to the protected model's layer on the held-out speakers."""
    from ser_audit.corpus.folds import speaker_disjoint_folds
    from ser_audit.embeddings.extract import extract
    from ser_audit.leakage.attackers.linear import LinearProbe
    from ser_audit.leakage.statistics.inference import balanced_accuracy_of

    cache = sources.cache_of(config)
    chosen_before = [info for info in before_model.layers() if info.name in layers]
    chosen_after = [info for info in after_model.layers() if info.name in layers]
    original = extract(before_model, corpus, chosen_before, cache_dir=cache)
    protected = extract(after_model, corpus, chosen_after, cache_dir=cache)
    labels = np.array(corpus.labels(config.attribute))
    speakers = np.array(corpus.labels("speaker"))
    classes = np.unique(labels)
    folds = speaker_disjoint_folds(corpus, n_folds=config.folds, seed=config.seed)
    rows = []
    for name in layers:
        if name not in original.layers or name not in protected.layers:
            continue
        before, after = np.asarray(original.layers[name]), np.asarray(protected.layers[name])
        if before.shape[1:] != after.shape[1:]:
            continue
        predicted = np.empty(len(labels), dtype=labels.dtype)
        for fold in folds:
            probe = LinearProbe().fit(before[fold.train], labels[fold.train])
            predicted[fold.test] = probe.predict(after[fold.test])
        tested = np.concatenate([fold.test for fold in folds])
        score = balanced_accuracy_of(labels[tested], predicted[tested], classes)
        rng = np.random.default_rng([config.seed, 0x16])
        names = np.unique(speakers[tested])
        draws = []
        for _ in range(BOOTSTRAP):
            picked = np.concatenate([tested[speakers[tested] == s] for s in rng.choice(names, len(names))])
            if len(np.unique(labels[picked])) == len(classes):
                draws.append(balanced_accuracy_of(labels[picked], predicted[picked], classes))
        low, high = (float(v) for v in np.quantile(draws, [0.025, 0.975])) if draws else (None, None)
        rows.append(IgnorantAttack(layer=name, balanced_accuracy=score, ci_low=low, ci_high=high,
                                   chance=1 / len(classes)))
    return rows


def _statement(protection: Protection, verdict: LayerVerdict, point: ProtectionPoint) -> str:
    before = next((v for v in protection.before if v.layer == protection.layer), None)
    moved = (f"from L {before.balanced_accuracy:.3f} to {verdict.balanced_accuracy:.3f}" if before is not None
             else f"L {verdict.balanced_accuracy:.3f}")
    interval = (f" [{verdict.ci_low:.3f}, {verdict.ci_high:.3f}]" if verdict.ci_low is not None and verdict.ci_high
                is not None else "")
    drop = f"emotion UAR {protection.utility_before.uar:.3f} -> {point.utility.uar:.3f}"
    meaning = {"private": "the informed attackers certify it private",
               "leaks": "it still leaks to attackers trained on the protected model: this is not protection",
               "inconclusive": "the informed attackers neither find a leak past the threshold nor certify privacy"}
    return (f"{protection.method} at {protection.layer}, strength {point.strength:g}: informed strongest leakage "
            f"{moved}{interval} ({verdict.attacker}); {drop}; verdict {verdict.verdict}: {meaning[verdict.verdict]}")
