"""The ``tokentrail`` command line.

Every command opens the installation named by ``--data``/``--db`` (or
``TOKENTRAIL_DATA``/``TOKENTRAIL_DB``) directly, so it works while a server runs
on the same data, and records itself in the audit ledger as ``cli:<user>``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from tokentrail.audit import Event
from tokentrail.cli_audit import audit_app
from tokentrail.cli_incident import incident_app
from tokentrail.cli_paths import paths_app
from tokentrail.cli_recovery import recovery_app
from tokentrail.config import BUNDLED_PATHS, Settings
from tokentrail.errors import Conflict, NotFound, PathMapError
from tokentrail.model import AuthMethod, ClientKind
from tokentrail.services import Services, build_services

app = typer.Typer(
    help="tokentrail: token authority and accountability ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
team_app = typer.Typer(help="Teams that own clients and control points.", no_args_is_help=True)
client_app = typer.Typer(help="OAuth clients and their credentials.", no_args_is_help=True)
issuer_app = typer.Typer(help="Trusted upstream identity providers.", no_args_is_help=True)
lineage_app = typer.Typer(help="What was derived from what.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys.", no_args_is_help=True)
admin_key_app = typer.Typer(help="Keys for the admin API.", no_args_is_help=True)
app.add_typer(team_app, name="team")
app.add_typer(client_app, name="client")
app.add_typer(issuer_app, name="issuer")
app.add_typer(lineage_app, name="lineage")
app.add_typer(keys_app, name="keys")
app.add_typer(admin_key_app, name="admin-key")
app.add_typer(audit_app, name="audit")
app.add_typer(incident_app, name="incident")
app.add_typer(paths_app, name="paths")
app.add_typer(recovery_app, name="recovery")

# No markup: names, ids and messages are printed as given (a "[/x]" must not break output).
out = Console(soft_wrap=True, markup=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

DataOpt = Annotated[
    Path, typer.Option("--data", envvar="TOKENTRAIL_DATA", help="Data folder (SQLite, key file).")
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar="TOKENTRAIL_DB", help="Database URL, e.g. postgresql://..."),
]
PathsOpt = Annotated[
    Path,
    typer.Option("--paths", envvar="TOKENTRAIL_PATHS", help="Issuance-path map (YAML)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

_DEFAULT_DATA = Path("tokentrail-data")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # pragma: no cover - no user database entry
        return "cli:unknown"


#: Settings with a command-line option of their own (on every command, or on ``serve``).
_OPTION_SETTINGS = frozenset(
    {
        "data_dir",
        "db_url",
        "paths_file",
        "issuer",
        "mtls_ca_file",
        "mtls_proxy_header",
        "mtls_trusted_proxies",
    }
)
#: Every other setting: every command reads it from ``TOKENTRAIL_<NAME>`` when set.
ENV_SETTINGS = {
    name: f"TOKENTRAIL_{name.upper()}"
    for name in Settings.model_fields
    if name not in _OPTION_SETTINGS
}


def _env_settings() -> dict[str, str]:
    return {name: os.environ[var] for name, var in ENV_SETTINGS.items() if os.environ.get(var)}


def _open(data: Path, db: str | None, paths: Path, **extra: Any) -> Services:
    try:
        settings = Settings(
            data_dir=data, db_url=db, paths_file=paths, **{**_env_settings(), **extra}
        )
        return build_services(settings)
    except PathMapError as exc:
        _fail(f"issuance-path map: {exc}")
    except ValueError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(f"cannot open the database: {str(exc).splitlines()[0]}")
    except OSError as exc:
        _fail(f"cannot open the data folder {data}: {exc.strerror or exc}")


@contextmanager
def _services(
    data: Path,
    db: str | None,
    paths: Path | None,
    *,
    errors: tuple[type[Exception], ...] = (),
    **extra: Any,
) -> Iterator[Services]:
    """The services for one command, always closed; ``errors`` raised inside become a
    clean CLI failure (their message, exit code 1)."""
    s = _open(data, db, paths or BUNDLED_PATHS, **extra)
    try:
        yield s
    except errors as exc:
        _fail(str(exc))
    finally:
        s.close()


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", markup=True)
    raise typer.Exit(code)


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    except ValueError as exc:
        _fail(f"{path} is not JSON: {exc}")


# --- serve -------------------------------------------------------------------------


@app.command()
def serve(
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    issuer: Annotated[
        str | None, typer.Option(envvar="TOKENTRAIL_ISSUER", help="Issuer URL (default: own URL).")
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(envvar="TOKENTRAIL_TLS_CERT", help="Serve HTTPS with this PEM certificate."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(envvar="TOKENTRAIL_TLS_KEY", help="Private key of --tls-cert (PEM)."),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            envvar="TOKENTRAIL_MTLS_CA_FILE",
            help="PEM bundle of CAs trusted for tls_client_auth client certificates.",
        ),
    ] = None,
    mtls_proxy_header: Annotated[
        str | None,
        typer.Option(
            envvar="TOKENTRAIL_MTLS_PROXY_HEADER",
            help="Header in which a trusted TLS proxy forwards the client certificate.",
        ),
    ] = None,
    mtls_trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--mtls-trusted-proxy",
            envvar="TOKENTRAIL_MTLS_TRUSTED_PROXIES",
            help="Proxy address (IP or CIDR) whose certificate header is believed; repeatable.",
        ),
    ] = None,
    allow_broken_ledger: Annotated[
        bool,
        typer.Option(help="Start even when the audit ledger fails verification (say why!)."),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            envvar="TOKENTRAIL_WORKERS",
            min=1,
            help="Worker processes on this port, each with its own services (docs/scaling.md).",
        ),
    ] = 1,
    log_format: Annotated[
        str,
        typer.Option(
            envvar="TOKENTRAIL_LOG_FORMAT",
            help="Log output: text, or json (one JSON object per line).",
        ),
    ] = "text",
    graceful_timeout: Annotated[
        int,
        typer.Option(
            envvar="TOKENTRAIL_GRACEFUL_TIMEOUT",
            min=0,
            help="Seconds in-flight requests get to finish on SIGTERM before they are cut.",
        ),
    ] = 10,
) -> None:
    """Start the token service (HTTPS with client certificates: see docs/mtls.md)."""
    import logging
    import logging.config
    from contextlib import ExitStack

    import uvicorn

    from tokentrail.logs import FORMATS, log_config
    from tokentrail.web.app import create_app
    from tokentrail.web.factory import HTTP_PROTOCOL_NAME, export_environment
    from tokentrail.web.tls import server_options

    if tls_key is not None and tls_cert is None:
        _fail("--tls-key needs --tls-cert")
    if log_format not in FORMATS:
        _fail(f"--log-format must be one of {', '.join(FORMATS)}")
    logging_config = log_config(log_format)
    if log_format == "json":  # uvicorn applies it too; before that, our notices are JSON
        logging.config.dictConfig(logging_config)
    scheme = "https" if tls_cert else "http"
    services = _open(
        data,
        db,
        paths,
        issuer=issuer or f"{scheme}://{host}:{port}",
        mtls_ca_file=tls_client_ca,
        mtls_proxy_header=mtls_proxy_header,
        mtls_trusted_proxies=tuple(mtls_trusted_proxy or ()),
    )
    # A broken chain must not be extended silently (checked from the newest checkpoint).
    check = services.ledger.verify(from_last_checkpoint=True)
    if not check.ok:
        if not allow_broken_ledger:
            services.close()
            _fail(
                f"the audit ledger is broken at seq {check.first_bad_seq}: {check.problem}. "
                "Run `tokentrail audit verify`; start with --allow-broken-ledger to serve anyway."
            )
        err.print(f"[red]warning:[/red] serving on a broken audit ledger: {check.problem}")
    notice = (
        logging.getLogger("tokentrail").warning
        if log_format == "json"
        else lambda text: err.print(text, highlight=False)
    )
    notice(
        f"tokentrail listening on {scheme}://{host}:{port}  issuer={services.settings.issuer}  "
        f"paths={paths}  db={'sqlite' if db is None else 'postgresql'}"
        + (f"  workers={workers}" if workers > 1 else "")
    )
    try:
        with ExitStack() as stack:
            options = server_options(
                services, tls_cert=tls_cert, tls_key=tls_key, stack=stack, notice=notice
            )
            common: dict[str, Any] = {
                "host": host,
                "port": port,
                "log_level": "warning",
                # Access lines would be dropped at this level anyway; off, uvicorn does not
                # even format them (measurable on the token endpoint).
                "access_log": False,
                "log_config": logging_config,
                "timeout_graceful_shutdown": graceful_timeout,
                # Peer addresses are the connection's own: X-Forwarded-For is not
                # believed (network-bound sessions would be spoofable); proxies are
                # trusted only through mtls_trusted_proxies.
                "proxy_headers": False,
                **options,
            }
            if workers == 1:
                uvicorn.run(create_app(services), **common)
                return
            # Every worker builds its own services from the environment.
            os.environ.update(export_environment(services.settings))
            services.store.engine.dispose()  # this process only supervises
            if "http" in common:
                common["http"] = HTTP_PROTOCOL_NAME
            uvicorn.run(
                "tokentrail.web.factory:create_app_from_environment",
                factory=True,
                workers=workers,
                **common,
            )
    finally:
        services.close()


# --- teams -------------------------------------------------------------------------


@team_app.command("create")
def team_create(
    name: str,
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """Create a team."""
    with _services(data, db, paths, errors=(ValueError, Conflict)) as s:
        team = s.admin.create_team(name, actor=_actor())
    if as_json:
        _emit({"id": team.id})
    else:
        out.print(f"team {team.id} created")


@team_app.command("list")
def team_list(
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """List teams."""
    s = _open(data, db, paths)
    with s.store.read() as tx:
        teams = tx.list_teams()
    s.close()
    if as_json:
        _emit([{"id": t.id, "created_at": t.created_at} for t in teams])
        return
    for t in teams:
        out.print(t.id)


# --- clients -----------------------------------------------------------------------


@client_app.command("create")
def client_create(
    team: Annotated[str, typer.Option(help="Owning team.")],
    name: Annotated[str, typer.Option(help="Human-readable name.")],
    kind: Annotated[ClientKind, typer.Option(help="workload or application.")] = (
        ClientKind.WORKLOAD
    ),
    auth: Annotated[AuthMethod, typer.Option(help="Token-endpoint authentication method.")] = (
        AuthMethod.CLIENT_SECRET_BASIC
    ),
    jwks: Annotated[
        Path | None,
        typer.Option(
            help="Public JWKS file (private_key_jwt; self_signed_tls_client_auth: keys with x5c)."
        ),
    ] = None,
    tls_subject_dn: Annotated[
        str | None,
        typer.Option(help="tls_client_auth: the certificate subject DN (RFC 4514)."),
    ] = None,
    path: Annotated[
        list[str] | None, typer.Option("--path", help="Declared path the client may use.")
    ] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="Allowed scope.")] = None,
    audience: Annotated[
        list[str] | None, typer.Option("--audience", help="Allowed audience (first = default).")
    ] = None,
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """Register a client and issue its first credential (the secret is shown once)."""
    jwks_doc = _read_json_file(jwks) if jwks else None
    with _services(data, db, paths, errors=(ValueError, NotFound)) as s:
        issued = s.admin.create_client(
            team=team,
            name=name,
            kind=kind,
            auth_method=auth,
            jwks=jwks_doc,
            tls_subject_dn=tls_subject_dn,
            paths=path or [],
            scopes=scope or [],
            audiences=audience or [],
            actor=_actor(),
        )
    result = {"client_id": issued.client_id, "credential_id": issued.credential_id}
    if issued.client_secret is not None:
        result["client_secret"] = issued.client_secret
    if as_json:
        _emit(result)
        return
    out.print(f"client_id      {issued.client_id}")
    out.print(f"credential_id  {issued.credential_id}")
    if issued.client_secret:
        out.print(f"client_secret  {issued.client_secret}   (shown once; store it now)")


@client_app.command("rotate")
def client_rotate(
    client_id: str,
    jwks: Annotated[
        Path | None,
        typer.Option(help="New public JWKS (private_key_jwt, self_signed_tls_client_auth)."),
    ] = None,
    tls_subject_dn: Annotated[
        str | None, typer.Option(help="tls_client_auth: the new certificate subject DN.")
    ] = None,
    grace: Annotated[
        int | None, typer.Option(help="Seconds the old credential keeps working.")
    ] = None,
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """Issue a new credential; older ones stop working after the grace period."""
    jwks_doc = _read_json_file(jwks) if jwks else None
    with _services(data, db, paths, errors=(ValueError, NotFound)) as s:
        issued = s.admin.rotate_credential(
            client_id,
            jwks=jwks_doc,
            grace=float(s.settings.credential_grace_seconds if grace is None else grace),
            actor=_actor(),
            tls_subject_dn=tls_subject_dn,
        )
    result = {"client_id": issued.client_id, "credential_id": issued.credential_id}
    if issued.client_secret is not None:
        result["client_secret"] = issued.client_secret
    if as_json:
        _emit(result)
    else:
        for k, v in result.items():
            out.print(f"{k:<14} {v}")


@client_app.command("list")
def client_list(
    team: Annotated[str | None, typer.Option(help="Only this team's clients.")] = None,
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """List clients."""
    s = _open(data, db, paths)
    with s.store.read() as tx:
        clients = tx.list_clients(team)
    s.close()
    rows: list[dict[str, Any]] = [
        {
            "client_id": c.id,
            "team": c.team_id,
            "name": c.name,
            "kind": c.kind.value,
            "auth": c.auth_method.value,
            "paths": list(c.paths),
        }
        for c in clients
    ]
    if as_json:
        _emit(rows)
        return
    cells = [
        [r["client_id"], r["team"], r["name"], r["kind"], r["auth"], ",".join(r["paths"])]
        for r in rows
    ]
    if not out.is_terminal:  # piped: one line per client, never wrapped, for grep and cut
        sys.stdout.writelines("\t".join(row) + "\n" for row in cells)
        return
    table = Table("client_id", "team", "name", "kind", "auth", "paths")
    for row in cells:
        table.add_row(*row)
    out.print(table)


# --- upstream issuers --------------------------------------------------------------


@issuer_app.command("trust")
def issuer_trust(
    issuer: str,
    audience: Annotated[str, typer.Option(help="The aud its assertions must carry.")],
    jwks: Annotated[Path | None, typer.Option(help="The provider's public JWKS (file).")] = None,
    jwks_url: Annotated[
        str | None, typer.Option(help="Where to fetch the provider's JWKS instead.")
    ] = None,
    max_aal: Annotated[
        int, typer.Option(min=1, max=3, help="Highest AAL its assertions may claim (acr).")
    ] = 2,
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
) -> None:
    """Trust an upstream identity provider for the JWT bearer grant (RFC 7523)."""
    jwks_doc = _read_json_file(jwks) if jwks is not None else None
    with _services(data, db, paths, errors=(ValueError,)) as s:
        s.admin.trust_issuer(
            issuer,
            jwks=jwks_doc,
            jwks_url=jwks_url,
            audience=audience,
            max_aal=max_aal,
            actor=_actor(),
        )

    out.print(f"trusting {issuer} (audience {audience})", highlight=False)


# --- admin keys --------------------------------------------------------------------


@admin_key_app.command("create")
def admin_key_create(
    team: Annotated[str, typer.Option(help="Team the key belongs to.")],
    role: Annotated[list[str], typer.Option("--role", help="Role (repeatable).")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """Create an admin-API key (shown once)."""
    with _services(data, db, paths, errors=(ValueError, NotFound)) as s:
        key, secret = s.admin.create_admin_key(team=team, roles=role, name=name, actor=_actor())
    if as_json:
        _emit({"id": key.id, "key": secret, "team": key.team_id, "roles": list(key.roles)})
    else:
        out.print(f"admin key {key.id}: {secret}   (shown once)")


# --- keys --------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(
    data: DataOpt = _DEFAULT_DATA, db: DbOpt = None, paths: PathsOpt = BUNDLED_PATHS
) -> None:
    """Make a new signing key active; old keys stay published until their tokens expire."""
    s = _open(data, db, paths)
    try:
        kid = s.keys.rotate(publish_for=s.authority.horizon)
        with s.store.write() as tx:
            tx.append_audit(Event.KEY_ROTATED, at=s.clock.now(), actor=_actor(), data={"kid": kid})
    finally:
        s.close()
    out.print(f"new signing key {kid}")


# --- lineage and revocation --------------------------------------------------------


@lineage_app.command("show")
def lineage_show(
    node_id: str,
    limit: Annotated[int, typer.Option(min=1, help="Most descendants to list.")] = 1000,
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """Show everything derived from a node, with paths, owners and revocation state."""
    from tokentrail.lineage import tree
    from tokentrail.render import tree_json, tree_lines

    with _services(data, db, paths, errors=(NotFound,)) as s, s.store.read() as tx:
        result = tree(tx, node_id, limit=limit)
    if as_json:
        _emit(tree_json(result, s.paths))
        return
    for line in tree_lines(result, s.paths):
        out.print(line, highlight=False, markup=False)


@app.command()
def revoke(
    node_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a node (credential, session, token) and so everything derived from it."""
    with _services(data, db, paths, errors=(ValueError, NotFound)) as s:
        rev = s.admin.revoke(node_id, reason=reason, actor=_actor())
        with s.store.read() as tx:
            current = tx.get_revocation(node_id)
            descendants = tx.count_descendants(node_id)
    assert current is not None
    result = {
        "node_id": node_id,
        "already_revoked": rev is None,
        "revoked_at": current.revoked_at,
        "seq": current.seq,
        "descendants": descendants,
    }
    if as_json:
        _emit(result)
    elif rev is None:
        out.print(f"{node_id} was already revoked (seq {current.seq})")
    else:
        out.print(f"revoked {node_id} (seq {current.seq}); {descendants} descendants are dead")


# --- sessions ----------------------------------------------------------------------

session_app = typer.Typer(help="Human sessions: list and end them.", no_args_is_help=True)
app.add_typer(session_app, name="session")


@session_app.command("list")
def session_list(
    subject: str,
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
    as_json: JsonOpt = False,
) -> None:
    """List a subject's live sessions (path, client, binding, created, last used)."""
    s = _open(data, db, paths)
    try:
        live = s.sessions.live(subject)
    finally:
        s.close()
    if as_json:
        _emit([x.as_dict() for x in live])
        return
    table = Table("session", "path", "client", "binding", "created", "last used", "expires")
    for x in live:
        table.add_row(
            x.id,
            x.path or "",
            x.client_id or "",
            ",".join(x.binding) or "bearer",
            _when(x.created_at),
            _when(x.last_used_at),
            _when(x.expires_at),
        )
    out.print(table)


@session_app.command("end")
def session_end(
    session_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")] = "session ended",
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
) -> None:
    """End one session and everything issued under it."""
    with _services(data, db, paths, errors=(NotFound,)) as s:
        ended = s.sessions.end(session_id, actor=_actor(), reason=reason)
    out.print(f"session {session_id} {'ended' if ended else 'was already ended'}")


@session_app.command("end-all")
def session_end_all(
    subject: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")] = (
        "signed out everywhere"
    ),
    data: DataOpt = _DEFAULT_DATA,
    db: DbOpt = None,
    paths: PathsOpt = BUNDLED_PATHS,
) -> None:
    """Sign a subject out everywhere: end all of their live sessions."""
    s = _open(data, db, paths)
    try:
        count = s.sessions.end_all(subject, actor=_actor(), reason=reason)
    finally:
        s.close()
    out.print(f"ended {count} session(s) of {subject}")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command()
def demo(
    data: Annotated[
        Path, typer.Option("--data", help="A fresh folder for the demo's installation.")
    ] = Path("tokentrail-demo"),
    report_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the reports (default: --data).")
    ] = None,
) -> None:
    """Play the seed article's story end to end and write the accountability reports."""
    from tokentrail.demo import run_demo

    def say(line: str) -> None:
        out.print(line, highlight=False, markup=False)

    try:
        outcome = run_demo(data, report_dir or data, say=say)
    except ValueError as exc:
        _fail(str(exc))
    say("")
    for path in outcome.reports:
        say(f"wrote {path}")


def main() -> None:
    app()
