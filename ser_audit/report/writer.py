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


def report_paths(out: Path | str, formats: Sequence[str] = ("json",)) -> list[Path]:
    """Where ``write_report`` puts each format: report.json in a folder ``out`` (or ``out`` itself when it
    is a .json path), the other formats beside it with the same stem; nothing for ``-`` (stdout).

    Raises:
        ConfigError: other formats than json asked for with ``--out -``.
    """
    from ser_audit.errors import ConfigError
    from ser_audit.report.render import renderer_for

    extra = [f for f in formats if f != "json"]
    if str(out) == "-":
        if extra:
            raise ConfigError(f"--format {','.join(extra)} needs --out DIR (stdout takes the JSON report only)")
        return []
    path = Path(out)
    base = path if path.suffix.lower() == ".json" else path / "report.json"
    return [base, *(base.with_name(base.stem + renderer_for(name).suffix) for name in extra)]


def check_report_out(out: Path | str, formats: Sequence[str] = ("json",), *, flag: str = "--out") -> None:
    """Before any work: ``--out`` can take every report file (see ``report_paths``).

    Raises:
        ConfigError, OutputError: naming ``flag`` (--out) and the path that cannot be written.
    """
    from ser_audit.errors import ConfigError
    from ser_audit.files import check_writable

    if not str(out).strip():
        raise ConfigError(f"{flag} is empty; give a folder, FILE.json or - (stdout)")
    paths = report_paths(out, formats)
    if paths and Path(out).suffix.lower() != ".json":
        check_writable(Path(out), flag=flag, folder=True)
    for path in paths:
        check_writable(path, flag=flag)


def write_report(report: Report, out: Path | str, formats: Sequence[str] = ("json",)) -> list[Path]:
    """report.json plus each other format (report.md, report.html, report.junit.xml), every file atomic.

    ``out`` is a folder, a .json file (the other formats go beside it, same stem) or ``-``
    (JSON on stdout; other formats then need a folder).
    """
    from ser_audit.report.render import renderer_for

    paths = report_paths(out, formats)
    if not paths:
        write_json(report, "-")
        return []
    written = [write_json(report, paths[0])]
    for name, path in zip([f for f in formats if f != "json"], paths[1:]):
        write_text_atomic(path, renderer_for(name).render(report))
        written.append(path)
    return [p for p in written if p is not None]


def read_report(path: Path) -> Report:
    from pydantic import ValidationError

    from ser_audit.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"report {path} does not exist" if not path.exists() else f"report {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"report {path} is not a ser-audit report (not UTF-8 text)") from None
    try:
        return Report.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"report {path} is not a ser-audit report ({where}: {first['msg']})") from None
