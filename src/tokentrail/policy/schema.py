"""The path map as JSON Schema (draft 2020-12), for editors and CI.

Generated from the pydantic models, with what they cannot say on their own:
durations accept ``90s``/``5m``/``12h``/``30d`` strings, a path that
``extends`` a template needs only its id, a template needs nothing but its id,
and every path names the owner of each of the four functions (the form
``tokentrail serve`` accepts). Point an editor at it, e.g. with the YAML
language server: ``# yaml-language-server: $schema=paths.schema.json``.
"""

from __future__ import annotations

import copy
from typing import Any

from tokentrail.policy.paths import SCHEMA_VERSION, Function, PathMapSpec

SCHEMA_ID = f"urn:tokentrail:path-map:v{SCHEMA_VERSION}"


def json_schema() -> dict[str, Any]:
    schema = PathMapSpec.model_json_schema()
    defs = schema["$defs"]
    path = defs["PathSpec"]
    required = [r for r in path.get("required", []) if r != "id"]
    path["required"] = ["id"]
    path["anyOf"] = [{"required": ["extends"]}, {"required": required}]
    template = copy.deepcopy(path)
    template.pop("anyOf")
    template["title"] = "PathTemplate"
    template["description"] = "A partial path that paths can extend (inherit from)."
    del template["properties"]["extends"]["description"]
    template["properties"]["extends"]["description"] = "A template this template inherits from."
    defs["PathTemplate"] = template
    schema["properties"]["templates"]["items"] = {"$ref": "#/$defs/PathTemplate"}
    defs["Owners"]["required"] = [f.value for f in Function]
    refresh = defs["RefreshPolicy"]
    refresh["required"] = [r for r in refresh.get("required", []) if r != "absolute_lifetime"]
    if not refresh["required"]:
        del refresh["required"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "tokentrail issuance-path map",
    }
