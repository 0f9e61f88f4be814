"""Writing reports atomically: a temporary file in the target folder, then a rename."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ser_audit.files import publish
from ser_audit.report.model import Report


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        publish(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(report: Report, out: Path | str) -> Path | None:
    """``out`` is a folder (report.json inside it), a .json file, or ``-`` for stdout."""
    text = report.model_dump_json(indent=2) + "\n"
    if str(out) == "-":
        sys.stdout.write(text)
        return None
    path = Path(out)
    if path.suffix.lower() != ".json":
        path = path / "report.json"
    write_text_atomic(path, text)
    return path


def read_report(path: Path) -> Report:
    from pydantic import ValidationError

    from ser_audit.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"report {path} does not exist")
    try:
        return Report.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"report {path} is not a ser-audit report ({where}: {first['msg']})") from None
