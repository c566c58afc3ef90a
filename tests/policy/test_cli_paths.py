"""`tokentrail paths ...`: formats, exit codes, SARIF validity, owners, graph, schema."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from tests.policy.maps import EXAMPLES, clean, write
from tokentrail.cli import app
from tokentrail.cli_paths import paths_app
from tokentrail.policy import graph as graph_mod
from tokentrail.policy.sarif import artifact_uri

SARIF_SCHEMA = json.loads(
    (Path(__file__).parent / "sarif-schema-2.1.0.json").read_text(encoding="utf-8")
)
WEAK = EXAMPLES / "weak.yaml"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(paths_app, [str(a) for a in args])


def test_registered_on_the_main_cli() -> None:
    """`tokentrail paths` is a sub-command of the main app."""
    result = CliRunner().invoke(app, ["paths", "--help"])
    assert result.exit_code == 0
    assert "check" in result.stdout
    assert "drift" in result.stdout


def test_check_text_lists_findings_with_locations() -> None:
    """Text output names severity, rule, file:line:column and the framework ids."""
    result = run("check", WEAK)
    assert result.exit_code == 1
    assert f"CRITICAL TT-REF-001  {WEAK}:" in result.stdout
    assert "maps to: NHI7:2025; PR.AA-01" in result.stdout
    assert "Persistence windows" in result.stdout


def test_check_clean_map_exits_zero() -> None:
    """A map with no finding at or above the threshold exits 0."""
    result = run("check", EXAMPLES / "mesh.yaml")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"{EXAMPLES / 'mesh.yaml'}: 0 findings")


@pytest.mark.parametrize(
    ("fail_on", "code"), [("critical", 0), ("medium", 1), ("none", 0)], ids=str
)
def test_fail_on_threshold(fail_on: str, code: int) -> None:
    """--fail-on sets the severity that fails the run (ci-cd has only medium findings)."""
    assert run("check", EXAMPLES / "ci-cd.yaml", "--fail-on", fail_on).exit_code == code


def test_check_json() -> None:
    """JSON output carries the summary, findings with lines and every entry point."""
    result = run("check", WEAK, "--format", "json", "--fail-on", "none")
    data = json.loads(result.stdout)
    assert data["summary"]["critical"] == 5
    first = data["findings"][0]
    assert {"rule", "severity", "line", "column", "frameworks"} <= set(first)
    assert any(e["infinite"] for e in data["persistence"])


def test_check_markdown() -> None:
    """Markdown output is a review comment with a findings table and windows."""
    result = run("check", WEAK, "--format", "markdown", "--fail-on", "none")
    assert result.stdout.startswith(f"### tokentrail path-map check: `{WEAK}`")
    assert "| critical | `TT-REF-001` refresh-without-absolute-lifetime |" in result.stdout
    assert "<summary>Persistence windows</summary>" in result.stdout


def test_sarif_validates_against_the_official_schema() -> None:
    """SARIF output is valid SARIF 2.1.0 (OASIS schema) and names every rule."""
    result = run("check", WEAK, "--format", "sarif", "--fail-on", "none")
    log = json.loads(result.stdout)
    jsonschema.Draft7Validator(SARIF_SCHEMA).validate(log)
    run_ = log["runs"][0]
    assert log["version"] == "2.1.0"
    assert len(run_["tool"]["driver"]["rules"]) == 23
    assert {r["ruleId"] for r in run_["results"]} == {
        r["id"] for r in run_["tool"]["driver"]["rules"]
    }


def test_sarif_results_point_at_exact_yaml_lines() -> None:
    """Every SARIF result's region is the line and column of the offending key."""
    log = json.loads(run("check", WEAK, "--format", "sarif", "--fail-on", "none").stdout)
    lines = WEAK.read_text(encoding="utf-8").splitlines()
    for result in log["runs"][0]["results"]:
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == artifact_uri(str(WEAK))
        region = loc["region"]
        line = lines[region["startLine"] - 1]
        assert line[region["startColumn"] - 1] not in " #", result["message"]["text"]
    audit = next(r for r in log["runs"][0]["results"] if r["ruleId"] == "TT-AUD-001")
    region = audit["locations"][0]["physicalLocation"]["region"]
    assert lines[region["startLine"] - 1].strip() == "audit: false"


def test_sarif_uri_is_relative_when_run_from_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a folder containing the map, the artifact URI is relative."""
    write(tmp_path, clean() | {"paths": [{**clean()["paths"][0], "audit": False}]})
    monkeypatch.chdir(tmp_path)
    log = json.loads(run("check", tmp_path / "paths.yaml", "-f", "sarif").stdout)
    assert log["runs"][0]["artifacts"][0]["location"]["uri"] == "paths.yaml"


def test_output_file(tmp_path: Path) -> None:
    """--output writes the report to a file and nothing to stdout."""
    out = tmp_path / "report.sarif"
    result = run("check", EXAMPLES / "mesh.yaml", "-f", "sarif", "-o", out)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert json.loads(out.read_text())["version"] == "2.1.0"


def test_output_to_unwritable_file(tmp_path: Path) -> None:
    """An output file that cannot be written is a clear error."""
    result = run("check", EXAMPLES / "mesh.yaml", "-o", tmp_path / "no" / "such" / "x")
    assert result.exit_code == 2
    assert "cannot write" in result.stderr


def test_default_file_is_the_bundled_map() -> None:
    """Without FILE the bundled map is checked; it has no high finding."""
    result = run("check")
    assert result.exit_code == 0
    assert "data/paths.yaml" in result.stdout.splitlines()[0]


def test_validate_serving_form() -> None:
    """validate accepts a serviceable map and refuses the weak one with exit 2."""
    assert run("validate", EXAMPLES / "mesh.yaml").exit_code == 0
    result = run("validate", WEAK)
    assert result.exit_code == 2
    assert "names no owner of recovery and support" in result.stderr


def test_explain_prints_the_rule_page() -> None:
    """explain prints rationale, remediation and labelled framework ids."""
    result = run("explain", "TT-WIN-001")
    assert result.exit_code == 0
    assert result.stdout.startswith("# TT-WIN-001 infinite-persistence-window")
    assert "NHI7:2025 — Long-Lived Secrets" in result.stdout


def test_explain_unknown_rule() -> None:
    """An unknown rule is exit 2 with the list of rules."""
    result = run("explain", "TT-NOPE-999")
    assert result.exit_code == 2
    assert "TT-OWN-001" in result.stderr


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_rules_listing(fmt: str) -> None:
    """rules lists every rule in each format."""
    result = run("rules", "--format", fmt)
    assert result.exit_code == 0
    assert "TT-SCP-002" in result.stdout


def test_owners_text_marks_missing_and_none() -> None:
    """The owners matrix shows missing owners and chains without an accountable owner."""
    result = run("owners", WEAK)
    assert result.exit_code == 0
    assert "MISSING" in result.stdout
    assert "NONE (finding TT-OWN-002)" in result.stdout


def test_owners_json() -> None:
    """JSON ownership: paths with four owners, chains with steps and accountable owner."""
    data = json.loads(run("owners", EXAMPLES / "customer-portal.yaml", "-f", "json").stdout)
    login = next(p for p in data["paths"] if p["path"] == "customer-login")
    assert login["owners"]["recovery"] == "helpdesk"
    chain = next(c for c in data["chains"] if c["id"] == "help-desk-recovery")
    assert (chain["steps"], chain["accountable"]) == (
        ["customer-recovery", "portal-orders-exchange"],
        "identity-ops",
    )


def test_owners_markdown() -> None:
    """Markdown ownership has a paths table and a chains table."""
    out = run("owners", EXAMPLES / "mesh.yaml", "-f", "markdown").stdout
    assert "#### Paths" in out
    assert "| `checkout` |" in out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_windows(fmt: str) -> None:
    """windows lists every entry point, infinite first."""
    out = run("windows", WEAK, "-f", fmt).stdout
    if fmt == "json":
        assert json.loads(out)[0]["id"].startswith("credential_kind:")
    else:
        assert out.splitlines()[1].split()[-1] != "none"
        assert "infinite" in out.splitlines()[1]


def test_schema_command(tmp_path: Path) -> None:
    """schema prints a JSON Schema that the examples validate against."""
    schema = json.loads(run("schema").stdout)
    data = yaml.safe_load((EXAMPLES / "mesh.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)


@pytest.mark.parametrize("fmt", ["dot", "mermaid"])
def test_graph_text_formats(fmt: str) -> None:
    """DOT and Mermaid graphs name every path with its owners."""
    out = run("graph", EXAMPLES / "customer-portal.yaml", "-f", fmt).stdout
    assert "customer-recovery" in out
    assert "recovery: helpdesk" in out
    assert out.startswith("digraph paths {" if fmt == "dot" else "flowchart LR")


def test_graph_svg_is_well_formed_and_self_contained(tmp_path: Path) -> None:
    """The built-in SVG parses as XML and draws every path, coloured by finding."""
    out = tmp_path / "g.svg"
    assert run("graph", WEAK, "-f", "svg", "-o", out).exit_code == 0
    root = ET.parse(out).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    groups = {g.get("id") for g in root.iterfind(".//s:g", ns)}
    assert "path:helpdesk-mint" in groups
    assert "#f8d0d0" in out.read_text()  # a path with a critical finding


def test_graphviz_renderer_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for Graphviz where it is not installed is a clear error."""
    monkeypatch.setattr(graph_mod.shutil, "which", lambda _name: None)
    result = run("graph", EXAMPLES / "mesh.yaml", "--renderer", "graphviz")
    assert result.exit_code == 2
    assert "Graphviz is not installed" in result.stderr


def test_graphviz_renderer_runs_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a `dot` on PATH, the SVG is what it prints for the DOT text."""
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho '<svg>from dot</svg>'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(graph_mod.shutil, "which", lambda _name: str(fake))
    result = run("graph", EXAMPLES / "mesh.yaml", "--renderer", "graphviz")
    assert result.stdout == "<svg>from dot</svg>\n"


def test_graphviz_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failing `dot` is reported, not a traceback."""
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(graph_mod.shutil, "which", lambda _name: str(fake))
    result = run("graph", EXAMPLES / "mesh.yaml", "--renderer", "graphviz")
    assert result.exit_code == 2
    assert "dot failed: broken" in result.stderr


def test_artifact_uri_forms(tmp_path: Path) -> None:
    """Relative paths stay relative; a map outside the working directory is a file URI."""
    assert artifact_uri("deploy/paths.yaml") == "deploy/paths.yaml"
    outside = Path("/") / "elsewhere" / "paths.yaml"
    assert artifact_uri(str(outside)) == "file:///elsewhere/paths.yaml"
