"""Persistence windows and blast radius of credential kinds and stolen tokens."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tests.policy.maps import EXAMPLES, EXCHANGE, HUMAN_SESSION, RECOVERY, clean, load
from tokentrail.policy.paths import load_path_map
from tokentrail.policy.persistence import EntryPoint, entry_points


def entries(tmp_path: Path, data: dict[str, Any]) -> dict[str, EntryPoint]:
    return {e.id: e for e in entry_points(load(tmp_path, data))}


def test_static_credential_window_is_max_age_plus_token(tmp_path: Path) -> None:
    """A key rotated every 30d (+1h grace, shorter than its 60d max age) plus a 5m token."""
    e = entries(tmp_path, clean())["credential_kind:svc-key"]
    assert e.window == 30 * 86400 + 3600 + 300
    assert e.token_kinds == ["access_token"]
    assert (e.audiences, e.scopes) == (["https://api.internal"], ["read"])


def test_max_age_bounds_the_window(tmp_path: Path) -> None:
    """Without rotation, the maximum age bounds how long a stolen key works."""
    data = clean()
    data["credential_kinds"][0].update(rotation_period=None, max_age="10d")
    e = entries(tmp_path, data)["credential_kind:svc-key"]
    assert e.window == 10 * 86400 + 300


def test_rotation_grace_counts(tmp_path: Path) -> None:
    """A kind's own rotation grace replaces the map's default."""
    data = clean()
    data["credential_kinds"][0].update(max_age=None, rotation_grace="2h")
    e = entries(tmp_path, data)["credential_kind:svc-key"]
    assert e.window == 30 * 86400 + 7200 + 300


def test_unbounded_static_credential_is_infinite(tmp_path: Path) -> None:
    """A static credential with neither max_age nor rotation keeps minting forever."""
    data = clean()
    data["credential_kinds"][0].update(max_age=None, rotation_period=None)
    e = entries(tmp_path, data)["credential_kind:svc-key"]
    assert e.infinite
    assert e.window_text == "infinite"


def test_unlimited_refresh_makes_the_login_window_infinite(tmp_path: Path) -> None:
    """A refresh family without absolute lifetime: both the refresh token and the login."""
    session = {k: v for k, v in HUMAN_SESSION.items() if k != "assurance_level"}
    session["binding"] = "none"
    session["refresh"] = {"absolute_lifetime": "unlimited"}
    data = clean(session)
    data["credential_kinds"].append(
        {"id": "sso", "type": "upstream_assertion", "principal": "human", "max_age": "5m"}
    )
    found = entries(tmp_path, data)
    assert found["refresh_token@login"].infinite
    assert found["credential_kind:sso"].infinite
    assert "no absolute lifetime" in found["credential_kind:sso"].explanation


def test_refresh_token_window_is_family_lifetime(tmp_path: Path) -> None:
    """An unbound refresh token keeps refreshing until its family's absolute lifetime."""
    data = clean({**HUMAN_SESSION, "binding": "none"})
    e = entries(tmp_path, data)["refresh_token@login"]
    assert e.window == 86400
    assert set(e.token_kinds) == {"access_token", "refresh_token", "session"}


def test_bound_tokens_are_useless_to_a_thief(tmp_path: Path) -> None:
    """DPoP-bound access and refresh tokens mint nothing without the key."""
    found = entries(tmp_path, clean(HUMAN_SESSION))
    for ident in ("access_token@svc", "access_token@login", "refresh_token@login"):
        assert found[ident].window == 0
        assert found[ident].groups() == []
        assert found[ident].window_text == "none"


def test_stolen_access_token_reaches_exchange_paths(tmp_path: Path) -> None:
    """A bearer access token is usable for its TTL and can be exchanged downstream."""
    data = clean(EXCHANGE)
    data["paths"][0]["binding"] = "none"
    e = entries(tmp_path, data)["access_token@svc"]
    assert e.window == 300
    assert e.exchange is not None
    assert e.exchange.ids == ("exchange",)
    assert e.audiences == ["https://api.internal", "https://downstream.internal"]


def test_clients_limit_reach(tmp_path: Path) -> None:
    """With clients declared, a credential reaches only its holders' paths."""
    other = copy.deepcopy(clean()["paths"][0])
    other["id"] = "other"
    data = clean(other, EXCHANGE)
    data["clients"] = [{"id": "c", "team": "iam", "credentials": ["svc-key"], "paths": ["svc"]}]
    e = entries(tmp_path, data)["credential_kind:svc-key"]
    assert e.direct is not None
    assert e.direct.ids == ("svc",)
    assert e.exchange is not None
    assert e.exchange.ids == ()
    assert e.holders == ("c",)


def test_client_audiences_bound_an_unbounded_path(tmp_path: Path) -> None:
    """A path without audiences reaches its clients' audiences, or any when unknown."""
    data = clean()
    del data["paths"][0]["audiences"]
    assert entries(tmp_path, data)["credential_kind:svc-key"].audiences == ["*"]
    data["clients"] = [
        {"id": "c", "team": "iam", "credentials": ["svc-key"], "paths": ["svc"], "audiences": ["x"]}
    ]
    assert entries(tmp_path, data)["credential_kind:svc-key"].audiences == ["x"]


def test_recovery_grant_window(tmp_path: Path) -> None:
    """A stolen recovery grant lives its TTL, then the session it mints lasts."""
    e = entries(tmp_path, clean(RECOVERY))["recovery_grant@recover"]
    assert e.window == 600 + 86400
    assert "session" in e.token_kinds


def test_credential_no_path_accepts(tmp_path: Path) -> None:
    """A credential kind no path accepts mints nothing."""
    data = clean()
    data["credential_kinds"].append({"id": "spare", "type": "api_key", "max_age": "1d"})
    e = entries(tmp_path, data)["credential_kind:spare"]
    assert e.window == 0
    assert "mints nothing" in e.explanation


def test_implicit_credential_types(tmp_path: Path) -> None:
    """Inputs with no declared kind become entry points: secrets infinite, assertions 10m."""
    data = clean(HUMAN_SESSION)
    data["paths"][0]["inputs"] = ["private_key_jwt", "client_secret"]
    found = entries(tmp_path, data)
    assert found["credential_type:client_secret"].infinite
    assert not found["credential_type:client_secret"].declared
    assert found["credential_type:upstream_assertion"].window == 600 + 86400


def test_entry_point_json_is_bounded(tmp_path: Path) -> None:
    """The JSON form carries counts and at most 50 items per list."""
    e = entries(tmp_path, clean())["credential_kind:svc-key"]
    out = e.to_json()
    assert out["window_seconds"] == e.window
    assert (out["paths"], out["paths_count"], out["infinite"]) == (["svc"], 1, False)


def test_customer_portal_windows() -> None:
    """The portal example: a login lasts 5m + 12h; recovery 10m + 2h; tokens are bound."""
    found = {e.id: e for e in entry_points(load_path_map(EXAMPLES / "customer-portal.yaml"))}
    assert found["credential_kind:customer-login"].window == 300 + 12 * 3600
    assert found["recovery_grant@customer-recovery"].window == 600 + 2 * 3600
    assert found["refresh_token@customer-login"].window == 0
