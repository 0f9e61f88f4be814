"""Speaker identity as the private attribute: closed-set identification and open-set verification.

Closed set: every speaker is on both sides of each fold (identification needs it), but a
sentence never is where the corpus has sentence ids, so the attacker cannot match
utterances by their words. Open set: embeddings of held-out speakers (speaker-disjoint
folds) are compared by cosine similarity after standardising with the training speakers'
statistics; the equal error rate is where false accepts equal false rejects.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold

from ser_audit.corpus.folds import Fold
from ser_audit.corpus.interface import Corpus
from ser_audit.errors import CorpusError
from ser_audit.report.model import Verification


def closed_set_folds(corpus: Corpus, *, n_folds: int = 5, seed: int = 0) -> list[Fold]:
    """Folds stratified by speaker; grouped by sentence where sentence ids exist, else by utterance."""
    speakers = np.array(corpus.labels("speaker"))
    sentences = [u.sentence for u in corpus]
    has_sentences = all(s is not None for s in sentences)
    groups = np.array(sentences if has_sentences else [u.id for u in corpus])
    fewest = min(np.unique(speakers, return_counts=True)[1])
    k = min(n_folds, int(fewest), len(set(groups.tolist())))
    if k < 2:
        raise CorpusError(f"corpus {corpus.name!r}: closed-set speaker identification needs two utterances per speaker")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    label = "sentence-disjoint" if has_sentences else "utterance"
    return [
        Fold(name=f"{label} fold={i + 1}", train=np.sort(train), test=np.sort(test))
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(corpus)), speakers, groups=groups))
    ]


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """EER: the operating point where the false accept rate equals the false reject rate."""
    false_accept, true_accept, _ = roc_curve(same.astype(int), scores)
    false_reject = 1 - true_accept
    k = int(np.nanargmin(np.abs(false_accept - false_reject)))
    return float((false_accept[k] + false_reject[k]) / 2)


def _trials(embeddings: np.ndarray, speakers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    upper = np.triu_indices(len(unit), k=1)
    return similarity[upper], (speakers[:, None] == speakers[None, :])[upper]


def verification(
    features: np.ndarray, corpus: Corpus, folds: Sequence[Fold], *, layer: str, layer_index: int | None
) -> Verification:
    """EER of cosine scoring on each speaker-disjoint fold's held-out speakers, and over all their trials."""
    speakers = np.array(corpus.labels("speaker"))
    all_scores, all_same, per_fold = [], [], []
    for fold in folds:
        train = np.asarray(features[fold.train], dtype=np.float64)
        mean, std = train.mean(0), train.std(0)
        std[std < 1e-8] = 1.0
        test = (np.asarray(features[fold.test], dtype=np.float64) - mean) / std
        scores, same = _trials(test, speakers[fold.test])
        if same.any() and (~same).any():
            per_fold.append(equal_error_rate(scores, same))
            all_scores.append(scores)
            all_same.append(same)
    if not all_scores:
        raise CorpusError("speaker verification needs two held-out speakers with two utterances each in some fold")
    scores, same = np.concatenate(all_scores), np.concatenate(all_same)
    return Verification(
        layer=layer, layer_index=layer_index, eer=equal_error_rate(scores, same), eer_folds=per_fold,
        n_target=int(same.sum()), n_nontarget=int((~same).sum()),
    )
