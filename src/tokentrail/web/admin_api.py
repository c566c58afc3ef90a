"""The admin API: JSON over HTTP, authorised by admin keys.

Every call carries ``Authorization: Bearer <admin key>``. A key belongs to one
team and holds roles; it acts on its own team's objects unless it holds
``admin``. Refusals are audited with the key's id; allowed changes are audited
by the operation itself with the actor ``admin_key:<id>``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokentrail.accountability import build_report
from tokentrail.audit import Event
from tokentrail.errors import Conflict, Forbidden, NotFound, RequestTooLarge
from tokentrail.lineage import tree
from tokentrail.model import AdminKey, AuthMethod, ClientKind
from tokentrail.render import tree_json
from tokentrail.services import Services
from tokentrail.web.oauth_routes import read_body
from tokentrail.web.responses import error_response, json_response


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeamIn(_Body):
    name: str


class ClientIn(_Body):
    team: str
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["workload", "application"] = "workload"
    auth: Literal[
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    ] = "client_secret_basic"
    jwks: dict[str, Any] | None = None
    #: tls_client_auth (RFC 8705 §2.1.2): the certificate subject DN, RFC 4514.
    tls_subject_dn: str | None = Field(default=None, max_length=2000)
    paths: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    audiences: list[str] = Field(default_factory=list)


class RotateIn(_Body):
    jwks: dict[str, Any] | None = None
    tls_subject_dn: str | None = Field(default=None, max_length=2000)
    grace_seconds: int | None = Field(default=None, ge=0)


class IssuerIn(_Body):
    issuer: str = Field(min_length=1)
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    audience: str = Field(min_length=1)
    max_aal: int = Field(default=2, ge=1, le=3)


class RevokeIn(_Body):
    reason: str = Field(min_length=1, max_length=2000)


Op = Callable[[Services, AdminKey, Request, Any], Any]


def _route(
    services: Services, roles: tuple[str, ...], body_model: type[_Body] | None, op: Op
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return error_response(
                "invalid_token", "admin key required", 401, {"WWW-Authenticate": "Bearer"}
            )
        key = await run_in_threadpool(services.admin.admin_key, header[7:].strip())
        if key is None:
            return error_response(
                "invalid_token",
                "unknown or revoked admin key",
                401,
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if not (set(key.roles) & {*roles, "admin"}):
            await run_in_threadpool(_deny, services, key, request, "role")
            return error_response("forbidden", f"needs one of the roles: {', '.join(roles)}", 403)
        body: Any = None
        try:
            if body_model is not None:
                media = request.headers.get("content-type", "").split(";")[0].strip()
                if media != "application/json":
                    return error_response("invalid_request", "body must be application/json", 400)
                raw = await read_body(request, services.settings.max_body_bytes * 16)
                body = body_model.model_validate(json.loads(raw or b"null"))
            result = await run_in_threadpool(op, services, key, request, body)
        except RequestTooLarge as exc:
            return error_response("invalid_request", exc.description, 413)
        except (ValueError, ValidationError) as exc:
            return error_response("invalid_request", _first_line(exc), 400)
        except RecursionError:
            return error_response("invalid_request", "body is nested too deeply", 400)
        except NotFound as exc:
            return error_response("not_found", str(exc), 404)
        except Conflict as exc:
            return error_response("conflict", str(exc), 409)
        except Forbidden as exc:
            await run_in_threadpool(_deny, services, key, request, str(exc))
            return error_response("forbidden", str(exc), 403)
        return json_response(result, 201 if request.method == "POST" else 200)

    return endpoint


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
    return str(exc).splitlines()[0] if str(exc) else "invalid request"


def _deny(services: Services, key: AdminKey, request: Request, reason: str) -> None:
    with services.store.write() as tx:
        tx.append_audit(
            Event.ADMIN_DENIED,
            at=services.clock.now(),
            actor=f"admin_key:{key.id}",
            team_id=key.team_id,
            data={"method": request.method, "path": request.url.path, "reason": reason},
        )


def _same_team(key: AdminKey, team: str | None) -> None:
    if "admin" not in key.roles and team != key.team_id:
        raise Forbidden("this admin key acts on its own team's objects only")


def _actor(key: AdminKey) -> str:
    return f"admin_key:{key.id}"


# --- operations -------------------------------------------------------------------


def _create_team(s: Services, key: AdminKey, _r: Request, body: TeamIn) -> Any:
    team = s.admin.create_team(body.name, actor=_actor(key))
    return {"id": team.id, "created_at": team.created_at}


def _list_teams(s: Services, _k: AdminKey, _r: Request, _b: None) -> Any:
    with s.store.read() as tx:
        return {"teams": [{"id": t.id, "created_at": t.created_at} for t in tx.list_teams()]}


def _create_client(s: Services, key: AdminKey, _r: Request, body: ClientIn) -> Any:
    _same_team(key, body.team)
    issued = s.admin.create_client(
        team=body.team,
        name=body.name,
        kind=ClientKind(body.kind),
        auth_method=AuthMethod(body.auth),
        jwks=body.jwks,
        paths=body.paths,
        scopes=body.scopes,
        audiences=body.audiences,
        actor=_actor(key),
        tls_subject_dn=body.tls_subject_dn,
    )
    out = {"client_id": issued.client_id, "credential_id": issued.credential_id}
    if issued.client_secret is not None:
        out["client_secret"] = issued.client_secret
    return out


def _list_clients(s: Services, key: AdminKey, _r: Request, _b: None) -> Any:
    team = None if "admin" in key.roles else key.team_id
    with s.store.read() as tx:
        clients = tx.list_clients(team)
    return {
        "clients": [
            {
                "client_id": c.id,
                "team": c.team_id,
                "name": c.name,
                "kind": c.kind.value,
                "auth": c.auth_method.value,
                "paths": list(c.paths),
                "scopes": list(c.scopes),
                "audiences": list(c.audiences),
            }
            for c in clients
        ]
    }


def _rotate(s: Services, key: AdminKey, request: Request, body: RotateIn) -> Any:
    client_id = request.path_params["client_id"]
    with s.store.read() as tx:
        client = tx.get_client(client_id)
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    _same_team(key, client.team_id)
    grace = body.grace_seconds
    issued = s.admin.rotate_credential(
        client_id,
        jwks=body.jwks,
        grace=float(s.settings.credential_grace_seconds if grace is None else grace),
        actor=_actor(key),
        tls_subject_dn=body.tls_subject_dn,
    )
    out = {"client_id": issued.client_id, "credential_id": issued.credential_id}
    if issued.client_secret is not None:
        out["client_secret"] = issued.client_secret
    return out


def _trust(s: Services, key: AdminKey, _r: Request, body: IssuerIn) -> Any:
    # The route admits the admin role only (trusting a provider affects every team).
    trusted = s.admin.trust_issuer(
        body.issuer,
        jwks=body.jwks,
        jwks_url=body.jwks_url,
        audience=body.audience,
        max_aal=body.max_aal,
        actor=_actor(key),
    )
    return {"issuer": trusted.issuer, "audience": trusted.audience, "max_aal": trusted.max_aal}


def _revoke(s: Services, key: AdminKey, request: Request, body: RevokeIn) -> Any:
    node_id = request.path_params["node_id"]
    with s.store.read() as tx:
        node = tx.get_node(node_id)
    if node is None:
        raise NotFound(f"no node {node_id!r}")
    _same_team(key, node.team_id)
    rev = s.admin.revoke(node_id, reason=body.reason, actor=_actor(key))
    with s.store.read() as tx:
        current = tx.get_revocation(node_id)
    assert current is not None
    return {
        "node_id": node_id,
        "revoked_at": current.revoked_at,
        "seq": current.seq,
        "already_revoked": rev is None,
    }


def _lineage(s: Services, key: AdminKey, request: Request, _b: None) -> Any:
    node_id = request.path_params["node_id"]
    limit = request.query_params.get("limit", "1000")
    if not limit.isdigit() or not 0 < int(limit) <= 100_000:
        raise ValueError("limit must be an integer from 1 to 100000")
    with s.store.read() as tx:
        root = tx.get_node(node_id)
        if root is None:
            raise NotFound(f"no node {node_id!r}")
        # Check before reading the tree; a node of no team (an upstream login, whose
        # sessions span teams) needs the admin role like any other team's node.
        _same_team(key, root.team_id)
        result = tree(tx, node_id, limit=int(limit))
    return tree_json(result, s.paths)


def _subject_sessions(s: Services, key: AdminKey, request: Request, _b: None) -> Any:
    live = s.sessions.live(request.path_params["subject"])
    visible = [x for x in live if "admin" in key.roles or _team_of(s, x.client_id) == key.team_id]
    return {"sessions": [x.as_dict() for x in visible]}


def _end_session(s: Services, key: AdminKey, request: Request, body: RevokeIn) -> Any:
    info = s.sessions.get(request.path_params["session_id"])
    _same_team(key, _team_of(s, info.client_id))
    ended = s.sessions.end(info.id, actor=_actor(key), reason=body.reason)
    return {"session_id": info.id, "ended": ended}


def _end_subject_sessions(s: Services, key: AdminKey, request: Request, body: RevokeIn) -> Any:
    subject = request.path_params["subject"]
    if "admin" in key.roles:
        return {"ended": s.sessions.end_all(subject, actor=_actor(key), reason=body.reason)}
    ended = 0
    for info in s.sessions.live(subject):
        if _team_of(s, info.client_id) == key.team_id:
            ended += s.sessions.end(info.id, actor=_actor(key), reason=body.reason)
    return {"ended": ended}


def _team_of(s: Services, client_id: str | None) -> str | None:
    if client_id is None:
        return None
    with s.store.read() as tx:
        client = tx.get_client(client_id)
    return client.team_id if client else None


class IncidentIn(_Body):
    reason: str = Field(min_length=1, max_length=2000)
    credential: str | None = None
    node: str | None = None
    subject: str | None = None


class IncidentNodeIn(_Body):
    node: str = Field(min_length=1)


def _may_contain(s: Services, key: AdminKey, node_id: str) -> None:
    """Containing a node revokes it: the key needs what ``POST /admin/nodes/{id}/revoke`` needs.

    A node of no team (an upstream login, whose sessions span teams) needs the admin role.
    """
    with s.store.read() as tx:
        node = tx.get_node(node_id)
    if node is not None:
        _same_team(key, node.team_id)


def _open_incident(s: Services, key: AdminKey, _r: Request, body: IncidentIn) -> Any:
    target = body.credential or body.node
    if "admin" not in key.roles:
        if body.subject is not None:
            # A subject's sessions and upstream logins span teams.
            raise Forbidden("an incident on a subject needs the admin role")
        if target is not None:
            _may_contain(s, key, target)
    inc = s.incidents.open(
        credential=body.credential,
        node=body.node,
        subject=body.subject,
        reason=body.reason,
        actor=_actor(key),
    )
    return inc.as_dict()


def _add_incident_node(s: Services, key: AdminKey, request: Request, body: IncidentNodeIn) -> Any:
    _may_contain(s, key, body.node)
    return s.incidents.add(
        request.path_params["incident_id"], body.node, actor=_actor(key)
    ).as_dict()


def _incident_report(s: Services, _k: AdminKey, request: Request, _b: None) -> Any:
    incident = s.incidents.get(request.path_params["incident_id"])
    return build_report(s.store, s.paths, incident)


def admin_routes(services: Services) -> list[Route]:
    def r(
        path: str, method: str, roles: tuple[str, ...], model: type[_Body] | None, op: Op
    ) -> Route:
        return Route(path, _route(services, roles, model, op), methods=[method])

    return [
        r("/admin/teams", "POST", ("admin",), TeamIn, _create_team),
        r("/admin/teams", "GET", ("viewer", "operator", "responder"), None, _list_teams),
        r("/admin/clients", "POST", ("operator",), ClientIn, _create_client),
        r("/admin/clients", "GET", ("viewer", "operator", "responder"), None, _list_clients),
        r("/admin/clients/{client_id}/rotate", "POST", ("operator",), RotateIn, _rotate),
        r("/admin/issuers", "POST", ("admin",), IssuerIn, _trust),
        r("/admin/nodes/{node_id}/revoke", "POST", ("responder",), RevokeIn, _revoke),
        r("/admin/incidents", "POST", ("responder",), IncidentIn, _open_incident),
        r(
            "/admin/incidents/{incident_id}/nodes",
            "POST",
            ("responder",),
            IncidentNodeIn,
            _add_incident_node,
        ),
        r(
            "/admin/incidents/{incident_id}/report",
            "GET",
            ("viewer", "responder"),
            None,
            _incident_report,
        ),
        r(
            "/admin/subjects/{subject}/sessions",
            "GET",
            ("viewer", "operator", "responder", "support"),
            None,
            _subject_sessions,
        ),
        r(
            "/admin/subjects/{subject}/sessions/end",
            "POST",
            ("responder",),
            RevokeIn,
            _end_subject_sessions,
        ),
        r("/admin/sessions/{session_id}/end", "POST", ("responder",), RevokeIn, _end_session),
        r(
            "/admin/nodes/{node_id}/lineage",
            "GET",
            ("viewer", "operator", "responder"),
            None,
            _lineage,
        ),
    ]
