"""``tokentrail incident ...``: contain a compromise in one step, and explain it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tokentrail.accountability import build_report
from tokentrail.accountability_render import to_html, to_markdown
from tokentrail.errors import Conflict, NotFound

incident_app = typer.Typer(help="Incidents and accountability reports.", no_args_is_help=True)

DataOpt = Annotated[Path, typer.Option("--data", envvar="TOKENTRAIL_DATA")]
DbOpt = Annotated[str | None, typer.Option("--db", envvar="TOKENTRAIL_DB")]
PathsOpt = Annotated[Path | None, typer.Option("--paths", envvar="TOKENTRAIL_PATHS")]
_DATA = Path("tokentrail-data")


def _cli() -> Any:
    from tokentrail import cli

    return cli


@incident_app.command("open")
def incident_open(
    reason: Annotated[str, typer.Option(help="What is suspected (recorded in the ledger).")],
    credential: Annotated[str | None, typer.Option(help="A leaked credential id.")] = None,
    node: Annotated[str | None, typer.Option(help="Any node: session, token, login.")] = None,
    subject: Annotated[str | None, typer.Option(help="A person: all sessions and logins.")] = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Contain at once (revoke the target and all derived from it) and open an incident."""
    cli = _cli()
    with cli._services(data, db, paths, errors=(ValueError, NotFound)) as s:
        inc = s.incidents.open(
            credential=credential, node=node, subject=subject, reason=reason, actor=cli._actor()
        )
    if as_json:
        cli._emit(inc.as_dict())
    else:
        cli.out.print(f"incident {inc.id} opened; contained {len(inc.nodes)} node(s)")


@incident_app.command("add")
def incident_add(
    incident_id: str,
    node: Annotated[str, typer.Option(help="Node to contain under this incident.")],
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
) -> None:
    """Contain one more node under an open incident."""
    cli = _cli()
    with cli._services(data, db, paths, errors=(NotFound, Conflict)) as s:
        inc = s.incidents.add(incident_id, node, actor=cli._actor())
    cli.out.print(f"incident {inc.id}: {len(inc.nodes)} node(s) contained")


@incident_app.command("close")
def incident_close(
    incident_id: str, data: DataOpt = _DATA, db: DbOpt = None, paths: PathsOpt = None
) -> None:
    """Close an incident (its record and revocations stay)."""
    cli = _cli()
    with cli._services(data, db, paths, errors=(NotFound,)) as s:
        s.incidents.close(incident_id, actor=cli._actor())
    cli.out.print(f"incident {incident_id} closed")


@incident_app.command("list")
def incident_list(
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List incidents."""
    cli = _cli()
    with cli._services(data, db, paths) as s:
        incidents = s.incidents.list_all()
    if as_json:
        cli._emit([i.as_dict() for i in incidents])
        return
    for i in incidents:
        cli.out.print(
            f"{i.id}  {i.status:<6}  {i.target_kind}={i.target}  {i.reason}",
            highlight=False,
            markup=False,
        )


@incident_app.command("report")
def incident_report(
    incident_id: str,
    fmt: Annotated[str, typer.Option("--format", help="markdown, html or json.")] = "markdown",
    out: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
) -> None:
    """The accountability report: from compromise to containment, and who owned what."""
    cli = _cli()
    if fmt not in ("markdown", "html", "json"):
        cli._fail("--format must be markdown, html or json")
    with cli._services(data, db, paths, errors=(NotFound,)) as s:
        report = build_report(s.store, s.paths, s.incidents.get(incident_id))
    if fmt == "json":
        text = json.dumps(report, indent=2)
    else:
        text = to_html(report) if fmt == "html" else to_markdown(report)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        cli.err.print(f"wrote {out}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
