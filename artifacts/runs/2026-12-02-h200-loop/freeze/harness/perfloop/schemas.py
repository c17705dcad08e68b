"""JSON Schemas of every ledger record and of the goal spec, exported to `artifacts/schemas/`.

A top-level module: it composes the ledger's records with the loop's spec, so neither subpackage
has to import the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perfloop.ledger.eval_records import EVAL_RECORD_MODELS
from perfloop.ledger.evidence_records import EVIDENCE_RECORD_MODELS
from perfloop.ledger.kernel_records import KERNEL_RECORD_MODELS
from perfloop.ledger.records import RECORD_MODELS
from perfloop.ledger.store import atomic_write_text
from perfloop.loop.spec import GoalSpec


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, one per record model, plus the goal spec (`Manifest.spec`)."""
    models = [*RECORD_MODELS, *KERNEL_RECORD_MODELS, *EVAL_RECORD_MODELS, *EVIDENCE_RECORD_MODELS]
    docs = {f"{model.__name__}.schema.json": model.model_json_schema() for model in models}
    docs["GoalSpec.schema.json"] = GoalSpec.model_json_schema()
    # Typed in Python as a dict (the ledger does not import the loop); the schema names its type.
    spec = docs["Manifest.schema.json"]["properties"]["spec"]
    docs["Manifest.schema.json"]["properties"]["spec"] = {
        "$ref": "GoalSpec.schema.json",
        "description": spec["description"],
    }
    return docs


def render(schema: dict[str, Any]) -> str:
    """The exact text written for a schema (stable key order so diffs are meaningful)."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export_schemas(out: Path) -> list[Path]:
    """Write every schema under `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(out / name, render(doc)) for name, doc in schema_documents().items()]
