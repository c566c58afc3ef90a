"""Generated documentation: the field reference of docs/paths.md and docs/rules.md.

``python -m tokentrail.policy.docs`` rewrites both files in place; tests fail
when either is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tokentrail.policy.paths import (
    Approvals,
    ChainSpec,
    ClientSpec,
    CredentialKindSpec,
    DetectionPolicy,
    MapPolicy,
    Owners,
    PathMapSpec,
    PathSpec,
    PrincipalPolicy,
    Principals,
    RecoveryPolicy,
    RecoveryRate,
    RecoveryRevokes,
    RefreshPolicy,
    SessionPolicy,
    StepUp,
    TeamSpec,
    format_duration,
)
from tokentrail.policy.report import rules_markdown

BEGIN = "<!-- BEGIN GENERATED FIELD REFERENCE -->"
END = "<!-- END GENERATED FIELD REFERENCE -->"

#: Each model documented, with the heading the reference uses.
MODELS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("Map (top level)", PathMapSpec),
    ("`teams[]`", TeamSpec),
    ("`principals`", Principals),
    ("`principals.<kind>`", PrincipalPolicy),
    ("`policy`", MapPolicy),
    ("`credential_kinds[]`", CredentialKindSpec),
    ("`clients[]`", ClientSpec),
    ("`paths[]` (and `templates[]`, where nothing is required but `id`)", PathSpec),
    ("`paths[].owners`", Owners),
    ("`paths[].session`", SessionPolicy),
    ("`paths[].refresh`", RefreshPolicy),
    ("`paths[].step_up`", StepUp),
    ("`paths[].approvals` and `paths[].recovery.approvers`", Approvals),
    ("`paths[].recovery`", RecoveryPolicy),
    ("`paths[].recovery.rate`", RecoveryRate),
    ("`paths[].recovery.revokes`", RecoveryRevokes),
    ("`paths[].detection`", DetectionPolicy),
    ("`chains[]`", ChainSpec),
)


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name, {})
        return _type(target, defs) if "enum" in target else name
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        parts = [_type(p, defs) for p in prop["anyOf"]]
        if parts[:2] == ["integer (seconds)", "duration string"]:
            return "duration" + (" or `unlimited`" if "`unlimited`" in parts else "")
        return " or ".join(dict.fromkeys(p for p in parts if p != "null"))
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "integer" and prop.get("description") == "seconds":
        return "integer (seconds)"
    if kind == "string" and "pattern" in prop and "90s" in prop.get("description", ""):
        return "duration string"
    if kind == "string" and "pattern" in prop:
        return "id"
    if kind == "object":
        return "mapping"
    return str(kind or "any")


#: Defaults computed from other fields, as the reference states them.
_COMPUTED: dict[tuple[type[BaseModel], str], str] = {
    (RefreshPolicy, "absolute_lifetime"): "the session's",
    (RefreshPolicy, "idle_timeout"): "the session's",
    (SessionPolicy, "absolute_lifetime"): "from `assurance_level`",
    (SessionPolicy, "idle_timeout"): "from `assurance_level`",
    (CredentialKindSpec, "static"): "from `type`",
    (CredentialKindSpec, "rotation_grace"): "`policy.rotation_grace`",
}


def _default(name: str, model: type[BaseModel], kind: str) -> str:
    field = model.model_fields[name]
    if (model, name) in _COMPUTED:
        return _COMPUTED[(model, name)]
    if field.is_required():
        return "required"
    value = field.default
    if isinstance(value, BaseModel) or value is None or value == [] or value == "":
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if kind.startswith("duration") and isinstance(value, int):
        return f"`{format_duration(value)}`"
    return f"`{value}`"


def _rst(text: str) -> str:
    return " ".join(text.replace("``", "`").split()).replace("|", "\\|")


def field_reference() -> str:
    """Markdown tables of every field, from the models' own descriptions."""
    out = []
    for heading, model in MODELS:
        schema = model.model_json_schema()
        props = schema.get("properties", {})
        defs = schema.get("$defs", {})
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out += [f"#### {heading}", "", _rst(doc)]
        out += ["", "| Field | Type | Default | Meaning |", "|---|---|---|---|"]
        for name, prop in props.items():
            kind = _type(prop, defs)
            desc = _rst(str(prop.get("description", "")))
            out.append(f"| `{name}` | {kind} | {_default(name, model, kind)} | {desc} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def splice(text: str, generated: str) -> str:
    """``text`` with the region between the markers replaced by ``generated``."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}{END}{tail}"


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path.cwd()
    paths_md = root / "docs" / "paths.md"
    paths_md.write_text(splice(paths_md.read_text(encoding="utf-8"), field_reference()), "utf-8")
    (root / "docs" / "rules.md").write_text(rules_markdown(), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv))
