"""CSV / JSONL manifests: one row per utterance, audio paths relative to the manifest's folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.errors import CorpusError

REQUIRED_COLUMNS = ("path", "speaker", "gender", "emotion")
_KNOWN_COLUMNS = {"id", "path", "speaker", "gender", "emotion", "session", "fold", "split", "spontaneity", "sentence",
                  "text"}
_GENDER_SPELLINGS = {"f": "female", "female": "female", "w": "female", "woman": "female",
                     "m": "male", "male": "male", "man": "male"}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"manifest {path} cannot be read ({error})") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(f"manifest {path} line {number} is not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise CorpusError(f"manifest {path} line {number} is not a JSON object")
            rows.append(row)
        return rows
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise CorpusError(f"manifest {path} must end in .csv, .tsv or .jsonl")
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CorpusError(
            f"manifest {path} lacks column(s) {', '.join(missing)}; required: {', '.join(REQUIRED_COLUMNS)}"
        )
    return list(reader)


def _resolve_audio(root: Path, value: str, manifest: Path, number: int) -> Path:
    candidate = Path(value)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise CorpusError(
            f"manifest {manifest} row {number}: audio path {value!r} escapes the manifest's folder {root}; "
            "keep audio under the manifest's folder"
        )
    if not resolved.is_file():
        raise CorpusError(f"manifest {manifest} row {number}: audio file {value!r} is missing ({resolved})")
    return resolved


def load_manifest(path: Path, *, name: str | None = None) -> Corpus:
    """Load and validate a CSV, TSV or JSONL manifest.

    Raises:
        CorpusError: Missing columns or values, unknown gender spellings, missing audio,
            or an audio path that escapes the manifest's folder.
    """
    if not path.is_file():
        raise CorpusError(f"manifest {path} does not exist; pass a CSV/JSONL manifest or a corpus name")
    rows = _read_rows(path)
    if not rows:
        raise CorpusError(f"manifest {path} has no rows")
    root = path.parent
    utterances = []
    for number, row in enumerate(rows, start=2 if path.suffix.lower() != ".jsonl" else 1):
        for column in REQUIRED_COLUMNS:
            if not str(row.get(column) or "").strip():
                raise CorpusError(f"manifest {path} row {number}: empty {column!r}")
        gender = _GENDER_SPELLINGS.get(str(row["gender"]).strip().lower())
        if gender is None:
            raise CorpusError(
                f"manifest {path} row {number}: gender {row['gender']!r} not understood; use female/male (or f/m)"
            )
        audio = _resolve_audio(root, str(row["path"]), path, number)
        session = row.get("session") or row.get("fold") or row.get("split") or None
        utterances.append(
            Utterance(
                id=str(row.get("id") or Path(str(row["path"])).stem),
                path=audio,
                speaker=str(row["speaker"]).strip(),
                gender=gender,
                emotion=str(row["emotion"]).strip().lower(),
                session=str(session) if session else None,
                spontaneity=(row.get("spontaneity") or None),
                sentence=(str(row["sentence"]) if row.get("sentence") else None),
                text=(str(row["text"]) if row.get("text") not in (None, "") else None),
                extra={k: v for k, v in row.items() if k not in _KNOWN_COLUMNS and v not in (None, "")},
            )
        )
    return Corpus(name=name or path.stem, utterances=utterances, root=root)
