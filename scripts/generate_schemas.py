"""Write schemas/*.schema.json from the pydantic models (run after changing a model)."""

from __future__ import annotations

from pathlib import Path

from ser_audit.schemas import SCHEMAS, render_schema

if __name__ == "__main__":
    folder = Path(__file__).resolve().parent.parent / "schemas"
    folder.mkdir(exist_ok=True)
    for name, model in SCHEMAS.items():
        (folder / name).write_text(render_schema(model))
        print(f"wrote {folder / name}")
