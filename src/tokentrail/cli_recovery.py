"""``tokentrail recovery ...``: help-desk account recovery from the command line.

The workflow commands act as an admin key (``--key`` or ``TOKENTRAIL_ADMIN_KEY``),
so the path's rules hold on the command line exactly as in the admin API: the
support team opens, proofs and cancels; an approver of the declared team and
role, never the requester, approves or denies. Channels and freezes are
operator actions of the installation (recorded as ``cli:<user>``); a freeze
also accepts a key. No command ever prints a one-time code or a recovery grant:
they reach the subject's channel through the notification outbox (see
docs/recovery.md).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tokentrail.errors import Conflict, Forbidden, NotFound
from tokentrail.recovery import Actor

recovery_app = typer.Typer(
    help="Help-desk account recovery: channels, requests, proofing, approvals, freezes.",
    no_args_is_help=True,
)
channel_app = typer.Typer(help="Where subjects receive codes, grants and notices.")
recovery_app.add_typer(channel_app, name="channel")

DataOpt = Annotated[Path, typer.Option("--data", envvar="TOKENTRAIL_DATA")]
DbOpt = Annotated[str | None, typer.Option("--db", envvar="TOKENTRAIL_DB")]
PathsOpt = Annotated[Path | None, typer.Option("--paths", envvar="TOKENTRAIL_PATHS")]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="TOKENTRAIL_ADMIN_KEY",
        help="Admin key to act as (prefer the TOKENTRAIL_ADMIN_KEY variable).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_DATA = Path("tokentrail-data")
_ERRORS = (ValueError, NotFound, Conflict, Forbidden)


def _cli() -> Any:
    from tokentrail import cli

    return cli


def _session(
    data: Path, db: str | None, paths: Path | None, errors: tuple[type[Exception], ...]
) -> AbstractContextManager[Any]:
    session: AbstractContextManager[Any] = _cli()._services(data, db, paths, errors=errors)
    return session


def _fail(message: str) -> NoReturn:
    _cli()._fail(message)
    raise AssertionError  # pragma: no cover - _fail exits


def _as_key(s: Any, key: str | None) -> Actor:
    if not key:
        _fail("this command acts as an admin key: set TOKENTRAIL_ADMIN_KEY or pass --key")
    found = s.admin.admin_key(key)
    if found is None:
        _fail("unknown or revoked admin key")
    return Actor.of_key(found)


def _show(view: dict[str, Any], as_json: bool) -> None:
    cli = _cli()
    if as_json:
        cli._emit(view)
        return
    out = cli.out
    out.print(f"request   {view['id']}  [{view['state']}]")
    out.print(f"subject   {view['subject']}  path {view['path']}  client {view['client_id']}")
    out.print(f"requester {view['requester']}  reason: {view['reason']}")
    ch = view["channel"]
    if ch:
        out.print(f"channel   {ch['id']} ({ch['kind']} {ch['address']})")
    for step, done in view["proofing"].items():
        out.print(f"proofing  {step}: {'done by ' + done['by'] if done['done'] else 'pending'}")
    got = sum(1 for a in view["approvals"] if a["valid"])
    out.print(f"approvals {got} of {view['approvals_required']}")
    for a in view["approvals"]:
        out.print(f"          {a['by']} ({'valid' if a['valid'] else 'lapsed'})")
    if view["grant"]:
        g = view["grant"]
        where = f"session {g['session']}" if g["session"] else "sent to the subject's channel"
        out.print(f"grant     {where}")
    if view["close_reason"]:
        out.print(f"closed    by {view['closed_by']}: {view['close_reason']}")


@channel_app.command("add")
def channel_add(
    subject: str,
    kind: Annotated[str, typer.Option(help="email, sms, voice or push.")],
    address: Annotated[str, typer.Option(help="Where messages go (email, +E.164, device id).")],
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a channel of SUBJECT (its other channels are told)."""
    cli = _cli()
    with _session(data, db, paths, _ERRORS) as s:
        ch = s.recovery.add_channel(subject, kind, address, actor=cli._actor())
    if as_json:
        cli._emit(ch)
    else:
        cli.out.print(f"channel {ch['id']} ({kind}) registered for {subject}")


@channel_app.command("list")
def channel_list(
    subject: str,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List SUBJECT's channels."""
    cli = _cli()
    with _session(data, db, paths, ()) as s:
        channels = s.recovery.channels(subject, reveal=True)
    if as_json:
        cli._emit(channels)
        return
    for ch in channels:
        cli.out.print(f"{ch['id']}  {ch['kind']:<6} {ch['address']}  (by {ch['created_by']})")


@channel_app.command("remove")
def channel_remove(
    channel_id: str,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
) -> None:
    """Remove a channel."""
    cli = _cli()
    with _session(data, db, paths, _ERRORS) as s:
        s.recovery.remove_channel(channel_id, actor=cli._actor())
    cli.out.print(f"channel {channel_id} removed")


@recovery_app.command("request")
def request(
    subject: Annotated[str, typer.Option(help="Whose account to recover.")],
    client: Annotated[str, typer.Option(help="The subject's application (client id).")],
    reason: Annotated[str, typer.Option(help="Why (ticket, call; recorded in the ledger).")],
    path: Annotated[str, typer.Option(help="The recovery path.")] = "helpdesk-recovery",
    channel: Annotated[str | None, typer.Option(help="Channel id (default: oldest).")] = None,
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a recovery request (role support); the one-time code goes to the subject."""
    with _session(data, db, paths, _ERRORS) as s:
        view = s.recovery.open(
            _as_key(s, key),
            subject=subject,
            path_id=path,
            client_id=client,
            reason=reason,
            channel_id=channel,
        )
    _show(view, as_json)


@recovery_app.command("proof")
def proof(
    request_id: str,
    code: Annotated[str | None, typer.Option(help="The code the subject read back.")] = None,
    assertion_file: Annotated[
        Path | None,
        typer.Option("--assertion-file", help="File with a fresh upstream assertion (JWT)."),
    ] = None,
    dpop_jkt: Annotated[
        str | None, typer.Option(help="Bind the grant to this DPoP key thumbprint.")
    ] = None,
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record identity-proofing evidence (role support)."""
    assertion = None
    if assertion_file is not None:
        try:
            assertion = assertion_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            _fail(f"cannot read {assertion_file}: {exc.strerror}")
    with _session(data, db, paths, _ERRORS) as s:
        view = s.recovery.proof(
            _as_key(s, key), request_id, code=code, assertion=assertion, dpop_jkt=dpop_jkt
        )
    _show(view, as_json)


@recovery_app.command("resend")
def resend(
    request_id: str,
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the subject a fresh one-time code (role support)."""
    with _session(data, db, paths, _ERRORS) as s:
        view = s.recovery.resend(_as_key(s, key), request_id)
    _show(view, as_json)


@recovery_app.command("approve")
def approve(
    request_id: str,
    note: Annotated[str, typer.Option(help="Recorded with the approval.")] = "",
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve (role approver of the path's team; never the requester)."""
    with _session(data, db, paths, _ERRORS) as s:
        view = s.recovery.approve(_as_key(s, key), request_id, note=note)
    _show(view, as_json)


@recovery_app.command("deny")
def deny(
    request_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deny (role approver of the path's team); an unredeemed grant dies with it."""
    with _session(data, db, paths, _ERRORS) as s:
        view = s.recovery.deny(_as_key(s, key), request_id, reason=reason)
    _show(view, as_json)


@recovery_app.command("cancel")
def cancel(
    request_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw a request (role support); an unredeemed grant dies with it."""
    with _session(data, db, paths, _ERRORS) as s:
        view = s.recovery.cancel(_as_key(s, key), request_id, reason=reason)
    _show(view, as_json)


@recovery_app.command("status")
def status(
    request_id: Annotated[str | None, typer.Argument(help="A request id.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject's requests.")] = None,
    state: Annotated[str | None, typer.Option(help="Only requests in this state.")] = None,
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one request, or list requests and freezes (with --key: what that key may see)."""
    cli = _cli()
    with _session(data, db, paths, _ERRORS) as s:
        actor = _as_key(s, key) if key else Actor(cli._actor(), None, ())
        if request_id is not None:
            view = s.recovery.status(actor, request_id)
        else:
            found = s.recovery.find(actor, subject=subject, state=state)
            freezes = s.recovery.freezes()
    if request_id is not None:
        _show(view, as_json)
        return
    if as_json:
        cli._emit({"requests": found, "freezes": freezes})
        return
    for f in freezes:
        where = "all recovery paths" if f["scope"] == "*" else f"path {f['scope']}"
        cli.out.print(f"FROZEN {where} by {f['frozen_by']}: {f['reason']}")
    for v in found:
        cli.out.print(f"{v['id']}  {v['state']:<17} {v['subject']}  {v['path']}")


@recovery_app.command("freeze")
def freeze(
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    path: Annotated[str | None, typer.Option(help="Only this path (default: all).")] = None,
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
) -> None:
    """Stop recovery at once, globally or on one path, on every node."""
    cli = _cli()
    with _session(data, db, paths, _ERRORS) as s:
        actor = _as_key(s, key).id if key else cli._actor()
        result = s.recovery.freeze(actor, path_id=path, reason=reason)
    where = "every recovery path" if path is None else f"path {path}"
    state = "was already frozen" if result["already_frozen"] else "frozen"
    cli.out.print(f"recovery on {where} {state}")


@recovery_app.command("unfreeze")
def unfreeze(
    path: Annotated[str | None, typer.Option(help="Only this path (default: global).")] = None,
    key: KeyOpt = None,
    data: DataOpt = _DATA,
    db: DbOpt = None,
    paths: PathsOpt = None,
) -> None:
    """Lift a freeze (a per-path freeze and the global one are lifted separately)."""
    cli = _cli()
    with _session(data, db, paths, _ERRORS) as s:
        actor = _as_key(s, key).id if key else cli._actor()
        result = s.recovery.unfreeze(actor, path_id=path)
    where = "every recovery path (global)" if path is None else f"path {path}"
    still = result["still_frozen"]
    cli.out.print(
        f"recovery on {where} unfrozen" + (f"; still frozen: {', '.join(still)}" if still else "")
    )
