"""The interface real-corpus loaders implement, and the checks they share.

A loader is registered under the ``ser_audit.corpora`` entry-point group and reads a local
copy of a licensed corpus in its distributor's layout. Its root comes from
``--corpus-root DIR`` or ``$SER_AUDIT_DATA/<name>``; its options from
``--corpus-option key=value``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import soundfile

from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.errors import ConfigError, CorpusError

DATA_ENVIRONMENT_VARIABLE = "SER_AUDIT_DATA"


@dataclass(frozen=True)
class CorpusOption:
    """A corpus-specific option, set with ``--corpus-option name=value``."""

    name: str
    kind: type  # bool, int, str or Path
    default: Any
    help: str


class CorpusLoader(ABC):
    """Reads one corpus from a local copy.

    Subclasses set ``name``, ``description``, ``markers`` (paths that must exist under the
    root, each a glob; they tell a wrong or half-copied root apart), ``sample_rate`` (the
    rate every file must have, or None) and ``options``, and implement ``read``.
    """

    name: str
    description: str
    markers: tuple[str, ...]
    sample_rate: int | None = None
    options: tuple[CorpusOption, ...] = ()

    @abstractmethod
    def read(self, root: Path, options: dict[str, Any]) -> list[Utterance]:
        """Every usable utterance, in a stable order."""

    def emotions(self, options: dict[str, Any]) -> tuple[str, ...]:
        """The label vocabulary (empty: the labels present)."""
        return ()

    def load(self, root: Path | None, raw_options: Sequence[str] = ()) -> Corpus:
        options = self.parse_options(raw_options)
        folder = self.resolve_root(root)
        self.check_markers(folder)
        utterances = self.read(folder, options)
        if not utterances:
            raise CorpusError(f"{self.name}: no usable utterances under {folder}; check --corpus-root")
        check_audio(utterances, self.sample_rate, corpus=self.name)
        return Corpus(self.name, utterances, folder, self.emotions(options))

    def resolve_root(self, root: Path | None) -> Path:
        if root is None:
            base = os.environ.get(DATA_ENVIRONMENT_VARIABLE)
            if not base:
                raise ConfigError(
                    f"--corpus {self.name} needs its local copy: pass --corpus-root DIR "
                    f"or set {DATA_ENVIRONMENT_VARIABLE} so that ${DATA_ENVIRONMENT_VARIABLE}/{self.name} holds it"
                )
            root = Path(base) / self.name
        if not root.is_dir():
            raise CorpusError(f"--corpus-root {root} is not a folder; point it at your copy of {self.name}")
        return root

    def check_markers(self, root: Path) -> None:
        missing = [marker for marker in self.markers if not any(root.glob(marker))]
        if missing:
            present = ", ".join(sorted(p.name for p in root.iterdir())[:6]) or "nothing"
            raise CorpusError(
                f"{root} does not look like {self.name}: missing {', '.join(missing)} (found {present}); "
                f"point --corpus-root at the folder that holds {self.markers[0]}"
            )

    def parse_options(self, raw: Sequence[str]) -> dict[str, Any]:
        known = {option.name: option for option in self.options}
        values = {option.name: option.default for option in self.options}
        for item in raw:
            key, separator, text = item.partition("=")
            if not separator or key not in known:
                names = ", ".join(known) or "none"
                raise ConfigError(f"--corpus-option {item!r}: {self.name} takes name=value with name one of: {names}")
            values[key] = _coerce(known[key], text)
        return values


def _coerce(option: CorpusOption, text: str) -> Any:
    if option.kind is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"--corpus-option {option.name}={text}: use true or false")
        return lowered in ("true", "1", "yes")
    if option.kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--corpus-option {option.name}={text}: expected an integer") from None
    if option.kind is Path:
        return Path(text)
    return text


def check_audio(utterances: Iterable[Utterance], sample_rate: int | None, *, corpus: str) -> None:
    """Every file exists and its header is readable; with ``sample_rate``, every file has it."""
    for utterance in utterances:
        if not utterance.path.is_file():
            raise CorpusError(f"{corpus}: audio of {utterance.id} is missing ({utterance.path}); the copy looks incomplete")
        try:
            info = soundfile.info(str(utterance.path))
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise CorpusError(f"{corpus}: {utterance.path} is unreadable ({error}); re-copy it") from None
        if sample_rate is not None and info.samplerate != sample_rate:
            raise CorpusError(
                f"{corpus}: {utterance.path} is at {info.samplerate} Hz where the corpus is {sample_rate} Hz; "
                "the copy mixes versions or was converted"
            )


def audio_summary(utterances: Iterable[Utterance]) -> dict[str, Any]:
    """Sample rates and durations from the file headers (no decoding)."""
    rates: Counter[int] = Counter()
    durations = []
    for utterance in utterances:
        try:
            info = soundfile.info(str(utterance.path))
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            raise CorpusError(f"audio file {utterance.path} cannot be decoded ({error}); re-export it as WAV/FLAC "
                              "or remove it from the corpus") from None
        rates[info.samplerate] += 1
        durations.append(info.duration)
    return {
        "sample_rates": {str(rate): count for rate, count in sorted(rates.items())},
        "total_duration_s": round(float(sum(durations)), 2),
        "mean_duration_s": round(float(sum(durations) / max(1, len(durations))), 3),
    }
