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
    lines = text.splitlines()
    reader = csv.DictReader(lines, delimiter=_delimiter(path, lines[0] if lines else ""))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CorpusError(
            f"manifest {path} lacks column(s) {', '.join(missing)}; required: {', '.join(REQUIRED_COLUMNS)}"
        )
    rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if any(str(cell).strip() for cell in row.pop(None, None) or ()):  # cells past the header, filed under None
            raise CorpusError(f"manifest {path} row {number} has more cells than its header "
                              f"({len(reader.fieldnames or [])}); quote cells that hold the delimiter")
    return rows


def _delimiter(path: Path, header: str) -> str:
    """Tab for .tsv; for .csv a comma, or the semicolon, tab or bar a spreadsheet wrote instead of one."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    if "," not in header:
        for other in (";", "\t", "|"):
            if other in header:
                return other
    return ","


def _first(row: dict[str, Any], *columns: str) -> str | None:
    """The first of ``columns`` with a value (0 is a value: JSON folds are often numbered from it)."""
    for column in columns:
        value = row.get(column)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return None


def _default_ids(rows: list[dict[str, Any]]) -> list[str]:
    """File stems, or the paths without their suffix where two speakers' folders hold the same file name."""
    stems = [Path(str(row["path"])).stem for row in rows]
    if len(set(stems)) == len(stems):
        return stems
    return [Path(str(row["path"])).with_suffix("").as_posix() for row in rows]


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
    if path.is_dir():
        raise CorpusError(f"manifest {path} is a folder; pass its manifest.csv (or .jsonl), or a corpus name")
    if not path.is_file():
        raise CorpusError(f"manifest {path} does not exist; pass a CSV/JSONL manifest or a corpus name")
    rows = _read_rows(path)
    if not rows:
        raise CorpusError(f"manifest {path} has no rows")
    root = path.parent
    utterances = []
    first_row = 2 if path.suffix.lower() not in (".jsonl", ".ndjson") else 1
    for number, row in enumerate(rows, start=first_row):
        for column in REQUIRED_COLUMNS:
            if _first(row, column) is None:
                raise CorpusError(f"manifest {path} row {number}: empty {column!r}")
    default_ids = _default_ids(rows)
    for number, (row, default_id) in enumerate(zip(rows, default_ids), start=first_row):
        gender = _GENDER_SPELLINGS.get(str(row["gender"]).strip().lower())
        if gender is None:
            raise CorpusError(
                f"manifest {path} row {number}: gender {row['gender']!r} not understood; use female/male (or f/m)"
            )
        audio = _resolve_audio(root, str(row["path"]), path, number)
        session = _first(row, "session", "fold", "split")
        utterances.append(
            Utterance(
                id=_first(row, "id") or default_id,
                path=audio,
                speaker=str(row["speaker"]).strip(),
                gender=gender,
                emotion=str(row["emotion"]).strip().lower(),
                session=session,
                spontaneity=_first(row, "spontaneity"),
                sentence=_first(row, "sentence"),
                text=(str(row["text"]) if row.get("text") not in (None, "") else None),
                extra={k: v for k, v in row.items() if k not in _KNOWN_COLUMNS and v not in (None, "")},
            )
        )
    return Corpus(name=name or path.stem, utterances=utterances, root=root)
