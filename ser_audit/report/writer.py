"""Writing reports atomically: a temporary file in the target folder, then a rename."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ser_audit.files import atomic_write_text
from ser_audit.report.model import Report


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


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


def parse_formats(text: str) -> tuple[str, ...]:
    """``json,md,html,junit``: json always comes first, whatever is asked (it is the source of truth)."""
    from ser_audit.errors import ConfigError
    from ser_audit.report.render.interface import renderers

    allowed = sorted(renderers())
    asked = [f.strip() for f in text.split(",") if f.strip()]
    wrong = [f for f in asked if f not in allowed]
    if wrong:
        raise ConfigError(f"--format {','.join(wrong)}: choose from {','.join(allowed)}")
    return ("json", *dict.fromkeys(f for f in asked if f != "json"))


def write_report(report: Report, out: Path | str, formats: Sequence[str] = ("json",)) -> list[Path]:
    """report.json plus each other format (report.md, report.html, report.junit.xml), every file atomic.

    ``out`` is a folder, a .json file (the other formats go beside it, same stem) or ``-``
    (JSON on stdout; other formats then need a folder).
    """
    from ser_audit.errors import ConfigError
    from ser_audit.report.render import renderer_for

    extra = [f for f in formats if f != "json"]
    if str(out) == "-":
        if extra:
            raise ConfigError(f"--format {','.join(extra)} needs --out DIR (stdout takes the JSON report only)")
        write_json(report, out)
        return []
    written = [write_json(report, out)]
    base = written[0]
    assert base is not None
    for name in extra:
        renderer = renderer_for(name)
        path = base.with_name(base.stem + renderer.suffix)
        write_text_atomic(path, renderer.render(report))
        written.append(path)
    return [p for p in written if p is not None]


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
