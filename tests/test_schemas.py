from __future__ import annotations

from pathlib import Path

import pytest

from ser_audit.schemas import SCHEMAS, render_schema

FOLDER = Path(__file__).resolve().parent.parent / "schemas"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_the_model(name: str) -> None:
    committed = (FOLDER / name).read_text()
    assert committed == render_schema(SCHEMAS[name]), f"schemas/{name} drifted: run python scripts/generate_schemas.py"
