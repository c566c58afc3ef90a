"""The ``tokentrail`` command line: every command, its output for scripts, and clear failures.

Most tests drive the Typer app in process with ``CliRunner``; the ``cli`` fixture
runs on SQLite and on PostgreSQL (through ``--db``), ``lite`` on SQLite only. One
test starts ``tokentrail serve`` as a separate process and uses the CLI on the
same data folder while it runs.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from rich.console import Console
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import Factory
from tokentrail import cli as cli_module
from tokentrail import crypto
from tokentrail.audit import Event
from tokentrail.cli import app
from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.model import AuditRecord, AuthMethod, ClientKind
from tokentrail.services import Services, build_services
from tokentrail.web.app import create_app

ACTOR = f"cli:{getpass.getuser()}"
CC_PATH = "workload-client-credentials"


@dataclass
class Cli:
    """Runs ``tokentrail`` commands against one installation (``--data`` and ``--db``)."""

    data: Path
    db: str | None

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        opts = ["--data", str(self.data)]
        if self.db:
            opts += ["--db", self.db]
        return CliRunner().invoke(app, [*args, *opts], env=env)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def fails(self, *args: str) -> str:
        """Run a command that must fail cleanly; return its stderr."""
        result = self(*args)
        assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
        assert isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        assert result.stderr.startswith("error: ")
        return result.stderr

    def team(self, name: str = "platform-iam") -> str:
        self.ok("team", "create", name)
        return name

    def client(self, *extra: str, team: str = "platform-iam") -> dict[str, Any]:
        result: dict[str, Any] = self.json(
            "client", "create", "--team", team, "--name", "worker", *extra
        )
        return result


@pytest.fixture
def cli(settings: Settings) -> Cli:
    """The CLI on the test installation: SQLite, and PostgreSQL when configured."""
    return Cli(settings.data_dir, settings.db_url)


@pytest.fixture
def lite(tmp_path: Path) -> Cli:
    """The CLI on an embedded SQLite installation of its own."""
    return Cli(tmp_path / "cli-data", None)


def audit(services: Services, event: Event) -> list[AuditRecord]:
    with services.store.read() as tx:
        return tx.audit_records(event=event)


def public_jwks() -> dict[str, Any]:
    return {"keys": [crypto.generate_signing_key("ES256").public_jwk()]}


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def cc_token(http: TestClient, client_id: str, secret: str) -> str:
    r = http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def introspect(http: TestClient, token: str, client_id: str, secret: str) -> dict[str, Any]:
    r = http.post("/oauth/introspect", data={"token": token}, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# --- teams ------------------------------------------------------------------------


def test_team_create_records_team(cli: Cli, services: Services) -> None:
    """`team create` writes the team into the installation named by --data/--db."""
    result = cli.ok("team", "create", "platform-iam")
    assert result.stdout == "team platform-iam created\n"
    with services.store.read() as tx:
        assert tx.get_team("platform-iam") is not None


def test_team_create_audits_cli_actor(cli: Cli, services: Services) -> None:
    """The ledger names the CLI as `cli:<user>`."""
    cli.team()
    (record,) = audit(services, Event.TEAM_CREATED)
    assert record.actor == ACTOR
    assert record.team_id == "platform-iam"


def test_team_create_json(lite: Cli) -> None:
    """`team create --json` prints the team id as JSON."""
    assert lite.json("team", "create", "secops") == {"id": "secops"}


def test_team_create_duplicate_fails_cleanly(cli: Cli) -> None:
    """Creating a team twice is a one-line error with exit code 1, not a traceback."""
    cli.team()
    assert "team 'platform-iam' already exists" in cli.fails("team", "create", "platform-iam")


def test_team_create_rejects_bad_name(lite: Cli) -> None:
    """A team name outside the identifier syntax is refused with the rule."""
    assert "lowercase letters" in lite.fails("team", "create", "Platform IAM")


def test_team_list_text(cli: Cli) -> None:
    """`team list` prints one team id a line, sorted."""
    cli.team("secops")
    cli.team("app-team")
    assert cli.ok("team", "list").stdout == "app-team\nsecops\n"


def test_team_list_json(lite: Cli) -> None:
    """`team list --json` gives ids and creation times."""
    lite.team()
    (team,) = lite.json("team", "list")
    assert team["id"] == "platform-iam"
    assert isinstance(team["created_at"], float)


# --- client create -----------------------------------------------------------------


def test_client_create_json_shape(cli: Cli) -> None:
    """`client create --json` prints client_id and client_secret (and the credential id)."""
    cli.team()
    out = cli.client("--path", CC_PATH)
    assert set(out) == {"client_id", "client_secret", "credential_id"}
    assert out["client_id"].startswith("cl_")
    assert out["client_secret"].startswith("tts_")
    assert out["credential_id"].startswith("cred_")


def test_client_create_stores_every_option(cli: Cli, services: Services) -> None:
    """Kind, auth method, paths, scopes and audiences given as options are all stored."""
    cli.team()
    out = cli.client(
        "--kind",
        "application",
        "--auth",
        "client_secret_post",
        "--path",
        CC_PATH,
        "--path",
        "workload-token-exchange",
        "--scope",
        "read",
        "--scope",
        "write",
        "--audience",
        "https://api.example",
        "--audience",
        "https://other.example",
    )
    with services.store.read() as tx:
        client = tx.get_client(out["client_id"])
    assert client is not None
    assert client.team_id == "platform-iam"
    assert client.name == "worker"
    assert client.kind is ClientKind.APPLICATION
    assert client.auth_method is AuthMethod.CLIENT_SECRET_POST
    assert client.paths == (CC_PATH, "workload-token-exchange")
    assert client.scopes == ("read", "write")
    assert client.audiences == ("https://api.example", "https://other.example")


def test_client_create_stores_only_the_secret_hash(cli: Cli, services: Services) -> None:
    """The secret printed once is stored only as its hash and never in the ledger."""
    cli.team()
    out = cli.client()
    with services.store.read() as tx:
        cred = tx.get_credential(out["credential_id"])
        records = tx.audit_records()
    assert cred is not None
    assert cred.secret_hash == crypto.hash_secret(out["client_secret"])
    assert all(out["client_secret"] not in json.dumps(r.data) for r in records)


def test_client_create_secret_gets_a_token(cli: Cli, http: TestClient) -> None:
    """The secret the CLI prints authenticates at the token endpoint."""
    cli.team()
    out = cli.client("--path", CC_PATH, "--scope", "read", "--audience", "https://api.example")
    assert cc_token(http, out["client_id"], out["client_secret"]).count(".") == 2


def test_client_create_audits_cli_actor(cli: Cli, services: Services) -> None:
    """Client creation and its credential are recorded with the CLI as actor."""
    cli.team()
    out = cli.client()
    (created,) = audit(services, Event.CLIENT_CREATED)
    (issued,) = audit(services, Event.CREDENTIAL_ISSUED)
    assert (created.actor, created.client_id) == (ACTOR, out["client_id"])
    assert (issued.actor, issued.node_id) == (ACTOR, out["credential_id"])


def test_client_create_text_output(lite: Cli) -> None:
    """Without --json the ids and the secret are printed with a shown-once warning."""
    lite.team()
    stdout = lite.ok("client", "create", "--team", "platform-iam", "--name", "w").stdout
    assert stdout.startswith("client_id      cl_")
    assert "credential_id  cred_" in stdout
    assert "client_secret  tts_" in stdout
    assert "shown once" in stdout


def test_client_create_private_key_jwt_has_no_secret(cli: Cli, tmp_path: Path) -> None:
    """A private_key_jwt client gets its keys from --jwks and no secret."""
    cli.team()
    jwks = write_json(tmp_path / "jwks.json", public_jwks())
    out = cli.client("--auth", "private_key_jwt", "--jwks", str(jwks))
    assert set(out) == {"client_id", "credential_id"}


def test_client_create_private_key_jwt_text_has_no_secret(lite: Cli, tmp_path: Path) -> None:
    """The text output of a key-based client shows no secret line."""
    lite.team()
    jwks = write_json(tmp_path / "jwks.json", public_jwks())
    stdout = lite.ok(
        "client", "create", "--team", "platform-iam", "--name", "w",
        "--auth", "private_key_jwt", "--jwks", str(jwks),
    ).stdout  # fmt: skip
    assert "client_secret" not in stdout


def test_client_create_private_key_jwt_needs_jwks(lite: Cli) -> None:
    """private_key_jwt without --jwks is refused with a clear reason."""
    lite.team()
    stderr = lite.fails(
        "client", "create", "--team", "platform-iam", "--name", "w", "--auth", "private_key_jwt"
    )
    assert "--jwks" in stderr


def test_client_create_jwks_not_json(lite: Cli, tmp_path: Path) -> None:
    """A --jwks file that is not JSON is named in a clear error."""
    lite.team()
    bad = tmp_path / "jwks.json"
    bad.write_text("{not json", encoding="utf-8")
    stderr = lite.fails(
        "client", "create", "--team", "platform-iam", "--name", "w",
        "--auth", "private_key_jwt", "--jwks", str(bad),
    )  # fmt: skip
    assert f"{bad} is not JSON" in stderr


def test_client_create_jwks_with_private_key(lite: Cli, tmp_path: Path) -> None:
    """A --jwks file holding private key material is refused."""
    lite.team()
    doc = public_jwks()
    doc["keys"][0]["d"] = "c2VjcmV0"
    jwks = write_json(tmp_path / "jwks.json", doc)
    stderr = lite.fails(
        "client", "create", "--team", "platform-iam", "--name", "w",
        "--auth", "private_key_jwt", "--jwks", str(jwks),
    )  # fmt: skip
    assert "private key material" in stderr


def test_client_create_jwks_missing_file(lite: Cli, tmp_path: Path) -> None:
    """A --jwks path that does not exist is a clear error."""
    lite.team()
    stderr = lite.fails(
        "client", "create", "--team", "platform-iam", "--name", "w",
        "--auth", "private_key_jwt", "--jwks", str(tmp_path / "nope.json"),
    )  # fmt: skip
    assert "cannot read" in stderr


def test_client_create_jwks_for_secret_client(lite: Cli, tmp_path: Path) -> None:
    """A JWKS given to a secret-based client is refused, not silently ignored."""
    lite.team()
    jwks = write_json(tmp_path / "jwks.json", public_jwks())
    stderr = lite.fails(
        "client", "create", "--team", "platform-iam", "--name", "w", "--jwks", str(jwks)
    )
    assert "only for private_key_jwt" in stderr


def test_client_create_unknown_path(cli: Cli) -> None:
    """An undeclared --path id is named in the error."""
    cli.team()
    stderr = cli.fails(
        "client", "create", "--team", "platform-iam", "--name", "w", "--path", "no-such-path"
    )
    assert "no declared issuance path named no-such-path" in stderr


def test_client_create_unknown_team(cli: Cli) -> None:
    """A client for a team that does not exist is refused and points at `team create`."""
    stderr = cli.fails("client", "create", "--team", "ghosts", "--name", "w")
    assert "no team 'ghosts'" in stderr
    assert "tokentrail team create" in stderr


def test_client_create_bad_scope(lite: Cli) -> None:
    """A scope containing a space is refused."""
    lite.team()
    stderr = lite.fails(
        "client", "create", "--team", "platform-iam", "--name", "w", "--scope", "read write"
    )
    assert "invalid scope or audience" in stderr


# --- client rotate -------------------------------------------------------------------


def test_client_rotate_issues_new_secret(cli: Cli, services: Services) -> None:
    """`client rotate --json` prints a new credential and secret; the old one gets a deadline."""
    cli.team()
    first = cli.client()
    second = cli.json("client", "rotate", first["client_id"], "--grace", "60")
    assert second["client_id"] == first["client_id"]
    assert second["credential_id"] != first["credential_id"]
    assert second["client_secret"] != first["client_secret"]
    with services.store.read() as tx:
        old = tx.get_credential(first["credential_id"])
        (rotated,) = tx.audit_records(event=Event.CREDENTIAL_ROTATED)
    assert old is not None
    assert old.not_after is not None
    assert rotated.actor == ACTOR
    assert rotated.data["previous"] == [first["credential_id"]]


def test_client_rotate_zero_grace_stops_old_secret(
    cli: Cli, http: TestClient, clock: FrozenClock
) -> None:
    """After a rotation with --grace 0 the old secret no longer authenticates."""
    cli.team()
    first = cli.client("--path", CC_PATH, "--audience", "https://api.example")
    second = cli.json("client", "rotate", first["client_id"], "--grace", "0")
    clock.advance(5)  # the CLI runs on the system clock; the server's is frozen
    old = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(first["client_id"], first["client_secret"]),
    )
    assert old.status_code == 401
    assert cc_token(http, second["client_id"], second["client_secret"])


def test_client_rotate_text_output(lite: Cli) -> None:
    """Without --json, rotate prints the new credential and secret as aligned lines."""
    lite.team()
    first = lite.client()
    stdout = lite.ok("client", "rotate", first["client_id"]).stdout
    assert f"client_id      {first['client_id']}" in stdout
    assert "client_secret  tts_" in stdout


def test_client_rotate_private_key_jwt(lite: Cli, tmp_path: Path) -> None:
    """Rotating a key-based client takes a new --jwks and prints no secret."""
    lite.team()
    jwks = write_json(tmp_path / "jwks.json", public_jwks())
    first = lite.client("--auth", "private_key_jwt", "--jwks", str(jwks))
    new_jwks = write_json(tmp_path / "new.json", public_jwks())
    second = lite.json("client", "rotate", first["client_id"], "--jwks", str(new_jwks))
    assert set(second) == {"client_id", "credential_id"}


def test_client_rotate_private_key_jwt_needs_jwks(lite: Cli, tmp_path: Path) -> None:
    """Rotating a key-based client without --jwks is a clear error."""
    lite.team()
    jwks = write_json(tmp_path / "jwks.json", public_jwks())
    first = lite.client("--auth", "private_key_jwt", "--jwks", str(jwks))
    assert "--jwks" in lite.fails("client", "rotate", first["client_id"])


def test_client_rotate_unknown_client(cli: Cli) -> None:
    """Rotating an unknown client id fails cleanly, naming the id."""
    assert "no client 'cl_nope'" in cli.fails("client", "rotate", "cl_nope")


def test_client_rotate_bad_jwks_file(lite: Cli, tmp_path: Path) -> None:
    """A rotate --jwks file that is not JSON is a clear error."""
    lite.team()
    first = lite.client()
    bad = tmp_path / "bad.json"
    bad.write_text("[", encoding="utf-8")
    assert "is not JSON" in lite.fails("client", "rotate", first["client_id"], "--jwks", str(bad))


# --- client list ---------------------------------------------------------------------


def test_client_list_json_filters_by_team(cli: Cli) -> None:
    """`client list --team T --json` lists only that team's clients, with their paths."""
    cli.team()
    cli.team("app-team")
    mine = cli.client("--path", CC_PATH)
    cli.client(team="app-team")
    rows = cli.json("client", "list", "--team", "platform-iam")
    assert rows == [
        {
            "client_id": mine["client_id"],
            "team": "platform-iam",
            "name": "worker",
            "kind": "workload",
            "auth": "client_secret_basic",
            "paths": [CC_PATH],
        }
    ]


def test_client_list_all_teams(lite: Cli) -> None:
    """Without --team every client is listed."""
    lite.team()
    lite.team("app-team")
    lite.client()
    lite.client(team="app-team")
    assert {r["team"] for r in lite.json("client", "list")} == {"platform-iam", "app-team"}


def test_client_list_piped_is_one_line_per_client(lite: Cli) -> None:
    """Piped text output is tab-separated, one unwrapped line per client."""
    lite.team()
    out = lite.client("--path", CC_PATH)
    stdout = lite.ok("client", "list").stdout
    assert stdout == (
        f"{out['client_id']}\tplatform-iam\tworker\tworkload\tclient_secret_basic\t{CC_PATH}\n"
    )


def test_client_list_on_a_terminal_is_a_table(lite: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the clients are drawn as a table with a header."""
    lite.team()
    out = lite.client()
    terminal = Console(force_terminal=True, width=200, markup=False, highlight=False)
    monkeypatch.setattr(cli_module, "out", terminal)
    stdout = lite.ok("client", "list").stdout
    assert "client_id" in stdout
    assert out["client_id"] in stdout


def test_client_names_print_verbatim(lite: Cli) -> None:
    """Names that look like console markup are printed as given, not interpreted."""
    lite.team()
    lite.ok("client", "create", "--team", "platform-iam", "--name", "[/x] [bold]y")
    assert "\t[/x] [bold]y\t" in lite.ok("client", "list").stdout


def test_error_messages_print_verbatim(lite: Cli) -> None:
    """An id that looks like console markup appears verbatim in the error message."""
    assert "no client '[/x]'" in lite.fails("client", "rotate", "[/x]")


# --- trusted issuers ---------------------------------------------------------------


def test_issuer_trust_records_issuer(cli: Cli, services: Services, tmp_path: Path) -> None:
    """`issuer trust` stores the provider's keys and audience and audits the CLI."""
    doc = public_jwks()
    jwks = write_json(tmp_path / "idp.json", doc)
    stdout = cli.ok(
        "issuer", "trust", "https://idp.example", "--jwks", str(jwks), "--audience", "tt"
    ).stdout
    assert stdout == "trusting https://idp.example (audience tt)\n"
    with services.store.read() as tx:
        trusted = tx.get_issuer("https://idp.example")
    assert trusted is not None
    assert (trusted.audience, trusted.jwks) == ("tt", doc)
    (record,) = audit(services, Event.ISSUER_TRUSTED)
    assert record.actor == ACTOR


def test_issuer_trust_private_jwks(lite: Cli, tmp_path: Path) -> None:
    """An identity provider JWKS with private material is refused."""
    doc = public_jwks()
    doc["keys"][0]["d"] = "c2VjcmV0"
    jwks = write_json(tmp_path / "idp.json", doc)
    stderr = lite.fails(
        "issuer", "trust", "https://idp.example", "--jwks", str(jwks), "--audience", "tt"
    )
    assert "private key material" in stderr


def test_issuer_trust_jwks_not_json(lite: Cli, tmp_path: Path) -> None:
    """An identity provider JWKS file that is not JSON is a clear error."""
    bad = tmp_path / "idp.json"
    bad.write_text("keys: []", encoding="utf-8")
    stderr = lite.fails(
        "issuer", "trust", "https://idp.example", "--jwks", str(bad), "--audience", "tt"
    )
    assert "is not JSON" in stderr


def test_issuer_trust_needs_issuer(lite: Cli, tmp_path: Path) -> None:
    """An empty issuer is refused."""
    jwks = write_json(tmp_path / "idp.json", public_jwks())
    stderr = lite.fails("issuer", "trust", "", "--jwks", str(jwks), "--audience", "tt")
    assert "issuer and audience are required" in stderr


# --- admin keys ----------------------------------------------------------------------


def test_admin_key_create_json_key_works(cli: Cli, http: TestClient) -> None:
    """`admin-key create --json` prints a key that the admin API accepts."""
    cli.team()
    out = cli.json("admin-key", "create", "--team", "platform-iam", "--role", "viewer")
    assert out["team"] == "platform-iam"
    assert out["roles"] == ["viewer"]
    r = http.get("/admin/teams", headers={"Authorization": f"Bearer {out['key']}"})
    assert r.status_code == 200


def test_admin_key_create_text_output(lite: Cli) -> None:
    """Without --json the key is printed once with its id."""
    lite.team()
    stdout = lite.ok(
        "admin-key", "create", "--team", "platform-iam", "--role", "admin", "--role", "viewer"
    ).stdout
    assert stdout.startswith("admin key ak_")
    assert "tta_" in stdout
    assert "(shown once)" in stdout


def test_admin_key_create_audits_without_secret(cli: Cli, services: Services) -> None:
    """The ledger records the new key's id and roles, never the key itself."""
    cli.team()
    out = cli.json("admin-key", "create", "--team", "platform-iam", "--role", "operator")
    (record,) = audit(services, Event.ADMIN_KEY_CREATED)
    assert record.actor == ACTOR
    assert record.data["key_id"] == out["id"]
    assert out["key"] not in json.dumps(record.data)


def test_admin_key_create_unknown_team(lite: Cli) -> None:
    """An admin key for an unknown team is refused."""
    assert "no team 'ghosts'" in lite.fails(
        "admin-key", "create", "--team", "ghosts", "--role", "admin"
    )


def test_admin_key_create_unknown_role(lite: Cli) -> None:
    """An unknown role is refused with the list of roles."""
    lite.team()
    stderr = lite.fails("admin-key", "create", "--team", "platform-iam", "--role", "root")
    assert "roles must be among viewer, operator" in stderr


# --- signing keys --------------------------------------------------------------------


def test_keys_rotate_publishes_old_and_new(cli: Cli, services: Services) -> None:
    """`keys rotate` makes a new active key and keeps the old one in the JWKS."""
    before = {k["kid"] for k in services.keys.jwks()["keys"]}
    stdout = cli.ok("keys", "rotate").stdout
    kid = stdout.removeprefix("new signing key ").strip()
    services.keys.refresh(force=True)
    after = {k["kid"] for k in services.keys.jwks()["keys"]}
    assert after == before | {kid}
    assert services.keys.signer().kid == kid


def test_keys_rotate_audited(lite: Cli, tmp_path: Path) -> None:
    """The key rotation is recorded in the ledger with the CLI as actor."""
    kid = lite.ok("keys", "rotate").stdout.split()[-1]
    s = build_services(Settings(data_dir=lite.data))
    try:
        (record,) = audit(s, Event.KEY_ROTATED)
    finally:
        s.close()
    assert (record.actor, record.data) == (ACTOR, {"kid": kid})


# --- lineage and revoke --------------------------------------------------------------


@pytest.fixture
def minted(cli: Cli, http: TestClient) -> dict[str, Any]:
    """A client made by the CLI and one access token minted from its credential."""
    cli.team()
    out = cli.client("--path", CC_PATH, "--scope", "read", "--audience", "https://api.example")
    out["token"] = cc_token(http, out["client_id"], out["client_secret"])
    return out


def test_lineage_show_json(cli: Cli, minted: dict[str, Any]) -> None:
    """`lineage show --json` lists the token under its credential with path, owners and state."""
    tree = cli.json("lineage", "show", minted["credential_id"])
    assert tree["root"]["id"] == minted["credential_id"]
    assert tree["root"]["kind"] == "credential"
    assert tree["root"]["state"] == "live"
    (token,) = tree["descendants"]
    assert token["kind"] == "access_token"
    assert token["path"] == CC_PATH
    assert token["parents"] == [minted["credential_id"]]
    assert token["owners"]["authentication"] == "platform-iam"
    assert token["owners"]["detection"] == "secops"
    assert (tree["total_descendants"], tree["truncated"]) == (1, False)


def test_lineage_show_text(cli: Cli, minted: dict[str, Any]) -> None:
    """The text tree shows the credential, then the token on a branch with its path and owner."""
    lines = cli.ok("lineage", "show", minted["credential_id"]).stdout.splitlines()
    assert lines[0].startswith(f"credential {minted['credential_id']} [live]")
    assert lines[1].startswith("└── access_token at_")
    assert f"path={CC_PATH} owner=platform-iam" in lines[1]


def test_lineage_show_limit_truncates(lite: Cli, tmp_path: Path) -> None:
    """--limit bounds the listing and says how many more descendants exist."""
    lite.team()
    out = lite.client("--path", CC_PATH, "--audience", "https://api.example")
    s = build_services(Settings(data_dir=lite.data, issuer="http://testserver"))
    try:
        with TestClient(create_app(s), base_url="http://testserver") as http:
            for _ in range(3):
                cc_token(http, out["client_id"], out["client_secret"])
    finally:
        s.close()
    tree = lite.json("lineage", "show", out["credential_id"], "--limit", "1")
    assert (len(tree["descendants"]), tree["total_descendants"], tree["truncated"]) == (1, 3, True)
    text = lite.ok("lineage", "show", out["credential_id"], "--limit", "1").stdout
    assert text.splitlines()[-1] == "... 2 more descendants"


def test_lineage_show_unknown_node(cli: Cli) -> None:
    """`lineage show` of an unknown id fails cleanly."""
    assert "no node 'at_nope'" in cli.fails("lineage", "show", "at_nope")


def test_revoke_kills_derived_tokens(
    cli: Cli, http: TestClient, make: Factory, minted: dict[str, Any]
) -> None:
    """Revoking a credential with the CLI makes its tokens inactive at introspection."""
    gateway = make.client(paths=[])
    assert introspect(http, minted["token"], gateway.client_id, gateway.secret)["active"]
    out = cli.json("revoke", minted["credential_id"], "--reason", "leaked in CI logs")
    assert out["node_id"] == minted["credential_id"]
    assert (out["already_revoked"], out["descendants"]) == (False, 1)
    assert introspect(http, minted["token"], gateway.client_id, gateway.secret) == {"active": False}


def test_revoke_audits_reason_and_cli_actor(
    cli: Cli, services: Services, minted: dict[str, Any]
) -> None:
    """The revocation is recorded with its reason and the CLI as actor."""
    cli.ok("revoke", minted["credential_id"], "--reason", "leaked")
    (record,) = audit(services, Event.NODE_REVOKED)
    assert (record.actor, record.node_id) == (ACTOR, minted["credential_id"])
    assert record.data["reason"] == "leaked"


def test_revoke_text_output(cli: Cli, minted: dict[str, Any]) -> None:
    """Without --json, revoke says how many descendants are now dead."""
    stdout = cli.ok("revoke", minted["credential_id"], "--reason", "leaked").stdout
    assert stdout.startswith(f"revoked {minted['credential_id']} (seq ")
    assert stdout.endswith("; 1 descendants are dead\n")


def test_revoke_twice_reports_already_revoked(lite: Cli) -> None:
    """Revoking again is not an error and reports the earlier revocation."""
    lite.team()
    cred = lite.client()["credential_id"]
    first = lite.json("revoke", cred, "--reason", "leaked")
    again = lite.json("revoke", cred, "--reason", "leaked again")
    assert again["already_revoked"] is True
    assert again["seq"] == first["seq"]
    text = lite.ok("revoke", cred, "--reason", "once more").stdout
    assert text == f"{cred} was already revoked (seq {first['seq']})\n"


def test_lineage_shows_revocation(lite: Cli) -> None:
    """After a revocation the tree shows REVOKED with the reason and actor."""
    lite.team()
    cred = lite.client()["credential_id"]
    lite.ok("revoke", cred, "--reason", "leaked")
    assert "[REVOKED] client=cl_" in lite.ok("lineage", "show", cred).stdout
    tree = lite.json("lineage", "show", cred)
    assert tree["root"]["revocation"]["actor"] == ACTOR


def test_revoke_unknown_node(cli: Cli) -> None:
    """Revoking an unknown id fails cleanly with a non-zero exit."""
    assert "no node 'cred_nope'" in cli.fails("revoke", "cred_nope", "--reason", "x")


def test_revoke_needs_a_reason(lite: Cli) -> None:
    """A blank reason is refused."""
    lite.team()
    cred = lite.client()["credential_id"]
    assert "needs a reason" in lite.fails("revoke", cred, "--reason", "   ")


def test_revoke_requires_reason_option(lite: Cli) -> None:
    """Leaving out --reason is a usage error (exit 2), not a revocation."""
    result = lite("revoke", "cred_x")
    assert result.exit_code == 2
    assert "--reason" in result.stderr


# --- which installation ------------------------------------------------------------


def test_data_folders_are_separate(tmp_path: Path) -> None:
    """Each --data folder is its own installation."""
    a, b = Cli(tmp_path / "a", None), Cli(tmp_path / "b", None)
    a.team("only-in-a")
    assert a.ok("team", "list").stdout == "only-in-a\n"
    assert b.ok("team", "list").stdout == ""
    assert (tmp_path / "a" / "tokentrail.db").exists()


def test_environment_names_the_installation(tmp_path: Path) -> None:
    """TOKENTRAIL_DATA selects the data folder when --data is not given."""
    data = tmp_path / "env-data"
    Cli(data, None).team("from-env")
    result = CliRunner().invoke(app, ["team", "list"], env={"TOKENTRAIL_DATA": str(data)})
    assert result.exit_code == 0
    assert result.stdout == "from-env\n"


def test_db_option_uses_that_database(tmp_path: Path) -> None:
    """--db with a SQLite URL writes there instead of the data folder's database."""
    db_file = tmp_path / "elsewhere.db"
    cli = Cli(tmp_path / "data", f"sqlite:///{db_file}")
    cli.team()
    assert db_file.exists()
    assert not (tmp_path / "data" / "tokentrail.db").exists()
    assert Cli(tmp_path / "data", None).ok("team", "list").stdout == ""


def test_unknown_database_scheme(tmp_path: Path) -> None:
    """A --db URL of an unknown kind is a clear error, not a traceback."""
    cli = Cli(tmp_path / "data", "nosuchdb://host/x")
    assert "cannot open the database" in cli.fails("team", "list")


def test_unreachable_database(tmp_path: Path) -> None:
    """A PostgreSQL server that does not answer is a clear error."""
    cli = Cli(tmp_path / "data", "postgresql://nobody@127.0.0.1:1/none")
    assert "cannot open the database" in cli.fails("team", "list")


def test_data_folder_that_is_a_file(tmp_path: Path) -> None:
    """A --data path that is a regular file is a clear error."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x", encoding="utf-8")
    assert "cannot open the data folder" in Cli(blocker, None).fails("team", "list")


def test_missing_paths_file(lite: Cli, tmp_path: Path) -> None:
    """A --paths file that does not exist is a clear error naming the file."""
    missing = tmp_path / "nope.yaml"
    stderr = lite.fails("team", "list", "--paths", str(missing))
    assert f"issuance-path map: {missing}: cannot read" in stderr


def test_malformed_paths_file(lite: Cli, tmp_path: Path) -> None:
    """An invalid path map stops the command with file:line:column."""
    bad = tmp_path / "paths.yaml"
    bad.write_text("version: 1\nteams: [\n", encoding="utf-8")
    assert f"{bad}:3:1: malformed YAML" in lite.fails("team", "list", "--paths", str(bad))


CUSTOM_MAP = """\
version: 1
teams:
  - id: platform-iam
paths:
  - id: batch-jobs
    principal: workload
    grant: client_credentials
    inputs: [client_secret]
    output: access_token
    max_ttl: 5m
    owners:
      credential_issuance: platform-iam
      authentication: platform-iam
      recovery: platform-iam
      detection: platform-iam
"""


def test_custom_paths_file(lite: Cli, tmp_path: Path) -> None:
    """--paths selects the map that client paths are checked against."""
    custom = tmp_path / "paths.yaml"
    custom.write_text(CUSTOM_MAP, encoding="utf-8")
    lite.team()
    out = lite.json(
        "client", "create", "--team", "platform-iam", "--name", "w",
        "--path", "batch-jobs", "--paths", str(custom),
    )  # fmt: skip
    assert out["client_id"].startswith("cl_")
    assert "batch-jobs" in lite.fails(
        "client", "create", "--team", "platform-iam", "--name", "w", "--path", "batch-jobs"
    )


def test_bad_key_encryption_key(lite: Cli) -> None:
    """A damaged key-encryption-key file is a clear error, not a traceback."""
    lite.data.mkdir(parents=True)
    (lite.data / "kek").write_text("dG9vLXNob3J0\n", encoding="utf-8")
    assert "does not hold a 32-byte key" in lite.fails("team", "list")


# --- the CLI beside a running server ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(lite: Cli, tmp_path: Path) -> Iterator[str]:
    """`tokentrail serve` as a separate process on the ``lite`` data folder; yields its URL."""
    lite.ok("team", "list")  # create the installation (database, key file) first
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tokentrail.cli import main; main()",
            "serve",
            "--data",
            str(lite.data),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.wait()
        log.close()


def test_cli_revoke_while_server_runs(lite: Cli, server: str) -> None:
    """The CLI works on the data folder of a running server, and the server sees its revocation."""
    lite.team()
    worker = lite.client("--path", CC_PATH, "--audience", "https://api.example")
    gateway = lite.client()
    r = httpx.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(worker["client_id"], worker["client_secret"]),
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]

    def active() -> bool:
        r = httpx.post(
            f"{server}/oauth/introspect",
            data={"token": token},
            auth=(gateway["client_id"], gateway["client_secret"]),
        )
        assert r.status_code == 200, r.text
        return bool(r.json()["active"])

    assert active()
    lite.ok("revoke", worker["credential_id"], "--reason", "leaked")
    assert not active()
