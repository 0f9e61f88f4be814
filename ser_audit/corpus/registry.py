"""Resolving ``--corpus NAME|PATH`` to a Corpus: synthetic presets, manifests, and loader plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.loader import CorpusLoader
from ser_audit.corpus.manifest import load_manifest
from ser_audit.corpus.synthetic.presets import ALIASES, PRESETS, synthetic_corpus
from ser_audit.errors import ConfigError, CorpusError
from ser_audit.plugins import load_plugins
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

DEFAULT_CORPUS = "synthetic"
DEFAULT_AUX_CORPUS = "ravdess-like"
# "synthetic" names the embedded default audit corpus.
LOADER_GROUP = "ser_audit.corpora"


def corpus_loaders(*, strict: bool = False) -> dict[str, CorpusLoader]:
    """Installed loader plugins; a broken one is named in a warning (an error when strict)."""
    loaders = load_plugins(LOADER_GROUP, kind="corpus loader", strict=strict)
    return {name: loader() if isinstance(loader, type) else loader for name, loader in loaders.items()}


def list_corpora() -> list[dict[str, str]]:
    rows = [{"name": "synthetic", "kind": "synthetic", "description": f"alias of {ALIASES['synthetic']} (default)"}]
    rows += [{"name": p.name, "kind": "synthetic", "description": p.description} for p in PRESETS.values()]
    rows += [{"name": name, "kind": "loader", "description": loader.description} for name, loader in corpus_loaders().items()]
    return rows


def corpus_options(spec: str) -> list[dict[str, Any]]:
    """The ``--corpus-option`` names a corpus takes, with type, default and help."""
    loader = corpus_loaders().get(spec)
    if loader is None:
        return []
    return [
        {"name": o.name, "type": o.kind.__name__, "default": None if o.default is None else str(o.default), "help": o.help}
        for o in loader.options
    ]


def resolve_corpus(
    spec: str,
    *,
    cache_dir: Path,
    seed: int = 0,
    corpus_root: Path | None = None,
    options: Sequence[str] = (),
    observer: ProgressObserver = NULL_OBSERVER,
    flag: str = "--corpus",
) -> Corpus:
    """Turn a corpus name or manifest path into a loaded Corpus (``flag``: the option that named it, for errors).

    Synthetic presets are keyed by ``seed`` so an audit is reproducible from the seed alone.
    """
    name = ALIASES.get(spec, spec)
    loaders = corpus_loaders()
    if name in PRESETS:
        return synthetic_corpus(name, cache_dir=cache_dir, seed=_synthetic_seed(spec, options, seed), observer=observer)
    if options and name not in loaders:
        raise ConfigError(f"--corpus-option applies to real-corpus loaders ({', '.join(loaders)}) and to a synthetic "
                          f"preset's seed=N, not to {spec!r}")
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson") or path.is_file():
        return load_manifest(path)
    if name in loaders:
        return loaders[name].load(corpus_root, options)
    if path.is_dir():
        inside = [path / f"manifest{suffix}" for suffix in (".csv", ".tsv", ".jsonl", ".ndjson")]
        found = [candidate for candidate in inside if candidate.is_file()]
        if len(found) == 1:  # the folder corpus synth writes, given by its name
            return load_manifest(found[0], name=path.resolve().name)
        raise CorpusError(f"{flag} {spec!r} is a folder {'with several manifests' if found else 'without a manifest'}; "
                          "pass the manifest file itself, or a loader's name with --corpus-root for a real corpus")
    known = ["synthetic", *PRESETS, *loaders]
    raise CorpusError(
        f"{flag} {spec!r} is neither a known corpus ({', '.join(known)}) nor a manifest file (.csv/.jsonl)"
    )


def _synthetic_seed(spec: str, options: Sequence[str], seed: int) -> int:
    """A synthetic preset takes one option, ``seed=N``: other voices than the run's ``--seed`` draws."""
    for item in options:
        key, separator, text = item.partition("=")
        if key != "seed" or not separator or not text.strip().isdigit() or int(text) >= 2**32:
            raise ConfigError(f"--corpus-option {item!r}: the synthetic corpus {spec!r} takes only seed=N "
                              "(an integer from 0 to 2**32 - 1)")
        seed = int(text)
    return seed
