"""Audit records as OCSF events (schema 1.8.0; STANDARDS.md §6).

OCSF has no token-issuance or token-revocation class, so the mapping below is
tokentrail's choice: issuance and session creation are Authentication (3002)
"Authentication Ticket"/"Service Ticket" activities, refresh is "Service
Ticket Renew", a revoked session is "Logoff", other revocations and admin
calls are API Activity (6003), object creation is Entity Management (3004),
detections are Detection Finding (2004), incidents Incident Finding (2005).
The hash-chain fields (seq, hash, prev_hash) travel in ``unmapped`` so an OCSF
consumer keeps the evidence of integrity.
"""

from __future__ import annotations

from typing import Any

from tokentrail import __version__

OCSF_VERSION = "1.8.0"

#: event -> (class_uid, activity_id, category_uid)
_MAP: dict[str, tuple[int, int, int]] = {
    "token.issued": (3002, 3, 3),
    "session.created": (3002, 3, 3),
    "token.exchanged": (3002, 4, 3),
    "token.refreshed": (3002, 5, 3),
    "client_auth.failed": (3002, 1, 3),
    "issuance.refused": (3002, 3, 3),
    "node.revoked": (6003, 4, 6),
    "team.created": (3004, 1, 3),
    "client.created": (3004, 1, 3),
    "credential.issued": (3004, 1, 3),
    "credential.rotated": (3004, 3, 3),
    "issuer.trusted": (3004, 1, 3),
    "admin_key.created": (3004, 1, 3),
    "signing_key.rotated": (3004, 3, 3),
    "admin.denied": (6003, 0, 6),
}
_FAILURES = frozenset({"client_auth.failed", "issuance.refused", "admin.denied"})
#: A detection's severity word as an OCSF ``severity_id`` (2 Low, 3 Medium, 4 High, 5 Critical).
_SEVERITY_IDS = {"low": 2, "medium": 3, "high": 4, "critical": 5}


def to_ocsf(record: dict[str, Any]) -> dict[str, Any]:
    """One audit record (a row of the ledger) as an OCSF event."""
    event = str(record["event"])
    if event.startswith("detection."):
        class_uid, activity, category = 2004, 1, 2
    elif event.startswith("incident."):
        class_uid, activity, category = 2005, 1, 2
    else:
        class_uid, activity, category = _MAP.get(event, (6003, 99, 6))
    data = record.get("data") or {}
    if event == "node.revoked" and data.get("kind") == "session":
        class_uid, activity, category = 3002, 2, 3  # Logoff: the session ends
    failed = event in _FAILURES
    out: dict[str, Any] = {
        "class_uid": class_uid,
        "category_uid": category,
        "activity_id": activity,
        "type_uid": class_uid * 100 + activity,
        "time": int(float(record["at"]) * 1000),
        "severity_id": _severity_id(event, data),
        "status_id": 2 if failed else 1,
        "status": "Failure" if failed else "Success",
        "message": event,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": str(record["seq"]),
            "product": {"name": "tokentrail", "vendor_name": "tokentrail", "version": __version__},
            "log_name": "tokentrail-audit",
        },
        "actor": {"user": {"uid": record["actor"], "type": "Other"}},
        "unmapped": {
            "seq": record["seq"],
            "hash": record.get("hash"),
            "prev_hash": record.get("prev_hash"),
            "event": event,
            "data": data,
        },
    }
    if record.get("subject") or record.get("client_id"):
        out["user"] = {"uid": record.get("subject") or record.get("client_id")}
    if class_uid == 3002:
        out["auth_protocol_id"] = 6  # OAUTH 2.0
        out["auth_protocol"] = "OAUTH 2.0"
        if record.get("node_id"):
            out["session"] = {"uid": record["node_id"], "issuer": "tokentrail"}
    if record.get("client_id"):
        out["src_endpoint"] = {"uid": record["client_id"]}
    if record.get("team_id"):
        out["unmapped"]["team"] = record["team_id"]
    if record.get("node_id"):
        out["unmapped"]["node_id"] = record["node_id"]
    return out


def _severity_id(event: str, data: dict[str, Any]) -> int:
    """Informational (1) for ordinary records; findings carry their own severity (default 3)."""
    if not event.startswith(("detection.", "incident.")):
        return 1
    return _SEVERITY_IDS.get(str(data.get("severity", "")), 3)
