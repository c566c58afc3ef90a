"""Drift between the declared map and what the service issued (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.conftest import Factory
from tokentrail.cli_paths import paths_app
from tokentrail.clock import FrozenClock
from tokentrail.config import BUNDLED_PATHS
from tokentrail.model import AuthMethod, Client, ClientKind, Node, NodeKind
from tokentrail.policy.drift import DriftReport, drift
from tokentrail.policy.paths import PathMap, load_path_map
from tokentrail.services import Services

DAY = 86400.0


def node(
    node_id: str,
    *,
    path: str | None,
    created: float,
    lifetime: float,
    kind: NodeKind = NodeKind.ACCESS_TOKEN,
    client: str | None = None,
    parents: tuple[str, ...] = (),
    meta: dict[str, Any] | None = None,
) -> Node:
    return Node(
        id=node_id,
        kind=kind,
        path_id=path,
        client_id=client,
        subject="s",
        team_id=None,
        parents=parents,
        ancestors=parents,
        created_at=created,
        expires_at=created + lifetime,
        meta=meta or {},
    )


def insert(services: Services, *nodes: Node) -> None:
    with services.store.write() as tx:
        for n in nodes:
            tx.insert_node(n)


def kinds(report: DriftReport, subject: str | None = None) -> set[str]:
    return {i.kind for i in report.items if subject is None or i.subject == subject}


def bundled() -> PathMap:
    return load_path_map(BUNDLED_PATHS)


def test_paths_never_used(services: Services, clock: FrozenClock) -> None:
    """Declared paths that issued nothing are reported as unused."""
    insert(services, node("at1", path="workload-dpop", created=clock.now(), lifetime=60))
    report = drift(bundled(), services.store, now=clock.now())
    unused = {i.subject for i in report.items if i.kind == "unused_path"}
    assert "path:workload-client-credentials" in unused
    assert "path:workload-dpop" not in unused
    assert report.usage["workload-dpop"]["issued"] == 1


def test_path_last_used_long_ago(services: Services, clock: FrozenClock) -> None:
    """A path whose last issuance is older than the window is unused."""
    insert(services, node("at1", path="workload-dpop", created=clock.now(), lifetime=60))
    report = drift(bundled(), services.store, now=clock.now() + 100 * DAY)
    (item,) = [i for i in report.items if i.subject == "path:workload-dpop"]
    assert item.message.startswith("last used 100d ago")


def test_live_token_issued_under_a_looser_ttl(services: Services, clock: FrozenClock) -> None:
    """A live token issued for an hour on a path now capped at 10 minutes is drift."""
    now = clock.now()
    insert(services, node("at1", path="workload-client-credentials", created=now, lifetime=3600))
    report = drift(bundled(), services.store, now=now + 60)
    (item,) = [i for i in report.items if i.kind == "live_under_looser_path"]
    assert (item.subject, item.count) == ("path:workload-client-credentials", 1)
    assert "the path now allows 10m" in item.message


def test_expired_tokens_do_not_drift(services: Services, clock: FrozenClock) -> None:
    """Tokens that expired are no longer drift, however long they lived."""
    now = clock.now()
    insert(services, node("at1", path="workload-client-credentials", created=now, lifetime=3600))
    report = drift(bundled(), services.store, now=now + 7200)
    assert "live_under_looser_path" not in kinds(report)


def test_scope_and_binding_tightened(services: Services, clock: FrozenClock) -> None:
    """Live tokens with scopes the path dropped, or unbound on a now-bound path."""
    m = load_path_map(Path(__file__).parents[2] / "examples" / "mesh.yaml")
    now = clock.now()
    insert(
        services,
        node(
            "at1",
            path="orders-service-token",
            created=now,
            lifetime=60,
            meta={"scope": ["payments:refund"], "aud": ["https://payments.internal"]},
        ),
        node(
            "at2",
            path="orders-service-token",
            created=now,
            lifetime=60,
            meta={
                "scope": ["payments:charge"],
                "aud": ["https://payments.internal"],
                "cnf": {"jkt": "x"},
            },
        ),
    )
    report = drift(m, services.store, now=now)
    messages = [i.message for i in report.items if i.kind == "live_under_looser_path"]
    assert any("1 live access token(s) carry scopes or audiences" in m for m in messages)
    assert any(
        "1 live access token(s) are unbound; the path now requires dpop" in m for m in messages
    )


def test_live_tokens_under_undeclared_path(services: Services, clock: FrozenClock) -> None:
    """Live tokens minted through a path the map dropped are reported."""
    now = clock.now()
    insert(services, node("at1", path="retired-path", created=now, lifetime=600))
    report = drift(bundled(), services.store, now=now)
    assert "live_under_undeclared_path" in kinds(report, "path:retired-path")


def test_unused_clients_and_credentials(
    services: Services, make: Factory, clock: FrozenClock
) -> None:
    """Clients and credentials unused for the window, and old credentials, are reported."""
    idle = make.client()
    busy = make.client()
    later = clock.now() + 100 * DAY
    insert(
        services,
        node(
            "at1",
            path="workload-client-credentials",
            created=later - DAY,
            lifetime=600,
            client=busy.client_id,
            parents=(busy.credential_id,),
        ),
    )
    report = drift(bundled(), services.store, now=later)
    assert kinds(report, f"client:{idle.client_id}") == {"unused_client"}
    assert "unused_credential" in kinds(report, f"credential:{idle.credential_id}")
    assert kinds(report, f"client:{busy.client_id}") == set()
    assert kinds(report, f"credential:{busy.credential_id}") == {"credential_beyond_max_age"}


def test_window_can_be_shortened(services: Services, make: Factory, clock: FrozenClock) -> None:
    """With a one-day window, a client created two days ago and never used is reported."""
    c = make.client()
    report = drift(bundled(), services.store, now=clock.now() + 2 * DAY, unused_after=86400)
    assert "unused_client" in kinds(report, f"client:{c.client_id}")
    assert report.to_json()["unused_after_seconds"] == 86400


def test_drift_cli_json(services: Services, make: Factory, clock: FrozenClock) -> None:
    """`tokentrail paths drift` reads the store the settings name, as of a given time."""
    make.client()
    settings = services.settings
    db_args = ["--db", settings.db_url] if settings.db_url else ["--data", str(settings.data_dir)]
    args = ["drift", str(BUNDLED_PATHS), *db_args, "--as-of", str(clock.now() + 100 * DAY)]
    result = CliRunner().invoke(paths_app, [*args, "--format", "json", "--fail-on-drift"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert {i["kind"] for i in data["items"]} >= {"unused_path", "unused_client"}
    text = CliRunner().invoke(paths_app, [*args, "--unused-after", "200d"])
    assert text.exit_code == 0
    assert "unused_client" not in text.stdout
    assert text.stdout.startswith("drift as of")


def test_drift_cli_without_database(tmp_path: Path) -> None:
    """Drift on a folder with no database is a clear error, not an empty report."""
    result = CliRunner().invoke(paths_app, ["drift", "--data", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no tokentrail database" in result.stderr


def test_drift_cli_bad_window(tmp_path: Path) -> None:
    """A malformed --unused-after is a clear error."""
    result = CliRunner().invoke(paths_app, ["drift", "--unused-after", "soon"])
    assert result.exit_code == 2
    assert "--unused-after" in result.stderr


def test_disabled_clients_are_not_offboarding_candidates(
    services: Services, clock: FrozenClock
) -> None:
    """A client already disabled is not reported as unused."""
    client = Client(
        id="cl_disabled",
        team_id="t",
        name="old",
        kind=ClientKind.WORKLOAD,
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        paths=(),
        scopes=(),
        audiences=(),
        created_at=clock.now(),
        disabled_at=clock.now(),
    )
    with services.store.write() as tx:
        tx.insert_client(client)
    report = drift(bundled(), services.store, now=clock.now() + 100 * DAY)
    assert kinds(report, "client:cl_disabled") == set()
