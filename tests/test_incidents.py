"""Incidents: one-step containment, and the accountability report."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import Factory
from tests.oauth.upstream import Upstream
from tokentrail.accountability import build_report
from tokentrail.accountability_render import to_html, to_markdown
from tokentrail.cli import app as cli_app
from tokentrail.clock import FrozenClock
from tokentrail.errors import Conflict, NotFound
from tokentrail.services import Services

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
AT_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture
def story(http: TestClient, make: Factory, services: Services, clock: FrozenClock) -> Any:
    """A workload with two tokens; one is exchanged by a second workload for a downstream API."""
    billing = make.client(audiences=["https://billing.example", "https://ledger.example"])
    gateway = make.client(paths=["workload-token-exchange"], audiences=["https://ledger.example"])

    def token() -> str:
        r = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(billing.client_id, billing.secret),
        )
        return str(r.json()["access_token"])

    first, second = token(), token()
    clock.advance(10)
    r = http.post(
        "/oauth/token",
        data={
            "grant_type": EXCHANGE,
            "subject_token": first,
            "subject_token_type": AT_TYPE,
            "audience": "https://ledger.example",
        },
        auth=(gateway.client_id, gateway.secret),
    )
    assert r.status_code == 200, r.text
    clock.advance(50)
    return {
        "billing": billing,
        "gateway": gateway,
        "tokens": [first, second],
        "exchanged": r.json()["access_token"],
    }


def _active(http: TestClient, reg: Any, token: str) -> bool:
    r = http.post("/oauth/introspect", data={"token": token}, auth=(reg.client_id, reg.secret))
    return bool(r.json()["active"])


class TestContainment:
    def test_open_on_credential_kills_everything_derived(
        self, http: TestClient, services: Services, story: Any
    ) -> None:
        """One command revokes the credential; every token and exchange below it dies."""
        inc = services.incidents.open(
            credential=story["billing"].credential_id,
            reason="secret in a public repo",
            actor="soc",
        )
        assert inc.status == "open"
        assert inc.contained_at == inc.opened_at
        gw = story["gateway"]
        assert not any(_active(http, gw, t) for t in [*story["tokens"], story["exchanged"]])
        with services.store.read() as tx:
            teams = {
                m["payload"]["team"] for m in tx.notifications() if m["topic"] == "incident.opened"
            }
        assert teams == {"platform-iam", "identity-ops", "secops"}

    def test_already_revoked_target(
        self, services: Services, story: Any, clock: FrozenClock
    ) -> None:
        """An incident on a revoked node keeps the original containment time."""
        cred = story["billing"].credential_id
        services.admin.revoke(cred, reason="rotation", actor="t")
        revoked_at = clock.now()
        clock.advance(30)
        inc = services.incidents.open(credential=cred, reason="late", actor="soc")
        assert inc.contained_at == revoked_at

    def test_subject_incident(
        self, http: TestClient, make: Factory, services: Services, clock: FrozenClock
    ) -> None:
        """Containing a person ends their sessions and blocks their upstream login."""
        idp = Upstream(services, clock)
        portal = make.client(paths=["federated-login"])
        r = http.post(
            "/oauth/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": idp.assertion("mallory"),
            },
            auth=(portal.client_id, portal.secret),
        )
        at = r.json()["access_token"]
        inc = services.incidents.open(subject="mallory", reason="phished", actor="soc")
        assert len(inc.nodes) == 2  # the upstream login and the session
        assert not _active(http, portal, at)
        assert services.sessions.live("mallory") == []

    def test_add_and_close(self, services: Services, story: Any) -> None:
        """Nodes can be added while open; a closed incident takes no more."""
        inc = services.incidents.open(
            credential=story["billing"].credential_id, reason="x", actor="soc"
        )
        services.incidents.add(inc.id, story["gateway"].credential_id, actor="soc")
        assert services.incidents.get(inc.id).nodes[-1] == story["gateway"].credential_id
        services.incidents.close(inc.id, actor="soc")
        with pytest.raises(Conflict):
            services.incidents.add(inc.id, story["billing"].credential_id, actor="soc")
        assert services.incidents.close(inc.id, actor="soc").status == "closed"

    def test_bad_targets(self, services: Services, story: Any) -> None:
        """Unknown ids, several targets, a token named as credential: clear errors."""
        with pytest.raises(ValueError, match="exactly one"):
            services.incidents.open(credential="a", node="b", reason="x", actor="s")
        with pytest.raises(NotFound):
            services.incidents.open(node="nope", reason="x", actor="s")
        with pytest.raises(NotFound):
            services.incidents.open(subject="nobody", reason="x", actor="s")
        with pytest.raises(ValueError, match="reason"):
            services.incidents.open(node=story["billing"].credential_id, reason=" ", actor="s")
        with pytest.raises(NotFound):
            services.incidents.get("inc_missing")
        with pytest.raises(NotFound):
            services.incidents.add("inc_missing", "x", actor="s")


class TestReport:
    def test_report_content(
        self, http: TestClient, services: Services, story: Any, clock: FrozenClock
    ) -> None:
        """Timeline, blast radius, control points, owner and time to contain."""
        # A stolen token is replayed before anyone notices: a detection.
        services.admin.revoke(
            services.authority.tokens.verify(story["tokens"][1])["jti"], reason="x", actor="t"
        )
        assert not _active(http, story["gateway"], story["tokens"][1])
        detected = clock.now()
        clock.advance(45)
        inc = services.incidents.open(
            credential=story["billing"].credential_id, reason="leak", actor="soc"
        )
        clock.advance(5)
        assert not _active(http, story["gateway"], story["exchanged"])  # rejected after
        report = build_report(services.store, services.paths, inc)
        events = [e["event"] for e in report["timeline"]]
        assert events[:2] == ["credential.issued", "token.issued"]
        assert "token.exchanged" in events
        assert "incident.contained" in events
        assert report["detected_at"] == detected
        assert report["time_to_contain_seconds"] == 45
        assert report["last_rejected_use"]["event"] == "detection.revoked_token_use"
        br = report["blast_radius"]
        assert br["descendants"] == 3
        assert br["by_path"]["workload-client-credentials"]["total"] == 2
        assert br["by_path"]["workload-token-exchange"]["total"] == 1
        assert set(br["audiences"]) == {"https://billing.example", "https://ledger.example"}
        assert br["longest_valid_until"] is not None
        paths = [cp["path"] for cp in report["control_points"]]
        assert paths == ["workload-client-credentials", "workload-token-exchange"]
        owners = report["control_points"][0]["owners"]
        assert owners["credential_issuance"] == "platform-iam"
        assert report["accountable"]["team"] == "platform-iam"
        assert report["accountable"]["function"] == "credential issuance and storage"
        md = to_markdown(report)
        assert "Accountable owner | **platform-iam**" in md
        page = to_html(report)
        assert page.startswith("<!doctype html>")
        assert "<svg" in page
        assert "<script" not in page
        json.dumps(report)

    def test_session_compromise_names_authentication_owner(
        self, http: TestClient, make: Factory, services: Services, clock: FrozenClock
    ) -> None:
        """For a stolen session, authentication and session creation owns the boundary."""
        idp = Upstream(services, clock)
        portal = make.client(paths=["federated-login"])
        http.post(
            "/oauth/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": idp.assertion("alice"),
            },
            auth=(portal.client_id, portal.secret),
        )
        (session,) = services.sessions.live("alice")
        inc = services.incidents.open(node=session.id, reason="cookie stolen", actor="soc")
        report = build_report(services.store, services.paths, inc)
        assert report["accountable"]["team"] == "app-team"
        assert report["accountable"]["path"] == "federated-login"


class TestInterfaces:
    def test_cli(self, services: Services, story: Any, tmp_path: Any) -> None:
        """open, add, list, report in three formats, close; errors exit 1."""
        s = services.settings
        common = ["--data", str(s.data_dir)] + (["--db", s.db_url] if s.db_url else [])
        run = CliRunner().invoke
        r = run(
            cli_app,
            [
                "incident",
                "open",
                "--credential",
                story["billing"].credential_id,
                "--reason",
                "leak",
                "--json",
                *common,
            ],
        )
        assert r.exit_code == 0, r.output
        inc = json.loads(r.stdout)["id"]
        r = run(
            cli_app, ["incident", "add", inc, "--node", story["gateway"].credential_id, *common]
        )
        assert "2 node(s)" in r.stdout
        assert inc in run(cli_app, ["incident", "list", *common]).stdout
        assert json.loads(run(cli_app, ["incident", "list", "--json", *common]).stdout)
        md = run(cli_app, ["incident", "report", inc, *common]).stdout
        assert md.startswith("# Accountability report")
        out = tmp_path / "r.html"
        r = run(
            cli_app, ["incident", "report", inc, "--format", "html", "--out", str(out), *common]
        )
        assert r.exit_code == 0
        assert out.read_text().startswith("<!doctype html>")
        js = run(cli_app, ["incident", "report", inc, "--format", "json", *common]).stdout
        assert json.loads(js)["incident"]["id"] == inc
        assert run(cli_app, ["incident", "report", inc, "--format", "pdf", *common]).exit_code == 1
        assert run(cli_app, ["incident", "report", "inc_x", *common]).exit_code == 1
        assert run(cli_app, ["incident", "open", "--reason", "x", *common]).exit_code == 1
        assert run(cli_app, ["incident", "add", "inc_x", "--node", "n", *common]).exit_code == 1
        assert "closed" in run(cli_app, ["incident", "close", inc, *common]).stdout
        assert run(cli_app, ["incident", "close", "inc_x", *common]).exit_code == 1

    def test_admin_api(self, http: TestClient, services: Services, story: Any) -> None:
        """Responders open incidents, add nodes and read reports over the admin API."""
        _, key = services.admin.create_admin_key(
            team="platform-iam", roles=["responder"], name="soc", actor="t"
        )
        auth = {"Authorization": f"Bearer {key}"}
        r = http.post(
            "/admin/incidents",
            headers=auth,
            json={"credential": story["billing"].credential_id, "reason": "leak"},
        )
        assert r.status_code == 201, r.text
        inc = r.json()["id"]
        r = http.post(
            f"/admin/incidents/{inc}/nodes",
            headers=auth,
            json={"node": story["gateway"].credential_id},
        )
        assert r.status_code == 201
        r = http.get(f"/admin/incidents/{inc}/report", headers=auth)
        assert r.json()["accountable"]["team"] == "platform-iam"
        assert http.get("/admin/incidents/inc_x/report", headers=auth).status_code == 404
        r = http.post("/admin/incidents", headers=auth, json={"reason": "x"})
        assert r.status_code == 400

    def test_admin_api_add_is_limited_to_the_keys_team(
        self, http: TestClient, services: Services, make: Factory, story: Any
    ) -> None:
        """A responder of another team cannot contain (revoke) this team's node via an incident."""
        inc = services.incidents.open(node=story["gateway"].credential_id, reason="x", actor="t")
        make.team("shipping")
        _, key = services.admin.create_admin_key(
            team="shipping", roles=["responder"], name="other", actor="t"
        )
        r = http.post(
            f"/admin/incidents/{inc.id}/nodes",
            headers={"Authorization": f"Bearer {key}"},
            json={"node": story["billing"].credential_id},
        )
        assert r.status_code == 403
        assert _active(http, story["billing"], story["tokens"][1])

    def test_admin_api_add_unknown_node_is_404(
        self, http: TestClient, services: Services, story: Any
    ) -> None:
        """Adding a node that does not exist answers 404, whatever the key's team."""
        inc = services.incidents.open(node=story["gateway"].credential_id, reason="x", actor="t")
        _, key = services.admin.create_admin_key(
            team="platform-iam", roles=["responder"], name="soc", actor="t"
        )
        r = http.post(
            f"/admin/incidents/{inc.id}/nodes",
            headers={"Authorization": f"Bearer {key}"},
            json={"node": "cred_nope"},
        )
        assert r.status_code == 404

    def test_admin_api_subject_or_login_needs_admin(
        self, http: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """Sessions of a person span teams: a team's responder cannot contain a subject or login."""
        make.team("app-team")
        portal = make.client(paths=["federated-login"], team="app-team")
        r = http.post(
            "/oauth/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": Upstream(services, clock).assertion("alice"),
            },
            auth=(portal.client_id, portal.secret),
        )
        login = services.authority.tokens.verify(r.json()["access_token"])["tt_anc"][-1]
        _, key = services.admin.create_admin_key(
            team="app-team", roles=["responder"], name="r", actor="t"
        )
        auth = {"Authorization": f"Bearer {key}"}
        for body in ({"subject": "alice"}, {"node": login}):
            r = http.post("/admin/incidents", headers=auth, json={"reason": "x", **body})
            assert r.status_code == 403, body
        assert len(services.sessions.live("alice")) == 1
