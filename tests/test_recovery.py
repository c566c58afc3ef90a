"""Help-desk recovery (issue 5): channels, requests, proofing, approvals, the recovery grant,
containment, freezes, the CLI and admin API, and every refusal — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import ISSUER, Registered
from tests.dpop_proofs import new_key, proof, thumbprint
from tests.oauth.upstream import Upstream
from tokentrail.accountability import build_report
from tokentrail.accountability_render import to_markdown
from tokentrail.cli import app as cli_app
from tokentrail.clock import FrozenClock
from tokentrail.config import BUNDLED_PATHS, Settings
from tokentrail.errors import Conflict, Forbidden, NotFound
from tokentrail.model import AuthMethod, ClientKind, NodeKind
from tokentrail.recovery import (
    CODE_TTL,
    MAX_ATTEMPTS,
    MAX_CODES,
    REQUEST_TTL,
    TRANSITIONS,
    Actor,
    State,
    mask,
)
from tokentrail.services import Services, build_services
from tokentrail.storage.store import Tx
from tokentrail.web.app import create_app

RECOVERY = "urn:tokentrail:params:oauth:grant-type:recovery"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_URL = f"{ISSUER}/oauth/token"
PATH = "helpdesk-recovery"


@dataclass
class Desk:
    """A help desk on one installation: keys, the subject's application, an upstream IdP."""

    services: Services
    http: TestClient
    clock: FrozenClock
    idp: Upstream
    portal: Registered
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def key(self, name: str, team: str, *roles: str) -> str:
        found, secret = self.services.admin.create_admin_key(
            team=team, roles=list(roles), name=name, actor="test"
        )
        self.keys[name] = secret
        self.key_ids[name] = f"admin_key:{found.id}"
        return secret

    def api(self, who: str, method: str, url: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        if method == "GET":
            return self.http.get(url, headers=headers)
        return self.http.post(url, json=body, headers=headers)

    def open(self, subject: str = "alice", who: str = "support", **extra: Any) -> httpx.Response:
        body = {
            "subject": subject,
            "path": PATH,
            "client_id": self.portal.client_id,
            "reason": "lost phone; ticket 4711",
            **extra,
        }
        return self.api(who, "POST", "/admin/recovery/requests", body)

    def opened(self, subject: str = "alice", **extra: Any) -> str:
        r = self.open(subject, **extra)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def messages(self, topic: str, request_id: str | None = None) -> list[dict[str, Any]]:
        """Outbox messages of ``topic`` as the dispatcher delivers them (sealed values opened)."""
        with self.services.store.read() as tx:
            rows = tx.notifications()
        out = []
        for row in rows:
            payload = self.services.recovery.unseal_payload(dict(row["payload"]))
            if row["topic"] == topic and request_id in (None, payload.get("request")):
                out.append({"recipient": row["recipient"], **payload})
        return out

    def code(self, request_id: str) -> str:
        return str(self.messages("recovery.code", request_id)[-1]["code"])

    def grant(self, request_id: str) -> str:
        return str(self.messages("recovery.grant", request_id)[-1]["recovery_grant"])

    def proof(self, request_id: str, who: str = "support", **body: Any) -> httpx.Response:
        return self.api(who, "POST", f"/admin/recovery/requests/{request_id}/proof", body)

    def proofed(self, subject: str = "alice", **body: Any) -> str:
        rid = self.opened(subject)
        assert self.proof(rid, code=self.code(rid)).status_code == 201
        r = self.proof(rid, assertion=self.idp.assertion(subject), **body)
        assert r.json()["state"] == "awaiting_approval", r.text
        return rid

    def approve(self, request_id: str, who: str = "approver") -> httpx.Response:
        return self.api(who, "POST", f"/admin/recovery/requests/{request_id}/approve", {})

    def granted(self, subject: str = "alice", **body: Any) -> tuple[str, str]:
        rid = self.proofed(subject, **body)
        r = self.approve(rid)
        assert r.json()["state"] == "granted", r.text
        return rid, self.grant(rid)

    def redeem(
        self, grant: str, client: Registered | None = None, **headers: str
    ) -> httpx.Response:
        c = client or self.portal
        assert c.secret is not None
        return self.http.post(
            "/oauth/token",
            data={"grant_type": RECOVERY, "recovery_grant": grant},
            auth=(c.client_id, c.secret),
            headers=headers,
        )

    def login(self, subject: str = "alice") -> dict[str, Any]:
        assert self.portal.secret is not None
        r = self.http.post(
            "/oauth/token",
            data={"grant_type": JWT_BEARER, "assertion": self.idp.assertion(subject)},
            auth=(self.portal.client_id, self.portal.secret),
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def active(self, token: str) -> bool:
        assert self.portal.secret is not None
        r = self.http.post(
            "/oauth/introspect",
            data={"token": token},
            auth=(self.portal.client_id, self.portal.secret),
        )
        return bool(r.json()["active"])

    def events(self, prefix: str) -> list[dict[str, Any]]:
        with self.services.store.read() as tx:
            return tx.audit_query(events=(prefix,))

    def row(self, request_id: str) -> dict[str, Any]:
        with self.services.store.read() as tx:
            found = tx.get_recovery(request_id)
        assert found is not None
        return found


def _setup(services: Services, http: TestClient, clock: FrozenClock) -> Desk:
    for team in ("identity-ops", "app-team", "secops"):
        services.admin.create_team(team, actor="test")
    issued = services.admin.create_client(
        team="app-team",
        name="portal",
        kind=ClientKind.APPLICATION,
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        jwks=None,
        paths=["federated-login", PATH],
        scopes=["profile"],
        audiences=["https://portal.example"],
        actor="test",
    )
    assert issued.credential_id is not None
    portal = Registered(issued.client_id, issued.client_secret, issued.credential_id)
    desk = Desk(services, http, clock, Upstream(services, clock), portal)
    desk.key("support", "identity-ops", "support")
    desk.key("approver", "identity-ops", "approver")
    desk.key("operator", "identity-ops", "operator")
    services.recovery.add_channel("alice", "email", "alice@example.com", actor="enrolment")
    clock.advance(1)  # the oldest channel is the default one
    services.recovery.add_channel("alice", "sms", "+15551234567", actor="enrolment")
    clock.advance(1)
    return desk


@pytest.fixture
def settings(tmp_path: Path, db_url: str | None) -> Settings:
    """As in conftest, with the background dispatcher idle: the tests read the outbox."""
    return Settings(data_dir=tmp_path / "data", db_url=db_url, issuer=ISSUER, notify_interval=3600)


@pytest.fixture
def desk(services: Services, http: TestClient, clock: FrozenClock) -> Desk:
    return _setup(services, http, clock)


@pytest.fixture
def custom(tmp_path: Path, db_url: str | None, clock: FrozenClock) -> Iterator[Callable[..., Desk]]:
    """A desk on a variant of the bundled map: each (old, new) pair edits the YAML text."""
    opened: list[tuple[Services, TestClient]] = []

    def build(*edits: tuple[str, str]) -> Desk:
        text = BUNDLED_PATHS.read_text(encoding="utf-8")
        for old, new in edits:
            assert text.count(old) == 1, old
            text = text.replace(old, new)
        paths = tmp_path / "paths.yaml"
        paths.write_text(text, encoding="utf-8")
        settings = Settings(
            data_dir=tmp_path / "data",
            db_url=db_url,
            issuer=ISSUER,
            paths_file=paths,
            notify_interval=3600,
        )
        services = build_services(settings, clock=clock)
        client = TestClient(create_app(services), base_url=ISSUER, raise_server_exceptions=False)
        client.__enter__()
        opened.append((services, client))
        return _setup(services, client, clock)

    yield build
    for services, client in opened:
        client.__exit__(None, None, None)
        services.close()


TWO_APPROVERS = (
    "        count: 1\n        team: identity-ops\n        role: approver\n        expires: 30m",
    "        count: 2\n        team: identity-ops\n        role: approver\n        expires: 1m",
)
DPOP_REQUIRED = ("    grant: recovery\n", "    grant: recovery\n    binding: dpop\n")
REVOKE_LOGINS = (
    "      revokes:\n        sessions: true\n",
    "      revokes:\n        sessions: true\n        credential_kinds: [upstream-login]\n",
)
RATE_ONE = ("        max: 3\n        per: 30d", "        max: 1\n        per: 30d")
NO_PROOFING_NO_APPROVAL = (
    (
        "      proofing: [one_time_code, upstream_reauthentication]\n",
        "      proofing: []\n",
    ),
    (
        "        count: 1\n        team: identity-ops",
        "        count: 0\n        team: identity-ops",
    ),
    ("      notify_subject: true\n", "      notify_subject: false\n"),
)


# --- the state machine ------------------------------------------------------------------------


def test_state_machine_is_explicit() -> None:
    """Every state has its transitions; terminal states have none, and the diagram names all."""
    assert set(TRANSITIONS) == set(State)
    assert {s for s in State if s.terminal} == {
        State.REDEEMED,
        State.DENIED,
        State.EXPIRED,
        State.LOCKED,
        State.CANCELLED,
    }
    assert State.REDEEMED in TRANSITIONS[State.GRANTED]
    assert State.GRANTED not in TRANSITIONS[State.PROOFING]
    doc = State.__doc__ or ""
    assert "stateDiagram-v2" in doc
    for s in State:
        assert s.value in doc


def test_masking() -> None:
    """Addresses are masked for support: email keeps the domain, phones the last four digits."""
    assert mask("email", "alice@example.com") == "a***@example.com"
    assert mask("sms", "+15551234567") == "***4567"
    assert mask("push", "device-123") == "de***"


# --- the happy path ----------------------------------------------------------------------------


class TestHappyPath:
    def test_api_end_to_end(self, desk: Desk) -> None:
        """Request, code, re-authentication, approval, grant to the subject, redemption: a session
        under the recovery node; the old session ends; nobody but the subject saw a secret."""
        old = desk.login()
        r = desk.open()
        assert r.status_code == 201
        rid = r.json()["id"]
        assert r.json()["state"] == "requested"
        code = desk.code(rid)
        assert len(code) == 8
        assert code.isdigit()
        r1 = desk.proof(rid, code=code)
        assert r1.json()["state"] == "proofing"
        r2 = desk.proof(rid, assertion=desk.idp.assertion("alice"))
        assert r2.json()["state"] == "awaiting_approval"
        r3 = desk.approve(rid)
        assert r3.status_code == 201
        assert r3.json()["state"] == "granted"
        grant = desk.grant(rid)
        assert grant.startswith("ttrg_")
        for resp in (r, r1, r2, r3):
            assert code not in resp.text
            assert grant not in resp.text
        (delivered,) = desk.messages("recovery.grant", rid)
        assert delivered["recipient"] == "alice@example.com"
        assert delivered["grant_type"] == RECOVERY
        tokens = desk.redeem(grant)
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        assert body["token_type"] == "Bearer"
        assert "refresh_token" in body
        claims = desk.services.authority.tokens.verify(body["access_token"])
        assert claims["sub"] == "alice"
        assert claims["tt_path"] == PATH
        assert claims["tt_anc"][-1] == rid
        assert desk.active(body["access_token"])
        assert not desk.active(old["access_token"])
        status = desk.api("support", "GET", f"/admin/recovery/requests/{rid}").json()
        assert status["state"] == "redeemed"
        session_id = status["grant"]["session"]
        with desk.services.store.read() as tx:
            session = tx.get_node(session_id)
            node = tx.get_node(rid)
        assert session is not None
        assert node is not None
        assert node.kind is NodeKind.RECOVERY_GRANT
        assert session.parents == (rid,)
        assert session.meta["recovery"] == {
            "request": rid,
            "requester": desk.key_ids["support"],
            "approvers": [desk.key_ids["approver"]],
        }
        done = desk.messages("recovery.completed", rid)
        assert {m["recipient"] for m in done} == {"alice@example.com", "+15551234567"}

    def test_cli_end_to_end(self, desk: Desk, settings: Settings) -> None:
        """The same flow from the CLI, each step acting as the admin key in the environment."""
        common = ["--data", str(settings.data_dir)] + (
            ["--db", settings.db_url] if settings.db_url else []
        )
        runner = CliRunner()

        def run(key: str | None, *args: str) -> Any:
            env = {"TOKENTRAIL_ADMIN_KEY": desk.keys[key]} if key else {}
            result = runner.invoke(cli_app, ["recovery", *args, *common], env=env)
            assert result.exit_code == 0, result.output
            return result

        added = run(None, "channel", "add", "bob", "--kind", "email", "--address", "b@example.com")
        assert "registered for bob" in added.output
        assert "b@example.com" in run(None, "channel", "list", "bob").output
        opened = run(
            "support",
            "request",
            "--subject",
            "bob",
            "--client",
            desk.portal.client_id,
            "--reason",
            "ticket 99",
            "--json",
        )
        rid = json.loads(opened.output)["id"]
        code = desk.code(rid)
        assert code not in opened.output
        run("support", "proof", rid, "--code", code)
        assertion = settings.data_dir / "assertion.jwt"
        assertion.write_text(desk.idp.assertion("bob"), encoding="utf-8")
        shown = run("support", "proof", rid, "--assertion-file", str(assertion))
        assert "awaiting_approval" in shown.output
        approved = run("approver", "approve", rid, "--note", "called the subject back")
        assert "[granted]" in approved.output
        grant = desk.grant(rid)
        assert grant not in approved.output
        assert desk.redeem(grant).status_code == 200
        status = json.loads(run("support", "status", rid, "--json").output)
        assert status["state"] == "redeemed"
        listed = run(None, "status", "--subject", "bob")
        assert rid in listed.output

    def test_cli_freeze_and_unfreeze(self, desk: Desk, settings: Settings) -> None:
        """The CLI freezes and unfreezes recovery globally and per path; status shows freezes."""
        common = ["--data", str(settings.data_dir)] + (
            ["--db", settings.db_url] if settings.db_url else []
        )
        run = CliRunner().invoke
        r = run(cli_app, ["recovery", "freeze", "--reason", "fraud wave", *common])
        assert r.exit_code == 0, r.output
        assert "every recovery path frozen" in r.output
        r = run(cli_app, ["recovery", "freeze", "--path", PATH, "--reason", "x", *common])
        assert "path helpdesk-recovery frozen" in r.output
        r = run(cli_app, ["recovery", "freeze", "--reason", "again", *common])
        assert "already frozen" in r.output
        assert "FROZEN all recovery paths" in run(cli_app, ["recovery", "status", *common]).output
        assert desk.open().status_code == 403
        r = run(cli_app, ["recovery", "unfreeze", *common])
        assert "still frozen: helpdesk-recovery" in r.output
        env = {"TOKENTRAIL_ADMIN_KEY": desk.keys["support"]}
        r = run(cli_app, ["recovery", "unfreeze", "--path", PATH, *common], env=env)
        assert r.exit_code == 0, r.output
        r = run(cli_app, ["recovery", "unfreeze", *common])
        assert r.exit_code == 1
        assert "not frozen" in r.output
        assert desk.open().status_code == 201

    def test_cli_refusals(self, desk: Desk, settings: Settings) -> None:
        """Workflow commands need an admin key, and refusals exit 1 with the reason."""
        common = ["--data", str(settings.data_dir)] + (
            ["--db", settings.db_url] if settings.db_url else []
        )
        run = CliRunner().invoke
        args = ["recovery", "request", "--subject", "alice", "--client", desk.portal.client_id]
        r = run(cli_app, [*args, "--reason", "x", *common])
        assert r.exit_code == 1
        assert "TOKENTRAIL_ADMIN_KEY" in r.output
        r = run(cli_app, [*args, "--reason", "x", "--key", "tta_nope", *common])
        assert "unknown or revoked admin key" in r.output
        rid = desk.opened()
        env = {"TOKENTRAIL_ADMIN_KEY": desk.keys["support"]}
        for cmd in (
            ["approve", rid],
            ["deny", rid, "--reason", "no"],
            ["proof", rid, "--code", "00000000"],
            ["proof", rid, "--assertion-file", str(settings.data_dir / "missing.jwt")],
            ["channel", "add", "alice", "--kind", "fax", "--address", "1"],
            ["channel", "remove", "ch_nope"],
            ["status", "rec_nope"],
        ):
            r = run(cli_app, ["recovery", *cmd, *common], env=env)
            assert r.exit_code == 1, (cmd, r.output)
        r = run(cli_app, ["recovery", "resend", rid, *common], env=env)
        assert r.exit_code == 0, r.output
        r = run(cli_app, ["recovery", "cancel", rid, "--reason", "duplicate", *common], env=env)
        assert "closed    by" in r.output
        (ch, _sms) = desk.services.recovery.channels("alice")
        r = run(cli_app, ["recovery", "channel", "remove", ch["id"], *common])
        assert r.exit_code == 0, r.output
        r = run(cli_app, ["recovery", "channel", "list", "alice", "--json", *common])
        assert [c["kind"] for c in json.loads(r.output)] == ["sms"]

    def test_dpop_bound_redemption(self, desk: Desk) -> None:
        """A grant pinned to a DPoP key at proofing redeems with that key into a DPoP session."""
        key = new_key()
        _rid, grant = desk.granted(dpop_jkt=thumbprint(key))
        r = desk.redeem(grant, DPoP=proof(key, "POST", TOKEN_URL, iat=desk.clock.now()))
        assert r.status_code == 200, r.text
        assert r.json()["token_type"] == "DPoP"
        claims = desk.services.authority.tokens.verify(r.json()["access_token"])
        assert claims["cnf"] == {"jkt": thumbprint(key)}

    def test_optional_dpop_binds_the_session(self, desk: Desk) -> None:
        """On the bundled path DPoP is optional: a proof at redemption binds the new tokens."""
        key = new_key()
        _rid, grant = desk.granted()
        r = desk.redeem(grant, DPoP=proof(key, "POST", TOKEN_URL, iat=desk.clock.now()))
        assert r.json()["token_type"] == "DPoP"

    def test_file_notifier_delivers_code_in_clear_outbox_keeps_it_sealed(
        self, desk: Desk, settings: Settings
    ) -> None:
        """The dispatcher writes the code to the subject's channel; the database holds no code."""
        rid = desk.opened()
        code = desk.code(rid)
        with desk.services.store.read() as tx:
            stored = json.dumps([r["payload"] for r in tx.notifications()])
            row = tx.get_recovery(rid)
        assert code not in stored
        assert row is not None
        assert code not in json.dumps(row)
        assert desk.services.dispatcher.run_once() >= 1
        lines = (settings.data_dir / "notifications.jsonl").read_text().splitlines()
        sent = [json.loads(x) for x in lines if json.loads(x)["topic"] == "recovery.code"]
        assert sent[0]["recipient"] == "alice@example.com"
        assert sent[0]["payload"]["code"] == code

    def test_ledger_never_holds_code_or_grant(self, desk: Desk) -> None:
        """Audit records name the request, the actors and evidence, never the code or the grant."""
        rid = desk.opened()
        code = desk.code(rid)
        desk.proof(rid, code="12345678" if code != "12345678" else "87654321")
        desk.proof(rid, code=code)
        desk.proof(rid, assertion=desk.idp.assertion("alice"))
        desk.approve(rid)
        grant = desk.grant(rid)
        desk.redeem(grant)
        everything = json.dumps(desk.events(""))
        assert code not in everything
        assert grant not in everything
        kinds = {e["event"] for e in desk.events("recovery.")}
        assert {
            "recovery.requested",
            "recovery.code_sent",
            "recovery.proof_failed",
            "recovery.proofed",
            "recovery.approved",
            "recovery.granted",
            "recovery.redeemed",
        } <= kinds

    def test_incident_report_shows_the_recovery(self, desk: Desk) -> None:
        """An incident on the recovered subject names the recovery owner and shows who did what."""
        rid, grant = desk.granted()
        assert desk.redeem(grant).status_code == 200
        incident = desk.services.incidents.open(subject="alice", reason="takeover", actor="test")
        report = build_report(desk.services.store, desk.services.paths, incident)
        assert report["accountable"]["team"] == "identity-ops"
        assert report["accountable"]["path"] == PATH
        actors = {(e["event"], e["actor"]) for e in report["timeline"]}
        assert ("recovery.requested", desk.key_ids["support"]) in actors
        assert ("recovery.approved", desk.key_ids["approver"]) in actors
        text = to_markdown(report)
        assert f"recovery={rid}" in text
        assert desk.key_ids["approver"] in text

    def test_lineage_shows_session_under_recovery(self, desk: Desk) -> None:
        """The recovery node's lineage tree holds the session, its refresh and access tokens."""
        rid, grant = desk.granted()
        desk.redeem(grant)
        desk.key("viewer", "identity-ops", "viewer")
        tree = desk.api("viewer", "GET", f"/admin/nodes/{rid}/lineage").json()
        assert tree["root"]["kind"] == "recovery_grant"
        kinds = sorted(d["kind"] for d in tree["descendants"])
        assert kinds == ["access_token", "refresh_token", "session"]

    def test_containment_revokes_named_credential_kinds(self, custom: Callable[..., Desk]) -> None:
        """A path naming upstream-login revokes the subject's upstream login node on redemption."""
        d = custom(REVOKE_LOGINS)
        d.login()
        _rid, grant = d.granted()
        r = d.redeem(grant)
        assert r.status_code == 200, r.text
        (event,) = d.events("recovery.redeemed")
        assert len(event["data"]["revoked_credentials"]) == 1
        assert len(event["data"]["revoked_sessions"]) == 1
        assert d.active(r.json()["access_token"])

    def test_path_without_proofing_or_approvals_grants_at_once(
        self, custom: Callable[..., Desk]
    ) -> None:
        """A (flagged) path with no proofing and no approvals grants when the request opens."""
        d = custom(*NO_PROOFING_NO_APPROVAL)
        r = d.open()
        assert r.json()["state"] == "granted"
        assert d.messages("recovery.requested") == []
        assert d.redeem(d.grant(r.json()["id"])).status_code == 200


# --- refusals -----------------------------------------------------------------------------------


class TestApprovals:
    def test_self_approval_refused(self, desk: Desk) -> None:
        """A requester who also holds the approver role cannot approve their own request."""
        desk.key("both", "identity-ops", "support", "approver")
        rid = desk.proofed()
        desk.api("both", "POST", f"/admin/recovery/requests/{rid}/cancel", {"reason": "x"})
        rid = desk.opened(who="both")
        desk.proof(rid, "both", code=desk.code(rid))
        desk.proof(rid, "both", assertion=desk.idp.assertion("alice"))
        r = desk.approve(rid, "both")
        assert r.status_code == 403
        assert "cannot approve their own" in r.json()["error_description"]
        assert desk.row(rid)["state"] == "awaiting_approval"
        (refusal,) = [e for e in desk.events("recovery.refused") if e["node_id"] == rid]
        assert refusal["actor"] == desk.key_ids["both"]

    def test_approval_without_the_role_refused(self, desk: Desk) -> None:
        """An admin key of the right team without the approver role is refused by the path."""
        desk.key("boss", "identity-ops", "admin")
        rid = desk.proofed()
        r = desk.approve(rid, "boss")
        assert r.status_code == 403
        assert "need the 'approver' role" in r.json()["error_description"]

    def test_support_key_cannot_reach_approve(self, desk: Desk) -> None:
        """A support-only key is refused at the route (role approver required) and audited."""
        rid = desk.proofed()
        r = desk.approve(rid, "support")
        assert r.status_code == 403
        assert desk.events("admin.denied")

    def test_approval_from_another_team_refused(self, desk: Desk) -> None:
        """An approver of a team the path does not name is refused."""
        desk.key("app-approver", "app-team", "approver")
        rid = desk.proofed()
        r = desk.approve(rid, "app-approver")
        assert r.status_code == 403
        assert "come from team 'identity-ops'" in r.json()["error_description"]

    def test_approval_before_proofing_refused(self, desk: Desk) -> None:
        """Approvers see evidence first: approving before proofing is complete is a conflict."""
        rid = desk.opened()
        r = desk.approve(rid)
        assert r.status_code == 409
        assert "proofing is not complete" in r.json()["error_description"]

    def test_approvals_expire(self, custom: Callable[..., Desk]) -> None:
        """With two approvers needed, an approval that lapsed does not count until renewed."""
        d = custom(TWO_APPROVERS)
        d.key("approver2", "identity-ops", "approver")
        rid = d.proofed()
        assert d.approve(rid).json()["state"] == "awaiting_approval"
        assert d.approve(rid).status_code == 409  # already approved, still valid
        d.clock.advance(61)
        r = d.approve(rid, "approver2")
        assert r.json()["state"] == "awaiting_approval"
        assert [a["valid"] for a in r.json()["approvals"]] == [False, True]
        r = d.approve(rid)
        assert r.json()["state"] == "granted"

    def test_deny(self, desk: Desk) -> None:
        """An approver denies: the request is closed, its grant unusable, the subject told."""
        rid, grant = desk.granted()
        url = f"/admin/recovery/requests/{rid}/deny"
        r = desk.api("approver", "POST", url, {"reason": "caller failed callback"})
        assert r.json()["state"] == "denied"
        r = desk.redeem(grant)
        assert r.json()["error"] == "invalid_grant"
        assert "request denied" in r.json()["error_description"]
        assert desk.messages("recovery.denied", rid)
        assert desk.approve(rid).status_code == 409
        assert desk.api("approver", "POST", url, {"reason": "again"}).status_code == 409

    def test_close_needs_reason(self, desk: Desk) -> None:
        """Denying or cancelling without a reason is refused before anything changes."""
        rid = desk.opened()
        with pytest.raises(ValueError, match="needs a reason"):
            desk.services.recovery.cancel(Actor("x", "identity-ops", ("support",)), rid, reason=" ")


class TestProofing:
    def test_wrong_code_bounded_then_locks(self, desk: Desk) -> None:
        """Each wrong code counts; the fifth locks the request; the right code is then refused."""
        rid = desk.opened()
        code = desk.code(rid)
        wrong = "00000000" if code != "00000000" else "11111111"
        for left in range(MAX_ATTEMPTS - 1, 0, -1):
            r = desk.proof(rid, code=wrong)
            assert r.status_code == 403
            assert f"{left} attempt(s) left" in r.json()["error_description"]
        r = desk.proof(rid, code=wrong)
        assert "now locked" in r.json()["error_description"]
        assert desk.row(rid)["state"] == "locked"
        r = desk.proof(rid, code=code)
        assert r.status_code == 409
        assert desk.messages("recovery.locked", rid)
        with desk.services.store.read() as tx:
            assert tx.get_revocation(rid) is not None

    def test_expired_code_refused(self, desk: Desk) -> None:
        """A code past its 10 minutes is refused; a resent code works and the old one does not."""
        rid = desk.opened()
        old = desk.code(rid)
        desk.clock.advance(CODE_TTL + 1)
        r = desk.proof(rid, code=old)
        assert r.status_code == 403
        assert "expired" in r.json()["error_description"]
        r = desk.api("support", "POST", f"/admin/recovery/requests/{rid}/resend")
        assert r.status_code == 201
        new = desk.code(rid)
        if new != old:
            assert desk.proof(rid, code=old).status_code == 403
        assert desk.proof(rid, code=new).json()["state"] == "proofing"

    def test_resend_is_bounded(self, desk: Desk) -> None:
        """A request sends at most three codes."""
        rid = desk.opened()
        url = f"/admin/recovery/requests/{rid}/resend"
        for _ in range(MAX_CODES - 1):
            assert desk.api("support", "POST", url).status_code == 201
        r = desk.api("support", "POST", url)
        assert r.status_code == 403
        assert "already sent 3 codes" in r.json()["error_description"]

    def test_reauthentication_for_another_subject_counts_as_failure(self, desk: Desk) -> None:
        """An assertion about someone else, a replayed one, or a forged one fails an attempt."""
        rid = desk.opened()
        r = desk.proof(rid, assertion=desk.idp.assertion("mallory"))
        assert "names another subject" in r.json()["error_description"]
        assert desk.proof(rid, assertion=desk.idp.assertion("alice")).status_code == 201
        desk.services.recovery.add_channel("carol", "push", "device-9", actor="enrolment")
        rid2 = desk.opened("carol")
        r = desk.proof(rid2, assertion="not-a-jwt")
        assert "upstream re-authentication failed" in r.json()["error_description"]
        assert desk.row(rid)["attempts"] == 1

    def test_replayed_assertion_refused(self, desk: Desk) -> None:
        """An assertion already used for a login cannot also prove a recovery."""
        assertion = desk.idp.assertion("alice")
        assert desk.portal.secret is not None
        desk.http.post(
            "/oauth/token",
            data={"grant_type": JWT_BEARER, "assertion": assertion},
            auth=(desk.portal.client_id, desk.portal.secret),
        )
        rid = desk.opened()
        r = desk.proof(rid, assertion=assertion)
        assert "already used" in r.json()["error_description"]

    def test_proofing_input_checks(self, desk: Desk) -> None:
        """No evidence, a bad thumbprint, a repeated step and late proofing are refused."""
        rid = desk.opened()
        assert desk.proof(rid).status_code == 400
        assert desk.proof(rid, code="1", dpop_jkt="short").status_code == 400
        assert desk.proof(rid, code=desk.code(rid)).status_code == 201
        assert desk.proof(rid, code="12345678").status_code == 409
        desk.proof(rid, assertion=desk.idp.assertion("alice"))
        assert desk.proof(rid, code="12345678").status_code == 409
        url = f"/admin/recovery/requests/{rid}/resend"
        assert desk.api("support", "POST", url).status_code == 409

    def test_step_the_path_does_not_use(self, custom: Callable[..., Desk]) -> None:
        """Evidence for a step the path does not declare is a bad request."""
        d = custom(
            (
                "      proofing: [one_time_code, upstream_reauthentication]\n",
                "      proofing: [upstream_reauthentication]\n",
            )
        )
        rid = d.opened()
        assert d.messages("recovery.code", rid) == []
        r = d.proof(rid, code="12345678")
        assert r.status_code == 400
        assert "does not use one_time_code" in r.json()["error_description"]
        assert d.api("support", "POST", f"/admin/recovery/requests/{rid}/resend").status_code == 400


class TestRequests:
    def test_expired_request_refused(self, desk: Desk) -> None:
        """A request not granted within its time expires; acting on it is refused."""
        rid = desk.opened()
        desk.clock.advance(REQUEST_TTL + 1)
        listed = desk.api("support", "GET", "/admin/recovery/requests?subject=alice").json()
        assert listed["requests"][0]["state"] == "expired"
        r = desk.proof(rid, code=desk.code(rid))
        assert r.status_code == 409
        assert "has expired" in r.json()["error_description"]
        assert desk.row(rid)["state"] == "expired"
        assert desk.events("recovery.expired")

    def test_status_of_expired_request(self, desk: Desk) -> None:
        """Reading a request past its time records the expiry and shows it."""
        rid = desk.opened()
        desk.clock.advance(REQUEST_TTL + 1)
        r = desk.api("support", "GET", f"/admin/recovery/requests/{rid}")
        assert r.json()["state"] == "expired"
        assert desk.row(rid)["state"] == "expired"

    def test_only_support_of_the_owning_team_opens(self, desk: Desk) -> None:
        """Support of another team cannot open a request on the path; the refusal is audited."""
        desk.key("app-support", "app-team", "support")
        r = desk.open(who="app-support")
        assert r.status_code == 403
        assert "recovered by team 'identity-ops'" in r.json()["error_description"]
        desk.key("boss", "identity-ops", "admin")
        r = desk.open(who="boss")
        assert "support role" in r.json()["error_description"]

    def test_request_input_checks(self, desk: Desk, make: Any) -> None:
        """Unknown paths, clients, channels, non-recovery paths and duplicates are refused."""
        assert desk.open(path="nope").status_code == 404
        assert desk.open(path="federated-login").status_code == 400
        assert desk.open(client_id="cl_nope").status_code == 404
        other = make.client(team="app-team")
        assert desk.open(client_id=other.client_id).status_code == 400
        assert desk.open("nobody").status_code == 400
        assert desk.open(channel="ch_nope").status_code == 404
        assert desk.open(reason=" ").status_code == 400
        sms = desk.services.recovery.channels("alice")[1]["id"]
        assert desk.open(channel=sms).status_code == 201
        (sent,) = desk.messages("recovery.code")
        assert sent["recipient"] == "+15551234567"
        r = desk.open()
        assert r.status_code == 409
        assert "already has an open recovery request" in r.json()["error_description"]

    def test_requester_cannot_use_a_channel_they_registered(self, desk: Desk) -> None:
        """A support engineer cannot route the code and grant to a channel they added."""
        desk.services.recovery.add_channel(
            "dave", "email", "attacker@example.com", actor=desk.key_ids["support"]
        )
        r = desk.open("dave")
        assert r.status_code == 403
        assert "registered this channel" in r.json()["error_description"]

    def test_cancel(self, desk: Desk) -> None:
        """Support withdraws a request; a new one can then be opened."""
        rid = desk.opened()
        url = f"/admin/recovery/requests/{rid}/cancel"
        r = desk.api("support", "POST", url, {"reason": "opened by mistake"})
        assert r.json()["state"] == "cancelled"
        assert desk.open().status_code == 201

    def test_visibility_is_team_scoped(self, desk: Desk) -> None:
        """A key of an unrelated team sees no request; approvers see theirs."""
        rid = desk.opened()
        desk.key("app-viewer", "app-team", "viewer")
        assert desk.api("app-viewer", "GET", f"/admin/recovery/requests/{rid}").status_code == 404
        assert desk.api("app-viewer", "GET", "/admin/recovery/requests").json()["requests"] == []
        listed = desk.api("approver", "GET", "/admin/recovery/requests?state=requested").json()
        assert [x["id"] for x in listed["requests"]] == [rid]
        bad = desk.api("approver", "GET", "/admin/recovery/requests?state=bogus")
        assert bad.status_code == 400

    def test_rate_exceeded_refused_and_detected(self, desk: Desk) -> None:
        """Beyond 3 requests per subject per 30 days the next is refused and the detection fires."""
        for _ in range(3):
            rid = desk.opened()
            url = f"/admin/recovery/requests/{rid}/cancel"
            desk.api("support", "POST", url, {"reason": "retry"})
        r = desk.open()
        assert r.status_code == 403
        assert "reached the recovery rate" in r.json()["error_description"]
        (fired,) = desk.events("detection.recovery_volume")
        assert fired["subject"] == "alice"
        assert fired["data"]["evidence"]["scope"] == "subject"
        assert fired["data"]["response"] == "notify"
        notes = [m for m in desk.messages("detection.recovery_volume")]
        assert notes
        assert notes[0]["recipient"] == "soc@example.com"

    def test_path_wide_volume_fires_without_refusing(self, custom: Callable[..., Desk]) -> None:
        """More requests on a path than ten subjects' worth of its rate fires the detection."""
        d = custom(RATE_ONE)
        for i in range(11):
            subject = f"user{i}"
            d.services.recovery.add_channel(subject, "email", f"{subject}@ex.com", actor="hr")
            assert d.open(subject).status_code == 201
        (fired,) = d.events("detection.recovery_volume")
        assert fired["data"]["evidence"]["scope"] == "path"
        assert fired["data"]["evidence"]["count"] == 11


class TestFreeze:
    def test_recovery_while_frozen_refused(self, desk: Desk) -> None:
        """A global freeze refuses new requests with its reason; unfreezing restores them."""
        r = desk.api("support", "POST", "/admin/recovery/freeze", {"reason": "fraud wave"})
        assert r.status_code == 201
        r = desk.open()
        assert r.status_code == 403
        assert "frozen globally: fraud wave" in r.json()["error_description"]
        assert desk.messages("recovery.frozen")[0]["recipient"] == "idops@example.com"
        desk.key("responder", "secops", "responder")
        assert desk.api("support", "POST", "/admin/recovery/unfreeze", {}).status_code == 403
        r = desk.api("responder", "POST", "/admin/recovery/unfreeze", {})
        assert r.json()["still_frozen"] == []
        assert desk.open().status_code == 201

    def test_path_freeze_stops_redemption(self, desk: Desk) -> None:
        """A grant issued before a path freeze cannot be redeemed while the freeze holds."""
        _rid, grant = desk.granted()
        body = {"path": PATH, "reason": "investigating"}
        desk.api("approver", "POST", "/admin/recovery/freeze", body)
        again = desk.api("approver", "POST", "/admin/recovery/freeze", body)
        assert again.json()["already_frozen"] is True
        r = desk.redeem(grant)
        assert r.json()["error"] == "invalid_grant"
        assert "frozen" in r.json()["error_description"]
        freezes = desk.api("support", "GET", "/admin/recovery/freezes").json()["freezes"]
        assert [f["scope"] for f in freezes] == [PATH]
        desk.services.recovery.unfreeze("test", path_id=PATH)
        assert desk.redeem(grant).status_code == 200

    def test_freeze_every_step(self, desk: Desk) -> None:
        """Proofing and approval are refused while frozen too."""
        rid = desk.opened()
        desk.services.recovery.freeze("test", reason="stop")
        assert desk.proof(rid, code=desk.code(rid)).status_code == 403
        desk.services.recovery.unfreeze("test")
        desk.proof(rid, code=desk.code(rid))
        desk.proof(rid, assertion=desk.idp.assertion("alice"))
        desk.services.recovery.freeze("test", path_id=PATH, reason="stop")
        assert desk.approve(rid).status_code == 403

    def test_freeze_input_checks(self, desk: Desk) -> None:
        """A freeze needs a reason and a recovery path; unfreezing what is not frozen conflicts."""
        with pytest.raises(ValueError, match="needs a reason"):
            desk.services.recovery.freeze("test", reason=" ")
        with pytest.raises(ValueError, match="not a recovery path"):
            desk.services.recovery.freeze("test", path_id="federated-login", reason="x")
        with pytest.raises(NotFound):
            desk.services.recovery.unfreeze("test", path_id="nope")
        with pytest.raises(Conflict, match="not frozen on path"):
            desk.services.recovery.unfreeze("test", path_id=PATH)


class TestRedemption:
    def test_redeeming_twice_refused_and_revokes_session(self, desk: Desk) -> None:
        """A grant used twice is refused, and the session from its first use is revoked."""
        _rid, grant = desk.granted()
        first = desk.redeem(grant).json()
        r = desk.redeem(grant)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"
        assert "already redeemed" in r.json()["error_description"]
        assert not desk.active(first["access_token"])
        assert desk.events("recovery.grant_reused")

    def test_wrong_dpop_key_refused(self, desk: Desk) -> None:
        """A pinned grant presented with another key is refused, locked and detected."""
        right, wrong = new_key(), new_key()
        rid, grant = desk.granted(dpop_jkt=thumbprint(right))
        r = desk.redeem(grant, DPoP=proof(wrong, "POST", TOKEN_URL, iat=desk.clock.now()))
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"
        assert "another DPoP key" in r.json()["error_description"]
        assert desk.row(rid)["state"] == "locked"
        (fired,) = desk.events("detection.binding_mismatch")
        assert fired["node_id"] == rid
        r = desk.redeem(grant, DPoP=proof(right, "POST", TOKEN_URL, iat=desk.clock.now()))
        assert r.json()["error"] == "invalid_grant"

    def test_pinned_grant_without_proof_refused(self, desk: Desk) -> None:
        """A pinned grant without any DPoP proof asks for one and stays usable."""
        key = new_key()
        rid, grant = desk.granted(dpop_jkt=thumbprint(key))
        r = desk.redeem(grant)
        assert r.json()["error"] == "invalid_dpop_proof"
        assert desk.row(rid)["state"] == "granted"

    def test_path_requiring_dpop(self, custom: Callable[..., Desk]) -> None:
        """On a path with binding dpop, redemption without a proof is refused."""
        d = custom(DPOP_REQUIRED)
        _rid, grant = d.granted()
        r = d.redeem(grant)
        assert r.json()["error"] == "invalid_dpop_proof"
        key = new_key()
        r = d.redeem(grant, DPoP=proof(key, "POST", TOKEN_URL, iat=d.clock.now()))
        assert r.status_code == 200, r.text

    def test_support_engineer_at_token_endpoint_refused(self, desk: Desk) -> None:
        """The support engineer's admin key is no client credential: the token endpoint refuses."""
        rid, grant = desk.granted()
        data = {"grant_type": RECOVERY, "recovery_grant": grant}
        auth = {"Authorization": f"Bearer {desk.keys['support']}"}
        r = desk.http.post("/oauth/token", data=data, headers=auth)
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"
        r = desk.http.post(
            "/oauth/token", data=data, auth=(desk.portal.client_id, desk.keys["support"])
        )
        assert r.status_code == 401
        assert desk.row(rid)["state"] == "granted"

    def test_another_client_refused_and_grant_revoked(self, desk: Desk, make: Any) -> None:
        """A grant presented by a client other than the subject's application locks the request."""
        rid, grant = desk.granted()
        tooling = make.client(team="identity-ops", paths=[PATH])
        r = desk.redeem(grant, client=tooling)
        assert r.status_code == 400
        assert "not issued to this client" in r.json()["error_description"]
        assert desk.row(rid)["state"] == "locked"
        assert desk.redeem(grant).json()["error"] == "invalid_grant"

    def test_expired_grant_refused(self, desk: Desk) -> None:
        """A grant past its ten minutes is refused and its request recorded expired."""
        rid, grant = desk.granted()
        desk.clock.advance(600)
        r = desk.redeem(grant)
        assert r.json()["error_description"] == "recovery grant has expired"
        assert desk.row(rid)["state"] == "expired"

    def test_unknown_and_malformed_grants(self, desk: Desk) -> None:
        """A made-up grant, a non-grant string and a missing parameter are refused."""
        assert desk.redeem("ttrg_" + "A" * 43).json()["error"] == "invalid_grant"
        assert desk.redeem("hello").json()["error"] == "invalid_grant"
        assert desk.portal.secret is not None
        r = desk.http.post(
            "/oauth/token",
            data={"grant_type": RECOVERY},
            auth=(desk.portal.client_id, desk.portal.secret),
        )
        assert r.json()["error"] == "invalid_request"

    def test_revoked_grant_refused(self, desk: Desk) -> None:
        """Revoking the recovery node (an incident) makes its grant unusable."""
        rid, grant = desk.granted()
        desk.services.admin.revoke(rid, reason="incident", actor="test")
        r = desk.redeem(grant)
        assert r.json()["error_description"] == "recovery grant has been revoked"

    def test_client_no_longer_on_path(self, desk: Desk) -> None:
        """A client whose registration lost the path cannot redeem."""
        rid, grant = desk.granted()
        with desk.services.store.write() as tx:
            tx.conn.exec_driver_sql(
                "UPDATE clients SET paths = '[\"federated-login\"]' WHERE id = "
                f"'{desk.portal.client_id}'"
            )
        r = desk.redeem(grant)
        assert r.json()["error"] == "unauthorized_client"
        assert desk.row(rid)["state"] == "granted"


class TestAtomicity:
    def test_failed_grant_leaves_no_usable_grant(
        self, desk: Desk, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If issuing the grant fails part way, nothing remains: no hash, no message, no state."""
        rid = desk.proofed()
        original = Tx.append_audit

        def failing(self: Tx, event: str, **kw: Any) -> int:
            if str(event) == "recovery.granted":
                raise RuntimeError("disk full")
            return original(self, event, **kw)

        monkeypatch.setattr(Tx, "append_audit", failing)
        r = desk.approve(rid)
        assert r.status_code == 500
        monkeypatch.undo()
        row = desk.row(rid)
        assert row["state"] == "awaiting_approval"
        assert row["grant_hash"] is None
        assert row["approvals"] == []
        assert desk.messages("recovery.grant") == []
        assert desk.approve(rid).json()["state"] == "granted"

    def test_failed_redemption_changes_nothing(
        self, desk: Desk, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If minting fails during redemption, no session exists, no old session ended, and the
        grant still works afterwards."""
        old = desk.login()
        rid, grant = desk.granted()

        def boom(*_a: Any, **_k: Any) -> Any:
            raise RuntimeError("signing failed")

        monkeypatch.setattr(desk.services.authority, "mint_access_token", boom)
        assert desk.redeem(grant).status_code == 500
        monkeypatch.undo()
        assert desk.row(rid)["state"] == "granted"
        assert desk.active(old["access_token"])
        assert desk.redeem(grant).status_code == 200


class TestChannels:
    def test_api_register_list_remove(self, desk: Desk) -> None:
        """Operators register channels; support sees them masked; the other channels are told."""
        url = "/admin/subjects/erin/channels"
        r = desk.api("operator", "POST", url, {"kind": "email", "address": "erin@example.com"})
        assert r.status_code == 201
        assert r.json()["address"] == "erin@example.com"
        body = {"kind": "sms", "address": "+4915112345678"}
        desk.clock.advance(1)
        desk.api("operator", "POST", url, body)
        told = [m for m in desk.messages("recovery.channel_added") if m["subject"] == "erin"]
        assert [m["recipient"] for m in told] == ["erin@example.com"]
        seen = desk.api("support", "GET", url).json()["channels"]
        assert [c["address"] for c in seen] == ["e***@example.com", "***5678"]
        full = desk.api("operator", "GET", url).json()["channels"]
        assert full[1]["address"] == "+4915112345678"
        r = desk.api("operator", "POST", url, body)
        assert r.status_code == 409
        removed = desk.api("operator", "POST", f"/admin/channels/{full[0]['id']}/remove")
        assert removed.status_code == 201
        again = desk.api("operator", "POST", f"/admin/channels/{full[0]['id']}/remove")
        assert again.status_code == 404
        assert desk.api("support", "POST", url, body).status_code == 403

    @pytest.mark.parametrize(
        ("kind", "address"),
        [("fax", "1"), ("email", "nope"), ("sms", "0123"), ("push", "a\x00b"), ("push", " ")],
    )
    def test_bad_channels_refused(self, desk: Desk, kind: str, address: str) -> None:
        """Unknown kinds and malformed addresses are refused."""
        with pytest.raises(ValueError, match="channel"):
            desk.services.recovery.add_channel("erin", kind, address, actor="test")

    def test_bad_subject_refused(self, desk: Desk) -> None:
        """A subject must be printable and bounded."""
        with pytest.raises(ValueError, match="subject"):
            desk.services.recovery.add_channel("a\nb", "push", "dev1", actor="test")

    def test_removed_channel_stops_the_grant(self, desk: Desk) -> None:
        """If the request's channel is removed, no grant is sent and a resend is refused."""
        rid = desk.proofed()
        ch = desk.row(rid)["channel_id"]
        desk.services.recovery.remove_channel(ch, actor="test")
        r = desk.approve(rid)
        assert r.status_code == 409
        assert desk.messages("recovery.grant") == []

    def test_removed_channel_stops_resend(self, desk: Desk) -> None:
        """Resending a code to a removed channel is refused."""
        rid = desk.opened()
        desk.services.recovery.remove_channel(desk.row(rid)["channel_id"], actor="test")
        r = desk.api("support", "POST", f"/admin/recovery/requests/{rid}/resend")
        assert r.status_code == 409


def test_forbidden_is_the_refusal_type(desk: Desk) -> None:
    """The workflow raises Forbidden for rule refusals when called directly."""
    rid = desk.proofed()
    support = Actor(desk.key_ids["support"], "identity-ops", ("support",))
    with pytest.raises(Forbidden, match="cannot approve their own"):
        desk.services.recovery.approve(support, rid)
    cli = Actor("cli:root", None, ())
    assert desk.services.recovery.status(cli, rid)["id"] == rid
    assert desk.services.recovery.find(cli, subject="alice")[0]["id"] == rid


def test_incident_on_subject_stops_a_pending_recovery(desk: Desk) -> None:
    """An incident on the subject revokes a granted, unredeemed recovery: it opens no session."""
    rid, grant = desk.granted()
    incident = desk.services.incidents.open(subject="alice", reason="takeover", actor="test")
    assert rid in incident.nodes
    r = desk.redeem(grant)
    assert r.json()["error_description"] == "recovery grant has been revoked"
    view = desk.api("support", "GET", f"/admin/recovery/requests/{rid}").json()
    assert view["state"] == "cancelled"
    assert view["close_reason"] == "its lineage node was revoked"


def test_revoked_request_refuses_further_steps(desk: Desk) -> None:
    """A request whose node was revoked from outside is cancelled at its next step."""
    rid = desk.opened()
    desk.services.admin.revoke(rid, reason="operator", actor="test")
    r = desk.proof(rid, code=desk.code(rid))
    assert r.status_code == 409
    assert "was revoked" in r.json()["error_description"]
    assert desk.row(rid)["state"] == "cancelled"


def test_transition_guards(desk: Desk) -> None:
    """Transitions follow the table and compare-and-set on the stored state."""
    from tokentrail.recovery import transition

    rid = desk.opened()
    now = desk.clock.now()
    with desk.services.store.write() as tx:
        row = tx.get_recovery(rid)
        assert row is not None
        with pytest.raises(Conflict, match="cannot become granted"):
            transition(tx, dict(row), State.GRANTED, now)
        stale = {**row, "state": "proofing"}
        with pytest.raises(Conflict, match="changed meanwhile"):
            transition(tx, stale, State.AWAITING_APPROVAL, now)


def test_support_delivery_path_refused(custom: Callable[..., Desk]) -> None:
    """A path that would hand the grant to support is refused: grants go to the subject only."""
    d = custom(("      delivery: subject\n", "      delivery: support\n"))
    r = d.open()
    assert r.status_code == 400
    assert "TT-REC-001" in r.json()["error_description"]
