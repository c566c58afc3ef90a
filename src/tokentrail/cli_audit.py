"""``tokentrail audit ...``: verify, checkpoint, export and query the audit ledger."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from tokentrail.errors import NotFound
from tokentrail.ocsf import to_ocsf

audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)


def _cli() -> Any:
    from tokentrail import cli

    return cli


def _time(value: str | None) -> float | None:
    """An ISO 8601 time or epoch seconds."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time or epoch seconds") from exc


@audit_app.command("verify")
def audit_verify(
    data: Annotated[Path, typer.Option("--data", envvar="TOKENTRAIL_DATA")] = Path(
        "tokentrail-data"
    ),
    db: Annotated[str | None, typer.Option("--db", envvar="TOKENTRAIL_DB")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check every link of the hash chain and every signed checkpoint."""
    cli = _cli()
    with (
        cli._services(data, db, None) as s,
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=cli.err, transient=True
        ) as bar,
    ):
        task = bar.add_task("verifying", total=None)
        result = s.ledger.verify(
            progress=lambda n: bar.update(task, description=f"verified {n:,} records")
        )
    if as_json:
        cli._emit(result.as_dict())
    elif result.ok:
        cli.out.print(
            f"ledger intact: {result.records} records, {result.checkpoints} signed checkpoints"
        )
    else:
        cli.out.print(
            f"LEDGER BROKEN at seq {result.first_bad_seq}: {result.problem} "
            f"({result.records} records verified before it)",
            highlight=False,
        )
    if not result.ok:
        raise typer.Exit(2)


@audit_app.command("checkpoint")
def audit_checkpoint(
    data: Annotated[Path, typer.Option("--data", envvar="TOKENTRAIL_DATA")] = Path(
        "tokentrail-data"
    ),
    db: Annotated[str | None, typer.Option("--db", envvar="TOKENTRAIL_DB")] = None,
) -> None:
    """Sign the newest record now."""
    cli = _cli()
    with cli._services(data, db, None) as s:
        cp = s.ledger.checkpoint()
    cli.out.print(f"checkpoint at seq {cp.seq}" if cp else "nothing new to checkpoint")


@audit_app.command("checkpoints")
def audit_checkpoints(
    data: Annotated[Path, typer.Option("--data", envvar="TOKENTRAIL_DATA")] = Path(
        "tokentrail-data"
    ),
    db: Annotated[str | None, typer.Option("--db", envvar="TOKENTRAIL_DB")] = None,
) -> None:
    """Export the signed checkpoints and the public key that verifies them (JSON)."""
    cli = _cli()
    with cli._services(data, db, None) as s:
        doc = {
            "keys": s.ledger.public_keys(),
            "checkpoints": [c.as_dict() for c in s.ledger.checkpoints()],
        }
    cli._emit(doc)


def _records(
    s: Any,
    *,
    subject: str | None,
    client: str | None,
    credential: str | None,
    node: str | None,
    team: str | None,
    event: list[str] | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    root = credential or node
    with s.store.read() as tx:
        node_ids = None
        if root is not None:
            if tx.get_node(root) is None:
                raise NotFound(f"no node {root!r}")
            node_ids = [root, *(n.id for n in tx.descendants(root, limit=1_000_000))]
        rows: list[dict[str, Any]] = tx.audit_query(
            subject=subject,
            client_id=client,
            team_id=team,
            events=event or (),
            node_ids=node_ids,
            since=_time(since),
            until=_time(until),
            limit=limit,
        )
    return rows


@audit_app.command("query")
def audit_query(
    subject: Annotated[str | None, typer.Option(help="Records about this subject.")] = None,
    client: Annotated[str | None, typer.Option(help="Records of this client id.")] = None,
    credential: Annotated[
        str | None, typer.Option(help="Records of this credential and all derived from it.")
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="Records of this node and its descendants.")
    ] = None,
    team: Annotated[str | None, typer.Option(help="Records of this team.")] = None,
    event: Annotated[
        list[str] | None, typer.Option(help="Event name, or a prefix ending in '.'.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time or epoch seconds.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time or epoch seconds.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    data: Annotated[Path, typer.Option("--data", envvar="TOKENTRAIL_DATA")] = Path(
        "tokentrail-data"
    ),
    db: Annotated[str | None, typer.Option("--db", envvar="TOKENTRAIL_DB")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Find audit records by subject, client, credential or node lineage, team, event, time."""
    cli = _cli()
    with cli._services(data, db, None, errors=(NotFound,)) as s:
        rows = _records(
            s,
            subject=subject,
            client=client,
            credential=credential,
            node=node,
            team=team,
            event=event,
            since=since,
            until=until,
            limit=limit,
        )
    if as_json:
        cli._emit(rows)
        return
    for r in rows:
        when = datetime.fromtimestamp(r["at"]).isoformat(timespec="seconds")
        cli.out.print(
            f"{r['seq']:>8} {when} {r['event']:<26} {r['actor']:<32} "
            f"{r['node_id'] or '':<28} {json.dumps(r['data'], separators=(',', ':'))}",
            highlight=False,
            markup=False,
        )


@audit_app.command("export")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or ocsf.")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="Write to this file (default stdout).")] = None,
    subject: Annotated[str | None, typer.Option()] = None,
    client: Annotated[str | None, typer.Option()] = None,
    credential: Annotated[str | None, typer.Option()] = None,
    node: Annotated[str | None, typer.Option()] = None,
    team: Annotated[str | None, typer.Option()] = None,
    event: Annotated[list[str] | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 10_000_000,
    data: Annotated[Path, typer.Option("--data", envvar="TOKENTRAIL_DATA")] = Path(
        "tokentrail-data"
    ),
    db: Annotated[str | None, typer.Option("--db", envvar="TOKENTRAIL_DB")] = None,
) -> None:
    """Export records as JSON lines (ledger fields and hashes) or OCSF events."""
    cli = _cli()
    if fmt not in ("jsonl", "ocsf"):
        cli._fail("--format must be jsonl or ocsf")
    with cli._services(data, db, None, errors=(NotFound,)) as s:
        rows = _records(
            s,
            subject=subject,
            client=client,
            credential=credential,
            node=node,
            team=team,
            event=event,
            since=since,
            until=until,
            limit=limit,
        )
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        for r in rows:
            sink.write(json.dumps(to_ocsf(r) if fmt == "ocsf" else r, separators=(",", ":")))
            sink.write("\n")
    finally:
        if out:
            sink.close()
