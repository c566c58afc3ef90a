"""``tokentrail demo``: the seed article's story, end to end, against the embedded default.

It starts a real server on loopback over a fresh data folder with the bundled
path map, then plays the story through the HTTP API:

1. teams, clients, an upstream identity provider and the help desk are set up;
   Alice signs in to the customer portal (a normal session);
2. the billing worker's client secret leaks: a thief mints tokens with it and
   exchanges one into the ledger service downstream;
3. the thief, who also phished Alice's IdP login and mailbox, talks the help
   desk into an account recovery: the code goes to Alice's mailbox, the
   approver approves, the grant goes to Alice's channel, the thief redeems it
   (and Alice's own session ends);
4. detections fire: Alice's app refreshes its revoked session, the thief's
   stolen token is presented after containment;
5. security opens two incidents in one command each (the leaked credential; the
   subject Alice) and everything derived from them dies;
6. the accountability reports are written as HTML and Markdown.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from tokentrail import crypto
from tokentrail.accountability import build_report
from tokentrail.accountability_render import to_html, to_markdown
from tokentrail.config import Settings
from tokentrail.model import AuthMethod, ClientKind
from tokentrail.services import Services, build_services
from tokentrail.web.app import create_app

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
RECOVERY = "urn:tokentrail:params:oauth:grant-type:recovery"
AT = "urn:ietf:params:oauth:token-type:access_token"
IDP = "https://idp.demo.example"


@dataclass
class Outcome:
    """What the demo did, for its summary and its tests."""

    data_dir: Path
    reports: list[Path] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    accountable: dict[str, str] = field(default_factory=dict)
    dead_after_containment: int = 0
    still_alive: int = 0
    detections: list[str] = field(default_factory=list)


class _Http:
    """Minimal JSON/form client on urllib (the demo needs nothing outside the runtime)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _send(self, req: urllib.request.Request) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        return status, (json.loads(raw) if raw else {})

    def form(
        self, path: str, data: dict[str, str], *, basic: tuple[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if basic is not None:
            token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        body = urllib.parse.urlencode(data).encode()
        req = urllib.request.Request(self.base + path, data=body, headers=headers)  # noqa: S310
        return self._send(req)

    def admin(self, key: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - the demo's own loopback server
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        status, out = self._send(req)
        if status >= 300:
            raise RuntimeError(f"{method} {path} answered {status}: {out}")
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """A real tokentrail server on loopback, in a thread."""

    def __init__(self, services: Services, port: int) -> None:
        config = uvicorn.Config(
            create_app(services), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        for _ in range(300):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the demo server did not start")

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def run_demo(data_dir: Path, out_dir: Path, say: Callable[[str], None] = print) -> Outcome:
    """Play the story; write the reports into ``out_dir``; return what happened."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValueError(f"{data_dir} is not empty: the demo needs a fresh data folder")
    port = _free_port()
    settings = Settings(data_dir=data_dir, issuer=f"http://127.0.0.1:{port}")
    services = build_services(settings)
    outcome = Outcome(data_dir)
    try:
        with _Server(services, port):
            _story(services, _Http(settings.issuer), settings.issuer, out_dir, outcome, say)
    finally:
        services.close()
    return outcome


def _story(
    s: Services,
    http: _Http,
    issuer: str,
    out_dir: Path,
    outcome: Outcome,
    say: Callable[[str], None],
) -> None:
    actor = "demo:setup"
    # --- 1. set-up ---------------------------------------------------------------------
    say("1. Set-up: teams, clients, an upstream identity provider, the help desk.")
    for team in ("platform-iam", "identity-ops", "app-team", "secops"):
        s.admin.create_team(team, actor=actor)
    billing = s.admin.create_client(
        team="platform-iam",
        name="billing-worker",
        kind=ClientKind.WORKLOAD,
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        jwks=None,
        paths=["workload-client-credentials", "workload-token-exchange"],
        scopes=["invoices:read", "ledger:write"],
        audiences=["https://billing.internal", "https://ledger.internal"],
        actor=actor,
    )
    portal = s.admin.create_client(
        team="app-team",
        name="customer-portal",
        kind=ClientKind.APPLICATION,
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        jwks=None,
        paths=["federated-login", "helpdesk-recovery"],
        scopes=["profile"],
        audiences=["https://portal.example"],
        actor=actor,
    )
    gateway = s.admin.create_client(
        team="platform-iam",
        name="api-gateway",
        kind=ClientKind.WORKLOAD,
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        jwks=None,
        paths=[],
        scopes=[],
        audiences=[],
        actor=actor,
    )
    assert billing.client_secret is not None
    assert portal.client_secret is not None
    assert gateway.client_secret is not None
    idp_key = crypto.generate_signing_key("ES256")
    s.admin.trust_issuer(
        IDP, jwks={"keys": [idp_key.public_jwk()]}, audience=issuer, max_aal=2, actor=actor
    )
    _, support = s.admin.create_admin_key(
        team="identity-ops", roles=["support"], name="help desk: Sam", actor=actor
    )
    _, approver = s.admin.create_admin_key(
        team="identity-ops", roles=["approver"], name="identity-ops lead: Ana", actor=actor
    )
    _, soc = s.admin.create_admin_key(
        team="secops", roles=["responder", "admin"], name="SOC on call", actor=actor
    )
    s.recovery.add_channel("alice", "email", "alice@example.com", actor=actor)

    def assertion(sub: str) -> str:
        now = int(time.time())
        return crypto.sign_jwt(
            idp_key,
            {
                "iss": IDP,
                "sub": sub,
                "aud": issuer,
                "iat": now,
                "exp": now + 120,
                "jti": secrets.token_urlsafe(12),
                "acr": "aal1",
            },
        )

    portal_auth = (portal.client_id, portal.client_secret)
    billing_auth = (billing.client_id, billing.client_secret)
    gateway_auth = (gateway.client_id, gateway.client_secret)
    _, alice = http.form(
        "/oauth/token",
        {"grant_type": JWT_BEARER, "assertion": assertion("alice")},
        basic=portal_auth,
    )
    say("   Alice signs in to the customer portal: a session with a refresh token.")

    # --- 2. the leak -------------------------------------------------------------------
    say("2. The billing worker's client secret leaks; a thief mints tokens with it.")
    stolen = []
    for _ in range(3):
        _, tok = http.form(
            "/oauth/token",
            {"grant_type": "client_credentials", "audience": "https://billing.internal"},
            basic=billing_auth,
        )
        stolen.append(tok["access_token"])
    _, exchanged = http.form(
        "/oauth/token",
        {
            "grant_type": EXCHANGE,
            "subject_token": stolen[0],
            "subject_token_type": AT,
            "audience": "https://ledger.internal",
            "scope": "ledger:write",
        },
        basic=billing_auth,
    )
    stolen.append(exchanged["access_token"])
    say("   ... and exchanges one for a token addressed to the ledger service downstream.")

    # --- 3. the help-desk recovery -------------------------------------------------------
    say("3. The thief, holding Alice's phished IdP login and mailbox, calls the help desk.")
    req = http.admin(
        support,
        "POST",
        "/admin/recovery/requests",
        {
            "subject": "alice",
            "path": "helpdesk-recovery",
            "client_id": portal.client_id,
            "reason": "caller says she lost her phone",
        },
    )
    rid = req["id"]
    s.dispatcher.run_once()
    code = _mailbox(s, "recovery.code", rid)["code"]
    http.admin(support, "POST", f"/admin/recovery/requests/{rid}/proof", {"code": code})
    http.admin(
        support, "POST", f"/admin/recovery/requests/{rid}/proof", {"assertion": assertion("alice")}
    )
    http.admin(approver, "POST", f"/admin/recovery/requests/{rid}/approve", {})
    s.dispatcher.run_once()
    grant = _mailbox(s, "recovery.grant", rid)["recovery_grant"]
    _, recovered = http.form(
        "/oauth/token", {"grant_type": RECOVERY, "recovery_grant": grant}, basic=portal_auth
    )
    stolen.append(recovered["access_token"])
    say("   The code and the grant went only to Alice's channel (which the thief reads);")
    say("   the support engineer never saw either. The thief now holds a recovered session,")
    say("   and Alice's own session was ended by the recovery.")

    # --- 4. detections -------------------------------------------------------------------
    say("4. Detections fire.")
    http.form(
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": alice["refresh_token"]},
        basic=portal_auth,
    )
    say("   Alice's app refreshes her ended session: revoked_token_use.")

    # --- 5. containment ------------------------------------------------------------------
    say("5. Security contains: one command per incident.")
    inc1 = http.admin(
        soc,
        "POST",
        "/admin/incidents",
        {
            "credential": billing.credential_id,
            "reason": "billing-worker secret found in a public repo",
        },
    )
    inc2 = http.admin(
        soc,
        "POST",
        "/admin/incidents",
        {
            "subject": "alice",
            "reason": "account taken over through a help-desk recovery",
        },
    )
    outcome.incidents = [inc1["id"], inc2["id"]]
    for token in stolen:
        _, intro = http.form("/oauth/introspect", {"token": token}, basic=gateway_auth)
        if intro.get("active"):
            outcome.still_alive += 1
        else:
            outcome.dead_after_containment += 1
    say(
        f"   {outcome.dead_after_containment} of {len(stolen)} stolen tokens are dead; "
        "presenting them again is recorded."
    )
    with s.store.read() as tx:
        outcome.detections = sorted(
            {r["event"] for r in tx.audit_query(events=("detection.",), limit=10_000)}
        )

    # --- 6. reports ----------------------------------------------------------------------
    say("6. Accountability reports:")
    out_dir.mkdir(parents=True, exist_ok=True)
    for inc_id, name in ((inc1["id"], "leaked-credential"), (inc2["id"], "recovery-takeover")):
        report = build_report(s.store, s.paths, s.incidents.get(inc_id))
        for suffix, text in (("html", to_html(report)), ("md", to_markdown(report))):
            path = out_dir / f"report-{name}.{suffix}"
            path.write_text(text, encoding="utf-8")
            outcome.reports.append(path)
        acc = report["accountable"]
        outcome.accountable[name] = acc["team"] or "none"
        say(
            f"   {name}: accountable owner {acc['team']} ({acc['function']}); "
            f"time to contain {report['time_to_contain_seconds']:.1f} s; "
            f"{report['blast_radius']['descendants']} derived nodes"
        )
    s.ledger.checkpoint()
    verify = s.ledger.verify()
    say(f"   Audit ledger: {verify.records} records, intact={verify.ok}.")


def _mailbox(s: Services, topic: str, request_id: str) -> dict[str, Any]:
    """The newest message of ``topic`` the subject received (the file deliverer's output)."""
    path = s.settings.data_dir / "notifications.jsonl"
    found = None
    for line in path.read_text(encoding="utf-8").splitlines():
        msg = json.loads(line)
        if msg["topic"] == topic and msg["payload"].get("request") == request_id:
            found = msg["payload"]
    if found is None:
        raise RuntimeError(f"no {topic} message for {request_id}")
    return dict(found)
