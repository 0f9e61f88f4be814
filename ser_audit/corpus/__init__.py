"""Corpora: utterances with speaker, gender and emotion labels, and speaker-disjoint folds."""

from ser_audit.corpus.folds import Fold, speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.corpus.manifest import load_manifest
from ser_audit.corpus.registry import resolve_corpus

__all__ = ["Corpus", "Fold", "Utterance", "load_manifest", "resolve_corpus", "speaker_disjoint_folds"]
