"""Where an audit's inputs come from: the cache folder, the model and the corpora, and the guards on them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ser_audit.config import AuditConfig, CorpusSource, ModelSource
from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.registry import resolve_corpus
from ser_audit.errors import ConfigError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


def default_cache_dir() -> Path:
    """``$SER_AUDIT_CACHE``, else ``$XDG_CACHE_HOME/ser-audit``, else ``~/.cache/ser-audit``."""
    if os.environ.get("SER_AUDIT_CACHE"):
        return Path(os.environ["SER_AUDIT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ser-audit"


def cache_of(config: AuditConfig) -> Path:
    return config.cache_dir or default_cache_dir()


def load_model(source: ModelSource, *, cache_dir: Path, seed: int,
               observer: ProgressObserver = NULL_OBSERVER, device: str = "cpu") -> "TargetModel":
    """The model on the CPU; ``device`` (resolved) is where a ``zoo:`` model trains on first use."""
    from ser_audit.models.loading import load_model as load

    return load(source.spec, frontend=source.frontend, weights=source.weights, trust_pickle=source.trust_pickle,
                cache_dir=cache_dir, seed=seed, observer=observer, device=device)


def load_corpus(source: CorpusSource | str, *, cache_dir: Path, seed: int,
                observer: ProgressObserver = NULL_OBSERVER, flag: str = "--corpus") -> Corpus:
    source = CorpusSource(source) if isinstance(source, str) else source
    return resolve_corpus(source.spec, cache_dir=cache_dir, seed=seed, corpus_root=source.root, options=source.options,
                          observer=observer, flag=flag)


class Loader:
    """Loads each model and corpus of one run once: ``audit`` hands the same loader to the leakage
    study and the robustness probes, so neither reads, synthesises or trains anything twice."""

    def __init__(self, config: AuditConfig, observer: ProgressObserver = NULL_OBSERVER) -> None:
        self.cache_dir, self.seed, self.observer = cache_of(config), config.seed, observer
        self.device = config.device
        self._models: dict[ModelSource, "TargetModel"] = {}
        self._corpora: dict[CorpusSource, Corpus] = {}

    def model(self, source: ModelSource) -> "TargetModel":
        if source not in self._models:
            from ser_audit.devices import resolve_device

            self._models[source] = load_model(source, cache_dir=self.cache_dir, seed=self.seed, observer=self.observer,
                                              device=resolve_device(self.device))
        return self._models[source]

    def provide(self, source: ModelSource, model: "TargetModel") -> None:
        """Hand over a model built in memory (a protected copy) under ``source``, to be audited as a loaded one."""
        self._models[source] = model

    def corpus(self, source: CorpusSource, *, flag: str = "--corpus") -> Corpus:
        if source not in self._corpora:
            self._corpora[source] = load_corpus(source, cache_dir=self.cache_dir, seed=self.seed, observer=self.observer,
                                                flag=flag)
        return self._corpora[source]


def check_not_an_input(source: ModelSource, out: Path) -> None:
    """A written model must not replace a file the run reads: the model, its weights or its front-end spec."""
    inputs = [Path(source.spec), *(path for path in (source.weights, source.frontend) if path is not None)]
    for path in inputs:
        if path.exists() and out.exists() and path.samefile(out):
            raise ConfigError(f"--out {out} is the model's own file ({path}); write the new model to another file")


def check_aux_is_other_data(audit: Corpus, aux: Corpus) -> None:
    """s1, s3 and s4 promise an attacker trained on other data: never on the audit corpus or its speakers."""
    if audit.manifest_sha256() == aux.manifest_sha256():
        raise ConfigError(f"--aux-corpus {aux.name}: it is the audit corpus itself; the aux corpus must be other data "
                          "(another corpus, or other speakers)")
    shared = sorted(set(audit.labels("speaker")) & set(aux.labels("speaker")))
    if shared:
        raise ConfigError(f"--aux-corpus {aux.name}: shares {len(shared)} speaker id(s) with the audit corpus "
                          f"({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''}); attackers trained on it would "
                          "have heard test speakers; give a corpus with other speakers")


def seen_speakers(training: dict[str, Any] | None, corpus: Corpus) -> list[str]:
    """Audit speakers the target was trained on, in any training stage whose record names this corpus
    (zoo models: a backbone pretrained on the audit corpus has heard its speakers too).

    Synthetic speakers are known by corpus hash, not by id: another seed reuses the ids for new voices.
    """
    if not training:
        return []
    digest = corpus.manifest_sha256()
    seen = {speaker for stage in training.get("stages", []) if stage.get("corpus_sha256") == digest
            for speaker in stage.get("speakers", [])}
    if training.get("training_corpus_sha256") == digest:
        if "training_speakers" in training:
            seen.update(training["training_speakers"])
        else:
            held_out = training.get("held_out_session")
            seen.update(u.speaker for u in corpus if u.session != held_out)
    return sorted(seen)
