"""Human sessions: creation through the JWT bearer grant, listing, ending, self-service."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import ISSUER, Factory
from tests.dpop_proofs import new_key, proof
from tests.oauth.upstream import Upstream
from tokentrail.cli import app as cli_app
from tokentrail.clock import FrozenClock
from tokentrail.services import Services

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture
def idp(services: Services, clock: FrozenClock) -> Upstream:
    return Upstream(services, clock)


@pytest.fixture
def portal(make: Factory) -> Any:
    make.team("app-team")
    return make.client(paths=["federated-login"], team="app-team")


def login(http: TestClient, portal: Any, idp: Upstream, subject: str, **headers: str) -> Any:
    r = http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER, "assertion": idp.assertion(subject)},
        auth=(portal.client_id, portal.secret),
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()


class TestSessionStore:
    def test_login_creates_listed_session(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services
    ) -> None:
        """A login shows up among the subject's live sessions with its path and client."""
        login(http, portal, idp, "alice")
        (s,) = services.sessions.live("alice")
        assert s.path == "federated-login"
        assert s.client_id == portal.client_id
        assert s.binding == {}
        assert s.expires_at is not None
        assert s.expires_at - s.created_at == 12 * 3600

    def test_refresh_updates_last_used(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services, clock: FrozenClock
    ) -> None:
        """Refreshing records activity on the session."""
        tokens = login(http, portal, idp, "alice")
        clock.advance(120)
        r = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(portal.client_id, portal.secret),
        )
        assert r.status_code == 200
        (s,) = services.sessions.live("alice")
        assert s.last_used_at == s.created_at + 120

    def test_expired_session_not_listed(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services, clock: FrozenClock
    ) -> None:
        """Past its absolute lifetime a session is gone from the list."""
        login(http, portal, idp, "alice")
        clock.advance(12 * 3600 + 1)
        assert services.sessions.live("alice") == []

    def test_idle_timeout_ends_refresh(
        self, http: TestClient, portal: Any, idp: Upstream, clock: FrozenClock
    ) -> None:
        """A refresh token unused for longer than the idle timeout no longer works."""
        tokens = login(http, portal, idp, "alice")
        clock.advance(3600 + 1)
        r = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(portal.client_id, portal.secret),
        )
        assert r.json()["error"] == "invalid_grant"

    def test_end_one_session_kills_its_tokens(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services
    ) -> None:
        """Ending a session makes its access and refresh tokens inactive; others live on."""
        first = login(http, portal, idp, "alice")
        second = login(http, portal, idp, "alice")
        sessions = services.sessions.live("alice")
        claims = services.authority.tokens.verify(first["access_token"])
        target = next(s for s in sessions if s.id in claims["tt_anc"])
        assert services.sessions.end(target.id, actor="test") is True
        assert services.sessions.end(target.id, actor="test") is False
        intro = http.post(
            "/oauth/introspect",
            data={"token": first["access_token"]},
            auth=(portal.client_id, portal.secret),
        )
        assert intro.json() == {"active": False}
        intro = http.post(
            "/oauth/introspect",
            data={"token": second["access_token"]},
            auth=(portal.client_id, portal.secret),
        )
        assert intro.json()["active"] is True
        assert len(services.sessions.live("alice")) == 1

    def test_end_all(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services
    ) -> None:
        """Sign out everywhere ends every live session, and a new login still works."""
        login(http, portal, idp, "alice")
        login(http, portal, idp, "alice")
        login(http, portal, idp, "bob")
        assert services.sessions.end_all("alice", actor="test") == 2
        assert services.sessions.live("alice") == []
        assert len(services.sessions.live("bob")) == 1
        login(http, portal, idp, "alice")
        assert len(services.sessions.live("alice")) == 1

    def test_unknown_session(self, services: Services) -> None:
        """Ending a session that does not exist is NotFound."""
        from tokentrail.errors import NotFound

        with pytest.raises(NotFound):
            services.sessions.end("ses_nope", actor="test")


class TestSelfService:
    def test_list_and_end_own_sessions_with_bearer_token(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services
    ) -> None:
        """A person lists their sessions with their access token and ends one."""
        tokens = login(http, portal, idp, "alice")
        login(http, portal, idp, "alice")
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        listed = http.get("/sessions", headers=auth).json()["sessions"]
        assert len(listed) == 2
        mine = services.authority.tokens.verify(tokens["access_token"])["tt_anc"]
        other = next(s for s in listed if s["id"] not in mine)
        r = http.post(f"/sessions/{other['id']}/end", headers=auth)
        assert r.json()["ended"] is True
        assert len(http.get("/sessions", headers=auth).json()["sessions"]) == 1
        r = http.post("/sessions/end-all", headers=auth)
        assert r.status_code == 200
        assert http.get("/sessions", headers=auth).status_code == 401

    def test_cannot_end_someone_elses_session(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services
    ) -> None:
        """Another subject's session id answers 404."""
        mine = login(http, portal, idp, "alice")
        login(http, portal, idp, "bob")
        (bobs,) = services.sessions.live("bob")
        r = http.post(
            f"/sessions/{bobs.id}/end", headers={"Authorization": f"Bearer {mine['access_token']}"}
        )
        assert r.status_code == 404

    def test_no_token(self, http: TestClient) -> None:
        """Without a token: 401 with a challenge."""
        r = http.get("/sessions")
        assert r.status_code == 401
        assert "Bearer" in r.headers["WWW-Authenticate"]
        r = http.get("/sessions", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401

    def test_challenge_names_every_dpop_algorithm(self, http: TestClient) -> None:
        """RFC 9449 §7.1: the DPoP challenge lists every algorithm a proof may use."""
        from tokentrail.crypto import DPOP_ALGORITHMS

        challenge = http.get("/sessions").headers["WWW-Authenticate"]
        assert f'DPoP algs="{" ".join(DPOP_ALGORITHMS)}"' in challenge

    def test_dpop_bound_token_needs_proof(
        self, http: TestClient, portal: Any, idp: Upstream, clock: FrozenClock
    ) -> None:
        """A DPoP-bound token needs a proof for this request with its own key; Bearer fails."""
        key = new_key()
        tokens = login(
            http,
            portal,
            idp,
            "alice",
            DPoP=proof(key, "POST", f"{ISSUER}/oauth/token", iat=clock.now()),
        )
        at = tokens["access_token"]
        assert tokens["token_type"] == "DPoP"
        assert http.get("/sessions", headers={"Authorization": f"Bearer {at}"}).status_code == 401
        good = proof(key, "GET", f"{ISSUER}/sessions", iat=clock.now(), access_token=at)
        r = http.get("/sessions", headers={"Authorization": f"DPoP {at}", "DPoP": good})
        assert r.status_code == 200, r.text
        assert r.json()["sessions"][0]["binding"] == {}
        wrong = proof(new_key(), "GET", f"{ISSUER}/sessions", iat=clock.now(), access_token=at)
        r = http.get("/sessions", headers={"Authorization": f"DPoP {at}", "DPoP": wrong})
        assert r.json()["error"] == "invalid_dpop_proof"
        no_ath = proof(key, "GET", f"{ISSUER}/sessions", iat=clock.now())
        r = http.get("/sessions", headers={"Authorization": f"DPoP {at}", "DPoP": no_ath})
        assert r.json()["error"] == "invalid_dpop_proof"

    def test_invalid_proof_is_401(
        self, http: TestClient, portal: Any, idp: Upstream, clock: FrozenClock
    ) -> None:
        """RFC 9449 §7.1: a bad proof for a DPoP-bound token at the session API answers 401."""
        key = new_key()
        at = login(
            http,
            portal,
            idp,
            "alice",
            DPoP=proof(key, "POST", f"{ISSUER}/oauth/token", iat=clock.now()),
        )["access_token"]
        wrong = proof(new_key(), "GET", f"{ISSUER}/sessions", iat=clock.now(), access_token=at)
        r = http.get("/sessions", headers={"Authorization": f"DPoP {at}", "DPoP": wrong})
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')

    def test_bearer_token_sent_as_dpop_refused(
        self, http: TestClient, portal: Any, idp: Upstream
    ) -> None:
        """An unbound token presented with the DPoP scheme is refused."""
        at = login(http, portal, idp, "alice")["access_token"]
        r = http.get("/sessions", headers={"Authorization": f"DPoP {at}"})
        assert r.status_code == 401


class TestAdminAndCli:
    def test_admin_routes(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services
    ) -> None:
        """Responders list and end a subject's sessions through the admin API."""
        login(http, portal, idp, "alice")
        login(http, portal, idp, "alice")
        _, key = services.admin.create_admin_key(
            team="app-team", roles=["responder"], name="t", actor="test"
        )
        auth = {"Authorization": f"Bearer {key}"}
        listed = http.get("/admin/subjects/alice/sessions", headers=auth).json()["sessions"]
        assert len(listed) == 2
        r = http.post(
            f"/admin/sessions/{listed[0]['id']}/end", json={"reason": "lost laptop"}, headers=auth
        )
        assert r.status_code == 201
        assert r.json()["ended"] is True
        r = http.post("/admin/subjects/alice/sessions/end", json={"reason": "x"}, headers=auth)
        assert r.json() == {"ended": 1}

    def test_admin_other_team_sees_nothing(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services, make: Factory
    ) -> None:
        """A key of another team neither sees nor ends these sessions."""
        login(http, portal, idp, "alice")
        make.team("other")
        _, key = services.admin.create_admin_key(
            team="other", roles=["responder"], name="t", actor="test"
        )
        auth = {"Authorization": f"Bearer {key}"}
        assert http.get("/admin/subjects/alice/sessions", headers=auth).json() == {"sessions": []}
        r = http.post("/admin/subjects/alice/sessions/end", json={"reason": "x"}, headers=auth)
        assert r.json() == {"ended": 0}
        (s,) = services.sessions.live("alice")
        r = http.post(f"/admin/sessions/{s.id}/end", json={"reason": "x"}, headers=auth)
        assert r.status_code == 403

    def test_cli(self, http: TestClient, portal: Any, idp: Upstream, services: Services) -> None:
        """The CLI lists, ends one and ends all sessions of a subject."""
        login(http, portal, idp, "alice")
        login(http, portal, idp, "alice")
        s = services.settings
        common = ["--data", str(s.data_dir)] + (["--db", s.db_url] if s.db_url else [])
        runner = CliRunner()
        r = runner.invoke(cli_app, ["session", "list", "alice", "--json", *common])
        assert r.exit_code == 0, r.output
        import json

        listed = json.loads(r.stdout)
        assert len(listed) == 2
        r = runner.invoke(cli_app, ["session", "list", "alice", *common])
        assert r.exit_code == 0
        assert "ses_" in r.stdout
        r = runner.invoke(cli_app, ["session", "end", listed[0]["id"], *common])
        assert "ended" in r.stdout
        r = runner.invoke(cli_app, ["session", "end", "ses_missing", *common])
        assert r.exit_code == 1
        r = runner.invoke(cli_app, ["session", "end-all", "alice", *common])
        assert "ended 1 session" in r.stdout


AAL_MAP = """
version: 1
teams:
  - id: app-team
  - id: secops
paths:
  - id: strong-login
    principal: human
    grant: jwt_bearer
    inputs: [upstream_assertion]
    output: session
    max_ttl: 5m
    assurance_level: AAL2
    binding: none
    refresh: {rotation: true, absolute_lifetime: 12h}
    session: {networks: ["10.0.0.0/8", "2001:db8::/32"]}
    owners:
      credential_issuance: app-team
      authentication: app-team
      recovery: app-team
      detection: secops
"""


class TestAssuranceAndNetworks:
    @pytest.fixture
    def strong(self, tmp_path: Any, db_url: str | None, clock: FrozenClock) -> Any:
        from tokentrail.config import Settings
        from tokentrail.services import build_services
        from tokentrail.web.app import create_app

        paths = tmp_path / "paths.yaml"
        paths.write_text(AAL_MAP)
        services = build_services(
            Settings(data_dir=tmp_path / "data", db_url=db_url, issuer=ISSUER, paths_file=paths),
            clock=clock,
        )
        make = Factory(services)
        make.team("app-team")
        portal = make.client(paths=["strong-login"], team="app-team")
        idp = Upstream(services, clock)
        inside = TestClient(create_app(services), base_url=ISSUER, client=("10.1.2.3", 5000))
        outside = TestClient(create_app(services), base_url=ISSUER, client=("192.0.2.9", 5000))
        yield services, portal, idp, inside, outside
        services.close()

    def _login(self, http: TestClient, portal: Any, assertion: str) -> Any:
        return http.post(
            "/oauth/token",
            data={"grant_type": JWT_BEARER, "assertion": assertion},
            auth=(portal.client_id, portal.secret),
        )

    def test_limits_default_from_aal(self, strong: Any) -> None:
        """AAL2 without declared session limits: min(24 h, refresh 12 h) and 1 h idle."""
        services, portal, idp, inside, _ = strong
        r = self._login(inside, portal, idp.assertion("alice", acr="aal2"))
        assert r.status_code == 200, r.text
        (s,) = services.sessions.live("alice")
        assert s.expires_at is not None
        assert s.expires_at - s.created_at == 12 * 3600
        claims = services.authority.tokens.verify(r.json()["access_token"])
        with services.store.read() as tx:
            rt = tx.get_node(claims["tt_anc"][0])
        assert rt is not None
        assert rt.expires_at == rt.created_at + 3600

    def test_assertion_below_required_aal_refused(self, strong: Any) -> None:
        """An assertion proving AAL1 cannot open an AAL2 session."""
        _, portal, idp, inside, _ = strong
        r = self._login(inside, portal, idp.assertion("alice"))
        assert r.json()["error"] == "invalid_grant"
        assert "AAL2" in r.json()["error_description"]

    def test_network_binding(self, strong: Any) -> None:
        """Sessions are created and refreshed only from the declared networks."""
        _, portal, idp, inside, outside = strong
        r = self._login(outside, portal, idp.assertion("bob", acr="aal2"))
        assert "network" in r.json()["error_description"]
        tokens = self._login(inside, portal, idp.assertion("bob", acr="aal2")).json()
        r = outside.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(portal.client_id, portal.secret),
        )
        assert "network" in r.json()["error_description"]
        r = inside.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(portal.client_id, portal.secret),
        )
        assert r.status_code == 200


class TestNonceAtTheSessionApi:
    @pytest.fixture
    def settings(self, tmp_path: Any, db_url: str | None) -> Any:
        from tokentrail.config import Settings

        return Settings(
            data_dir=tmp_path / "data", db_url=db_url, issuer=ISSUER, dpop_require_nonce=True
        )

    def test_nonce_request_is_401(
        self, http: TestClient, portal: Any, idp: Upstream, services: Services, clock: FrozenClock
    ) -> None:
        """RFC 9449 §9: the session API asks for a nonce with 401 use_dpop_nonce and DPoP-Nonce."""
        key = new_key()
        nonce = services.dpop.nonces.current()
        at = login(
            http,
            portal,
            idp,
            "alice",
            DPoP=proof(key, "POST", f"{ISSUER}/oauth/token", iat=clock.now(), nonce=nonce),
        )["access_token"]
        bare = proof(key, "GET", f"{ISSUER}/sessions", iat=clock.now(), access_token=at)
        r = http.get("/sessions", headers={"Authorization": f"DPoP {at}", "DPoP": bare})
        assert r.status_code == 401
        assert r.json()["error"] == "use_dpop_nonce"
        assert r.headers["DPoP-Nonce"] == nonce
