"""Lineage: the DAG of everything issued, cascade revocation, and how trees are shown.

The scenario: a frontend workload's credential mints access tokens (client
credentials); an API workload exchanges one of them with its own actor token
(two parents), and a ledger workload exchanges that again. The clock advances
one second between issuances so the tree's order is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests.conftest import Factory, Registered
from tests.oauth.test_jwt_bearer import Upstream, claims_of, login, portal
from tests.oauth.test_token_exchange import cc_token, exchange
from tokentrail import lineage
from tokentrail.audit import Event
from tokentrail.clock import FrozenClock
from tokentrail.errors import NotFound
from tokentrail.model import Node, NodeKind
from tokentrail.oauth.grants.jwt_bearer import upstream_node_id
from tokentrail.policy.paths import load_path_map
from tokentrail.render import tree_json, tree_lines
from tokentrail.services import Services
from tokentrail.storage import tables as t

API = "https://api.example"
DOWNSTREAM = "https://ledger.example"


@dataclass
class World:
    frontend: Registered
    api: Registered
    ledger: Registered
    t1: str  # frontend token, later exchanged
    t2: str  # frontend token, never exchanged
    actor: str  # api's own token, the actor of e1
    e1: str  # t1 exchanged by api with actor
    e2: str  # e1 exchanged by ledger


def jti(token: str) -> str:
    return str(claims_of(token)["jti"])


@pytest.fixture
def world(http: TestClient, make: Factory, clock: FrozenClock) -> World:
    frontend = make.client(audiences=[API])
    api = make.client(
        paths=["workload-client-credentials", "workload-token-exchange"], audiences=[DOWNSTREAM]
    )
    ledger = make.client(paths=["workload-token-exchange"], audiences=[DOWNSTREAM])
    clock.advance(1)
    t1 = cc_token(http, frontend)
    clock.advance(1)
    t2 = cc_token(http, frontend)
    clock.advance(1)
    actor = cc_token(http, api)
    clock.advance(1)
    r = exchange(http, api, t1, actor_token=actor)
    assert r.status_code == 200, r.text
    e1 = r.json()["access_token"]
    clock.advance(1)
    r = exchange(http, ledger, e1)
    assert r.status_code == 200, r.text
    e2 = r.json()["access_token"]
    return World(frontend, api, ledger, t1, t2, actor, e1, e2)


def _tree(services: Services, node_id: str, limit: int = 1000) -> lineage.Tree:
    with services.store.read() as tx:
        return lineage.tree(tx, node_id, limit=limit)


def _states(tree: lineage.Tree) -> dict[str, str]:
    def state(n: lineage.TreeNode) -> str:
        return "revoked" if n.revoked else ("dead" if n.dead_by else "live")

    return {n.node.id: state(n) for n in [tree.root, *tree.descendants]}


def _count(services: Services, table: sa.Table) -> int:
    with services.store.read() as tx:
        return int(tx.conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _revoke(services: Services, node_id: str, reason: str = "leaked") -> Any:
    return services.admin.revoke(node_id, reason=reason, actor="test")


# --- the DAG ------------------------------------------------------------------------


def test_tree_lists_every_generation(services: Services, world: World) -> None:
    """The credential's tree holds its tokens and both hops of exchange, in issuance order."""
    tree = _tree(services, world.frontend.credential_id)
    assert tree.root.node.kind is NodeKind.CREDENTIAL
    assert [d.node.id for d in tree.descendants] == [
        jti(world.t1),
        jti(world.t2),
        jti(world.e1),
        jti(world.e2),
    ]
    assert tree.total_descendants == 4
    assert tree.truncated is False


def test_exchanged_node_is_in_both_parents_trees(services: Services, world: World) -> None:
    """The exchanged token descends from the subject's credential and the actor's credential."""
    actor_tree = _tree(services, world.api.credential_id)
    assert [d.node.id for d in actor_tree.descendants] == [
        jti(world.actor),
        jti(world.e1),
        jti(world.e2),
    ]


def test_ancestors_are_recorded_in_full(services: Services, world: World) -> None:
    """A second-hop token records every ancestor of both branches, each once."""
    with services.store.read() as tx:
        e2 = tx.get_node(jti(world.e2))
    assert e2 is not None
    assert e2.parents == (jti(world.e1),)
    assert e2.ancestors == (
        jti(world.e1),
        jti(world.t1),
        jti(world.actor),
        world.frontend.credential_id,
        world.api.credential_id,
    )
    assert claims_of(world.e2)["tt_anc"] == list(e2.ancestors)


def test_tree_respects_the_limit(services: Services, world: World) -> None:
    """With a limit, the tree is cut, says so, and still counts every descendant."""
    tree = _tree(services, world.frontend.credential_id, limit=2)
    assert [d.node.id for d in tree.descendants] == [jti(world.t1), jti(world.t2)]
    assert tree.total_descendants == 4
    assert tree.truncated is True


def test_tree_of_a_leaf_is_just_the_leaf(services: Services, world: World) -> None:
    """A token nothing was derived from has an empty tree."""
    tree = _tree(services, jti(world.t2))
    assert tree.root.node.id == jti(world.t2)
    assert tree.descendants == []
    assert tree.total_descendants == 0


def test_tree_of_an_unknown_node_is_not_found(services: Services) -> None:
    """Asking for the tree of an id that names nothing raises NotFound."""
    with pytest.raises(NotFound):
        _tree(services, "at_nothing")


def test_diamond_is_listed_once(
    http: TestClient, services: Services, make: Factory, clock: FrozenClock
) -> None:
    """A token whose two parents share a credential appears once, with that ancestor once."""
    api = make.client(
        paths=["workload-client-credentials", "workload-token-exchange"], audiences=[API]
    )
    subject = cc_token(http, api)
    clock.advance(1)
    actor = cc_token(http, api)
    clock.advance(1)
    exchanged = exchange(http, api, subject, actor_token=actor).json()["access_token"]
    tree = _tree(services, api.credential_id)
    assert [d.node.id for d in tree.descendants] == [jti(subject), jti(actor), jti(exchanged)]
    assert claims_of(exchanged)["tt_anc"] == [jti(subject), jti(actor), api.credential_id]


def test_session_tree_spans_refresh_generations(
    http: TestClient,
    services: Services,
    make: Factory,
    clock: FrozenClock,
) -> None:
    """An upstream login's tree holds the session, each rotated refresh token and each access."""
    idp = Upstream()
    idp.trust(services)
    app = portal(make)
    body = login(http, app, idp.assertion(clock.now())).json()
    assert app.secret is not None
    for _ in range(2):
        clock.advance(60)
        body = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            auth=(app.client_id, app.secret),
        ).json()
    tree = _tree(services, upstream_node_id(idp.issuer, "alice@example.com"))
    kinds = [d.node.kind for d in tree.descendants]
    assert kinds.count(NodeKind.SESSION) == 1
    assert kinds.count(NodeKind.REFRESH_TOKEN) == 3
    assert kinds.count(NodeKind.ACCESS_TOKEN) == 3


def test_ancestors_of_orders_parents_first_without_repeats() -> None:
    """ancestors_of lists parents, then their ancestors, each id once."""

    def node(node_id: str, *ancestors: str) -> Node:
        return Node(
            node_id, NodeKind.ACCESS_TOKEN, None, None, None, None, (), ancestors, 0.0, None
        )

    parents = [node("a", "c", "root"), node("b", "c", "other")]
    assert lineage.ancestors_of(parents) == ("a", "b", "c", "root", "other")
    assert lineage.ancestors_of([]) == ()


# --- cascade ------------------------------------------------------------------------


def test_revoking_a_token_kills_its_descendants_only(services: Services, world: World) -> None:
    """Revoking t1 kills both exchanges; the credential, t2 and the actor token live."""
    _revoke(services, jti(world.t1))
    states = _states(_tree(services, world.frontend.credential_id))
    assert states == {
        world.frontend.credential_id: "live",
        jti(world.t1): "revoked",
        jti(world.t2): "live",
        jti(world.e1): "dead",
        jti(world.e2): "dead",
    }
    assert _states(_tree(services, world.api.credential_id))[jti(world.actor)] == "live"


def test_dead_by_names_the_nearest_revoked_ancestor(services: Services, world: World) -> None:
    """A dead node reports which revoked node kills it: the nearest in its lineage."""
    _revoke(services, world.frontend.credential_id)
    _revoke(services, jti(world.e1))
    tree = _tree(services, world.frontend.credential_id)
    by_id = {d.node.id: d for d in tree.descendants}
    assert by_id[jti(world.e2)].dead_by == jti(world.e1)
    assert by_id[jti(world.t2)].dead_by == world.frontend.credential_id
    assert by_id[jti(world.e1)].revoked is not None


def test_root_killed_by_an_ancestor_is_dead(services: Services, world: World) -> None:
    """The tree of a token whose credential was revoked shows the root dead by that credential."""
    _revoke(services, world.api.credential_id)
    tree = _tree(services, jti(world.e1))
    assert tree.root.revoked is None
    assert tree.root.dead_by == world.api.credential_id
    assert tree.descendants[0].dead_by == world.api.credential_id


def test_liveness_is_one_lookup_over_the_lineage(services: Services, world: World) -> None:
    """first_revoked over a node's lineage finds a revoked ancestor several generations up."""
    with services.store.read() as tx:
        e2 = tx.get_node(jti(world.e2))
        assert e2 is not None
        assert tx.first_revoked(e2.lineage) is None
    _revoke(services, world.api.credential_id)
    with services.store.read() as tx:
        assert tx.first_revoked(e2.lineage) == world.api.credential_id


def test_revocation_is_one_row_whatever_the_descendant_count(
    http: TestClient, services: Services, world: World
) -> None:
    """Revoking a credential with many descendants writes one revocation and touches no node."""
    for _ in range(20):
        cc_token(http, world.frontend)
    revocations, nodes = _count(services, t.revocations), _count(services, t.nodes)
    _revoke(services, world.frontend.credential_id)
    assert _count(services, t.revocations) == revocations + 1
    assert _count(services, t.nodes) == nodes
    assert _tree(services, world.frontend.credential_id).total_descendants == 24


def test_revoking_twice_returns_none(services: Services, world: World) -> None:
    """The second revocation of a node returns None and writes nothing."""
    first = _revoke(services, jti(world.t1))
    rows = _count(services, t.revocations)
    assert first is not None
    assert _revoke(services, jti(world.t1), reason="again") is None
    assert _count(services, t.revocations) == rows
    with services.store.read() as tx:
        assert tx.get_revocation(jti(world.t1)) == first
        records = tx.audit_records(event=Event.NODE_REVOKED, node_id=jti(world.t1))
    assert len(records) == 1
    assert records[0].data["reason"] == "leaked"


def test_revocation_records_reason_actor_and_sequence(services: Services, world: World) -> None:
    """A revocation carries its reason, actor and an increasing sequence number."""
    a = _revoke(services, jti(world.t1), reason="first")
    b = _revoke(services, jti(world.t2), reason="second")
    assert a is not None
    assert b is not None
    assert (a.reason, a.actor, a.node_id) == ("first", "test", jti(world.t1))
    assert b.seq > a.seq


def test_revoking_an_unknown_node_is_not_found(services: Services) -> None:
    """Revoking an id that names nothing raises NotFound and writes nothing."""
    with pytest.raises(NotFound):
        _revoke(services, "cred_nothing")
    assert _count(services, t.revocations) == 0


def test_revocation_needs_a_reason(services: Services, world: World) -> None:
    """A blank reason is refused."""
    with pytest.raises(ValueError, match="reason"):
        _revoke(services, jti(world.t1), reason="  ")


def test_token_revocation_matters_until_the_token_expires(services: Services, world: World) -> None:
    """A token's revocation can be forgotten once the token has expired."""
    rev = _revoke(services, jti(world.t1))
    assert rev is not None
    assert rev.matters_until == claims_of(world.t1)["exp"]


def test_credential_revocation_matters_for_the_horizon(
    services: Services, world: World, clock: FrozenClock
) -> None:
    """A credential has no expiry: its revocation matters for the longest lifetime of any path."""
    rev = _revoke(services, world.frontend.credential_id)
    assert rev is not None
    assert rev.matters_until == clock.now() + services.authority.horizon


# --- rendering -------------------------------------------------------------------------


def test_tree_lines_draw_the_tree(services: Services, world: World) -> None:
    """Text lines put each node under its first parent in the tree, with branch glyphs."""
    lines = tree_lines(_tree(services, world.frontend.credential_id), services.paths)
    assert lines[0].startswith(f"credential {world.frontend.credential_id} [live]")
    assert lines[1].startswith(f"├── access_token {jti(world.t1)} [live]")
    assert lines[2].startswith(f"│   └── access_token {jti(world.e1)} [live]")
    assert lines[3].startswith(f"│       └── access_token {jti(world.e2)} [live]")
    assert lines[4].startswith(f"└── access_token {jti(world.t2)} [live]")
    assert len(lines) == 5


def test_tree_lines_name_path_owner_client_and_parents(services: Services, world: World) -> None:
    """Lines show path, authentication owner, client, and both parents of an exchange."""
    lines = tree_lines(_tree(services, world.frontend.credential_id), services.paths)
    assert "path=workload-client-credentials owner=platform-iam" in lines[1]
    assert f"client={world.frontend.client_id}" in lines[1]
    assert "path=workload-token-exchange" in lines[2]
    assert f"parents={jti(world.t1)},{jti(world.actor)}" in lines[2]
    assert "parents=" not in lines[3]


def test_tree_lines_show_revocation_and_death(services: Services, world: World) -> None:
    """A revoked node shows REVOKED with reason and actor; its descendants show dead."""
    _revoke(services, jti(world.t1), reason="stolen laptop")
    lines = tree_lines(_tree(services, world.frontend.credential_id), services.paths)
    assert f"{jti(world.t1)} [REVOKED]" in lines[1]
    assert "reason='stolen laptop' by test" in lines[1]
    assert f"{jti(world.e1)} [dead]" in lines[2]
    assert f"{jti(world.t2)} [live]" in lines[4]


def test_tree_lines_say_how_much_was_cut(services: Services, world: World) -> None:
    """A truncated tree ends with how many descendants were left out."""
    lines = tree_lines(_tree(services, world.frontend.credential_id, limit=1), services.paths)
    assert lines[-1] == "... 3 more descendants"
    assert len(lines) == 3


def test_tree_lines_hang_orphans_under_the_root(services: Services, world: World) -> None:
    """A node whose parents are cut from a truncated tree is drawn under the root."""
    tree = _tree(services, world.frontend.credential_id, limit=4)
    kept = lineage.Tree(tree.root, [tree.descendants[0], tree.descendants[3]], 4, True)
    lines = tree_lines(kept, services.paths)
    assert lines[2].startswith(f"└── access_token {jti(world.e2)}")


def test_tree_json_describes_every_node(services: Services, world: World) -> None:
    """JSON output has the root, descendants with kinds, paths, owners, parents and states."""
    out = tree_json(_tree(services, world.frontend.credential_id), services.paths)
    assert out["total_descendants"] == 4
    assert out["truncated"] is False
    root = out["root"]
    assert root["id"] == world.frontend.credential_id
    assert root["kind"] == "credential"
    assert root["path"] is None
    assert root["state"] == "live"
    assert "owners" not in root
    e1 = next(d for d in out["descendants"] if d["id"] == jti(world.e1))
    assert e1["kind"] == "access_token"
    assert e1["path"] == "workload-token-exchange"
    assert e1["client_id"] == world.api.client_id
    assert e1["subject"] == world.frontend.client_id
    assert e1["team"] == "platform-iam"
    assert e1["parents"] == [jti(world.t1), jti(world.actor)]
    assert e1["owners"] == {
        "credential_issuance": "platform-iam",
        "authentication": "platform-iam",
        "recovery": "identity-ops",
        "detection": "secops",
    }
    assert e1["expires_at"] == claims_of(world.e1)["exp"]


def test_tree_json_reports_revocation_and_dead_by(
    services: Services, world: World, clock: FrozenClock
) -> None:
    """A revoked node carries its revocation; a dead node names what killed it."""
    rev = _revoke(services, jti(world.t1), reason="stolen laptop")
    assert rev is not None
    out = tree_json(_tree(services, world.frontend.credential_id), services.paths)
    by_id = {d["id"]: d for d in out["descendants"]}
    assert by_id[jti(world.t1)]["state"] == "revoked"
    assert by_id[jti(world.t1)]["revocation"] == {
        "reason": "stolen laptop",
        "actor": "test",
        "revoked_at": clock.now(),
        "seq": rev.seq,
    }
    assert by_id[jti(world.e2)]["state"] == "dead"
    assert by_id[jti(world.e2)]["dead_by"] == jti(world.t1)
    assert "dead_by" not in by_id[jti(world.t2)]


def test_rendering_under_a_map_without_the_path(
    services: Services, world: World, tmp_path: Path
) -> None:
    """A node whose path the current map no longer declares shows its path id but no owners."""
    other = tmp_path / "paths.yaml"
    other.write_text(
        "version: 1\n"
        "teams: [{id: secops}]\n"
        "paths:\n"
        "  - id: only-path\n"
        "    principal: workload\n"
        "    grant: client_credentials\n"
        "    inputs: [client_secret]\n"
        "    output: access_token\n"
        "    max_ttl: 5m\n"
        "    owners: {credential_issuance: secops, authentication: secops,"
        " recovery: secops, detection: secops}\n"
    )
    tree = _tree(services, world.frontend.credential_id)
    paths = load_path_map(other)
    lines = tree_lines(tree, paths)
    assert "path=workload-client-credentials client=" in lines[1]
    assert "owner=" not in lines[1]
    out = tree_json(tree, paths)
    assert all("owners" not in d for d in out["descendants"])
