"""JSON Schemas of the documents ser-audit reads and writes, generated from the pydantic models.

``python scripts/generate_schemas.py`` writes them to ``schemas/``; a test fails when the
committed files drift from the models.
"""

from __future__ import annotations

import json
from typing import Any

from ser_audit.config import AuditConfig
from ser_audit.frontend.spec import FrontEndSpec
from ser_audit.report.model import Report
from ser_audit.report.policy import Policy

SCHEMAS: dict[str, Any] = {
    "report.schema.json": Report,
    "frontend.schema.json": FrontEndSpec,
    "policy.schema.json": Policy,
    "config.schema.json": AuditConfig,
}


def render_schema(model: Any) -> str:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
