"""Small path maps for the analyzer tests, built as dicts and written as YAML."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tokentrail.policy.analyze import Report, analyze
from tokentrail.policy.paths import PathMap, load_path_map

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

#: A map the analyzer finds nothing wrong with; tests break one thing at a time.
CLEAN: dict[str, Any] = {
    "version": 1,
    "teams": [{"id": "iam"}, {"id": "soc"}],
    "credential_kinds": [
        {
            "id": "svc-key",
            "type": "private_key_jwt",
            "rotation_period": "30d",
            "max_age": "60d",
        }
    ],
    "paths": [
        {
            "id": "svc",
            "principal": "workload",
            "grant": "client_credentials",
            "inputs": ["private_key_jwt"],
            "output": "access_token",
            "max_ttl": "5m",
            "binding": "dpop",
            "audiences": ["https://api.internal"],
            "scopes": ["read"],
            "detection": {"binding_mismatch": "revoke_family"},
            "owners": {
                "credential_issuance": "iam",
                "authentication": "iam",
                "recovery": "iam",
                "detection": "soc",
            },
            "accountable": "iam",
        }
    ],
}

HUMAN_SESSION: dict[str, Any] = {
    "id": "login",
    "principal": "human",
    "grant": "jwt_bearer",
    "inputs": ["upstream_assertion"],
    "output": "session",
    "max_ttl": "5m",
    "binding": "dpop",
    "assurance_level": "AAL2",
    "refresh": {"rotation": True, "reuse_detection": True},
    "audiences": ["https://portal.example"],
    "scopes": ["profile"],
    "detection": {"refresh_reuse": "revoke_family", "binding_mismatch": "revoke_family"},
    "owners": {
        "credential_issuance": "iam",
        "authentication": "iam",
        "recovery": "iam",
        "detection": "soc",
    },
    "accountable": "iam",
}

RECOVERY: dict[str, Any] = {
    "id": "recover",
    "principal": "human",
    "grant": "recovery",
    "inputs": ["recovery_grant"],
    "output": "session",
    "max_ttl": "5m",
    "binding": "dpop",
    "assurance_level": "AAL2",
    "audiences": ["https://portal.example"],
    "scopes": ["profile"],
    "detection": {"binding_mismatch": "revoke_family"},
    "recovery": {
        "proofing": ["one_time_code"],
        "approvers": {"count": 1, "team": "soc"},
        "rate": {"max": 2, "per": "30d"},
    },
    "owners": {
        "credential_issuance": "iam",
        "authentication": "iam",
        "recovery": "iam",
        "detection": "soc",
    },
    "accountable": "iam",
}

EXCHANGE: dict[str, Any] = {
    "id": "exchange",
    "principal": "workload",
    "grant": "token_exchange",
    "inputs": ["access_token"],
    "output": "access_token",
    "max_ttl": "5m",
    "binding": "dpop",
    "max_delegation_depth": 2,
    "audiences": ["https://downstream.internal"],
    "scopes": ["read"],
    "detection": {"binding_mismatch": "revoke_family"},
    "owners": {
        "credential_issuance": "iam",
        "authentication": "iam",
        "recovery": "iam",
        "detection": "soc",
    },
    "accountable": "iam",
}


def clean(*extra_paths: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of CLEAN, with more paths appended."""
    data = copy.deepcopy(CLEAN)
    data["paths"] += [copy.deepcopy(p) for p in extra_paths]
    return data


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "paths.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, data: dict[str, Any] | str, *, analysis: bool = True) -> PathMap:
    return load_path_map(write(tmp_path, data), analysis=analysis)


def report(tmp_path: Path, data: dict[str, Any] | str) -> Report:
    return analyze(load(tmp_path, data))


def rule_ids(r: Report) -> set[str]:
    return {f.rule.id for f in r.findings}


Mutation = Callable[[dict[str, Any]], None]
