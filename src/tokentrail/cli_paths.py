"""``tokentrail paths ...``: check, explain and draw the issuance-path map.

Exit codes: 0 success; 1 ``check`` found something at or above ``--fail-on``
(or ``drift --fail-on-drift`` found drift); 2 the map (or an argument) is
invalid: the message names file, line and column. No command prints a
traceback for bad input.
"""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tokentrail.config import BUNDLED_PATHS, Settings
from tokentrail.errors import PathMapError
from tokentrail.policy.paths import PathMap, load_path_map, parse_duration

paths_app = typer.Typer(
    help="The issuance-path map: check it, explain its rules, show owners, windows and drift.",
    no_args_is_help=True,
)


class CheckFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    MARKDOWN = "markdown"


class FailOn(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"
    NONE = "none"


class TableFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


class DataFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class GraphFormat(StrEnum):
    DOT = "dot"
    MERMAID = "mermaid"
    SVG = "svg"


class Renderer(StrEnum):
    BUILTIN = "builtin"
    GRAPHVIZ = "graphviz"


FileArg = Annotated[
    Path,
    typer.Argument(
        envvar="TOKENTRAIL_PATHS",
        help="Path map (YAML). Default: TOKENTRAIL_PATHS, else the bundled map.",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
]


def _fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _load(file: Path, *, analysis: bool = True) -> PathMap:
    try:
        return load_path_map(file, analysis=analysis)
    except PathMapError as exc:
        _fail(f"invalid path map:\n{exc}")


@paths_app.command()
def check(
    file: FileArg = BUNDLED_PATHS,
    fmt: Annotated[
        CheckFormat, typer.Option("--format", "-f", help="Output format.")
    ] = CheckFormat.TEXT,
    fail_on: Annotated[
        FailOn,
        typer.Option("--fail-on", help="Exit 1 when a finding is at or above this severity."),
    ] = FailOn.HIGH,
    output: OutputOpt = None,
) -> None:
    """Run every rule on a path map; findings point at file:line:column."""
    from tokentrail.policy.analyze import analyze
    from tokentrail.policy.report import to_json, to_markdown, to_text
    from tokentrail.policy.rules import Severity
    from tokentrail.policy.sarif import to_sarif

    report = analyze(_load(file))
    if fmt is CheckFormat.JSON:
        _emit(_json(to_json(report)), output)
    elif fmt is CheckFormat.SARIF:
        _emit(_json(to_sarif(report)), output)
    elif fmt is CheckFormat.MARKDOWN:
        _emit(to_markdown(report), output)
    else:
        _emit(to_text(report), output)
    threshold = None if fail_on is FailOn.NONE else Severity(fail_on.value)
    if report.fails(threshold):
        raise typer.Exit(1)


@paths_app.command()
def validate(file: FileArg = BUNDLED_PATHS) -> None:
    """Check that `tokentrail serve` would accept the map (schema and references only)."""
    m = _load(file, analysis=False)
    sys.stdout.write(f"{m.file}: valid ({len(m.paths)} paths, {len(m.teams)} teams)\n")


@paths_app.command()
def explain(rule: Annotated[str, typer.Argument(help="Rule id (TT-REF-001) or name.")]) -> None:
    """Print a rule's page: why it matters, how to fix it, what it maps to."""
    from tokentrail.policy.report import rule_markdown
    from tokentrail.policy.rules import RULES, find_rule

    found = find_rule(rule)
    if found is None:
        known = ", ".join(r.id for r in RULES)
        _fail(f"no rule {rule!r}; rules: {known}")
    sys.stdout.write(rule_markdown(found, level=1))


@paths_app.command()
def rules(
    fmt: Annotated[
        TableFormat, typer.Option("--format", "-f", help="Output format.")
    ] = TableFormat.TEXT,
    output: OutputOpt = None,
) -> None:
    """List the analyzer's rules (markdown: the text of docs/rules.md)."""
    from tokentrail.policy.report import rules_json, rules_markdown, rules_text

    if fmt is TableFormat.JSON:
        _emit(_json(rules_json()), output)
    elif fmt is TableFormat.MARKDOWN:
        _emit(rules_markdown(), output)
    else:
        _emit(rules_text(), output)


@paths_app.command()
def owners(
    file: FileArg = BUNDLED_PATHS,
    fmt: Annotated[
        TableFormat, typer.Option("--format", "-f", help="Output format.")
    ] = TableFormat.TEXT,
    output: OutputOpt = None,
) -> None:
    """The ownership matrix: who owns each function on every path and chain."""
    from tokentrail.policy.owners import ownership
    from tokentrail.policy.report import owners_markdown, owners_text

    matrix = ownership(_load(file))
    if fmt is TableFormat.JSON:
        _emit(_json(matrix.to_json()), output)
    elif fmt is TableFormat.MARKDOWN:
        _emit(owners_markdown(matrix), output)
    else:
        _emit(owners_text(matrix), output)


@paths_app.command()
def windows(
    file: FileArg = BUNDLED_PATHS,
    fmt: Annotated[
        DataFormat, typer.Option("--format", "-f", help="Output format.")
    ] = DataFormat.TEXT,
    output: OutputOpt = None,
) -> None:
    """Persistence window and blast radius of every entry point (credential or token)."""
    from tokentrail.policy.persistence import entry_points
    from tokentrail.policy.report import windows_text

    entries = entry_points(_load(file))
    if fmt is DataFormat.JSON:
        _emit(_json([e.to_json() for e in entries]), output)
    else:
        _emit(windows_text(entries), output)


@paths_app.command()
def graph(
    file: FileArg = BUNDLED_PATHS,
    fmt: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="dot, mermaid or svg.")
    ] = GraphFormat.SVG,
    renderer: Annotated[
        Renderer,
        typer.Option(help="SVG renderer: builtin (no system binary) or graphviz (`dot`)."),
    ] = Renderer.BUILTIN,
    output: OutputOpt = None,
) -> None:
    """Draw the paths with their owners; paths are coloured by their worst finding."""
    from tokentrail.policy.analyze import analyze
    from tokentrail.policy.graph import GraphError, render

    m = _load(file)
    try:
        text = render(m, fmt.value, report=analyze(m), renderer=renderer.value)
    except GraphError as exc:
        _fail(str(exc))
    _emit(text, output)


@paths_app.command()
def schema(output: OutputOpt = None) -> None:
    """Print the JSON Schema of path maps (for editors and CI)."""
    from tokentrail.policy.schema import json_schema

    _emit(_json(json_schema()), output)


@paths_app.command()
def drift(
    file: FileArg = BUNDLED_PATHS,
    data: Annotated[
        Path,
        typer.Option("--data", envvar="TOKENTRAIL_DATA", help="Data folder (SQLite)."),
    ] = Path("tokentrail-data"),
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="TOKENTRAIL_DB", help="Database URL, e.g. postgresql://..."),
    ] = None,
    unused_after: Annotated[
        str | None,
        typer.Option(help="Unused for this long = offboarding candidate (default: the map's)."),
    ] = None,
    as_of: Annotated[
        float | None, typer.Option(help="Evaluate as of this Unix time (default: now).")
    ] = None,
    fmt: Annotated[
        DataFormat, typer.Option("--format", "-f", help="Output format.")
    ] = DataFormat.TEXT,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when any drift is found.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Compare the map with what the service issued: unused paths, clients, credentials."""
    from sqlalchemy.exc import SQLAlchemyError

    from tokentrail.policy.drift import drift as compute
    from tokentrail.storage.store import Store

    m = _load(file)
    window = None
    if unused_after is not None:
        try:
            window = int(parse_duration(unused_after))
        except ValueError as exc:
            _fail(f"--unused-after: {exc}")
    try:
        settings = Settings(data_dir=data, db_url=db, paths_file=file)
    except ValueError as exc:
        _fail(str(exc))
    if db is None and not (data / "tokentrail.db").exists():
        _fail(f"no tokentrail database in {data} (give --data or --db)")
    try:
        store = Store.open(settings.database_url)
    except SQLAlchemyError as exc:
        _fail(f"cannot open the database: {str(exc).splitlines()[0]}")
    try:
        report = compute(
            m, store, now=as_of if as_of is not None else time.time(), unused_after=window
        )
    finally:
        store.close()
    _emit(_json(report.to_json()) if fmt is DataFormat.JSON else report.to_text(), output)
    if fail_on_drift and report.items:
        raise typer.Exit(1)
