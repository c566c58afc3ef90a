"""The admin API: admin keys, roles and team boundaries, every route, and bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import Factory
from tokentrail import crypto
from tokentrail.audit import Event
from tokentrail.model import AuditRecord, Node, NodeKind
from tokentrail.services import Services

CC_PATH = "workload-client-credentials"


class Keys:
    """Admin keys made with :meth:`Admin.create_admin_key`, as request headers."""

    def __init__(self, services: Services, make: Factory) -> None:
        self.services = services
        self.make = make
        self.ids: dict[str, str] = {}

    def __call__(self, *roles: str, team: str = "platform-iam") -> dict[str, str]:
        self.make.team(team)
        key, secret = self.services.admin.create_admin_key(
            team=team, roles=list(roles), name="test", actor="test"
        )
        self.ids[secret] = key.id
        return {"Authorization": f"Bearer {secret}"}

    def id_of(self, headers: dict[str, str]) -> str:
        return self.ids[headers["Authorization"].removeprefix("Bearer ")]


@pytest.fixture
def key(services: Services, make: Factory) -> Keys:
    return Keys(services, make)


def audit(services: Services, event: Event) -> list[AuditRecord]:
    with services.store.read() as tx:
        return tx.audit_records(event=event)


def public_jwks() -> dict[str, Any]:
    return {"keys": [crypto.generate_signing_key("ES256").public_jwk()]}


def new_client(http: TestClient, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = {"team": "platform-iam", "name": "worker", **extra}
    r = http.post("/admin/clients", json=body, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


# --- authentication ------------------------------------------------------------------


def test_no_key_is_401(http: TestClient) -> None:
    """A call without an admin key gets 401 with a Bearer challenge."""
    r = http.get("/admin/teams")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"] == "invalid_token"


def test_basic_credentials_are_401(http: TestClient) -> None:
    """Basic credentials are not an admin key."""
    r = http.get("/admin/teams", auth=("admin", "admin"))
    assert r.status_code == 401


def test_unknown_key_is_401(http: TestClient) -> None:
    """An admin key that does not exist gets 401 invalid_token."""
    r = http.get("/admin/teams", headers={"Authorization": "Bearer tta_not-a-key"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert r.json() == {
        "error": "invalid_token",
        "error_description": "unknown or revoked admin key",
    }


def test_admin_key_stored_as_hash(services: Services, key: Keys) -> None:
    """The admin key is looked up by its hash; the clear key is nowhere in the ledger."""
    headers = key("viewer")
    secret = headers["Authorization"].removeprefix("Bearer ")
    assert services.admin.admin_key(secret) is not None
    with services.store.read() as tx:
        records = tx.audit_records()
    assert all(secret not in json.dumps(r.data) for r in records)


# --- roles and team boundaries ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("POST", "/admin/teams", "operator"),
        ("GET", "/admin/teams", "support"),
        ("POST", "/admin/clients", "viewer"),
        ("GET", "/admin/clients", "approver"),
        ("POST", "/admin/clients/cl_x/rotate", "viewer"),
        ("POST", "/admin/issuers", "operator"),
        ("POST", "/admin/nodes/n_x/revoke", "operator"),
        ("GET", "/admin/nodes/n_x/lineage", "support"),
    ],
)
def test_route_refuses_key_without_role(
    http: TestClient, key: Keys, method: str, path: str, role: str
) -> None:
    """Each route answers 403 to a key that holds none of its roles."""
    r = http.request(method, path, headers=key(role), json={})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"


def test_missing_role_is_audited(http: TestClient, services: Services, key: Keys) -> None:
    """A refusal for a missing role is recorded as admin.denied with the key's id."""
    headers = key("viewer")
    http.post("/admin/clients", json={"team": "platform-iam", "name": "w"}, headers=headers)
    (record,) = audit(services, Event.ADMIN_DENIED)
    assert record.actor == f"admin_key:{key.id_of(headers)}"
    assert record.team_id == "platform-iam"
    assert record.data == {"method": "POST", "path": "/admin/clients", "reason": "role"}


def test_cross_team_client_create_is_403(http: TestClient, key: Keys) -> None:
    """An operator of one team cannot register a client for another team."""
    key("viewer", team="app-team")
    r = http.post("/admin/clients", json={"team": "app-team", "name": "w"}, headers=key("operator"))
    assert r.status_code == 403
    assert "own team" in r.json()["error_description"]


def test_cross_team_refusal_is_audited(http: TestClient, services: Services, key: Keys) -> None:
    """A cross-team refusal is recorded as admin.denied with its reason."""
    key("viewer", team="app-team")
    headers = key("operator")
    http.post("/admin/clients", json={"team": "app-team", "name": "w"}, headers=headers)
    (record,) = audit(services, Event.ADMIN_DENIED)
    assert record.actor == f"admin_key:{key.id_of(headers)}"
    assert record.data["reason"] == "this admin key acts on its own team's objects only"


def test_admin_role_crosses_teams(http: TestClient, key: Keys) -> None:
    """A key with the admin role may act on another team's objects."""
    key("viewer", team="app-team")
    r = http.post("/admin/clients", json={"team": "app-team", "name": "w"}, headers=key("admin"))
    assert r.status_code == 201


# --- teams -------------------------------------------------------------------------------


def test_create_team(http: TestClient, services: Services, key: Keys) -> None:
    """POST /admin/teams creates a team (201) and audits the key as actor."""
    headers = key("admin")
    r = http.post("/admin/teams", json={"name": "secops"}, headers=headers)
    assert r.status_code == 201
    assert r.json()["id"] == "secops"
    created = [rec for rec in audit(services, Event.TEAM_CREATED) if rec.team_id == "secops"]
    assert [rec.actor for rec in created] == [f"admin_key:{key.id_of(headers)}"]


def test_duplicate_team_is_409(http: TestClient, key: Keys) -> None:
    """Creating an existing team is 409 conflict, recorded once."""
    headers = key("admin")
    assert http.post("/admin/teams", json={"name": "secops"}, headers=headers).status_code == 201
    r = http.post("/admin/teams", json={"name": "secops"}, headers=headers)
    assert r.status_code == 409
    assert r.json() == {"error": "conflict", "error_description": "team 'secops' already exists"}


def test_bad_team_name_is_400(http: TestClient, key: Keys) -> None:
    """A team name outside the identifier syntax is 400."""
    r = http.post("/admin/teams", json={"name": "Sec Ops"}, headers=key("admin"))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_list_teams(http: TestClient, key: Keys) -> None:
    """GET /admin/teams lists teams with creation times."""
    headers = key("viewer")
    key("viewer", team="app-team")
    r = http.get("/admin/teams", headers=headers)
    assert r.status_code == 200
    assert [t["id"] for t in r.json()["teams"]] == ["app-team", "platform-iam"]


# --- clients -----------------------------------------------------------------------------


def test_create_client_returns_secret(http: TestClient, key: Keys) -> None:
    """A secret-based client's creation answers 201 with ids and the secret."""
    out = new_client(http, key("operator"), paths=[CC_PATH])
    assert set(out) == {"client_id", "credential_id", "client_secret"}
    assert out["client_secret"].startswith("tts_")


def test_client_secret_shown_only_once(http: TestClient, services: Services, key: Keys) -> None:
    """The secret is in the creation answer only: the list, the ledger and the table hold none."""
    headers = key("operator")
    out = new_client(http, headers)
    listing = http.get("/admin/clients", headers=headers).text
    assert out["client_id"] in listing
    assert out["client_secret"] not in listing
    with services.store.read() as tx:
        cred = tx.get_credential(out["credential_id"])
        records = tx.audit_records()
    assert cred is not None
    assert cred.secret_hash == crypto.hash_secret(out["client_secret"])
    assert all(out["client_secret"] not in json.dumps(r.data) for r in records)


def test_created_client_gets_tokens(http: TestClient, key: Keys) -> None:
    """A client registered through the admin API can use its declared path."""
    out = new_client(
        http, key("operator"), paths=[CC_PATH], scopes=["read"], audiences=["https://api"]
    )
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(out["client_id"], out["client_secret"]),
    )
    assert r.status_code == 200, r.text


def test_create_client_audited_with_key(http: TestClient, services: Services, key: Keys) -> None:
    """Client creation is recorded with the admin key as actor."""
    headers = key("operator")
    out = new_client(http, headers)
    (record,) = audit(services, Event.CLIENT_CREATED)
    assert (record.actor, record.client_id) == (f"admin_key:{key.id_of(headers)}", out["client_id"])


def test_create_private_key_jwt_client_has_no_secret(http: TestClient, key: Keys) -> None:
    """A private_key_jwt client is created from its JWKS and gets no secret."""
    out = new_client(http, key("operator"), auth="private_key_jwt", jwks=public_jwks())
    assert set(out) == {"client_id", "credential_id"}


def test_create_client_private_jwks_is_400(http: TestClient, key: Keys) -> None:
    """A JWKS with private key material is refused."""
    jwks = public_jwks()
    jwks["keys"][0]["d"] = "c2VjcmV0"
    r = http.post(
        "/admin/clients",
        json={"team": "platform-iam", "name": "w", "auth": "private_key_jwt", "jwks": jwks},
        headers=key("operator"),
    )
    assert r.status_code == 400
    assert "private key material" in r.json()["error_description"]


def test_create_client_unknown_path_is_400(http: TestClient, key: Keys) -> None:
    """An undeclared path id is refused with its name."""
    r = http.post(
        "/admin/clients",
        json={"team": "platform-iam", "name": "w", "paths": ["no-such-path"]},
        headers=key("operator"),
    )
    assert r.status_code == 400
    assert r.json()["error_description"] == "no declared issuance path named no-such-path"


def test_create_client_unknown_team_is_404(http: TestClient, key: Keys) -> None:
    """An admin registering a client for a team that does not exist gets 404."""
    r = http.post("/admin/clients", json={"team": "ghosts", "name": "w"}, headers=key("admin"))
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_create_client_bad_kind_is_400(http: TestClient, key: Keys) -> None:
    """A value outside an enumerated field is 400 naming the field."""
    r = http.post(
        "/admin/clients",
        json={"team": "platform-iam", "name": "w", "kind": "robot"},
        headers=key("operator"),
    )
    assert r.status_code == 400
    assert r.json()["error_description"].startswith("kind: ")


def test_list_clients_own_team_only(http: TestClient, key: Keys) -> None:
    """A non-admin key lists its own team's clients only; an admin key lists all."""
    mine = new_client(http, key("operator"))
    other = new_client(http, key("operator", team="app-team"), team="app-team")
    viewer = http.get("/admin/clients", headers=key("viewer")).json()["clients"]
    assert [c["client_id"] for c in viewer] == [mine["client_id"]]
    admin = http.get("/admin/clients", headers=key("admin")).json()["clients"]
    assert {c["client_id"] for c in admin} == {mine["client_id"], other["client_id"]}


def test_list_clients_shape(http: TestClient, key: Keys) -> None:
    """Each listed client carries its registration, and no secret."""
    headers = key("operator")
    out = new_client(http, headers, paths=[CC_PATH], scopes=["read"], audiences=["https://api"])
    (row,) = http.get("/admin/clients", headers=headers).json()["clients"]
    assert row == {
        "client_id": out["client_id"],
        "team": "platform-iam",
        "name": "worker",
        "kind": "workload",
        "auth": "client_secret_basic",
        "paths": [CC_PATH],
        "scopes": ["read"],
        "audiences": ["https://api"],
    }


# --- rotation --------------------------------------------------------------------------


def test_rotate_returns_new_secret(http: TestClient, services: Services, key: Keys) -> None:
    """Rotation answers 201 with a new credential and secret; the old one gets a deadline."""
    headers = key("operator")
    first = new_client(http, headers)
    r = http.post(
        f"/admin/clients/{first['client_id']}/rotate", json={"grace_seconds": 30}, headers=headers
    )
    assert r.status_code == 201
    second = r.json()
    assert second["credential_id"] != first["credential_id"]
    assert second["client_secret"] != first["client_secret"]
    with services.store.read() as tx:
        old = tx.get_credential(first["credential_id"])
    assert old is not None
    assert old.not_after == services.clock.now() + 30


def test_rotate_default_grace(http: TestClient, services: Services, key: Keys) -> None:
    """Without grace_seconds the configured grace period applies."""
    headers = key("operator")
    first = new_client(http, headers)
    http.post(f"/admin/clients/{first['client_id']}/rotate", json={}, headers=headers)
    with services.store.read() as tx:
        old = tx.get_credential(first["credential_id"])
    assert old is not None
    grace = services.settings.credential_grace_seconds
    assert old.not_after == services.clock.now() + grace


def test_rotate_private_key_jwt_client(http: TestClient, key: Keys) -> None:
    """A key-based client rotates to a new JWKS and gets no secret."""
    headers = key("operator")
    first = new_client(http, headers, auth="private_key_jwt", jwks=public_jwks())
    r = http.post(
        f"/admin/clients/{first['client_id']}/rotate", json={"jwks": public_jwks()}, headers=headers
    )
    assert r.status_code == 201
    assert set(r.json()) == {"client_id", "credential_id"}


def test_rotate_unknown_client_is_404(http: TestClient, key: Keys) -> None:
    """Rotating an unknown client is 404."""
    r = http.post("/admin/clients/cl_nope/rotate", json={}, headers=key("operator"))
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "error_description": "no client 'cl_nope'"}


def test_rotate_cross_team_is_403(http: TestClient, services: Services, key: Keys) -> None:
    """An operator cannot rotate another team's client, and the refusal is audited."""
    other = new_client(http, key("operator", team="app-team"), team="app-team")
    r = http.post(f"/admin/clients/{other['client_id']}/rotate", json={}, headers=key("operator"))
    assert r.status_code == 403
    assert len(audit(services, Event.ADMIN_DENIED)) == 1


def test_rotate_negative_grace_is_400(http: TestClient, key: Keys) -> None:
    """A negative grace period is refused."""
    headers = key("operator")
    first = new_client(http, headers)
    r = http.post(
        f"/admin/clients/{first['client_id']}/rotate", json={"grace_seconds": -1}, headers=headers
    )
    assert r.status_code == 400
    assert r.json()["error_description"].startswith("grace_seconds: ")


# --- trusted issuers ---------------------------------------------------------------------


def test_trust_issuer(http: TestClient, services: Services, key: Keys) -> None:
    """An admin key can trust an identity provider; it is stored with its audience."""
    doc = public_jwks()
    r = http.post(
        "/admin/issuers",
        json={"issuer": "https://idp.example", "jwks": doc, "audience": "tt"},
        headers=key("admin"),
    )
    assert r.status_code == 201
    assert r.json()["issuer"] == "https://idp.example"
    assert r.json()["audience"] == "tt"
    with services.store.read() as tx:
        trusted = tx.get_issuer("https://idp.example")
    assert trusted is not None
    assert trusted.jwks == doc


def test_trust_issuer_bad_jwks_is_400(http: TestClient, key: Keys) -> None:
    """A JWKS that is not a key set is refused."""
    r = http.post(
        "/admin/issuers",
        json={"issuer": "https://idp.example", "jwks": {"keys": []}, "audience": "tt"},
        headers=key("admin"),
    )
    assert r.status_code == 400
    assert r.json()["error_description"] == "the JWKS holds no keys"


# --- revocation --------------------------------------------------------------------------


def test_revoke_node(http: TestClient, make: Factory, key: Keys) -> None:
    """A responder revokes a credential (201); tokens minted from it go inactive."""
    worker = make.client(audiences=["https://api"])
    gateway = make.client(paths=[])
    assert worker.secret
    assert gateway.secret
    token = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(worker.client_id, worker.secret),
    ).json()["access_token"]
    r = http.post(
        f"/admin/nodes/{worker.credential_id}/revoke",
        json={"reason": "leaked"},
        headers=key("responder"),
    )
    assert r.status_code == 201
    assert r.json()["already_revoked"] is False
    intro = http.post(
        "/oauth/introspect", data={"token": token}, auth=(gateway.client_id, gateway.secret)
    )
    assert intro.json() == {"active": False}


def test_revoke_audited_with_key(
    http: TestClient, services: Services, make: Factory, key: Keys
) -> None:
    """The revocation is recorded with the admin key as actor and the reason."""
    worker = make.client()
    headers = key("responder")
    http.post(f"/admin/nodes/{worker.credential_id}/revoke", json={"reason": "x"}, headers=headers)
    (record,) = audit(services, Event.NODE_REVOKED)
    assert record.actor == f"admin_key:{key.id_of(headers)}"
    assert record.data["reason"] == "x"


def test_revoke_twice(http: TestClient, make: Factory, key: Keys) -> None:
    """Revoking again answers with the first revocation and already_revoked."""
    worker = make.client()
    headers = key("responder")
    url = f"/admin/nodes/{worker.credential_id}/revoke"
    first = http.post(url, json={"reason": "leaked"}, headers=headers).json()
    again = http.post(url, json={"reason": "again"}, headers=headers).json()
    assert again["already_revoked"] is True
    assert (again["seq"], again["revoked_at"]) == (first["seq"], first["revoked_at"])


def test_revoke_unknown_node_is_404(http: TestClient, key: Keys) -> None:
    """Revoking an unknown node is 404."""
    r = http.post("/admin/nodes/at_nope/revoke", json={"reason": "x"}, headers=key("responder"))
    assert r.status_code == 404


def test_revoke_cross_team_is_403(
    http: TestClient, services: Services, make: Factory, key: Keys
) -> None:
    """A responder cannot revoke another team's node; nothing is revoked and it is audited."""
    other = make.client(team="app-team")
    r = http.post(
        f"/admin/nodes/{other.credential_id}/revoke",
        json={"reason": "x"},
        headers=key("responder"),
    )
    assert r.status_code == 403
    assert audit(services, Event.NODE_REVOKED) == []
    assert len(audit(services, Event.ADMIN_DENIED)) == 1


def test_revoke_empty_reason_is_400(http: TestClient, make: Factory, key: Keys) -> None:
    """A revocation without a reason is refused."""
    worker = make.client()
    r = http.post(
        f"/admin/nodes/{worker.credential_id}/revoke", json={"reason": ""}, headers=key("admin")
    )
    assert r.status_code == 400
    assert r.json()["error_description"].startswith("reason: ")


# --- lineage -----------------------------------------------------------------------------


def _mint(http: TestClient, make: Factory, n: int = 1) -> str:
    worker = make.client(audiences=["https://api"])
    assert worker.secret
    for _ in range(n):
        r = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(worker.client_id, worker.secret),
        )
        assert r.status_code == 200, r.text
    return worker.credential_id


def test_lineage(http: TestClient, make: Factory, key: Keys) -> None:
    """GET lineage returns the tree below a node with paths and owners."""
    cred = _mint(http, make)
    r = http.get(f"/admin/nodes/{cred}/lineage", headers=key("viewer"))
    assert r.status_code == 200
    tree = r.json()
    assert tree["root"]["id"] == cred
    (token,) = tree["descendants"]
    assert (token["kind"], token["path"], token["state"]) == ("access_token", CC_PATH, "live")
    assert token["owners"]["credential_issuance"] == "platform-iam"


def test_lineage_limit_truncates(http: TestClient, make: Factory, key: Keys) -> None:
    """limit bounds the descendants listed and the answer says it is truncated."""
    cred = _mint(http, make, n=3)
    tree = http.get(f"/admin/nodes/{cred}/lineage?limit=2", headers=key("viewer")).json()
    assert (len(tree["descendants"]), tree["total_descendants"], tree["truncated"]) == (2, 3, True)


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", "100001", ""])
def test_lineage_bad_limit_is_400(http: TestClient, make: Factory, key: Keys, limit: str) -> None:
    """A limit that is not an integer from 1 to 100000 is 400."""
    cred = make.client().credential_id
    r = http.get(f"/admin/nodes/{cred}/lineage", params={"limit": limit}, headers=key("viewer"))
    assert r.status_code == 400
    assert r.json()["error_description"] == "limit must be an integer from 1 to 100000"


def test_lineage_unknown_node_is_404(http: TestClient, key: Keys) -> None:
    """Lineage of an unknown node is 404."""
    r = http.get("/admin/nodes/at_nope/lineage", headers=key("viewer"))
    assert r.status_code == 404


def test_lineage_cross_team_is_403(http: TestClient, make: Factory, key: Keys) -> None:
    """A viewer cannot read another team's lineage."""
    other = make.client(team="app-team")
    r = http.get(f"/admin/nodes/{other.credential_id}/lineage", headers=key("viewer"))
    assert r.status_code == 403


def test_lineage_of_teamless_node_needs_admin(
    http: TestClient, services: Services, key: Keys
) -> None:
    """A node of no team (an upstream login) spans teams, so only an admin key reads it."""
    login = Node(
        id="up_login",
        kind=NodeKind.CREDENTIAL,
        path_id=None,
        client_id=None,
        subject="https://idp.example|alice",
        team_id=None,
        parents=(),
        ancestors=(),
        created_at=services.clock.now(),
        expires_at=None,
    )
    with services.store.write() as tx:
        tx.insert_node(login)
    assert http.get("/admin/nodes/up_login/lineage", headers=key("viewer")).status_code == 403
    assert http.get("/admin/nodes/up_login/lineage", headers=key("admin")).status_code == 200


# --- malformed requests ------------------------------------------------------------------


def test_wrong_content_type_is_400(http: TestClient, key: Keys) -> None:
    """A form body where JSON is expected is 400."""
    r = http.post("/admin/teams", data={"name": "secops"}, headers=key("admin"))
    assert r.status_code == 400
    assert r.json()["error_description"] == "body must be application/json"


def test_json_with_charset_is_accepted(http: TestClient, key: Keys) -> None:
    """application/json with a charset parameter is JSON."""
    r = http.post(
        "/admin/teams",
        content=b'{"name": "secops"}',
        headers={**key("admin"), "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[]", b"null", b'"secops"', b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000],
    ids=["broken", "empty", "array", "null", "string", "binary", "deep"],
)
def test_malformed_json_is_400(http: TestClient, key: Keys, body: bytes) -> None:
    """A body that is not a JSON object is 400 invalid_request, never a 500."""
    r = http.post(
        "/admin/teams", content=body, headers={**key("admin"), "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_deeply_nested_json_is_400(http: TestClient, key: Keys) -> None:
    """JSON nested beyond the parser's recursion limit is 400, not a 500."""
    body = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = http.post(
        "/admin/teams", content=body, headers={**key("admin"), "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error_description"] == "body is nested too deeply"


def test_unknown_field_is_400(http: TestClient, key: Keys) -> None:
    """A field the route does not know is refused and named."""
    r = http.post("/admin/teams", json={"name": "secops", "owner": "me"}, headers=key("admin"))
    assert r.status_code == 400
    assert r.json()["error_description"] == "owner: Extra inputs are not permitted"


def test_wrong_field_type_is_400(http: TestClient, key: Keys) -> None:
    """A field of the wrong type is refused and named."""
    r = http.post(
        "/admin/clients",
        json={"team": "platform-iam", "name": "w", "scopes": "read"},
        headers=key("operator"),
    )
    assert r.status_code == 400
    assert r.json()["error_description"].startswith("scopes: ")


def test_oversized_body_is_413(http: TestClient, services: Services, key: Keys) -> None:
    """A body beyond the admin limit is 413."""
    big = b'{"name": "' + b"a" * (services.settings.max_body_bytes * 16) + b'"}'
    r = http.post(
        "/admin/teams", content=big, headers={**key("admin"), "Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_unknown_admin_route_is_404_json(http: TestClient, key: Keys) -> None:
    """An unknown admin path answers a JSON 404."""
    r = http.get("/admin/nothing", headers=key("admin"))
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_wrong_method_is_405(http: TestClient, key: Keys) -> None:
    """A method a route does not serve answers 405 with a JSON body."""
    r = http.delete("/admin/teams", headers=key("admin"))
    assert r.status_code == 405
    assert r.json()["error"] == "invalid_request"
