"""Resolving ``--corpus NAME|PATH`` to a Corpus: synthetic presets, manifests, and loader plugins."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.manifest import load_manifest
from ser_audit.corpus.synthetic.presets import PRESETS, synthetic_corpus
from ser_audit.errors import CorpusError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

DEFAULT_CORPUS = "synthetic"
DEFAULT_AUX_CORPUS = "ravdess-like"
# "synthetic" names the embedded default audit corpus.
ALIASES = {"synthetic": "iemocap-like"}
LOADER_GROUP = "ser_audit.corpora"


def corpus_plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=LOADER_GROUP)}


def list_corpora() -> list[dict[str, str]]:
    rows = [{"name": "synthetic", "kind": "synthetic", "description": f"alias of {ALIASES['synthetic']} (default)"}]
    rows += [{"name": p.name, "kind": "synthetic", "description": p.description} for p in PRESETS.values()]
    rows += [{"name": name, "kind": "loader", "description": f"plugin {ep.value}"} for name, ep in corpus_plugins().items()]
    return rows


def resolve_corpus(
    spec: str,
    *,
    cache_dir: Path,
    seed: int = 0,
    corpus_root: Path | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> Corpus:
    """Turn a corpus name or manifest path into a loaded Corpus.

    Synthetic presets are keyed by ``seed`` so an audit is reproducible from the seed alone.
    """
    name = ALIASES.get(spec, spec)
    if name in PRESETS:
        return synthetic_corpus(name, cache_dir=cache_dir, seed=seed, observer=observer)
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson") or path.is_file():
        return load_manifest(path)
    plugins = corpus_plugins()
    if name in plugins:
        loader = plugins[name].load()
        return loader(root=corpus_root)
    known = ["synthetic", *PRESETS, *plugins]
    raise CorpusError(
        f"--corpus {spec!r} is neither a known corpus ({', '.join(known)}) nor a manifest file (.csv/.jsonl)"
    )
