"""Admin API for help-desk recovery (see :mod:`tokentrail.recovery` and docs/recovery.md).

Same conventions as :mod:`tokentrail.web.admin_api`: ``Authorization: Bearer
<admin key>``, JSON bodies, every refusal audited with the key's id. The route
roles below admit a call; the recovery workflow then applies the path's own
rules (the support team, the approvers' team and role, the requester never
approving). No response ever carries a one-time code or a recovery grant: they
reach the subject only through the notification outbox.

=========================================================  ==========================
``POST /admin/subjects/{subject}/channels``                 operator
``GET  /admin/subjects/{subject}/channels``                 operator, support, approver,
                                                            viewer (addresses masked
                                                            unless operator)
``POST /admin/channels/{channel_id}/remove``                operator
``POST /admin/recovery/requests``                           support
``GET  /admin/recovery/requests[?subject=&state=]``         support, approver, viewer,
                                                            responder
``GET  /admin/recovery/requests/{id}``                      same
``POST /admin/recovery/requests/{id}/proof``                support
``POST /admin/recovery/requests/{id}/resend``               support
``POST /admin/recovery/requests/{id}/approve``              approver
``POST /admin/recovery/requests/{id}/deny``                 approver
``POST /admin/recovery/requests/{id}/cancel``               support
``POST /admin/recovery/freeze``                             support, approver, responder
``POST /admin/recovery/unfreeze``                           responder
``GET  /admin/recovery/freezes``                            any role
=========================================================  ==========================
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from tokentrail.model import AdminKey
from tokentrail.recovery import Actor
from tokentrail.services import Services
from tokentrail.web.admin_api import Op, _actor, _Body, _route

_READERS = ("support", "approver", "viewer", "responder")


class ChannelIn(_Body):
    kind: Literal["email", "sms", "voice", "push"]
    address: str = Field(min_length=1, max_length=320)


class RequestIn(_Body):
    subject: str = Field(min_length=1, max_length=256)
    path: str = Field(min_length=1, max_length=128)
    client_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)
    channel: str | None = Field(default=None, max_length=64)


class ProofIn(_Body):
    code: str | None = Field(default=None, min_length=1, max_length=32)
    assertion: str | None = Field(default=None, min_length=1, max_length=16_384)
    dpop_jkt: str | None = Field(default=None, max_length=64)


class ApproveIn(_Body):
    note: str = Field(default="", max_length=500)


class ReasonIn(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class FreezeIn(_Body):
    path: str | None = Field(default=None, max_length=128)
    reason: str = Field(min_length=1, max_length=2000)


class UnfreezeIn(_Body):
    path: str | None = Field(default=None, max_length=128)


def _add_channel(s: Services, key: AdminKey, request: Request, body: ChannelIn) -> Any:
    return s.recovery.add_channel(
        request.path_params["subject"], body.kind, body.address, actor=_actor(key)
    )


def _list_channels(s: Services, key: AdminKey, request: Request, _b: None) -> Any:
    reveal = bool({"operator", "admin"} & set(key.roles))
    return {"channels": s.recovery.channels(request.path_params["subject"], reveal=reveal)}


def _remove_channel(s: Services, key: AdminKey, request: Request, _b: None) -> Any:
    return s.recovery.remove_channel(request.path_params["channel_id"], actor=_actor(key))


def _open(s: Services, key: AdminKey, _r: Request, body: RequestIn) -> Any:
    return s.recovery.open(
        Actor.of_key(key),
        subject=body.subject,
        path_id=body.path,
        client_id=body.client_id,
        reason=body.reason,
        channel_id=body.channel,
    )


def _find(s: Services, key: AdminKey, request: Request, _b: None) -> Any:
    q = request.query_params
    found = s.recovery.find(Actor.of_key(key), subject=q.get("subject"), state=q.get("state"))
    return {"requests": found}


def _status(s: Services, key: AdminKey, request: Request, _b: None) -> Any:
    return s.recovery.status(Actor.of_key(key), request.path_params["request_id"])


def _proof(s: Services, key: AdminKey, request: Request, body: ProofIn) -> Any:
    return s.recovery.proof(
        Actor.of_key(key),
        request.path_params["request_id"],
        code=body.code,
        assertion=body.assertion,
        dpop_jkt=body.dpop_jkt,
    )


def _resend(s: Services, key: AdminKey, request: Request, _b: None) -> Any:
    return s.recovery.resend(Actor.of_key(key), request.path_params["request_id"])


def _approve(s: Services, key: AdminKey, request: Request, body: ApproveIn) -> Any:
    return s.recovery.approve(Actor.of_key(key), request.path_params["request_id"], note=body.note)


def _deny(s: Services, key: AdminKey, request: Request, body: ReasonIn) -> Any:
    return s.recovery.deny(Actor.of_key(key), request.path_params["request_id"], reason=body.reason)


def _cancel(s: Services, key: AdminKey, request: Request, body: ReasonIn) -> Any:
    return s.recovery.cancel(
        Actor.of_key(key), request.path_params["request_id"], reason=body.reason
    )


def _freeze(s: Services, key: AdminKey, _r: Request, body: FreezeIn) -> Any:
    return s.recovery.freeze(_actor(key), path_id=body.path, reason=body.reason)


def _unfreeze(s: Services, key: AdminKey, _r: Request, body: UnfreezeIn) -> Any:
    return s.recovery.unfreeze(_actor(key), path_id=body.path)


def _freezes(s: Services, _k: AdminKey, _r: Request, _b: None) -> Any:
    return {"freezes": s.recovery.freezes()}


def recovery_routes(services: Services) -> list[Route]:
    def r(
        path: str, method: str, roles: tuple[str, ...], model: type[_Body] | None, op: Op
    ) -> Route:
        return Route(path, _route(services, roles, model, op), methods=[method])

    req = "/admin/recovery/requests/{request_id}"
    return [
        r("/admin/subjects/{subject}/channels", "POST", ("operator",), ChannelIn, _add_channel),
        r(
            "/admin/subjects/{subject}/channels",
            "GET",
            ("operator", "support", "approver", "viewer"),
            None,
            _list_channels,
        ),
        r("/admin/channels/{channel_id}/remove", "POST", ("operator",), None, _remove_channel),
        r("/admin/recovery/requests", "POST", ("support",), RequestIn, _open),
        r("/admin/recovery/requests", "GET", _READERS, None, _find),
        r(req, "GET", _READERS, None, _status),
        r(f"{req}/proof", "POST", ("support",), ProofIn, _proof),
        r(f"{req}/resend", "POST", ("support",), None, _resend),
        r(f"{req}/approve", "POST", ("approver",), ApproveIn, _approve),
        r(f"{req}/deny", "POST", ("approver",), ReasonIn, _deny),
        r(f"{req}/cancel", "POST", ("support",), ReasonIn, _cancel),
        r(
            "/admin/recovery/freeze",
            "POST",
            ("support", "approver", "responder"),
            FreezeIn,
            _freeze,
        ),
        r("/admin/recovery/unfreeze", "POST", ("responder",), UnfreezeIn, _unfreeze),
        r(
            "/admin/recovery/freezes",
            "GET",
            ("viewer", "operator", "support", "approver", "responder"),
            None,
            _freezes,
        ),
    ]
