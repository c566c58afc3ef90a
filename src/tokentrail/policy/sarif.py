"""SARIF 2.1.0 output: one run, every rule as a reportingDescriptor, results at YAML lines.

Code-scanning services (GitHub, GitLab, Azure DevOps) annotate the path map
with these results. Locations use the map's path relative to the working
directory (so a CI job run from the repository root produces repository-relative
URIs), line and column from the YAML marks, and a stable partial fingerprint
(rule id + subject) so an alert survives unrelated edits to the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tokentrail import __version__
from tokentrail.policy.analyze import Report
from tokentrail.policy.report import rule_markdown
from tokentrail.policy.rules import RULES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def artifact_uri(file: str) -> str:
    """The map's URI: relative to the working directory when inside it, else a file URI."""
    path = Path(file)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_uri()


def to_sarif(report: Report) -> dict[str, Any]:
    index = {r.id: i for i, r in enumerate(RULES)}
    uri = artifact_uri(report.file)
    results = []
    for f in report.findings:
        mark = report.map.mark(f.loc)
        fingerprint = hashlib.sha256(f"{f.rule.id}|{f.subject}|{f.message}".encode()).hexdigest()
        results.append(
            {
                "ruleId": f.rule.id,
                "ruleIndex": index[f.rule.id],
                "level": f.severity.sarif_level,
                "message": {"text": f.message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": uri},
                            "region": {"startLine": mark.line, "startColumn": mark.column},
                        }
                    }
                ],
                "partialFingerprints": {"tokentrailFinding/v1": fingerprint[:32]},
                "properties": {
                    "severity": f.severity.value,
                    "subject": f.subject,
                    "frameworks": f.rule.mappings(nhi=f.nhi),
                },
            }
        )
    rules = [
        {
            "id": r.id,
            "name": r.name,
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.rationale},
            "help": {"text": r.remediation, "markdown": rule_markdown(r, level=3)},
            "defaultConfiguration": {"level": r.severity.sarif_level},
            "properties": {
                "tags": r.tags(),
                "precision": "high",
                "problem.severity": r.severity.sarif_level,
                "security-severity": r.severity.security_severity,
                "frameworks": r.mappings(),
            },
        }
        for r in RULES
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tokentrail",
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "artifacts": [{"location": {"uri": uri}}],
                "invocations": [{"executionSuccessful": True}],
                "results": results,
            }
        ],
    }
