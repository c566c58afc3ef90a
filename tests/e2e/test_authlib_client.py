"""An independent OAuth client library (Authlib, httpx integration) against a real server.

The server runs as its own process (``tt_server``), set up with the CLI exactly
as an operator would; Authlib then uses every endpoint as the RFCs describe
them: client credentials with client_secret_basic, client_secret_post and
private_key_jwt (RFC 7523 §2.2), introspection (RFC 7662), revocation
(RFC 7009), the JWT bearer grant (RFC 7523 §2.1), refresh with rotation
(RFC 6749 §6) and token exchange (RFC 8693).
"""

from __future__ import annotations

import base64
import json
import runpy
import secrets
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.e2e.conftest import Server

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
API = "https://api.example"
LEDGER = "https://ledger.example"
PORTAL_API = "https://portal-api.example"
IDP = "https://idp.example"
IDP_AUDIENCE = "https://tokentrail.example"


class ShortLivedPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's PrivateKeyJWT with assertions valid for 5 minutes.

    Authlib's default ``exp`` is one hour ahead, beyond the server's bound
    (``assertion_max_lifetime``, 600 s), which refuses it as too far in the future.
    """

    def sign(self, auth: Any, token_endpoint: str) -> Any:
        return private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            expires_in=300,
        )


@dataclass
class Setup:
    """What the operator created with the CLI, and the endpoints from discovery."""

    meta: dict[str, Any]
    basic: dict[str, str]
    post: dict[str, str]
    pkjwt: dict[str, str]
    pkjwt_key: ECKey
    exchanger: dict[str, str]
    portal: dict[str, str]
    idp_key: ECKey


def _client(server: Server, name: str, *args: str) -> dict[str, str]:
    out: dict[str, str] = server.cli_json(
        "client", "create", "--team", "platform-iam", "--name", name, *args
    )
    return out


@pytest.fixture(scope="module")
def setup(tt_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """Team, clients and the trusted upstream issuer, made with the CLI (concurrently)."""
    root = tmp_path_factory.mktemp("authlib")
    tt_server.cli("team", "create", "platform-iam")
    pkjwt_key = ECKey.generate_key("P-256", parameters={"kid": "workload-key-1"})
    jwks = root / "workload.jwks.json"
    jwks.write_text(json.dumps({"keys": [pkjwt_key.as_dict(private=False)]}))
    idp_key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"})
    idp_jwks = root / "idp.jwks.json"
    idp_jwks.write_text(json.dumps({"keys": [idp_key.as_dict(private=False)]}))
    cc = ("--path", "workload-client-credentials", "--scope", "read", "--scope", "write")
    clients = {
        "basic": (*cc, "--audience", API),
        "post": (*cc, "--audience", API, "--auth", "client_secret_post"),
        "pkjwt": (*cc, "--audience", API, "--auth", "private_key_jwt", "--jwks", str(jwks)),
        "exchanger": (*cc, "--path", "workload-token-exchange", "--audience", LEDGER),
        "portal": (
            *("--kind", "application", "--path", "federated-login"),
            *("--scope", "profile", "--audience", PORTAL_API),
        ),
    }
    with ThreadPoolExecutor(max_workers=len(clients) + 1) as pool:
        trusted = pool.submit(
            tt_server.cli,
            "issuer",
            "trust",
            IDP,
            "--jwks",
            str(idp_jwks),
            "--audience",
            IDP_AUDIENCE,
        )
        made = {
            name: pool.submit(_client, tt_server, name, *args) for name, args in clients.items()
        }
        trusted.result()
        registered = {name: future.result() for name, future in made.items()}
    meta = httpx.get(tt_server.url("/.well-known/oauth-authorization-server")).json()
    return Setup(meta=meta, pkjwt_key=pkjwt_key, idp_key=idp_key, **registered)


def _oauth(registered: dict[str, str], method: str = "client_secret_basic", **kw: Any) -> Any:
    return OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered.get("client_secret"),
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        **kw,
    )


@pytest.fixture
def basic(setup: Setup) -> Iterator[Any]:
    with _oauth(setup.basic, scope="read") as client:
        yield client


@pytest.fixture
def pkjwt(setup: Setup) -> Iterator[Any]:
    with OAuth2Client(
        client_id=setup.pkjwt["client_id"],
        client_secret=setup.pkjwt_key,
        token_endpoint_auth_method="private_key_jwt",
        revocation_endpoint_auth_method="private_key_jwt",
    ) as client:
        client.register_client_auth_method(
            ShortLivedPrivateKeyJWT(setup.meta["token_endpoint"], alg="ES256")
        )
        yield client


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return out


def _introspect(setup: Setup, token: str) -> dict[str, Any]:
    with _oauth(setup.basic) as client:
        r = client.introspect_token(setup.meta["introspection_endpoint"], token=token)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _assertion(setup: Setup, subject: str = "alice@example.com") -> str:
    now = int(time.time())
    claims = {
        "iss": IDP,
        "sub": subject,
        "aud": IDP_AUDIENCE,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode({"alg": "ES256", "kid": "idp-1"}, claims, setup.idp_key)


# --- discovery ----------------------------------------------------------------------


def test_metadata_names_the_server_as_issuer(tt_server: Server, setup: Setup) -> None:
    """RFC 8414 §3.3: the metadata's issuer is the URL the server is reached at."""
    meta = setup.meta
    assert meta["issuer"] == tt_server.base
    assert meta["token_endpoint"] == tt_server.url("/oauth/token")
    assert meta["introspection_endpoint"] == tt_server.url("/oauth/introspect")
    assert meta["revocation_endpoint"] == tt_server.url("/oauth/revoke")
    assert {JWT_BEARER, TOKEN_EXCHANGE, "refresh_token", "client_credentials"} <= set(
        meta["grant_types_supported"]
    )
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]


# --- client credentials ------------------------------------------------------------


def test_client_secret_basic(setup: Setup, basic: Any) -> None:
    """fetch_token with client_secret_basic gets a Bearer access token for the scope asked."""
    token = basic.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "read"
    assert token["expires_at"] > time.time()
    assert _claims(token["access_token"])["client_id"] == setup.basic["client_id"]


def test_client_secret_post(setup: Setup) -> None:
    """fetch_token with client_secret_post gets a Bearer access token."""
    with _oauth(setup.post, "client_secret_post") as client:
        token = client.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert _claims(token["access_token"])["client_id"] == setup.post["client_id"]


def test_private_key_jwt(setup: Setup, pkjwt: Any) -> None:
    """fetch_token with Authlib's PrivateKeyJWT (ES256) gets a Bearer access token."""
    token = pkjwt.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert _claims(token["access_token"])["tt_anc"] == [setup.pkjwt["credential_id"]]


def test_wrong_secret_is_invalid_client(setup: Setup) -> None:
    """A wrong secret surfaces in Authlib as an invalid_client OAuthError."""
    wrong = {**setup.basic, "client_secret": "tts_wrong"}
    with _oauth(wrong) as client, pytest.raises(OAuthError) as err:
        client.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    assert err.value.error == "invalid_client"


def test_undeclared_scope_is_invalid_scope(setup: Setup) -> None:
    """A scope the client was not granted surfaces as an invalid_scope OAuthError."""
    with _oauth(setup.basic, scope="admin") as client, pytest.raises(OAuthError) as err:
        client.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    assert err.value.error == "invalid_scope"


# --- introspection and revocation ------------------------------------------------------


def test_introspect_token(setup: Setup, basic: Any) -> None:
    """introspect_token reports an active token with its path and lineage."""
    token = basic.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    info = _introspect(setup, token["access_token"])
    assert info["active"] is True
    assert info["client_id"] == setup.basic["client_id"]
    assert info["scope"] == "read"
    assert info["tt_path"] == "workload-client-credentials"
    assert info["tt_anc"] == [setup.basic["credential_id"]]


def test_introspect_with_private_key_jwt(setup: Setup, pkjwt: Any) -> None:
    """A private_key_jwt client can call the introspection endpoint too."""
    token = pkjwt.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    r = pkjwt.introspect_token(setup.meta["introspection_endpoint"], token=token["access_token"])
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True


def test_revoke_token(setup: Setup, basic: Any) -> None:
    """revoke_token answers 200 and the token introspects inactive afterwards."""
    token = basic.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    r = basic.revoke_token(
        setup.meta["revocation_endpoint"],
        token=token["access_token"],
        token_type_hint="access_token",
    )
    assert r.status_code == 200
    assert _introspect(setup, token["access_token"]) == {"active": False}


def test_revoke_unknown_token_is_200(setup: Setup, basic: Any) -> None:
    """RFC 7009 §2.2: an unknown token is answered 200."""
    r = basic.revoke_token(setup.meta["revocation_endpoint"], token="no-such-token")
    assert r.status_code == 200


def test_revoke_with_private_key_jwt(setup: Setup, pkjwt: Any) -> None:
    """A private_key_jwt client can revoke its own token."""
    token = pkjwt.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    r = pkjwt.revoke_token(setup.meta["revocation_endpoint"], token=token["access_token"])
    assert r.status_code == 200
    assert _introspect(setup, token["access_token"]) == {"active": False}


def test_cli_revocation_reaches_the_running_server(tt_server: Server, setup: Setup) -> None:
    """Revoking a credential with the CLI while the server runs kills its tokens at once."""
    victim = _client(
        tt_server,
        "victim",
        "--path",
        "workload-client-credentials",
        "--scope",
        "read",
        "--audience",
        API,
    )
    with _oauth(victim) as client:
        token = client.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    out = tt_server.cli_json("revoke", victim["credential_id"], "--reason", "leaked in CI log")
    assert out["descendants"] == 1
    assert _introspect(setup, token["access_token"]) == {"active": False}


# --- JWT bearer, refresh -----------------------------------------------------------


@pytest.fixture
def portal(setup: Setup) -> Iterator[Any]:
    with _oauth(setup.portal) as client:
        yield client


def test_jwt_bearer_grant(setup: Setup, portal: Any) -> None:
    """fetch_token with the JWT bearer grant yields access and refresh tokens for the person."""
    token = portal.fetch_token(
        setup.meta["token_endpoint"], grant_type=JWT_BEARER, assertion=_assertion(setup)
    )
    assert token["refresh_token"].startswith("ttr_")
    claims = _claims(token["access_token"])
    assert claims["sub"] == "alice@example.com"
    assert claims["tt_path"] == "federated-login"


def test_refresh_rotates(setup: Setup, portal: Any) -> None:
    """refresh_token gets a new access token and a new refresh token; the old one is spent."""
    first = portal.fetch_token(
        setup.meta["token_endpoint"], grant_type=JWT_BEARER, assertion=_assertion(setup)
    )
    old_refresh = first["refresh_token"]
    second = portal.refresh_token(setup.meta["token_endpoint"])
    assert second["refresh_token"] != old_refresh
    assert second["access_token"] != first["access_token"]
    assert _introspect(setup, second["refresh_token"])["active"] is True
    assert _introspect(setup, old_refresh) == {"active": False}


def test_refresh_reuse_kills_the_family(setup: Setup, portal: Any) -> None:
    """Replaying a rotated refresh token is invalid_grant and ends the whole session."""
    first = portal.fetch_token(
        setup.meta["token_endpoint"], grant_type=JWT_BEARER, assertion=_assertion(setup)
    )
    old_refresh = first["refresh_token"]
    second = portal.refresh_token(setup.meta["token_endpoint"])
    with pytest.raises(OAuthError) as err:
        portal.refresh_token(setup.meta["token_endpoint"], refresh_token=old_refresh)
    assert err.value.error == "invalid_grant"
    assert _introspect(setup, second["refresh_token"]) == {"active": False}
    assert _introspect(setup, second["access_token"]) == {"active": False}


def test_revoking_a_refresh_token_ends_the_session(setup: Setup, portal: Any) -> None:
    """revoke_token on a refresh token kills the session's access tokens too (RFC 7009 §2.1)."""
    token = portal.fetch_token(
        setup.meta["token_endpoint"], grant_type=JWT_BEARER, assertion=_assertion(setup)
    )
    r = portal.revoke_token(
        setup.meta["revocation_endpoint"],
        token=token["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert r.status_code == 200
    assert _introspect(setup, token["access_token"]) == {"active": False}


# --- token exchange ---------------------------------------------------------------------


def test_token_exchange(setup: Setup, basic: Any) -> None:
    """fetch_token with the token-exchange grant returns issued_token_type and an act claim."""
    subject = basic.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    with _oauth(setup.exchanger) as exchanger:
        token = exchanger.fetch_token(
            setup.meta["token_endpoint"],
            grant_type=TOKEN_EXCHANGE,
            subject_token=subject["access_token"],
            subject_token_type=ACCESS_TOKEN_TYPE,
            audience=LEDGER,
        )
    assert token["issued_token_type"] == ACCESS_TOKEN_TYPE
    info = _introspect(setup, token["access_token"])
    assert info["active"] is True
    assert info["sub"] == setup.basic["client_id"]
    assert info["act"] == {"sub": setup.exchanger["client_id"]}
    assert info["aud"] == LEDGER


def test_token_exchange_with_actor_token(setup: Setup, basic: Any) -> None:
    """An exchange with the exchanger's own actor token descends from both inputs."""
    subject = basic.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    with _oauth(setup.exchanger) as exchanger:
        actor = exchanger.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
        token = exchanger.fetch_token(
            setup.meta["token_endpoint"],
            grant_type=TOKEN_EXCHANGE,
            subject_token=subject["access_token"],
            subject_token_type=ACCESS_TOKEN_TYPE,
            actor_token=actor["access_token"],
            actor_token_type=ACCESS_TOKEN_TYPE,
        )
    anc = _claims(token["access_token"])["tt_anc"]
    assert _claims(subject["access_token"])["jti"] in anc
    assert _claims(actor["access_token"])["jti"] in anc


def test_exchange_of_revoked_subject_is_invalid_request(setup: Setup, basic: Any) -> None:
    """Exchanging a revoked subject token surfaces as invalid_request."""
    subject = basic.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    basic.revoke_token(setup.meta["revocation_endpoint"], token=subject["access_token"])
    with _oauth(setup.exchanger) as exchanger, pytest.raises(OAuthError) as err:
        exchanger.fetch_token(
            setup.meta["token_endpoint"],
            grant_type=TOKEN_EXCHANGE,
            subject_token=subject["access_token"],
            subject_token_type=ACCESS_TOKEN_TYPE,
        )
    assert err.value.error == "invalid_request"


def test_lineage_show_lists_the_exchange(tt_server: Server, setup: Setup, basic: Any) -> None:
    """`tokentrail lineage show --json` on the running installation lists the exchanged token."""
    subject = basic.fetch_token(setup.meta["token_endpoint"], grant_type="client_credentials")
    with _oauth(setup.exchanger) as exchanger:
        token = exchanger.fetch_token(
            setup.meta["token_endpoint"],
            grant_type=TOKEN_EXCHANGE,
            subject_token=subject["access_token"],
            subject_token_type=ACCESS_TOKEN_TYPE,
        )
    tree = tt_server.cli_json("lineage", "show", _claims(subject["access_token"])["jti"])
    [child] = tree["descendants"]
    assert child["id"] == _claims(token["access_token"])["jti"]
    assert child["path"] == "workload-token-exchange"
    assert child["state"] == "live"


# --- the module entry point --------------------------------------------------------------


def test_python_dash_m_runs_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m tokentrail --help` runs the command line."""
    monkeypatch.setattr(sys, "argv", ["tokentrail", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("tokentrail", run_name="__main__")
    assert exit_.value.code == 0
    assert "lineage" in capsys.readouterr().out
