"""Speaker identity as the private attribute: closed-set identification and open-set verification.

Closed set: every speaker is on both sides of each fold (identification needs it), but a
sentence never is where the corpus has sentence ids, nor a dialogue where it has dialogue
ids (IEMOCAP's improvised turns have no sentence id), so the attacker cannot match
utterances by their words or their conversation.

Open set: embeddings of held-out speakers are compared by cosine similarity after
standardising with the training speakers' statistics; the equal error rate is where false
accepts equal false rejects. The split is two speaker-disjoint halves stratified by gender,
so each half holds several speakers of each gender: with one man and one woman per fold
every non-target trial would be cross-gender and the EER would measure gender. The EER is
given over all non-target trials and over same-gender ones only, with a speaker-bootstrap
interval (speakers resampled within gender, each trial weighted by its two speakers' draws).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold

from ser_audit.corpus.folds import Fold, speaker_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.errors import CorpusError
from ser_audit.report.model import Verification


def closed_set_folds(corpus: Corpus, *, n_folds: int = 5, seed: int = 0) -> list[Fold]:
    """Folds stratified by speaker; each utterance grouped by its sentence, else its dialogue, else itself."""
    speakers = np.array(corpus.labels("speaker"))
    groups = np.array([
        f"sentence:{u.sentence}" if u.sentence is not None
        else f"dialogue:{u.extra['dialog']}" if u.extra.get("dialog") else f"utterance:{u.id}"
        for u in corpus
    ])
    has_sentences = not all(g.startswith("utterance:") for g in groups.tolist())
    fewest = min(np.unique(speakers, return_counts=True)[1])
    k = min(n_folds, int(fewest), len(set(groups.tolist())))
    if k < 2:
        raise CorpusError(f"corpus {corpus.name!r}: closed-set speaker identification needs two utterances per speaker")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    label = "sentence/dialogue-disjoint" if has_sentences else "utterance"
    return [
        Fold(name=f"{label} fold={i + 1}", train=np.sort(train), test=np.sort(test))
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(corpus)), speakers, groups=groups))
    ]


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """EER: the operating point where the false accept rate equals the false reject rate."""
    return weighted_eer(scores, same)


def verification_folds(corpus: Corpus, *, seed: int = 0) -> list[Fold]:
    """Two speaker-disjoint halves, stratified by gender: many speakers of each gender per held-out half."""
    speakers = np.array(corpus.labels("speaker"))
    return speaker_folds(speakers, np.array(corpus.labels("gender")), [None] * len(speakers), n_folds=2, seed=seed,
                         name=corpus.name)


def check_verifiable(corpus: Corpus, *, seed: int = 0) -> None:
    """Before any long work: some half of ``verification_folds`` holds two speakers with two utterances each
    (a target and a non-target trial); else the run would fail after extracting every layer."""
    speakers = np.array(corpus.labels("speaker"))
    for fold in verification_folds(corpus, seed=seed):
        _, counts = np.unique(speakers[fold.test], return_counts=True)
        if (counts >= 2).sum() >= 2:
            return
    raise CorpusError(
        f"--attribute speaker on corpus {corpus.name!r} ({len(set(speakers.tolist()))} speakers): open-set verification "
        "needs two held-out speakers with two utterances each in one of two speaker-disjoint halves; add speakers "
        "(four or more, two utterances each), or audit --attribute gender")


def _trials(embeddings: np.ndarray, speakers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cosine scores of every pair, whether it is a target trial, and the pair's two speaker positions."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    first, second = np.triu_indices(len(unit), k=1)
    return similarity[first, second], speakers[first] == speakers[second], first, second


def weighted_eer(scores: np.ndarray, same: np.ndarray, weights: np.ndarray | None = None) -> float:
    false_accept, true_accept, _ = roc_curve(same.astype(int), scores, sample_weight=weights)
    false_reject = 1 - true_accept
    k = int(np.nanargmin(np.abs(false_accept - false_reject)))
    return float((false_accept[k] + false_reject[k]) / 2)


def verification(
    features: np.ndarray, corpus: Corpus, folds: Sequence[Fold], *, layer: str, layer_index: int | None,
    n_bootstrap: int = 200, seed: int = 0,
) -> Verification:
    """EER of cosine scoring on each fold's held-out speakers, over all their trials and over same-gender ones."""
    speakers, genders = np.array(corpus.labels("speaker")), np.array(corpus.labels("gender"))
    speaker_ids, speaker_of = np.unique(speakers, return_inverse=True)
    gender_of = np.empty(len(speaker_ids), dtype=object)
    gender_of[speaker_of] = genders
    scores_, same_, first_, second_, per_fold = [], [], [], [], []
    for fold in folds:
        train = np.asarray(features[fold.train], dtype=np.float64)
        mean, std = train.mean(0), train.std(0)
        std[std < 1e-8] = 1.0
        test = (np.asarray(features[fold.test], dtype=np.float64) - mean) / std
        scores, same, first, second = _trials(test, speakers[fold.test])
        if same.any() and (~same).any():
            per_fold.append(equal_error_rate(scores, same))
            scores_.append(scores)
            same_.append(same)
            first_.append(speaker_of[fold.test][first])
            second_.append(speaker_of[fold.test][second])
    if not scores_:
        raise CorpusError("speaker verification needs two held-out speakers with two utterances each in some fold")
    scores, same = np.concatenate(scores_), np.concatenate(same_)
    first, second = np.concatenate(first_), np.concatenate(second_)
    same_gender = gender_of[first] == gender_of[second]
    rng = np.random.default_rng([seed, 0xEE2])
    draws = []
    for _ in range(n_bootstrap):
        weight = np.zeros(len(speaker_ids))
        for gender in np.unique(gender_of):
            members = np.flatnonzero(gender_of == gender)
            np.add.at(weight, rng.choice(members, size=len(members)), 1.0)
        pair_weight = weight[first] * weight[second]
        if (pair_weight[same] > 0).any() and (pair_weight[~same] > 0).any():
            draws.append(weighted_eer(scores, same, pair_weight))
    low, high = np.quantile(draws, [0.025, 0.975]) if draws else (float("nan"), float("nan"))
    return Verification(
        layer=layer, layer_index=layer_index, eer=equal_error_rate(scores, same),
        eer_same_gender=(equal_error_rate(scores[same_gender], same[same_gender])
                         if (~same & same_gender).any() and same.any() else None),
        eer_ci_low=float(low), eer_ci_high=float(high), eer_folds=per_fold,
        n_target=int(same.sum()), n_nontarget=int((~same).sum()), n_nontarget_same_gender=int((~same & same_gender).sum()),
    )
