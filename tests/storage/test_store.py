"""The store: migrations and the Tx behaviour, identical on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from tests.conftest import Factory
from tokentrail.audit import Event
from tokentrail.config import Settings
from tokentrail.model import (
    AdminKey,
    AuthMethod,
    Client,
    ClientKind,
    Credential,
    CredentialKind,
    Node,
    NodeKind,
    Team,
    TrustedIssuer,
)
from tokentrail.services import Services
from tokentrail.storage import tables as t
from tokentrail.storage.engine import head_revision, migrate
from tokentrail.storage.store import Store, Tx

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    """A migrated, empty store: SQLite in a temporary folder, or a fresh PostgreSQL schema."""
    s = Store.open(Settings(data_dir=tmp_path / "data", db_url=db_url).database_url)
    yield s
    s.close()


def node(
    node_id: str,
    *parents: Node,
    kind: NodeKind = NodeKind.ACCESS_TOKEN,
    at: float = T0,
    expires_at: float | None = None,
    team: str | None = "platform-iam",
) -> Node:
    ancestors: dict[str, None] = {}
    for p in parents:
        ancestors.setdefault(p.id, None)
    for p in parents:
        for a in p.ancestors:
            ancestors.setdefault(a, None)
    return Node(
        id=node_id,
        kind=kind,
        path_id="workload-client-credentials" if parents else None,
        client_id="cl_1",
        subject="cl_1",
        team_id=team,
        parents=tuple(p.id for p in parents),
        ancestors=tuple(ancestors),
        created_at=at,
        expires_at=expires_at,
        meta={"scope": ["read"]},
    )


def add(store: Store, *nodes: Node) -> None:
    with store.write() as tx:
        for n in nodes:
            tx.insert_node(n)


def revoke(tx: Tx, node_id: str, *, at: float = T0, reason: str = "test") -> object:
    return tx.revoke(node_id, reason=reason, actor="test", at=at, matters_until=at + 3600)


def client(client_id: str = "cl_1", team: str = "platform-iam", at: float = T0) -> Client:
    return Client(
        id=client_id,
        team_id=team,
        name="worker",
        kind=ClientKind.WORKLOAD,
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
        paths=("workload-client-credentials",),
        scopes=("read", "write"),
        audiences=("https://api.example",),
        created_at=at,
    )


def credential(cred_id: str, *, at: float = T0, not_after: float | None = None) -> Credential:
    return Credential(
        id=cred_id,
        client_id="cl_1",
        kind=CredentialKind.CLIENT_SECRET,
        secret_hash="a" * 64,
        jwks=None,
        created_at=at,
        not_after=not_after,
    )


# --- migrations ------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    """Migrating an up-to-date database changes nothing and keeps the data."""
    with store.write() as tx:
        tx.insert_team(Team("platform-iam", "platform-iam", T0))
    migrate(store.engine)
    migrate(store.engine)
    with store.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        assert list(versions) == [head_revision()]
    with store.read() as tx:
        assert [team.id for team in tx.list_teams()] == ["platform-iam"]


def test_reopen_existing_store(store: Store) -> None:
    """Opening an existing database again (a second process) sees its data."""
    with store.write() as tx:
        tx.insert_team(Team("secops", "secops", T0))
    again = Store(store.engine)
    with again.read() as tx:
        assert tx.get_team("secops") is not None


def test_schema_has_every_table(store: Store) -> None:
    """The migrations create every table the code declares."""
    names = set(sa.inspect(store.engine).get_table_names())
    assert set(t.metadata.tables) <= names


# --- teams -----------------------------------------------------------------------------


def test_insert_team_reports_new(store: Store) -> None:
    """insert_team returns True for a new team and it can be read back."""
    with store.write() as tx:
        assert tx.insert_team(Team("secops", "Security operations", T0)) is True
    with store.read() as tx:
        assert tx.get_team("secops") == Team("secops", "Security operations", T0)


def test_insert_team_duplicate_reports_false(store: Store) -> None:
    """A second insert of the same team id returns False and keeps the first."""
    with store.write() as tx:
        tx.insert_team(Team("secops", "first", T0))
    with store.write() as tx:
        assert tx.insert_team(Team("secops", "second", T0 + 1)) is False
    with store.read() as tx:
        team = tx.get_team("secops")
    assert team is not None
    assert team.name == "first"


def test_get_unknown_team(store: Store) -> None:
    """An unknown team id reads as None."""
    with store.read() as tx:
        assert tx.get_team("nobody") is None


def test_list_teams_sorted(store: Store) -> None:
    """Teams list in id order."""
    with store.write() as tx:
        for name in ("secops", "app-team", "platform-iam"):
            tx.insert_team(Team(name, name, T0))
    with store.read() as tx:
        assert [team.id for team in tx.list_teams()] == ["app-team", "platform-iam", "secops"]


# --- clients and credentials -------------------------------------------------------------


def test_client_round_trip(store: Store) -> None:
    """A client reads back exactly as written."""
    with store.write() as tx:
        tx.insert_client(client())
    with store.read() as tx:
        assert tx.get_client("cl_1") == client()
        assert tx.get_client("cl_nope") is None


def test_list_clients_by_team_in_creation_order(store: Store) -> None:
    """list_clients filters by team and orders by creation time."""
    with store.write() as tx:
        tx.insert_client(client("cl_b", at=T0 + 1))
        tx.insert_client(client("cl_a", at=T0 + 2))
        tx.insert_client(client("cl_x", team="app-team", at=T0))
    with store.read() as tx:
        assert [c.id for c in tx.list_clients("platform-iam")] == ["cl_b", "cl_a"]
        assert [c.id for c in tx.list_clients()] == ["cl_x", "cl_b", "cl_a"]


def test_duplicate_client_id_is_an_integrity_error(store: Store) -> None:
    """Two clients cannot share an id."""
    with store.write() as tx:
        tx.insert_client(client())
    with pytest.raises(IntegrityError), store.write() as tx:
        tx.insert_client(client())


def test_credential_round_trip(store: Store) -> None:
    """A credential with a JWKS reads back exactly as written."""
    cred = Credential(
        id="cred_1",
        client_id="cl_1",
        kind=CredentialKind.PRIVATE_KEY_JWT,
        secret_hash=None,
        jwks={"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]},
        created_at=T0,
    )
    with store.write() as tx:
        tx.insert_credential(cred)
    with store.read() as tx:
        assert tx.get_credential("cred_1") == cred
        assert tx.get_credential("cred_nope") is None


def test_client_credentials_newest_first_and_live_only(store: Store) -> None:
    """client_credentials lists the credentials not past not_after, newest first."""
    with store.write() as tx:
        tx.insert_credential(credential("cred_old", at=T0, not_after=T0 + 10))
        tx.insert_credential(credential("cred_new", at=T0 + 5))
    with store.read() as tx:
        assert [c.id for c in tx.client_credentials("cl_1", now=T0 + 9)] == ["cred_new", "cred_old"]
        assert [c.id for c in tx.client_credentials("cl_1", now=T0 + 10)] == ["cred_new"]


def test_set_credential_not_after_only_shortens(store: Store) -> None:
    """A not_after is set when absent or earlier, never extended."""
    with store.write() as tx:
        tx.insert_credential(credential("cred_1"))
        tx.set_credential_not_after("cred_1", T0 + 100)
        tx.set_credential_not_after("cred_1", T0 + 500)
        first = tx.get_credential("cred_1")
        tx.set_credential_not_after("cred_1", T0 + 50)
        second = tx.get_credential("cred_1")
    assert first is not None
    assert second is not None
    assert (first.not_after, second.not_after) == (T0 + 100, T0 + 50)


# --- trusted issuers -----------------------------------------------------------------------


def test_put_issuer_replaces(store: Store) -> None:
    """Trusting an issuer again replaces its keys and audience."""
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}
    with store.write() as tx:
        tx.put_issuer(TrustedIssuer("https://idp", jwks, "old", T0))
        tx.put_issuer(TrustedIssuer("https://idp", jwks, "new", T0 + 1))
    with store.read() as tx:
        assert tx.get_issuer("https://idp") == TrustedIssuer("https://idp", jwks, "new", T0 + 1)
        assert tx.get_issuer("https://other") is None


# --- nodes and edges ---------------------------------------------------------------------


def test_node_round_trip(store: Store) -> None:
    """A node reads back with its parents, ancestors and metadata."""
    root = node("cred_1", kind=NodeKind.CREDENTIAL)
    child = node("at_1", root, expires_at=T0 + 300)
    add(store, root, child)
    with store.read() as tx:
        assert tx.get_node("at_1") == child
        assert tx.get_node("cred_1") == root
        assert tx.get_node("nope") is None


def test_insert_node_writes_edges(store: Store) -> None:
    """A node with two parents is a child of both."""
    a, b = node("cred_a", kind=NodeKind.CREDENTIAL), node("cred_b", kind=NodeKind.CREDENTIAL)
    add(store, a, b, node("at_x", a, b))
    with store.read() as tx:
        assert tx.children("cred_a") == ["at_x"]
        assert tx.children("cred_b") == ["at_x"]
        assert tx.children("at_x") == []


def test_node_by_token_hash(store: Store) -> None:
    """A refresh-token node is found by the hash of its token."""
    rt = node("rt_1", kind=NodeKind.REFRESH_TOKEN)
    with store.write() as tx:
        tx.insert_node(rt, token_hash="h" * 64)
    with store.read() as tx:
        assert tx.get_node_by_token_hash("h" * 64) == rt
        assert tx.get_node_by_token_hash("x" * 64) is None


def test_insert_node_if_absent(store: Store) -> None:
    """A node with a deterministic id is inserted once; later inserts report False."""
    login = node("up_1", kind=NodeKind.CREDENTIAL, team=None)
    with store.write() as tx:
        assert tx.insert_node_if_absent(login) is True
    with store.write() as tx:
        assert tx.insert_node_if_absent(login) is False
    with store.read() as tx:
        assert tx.get_node("up_1") == login


def test_mark_used_once(store: Store) -> None:
    """mark_used succeeds once: a second use of a refresh token is detectable."""
    add(store, node("rt_1", kind=NodeKind.REFRESH_TOKEN))
    with store.write() as tx:
        assert tx.mark_used("rt_1", T0 + 1) is True
    with store.write() as tx:
        assert tx.mark_used("rt_1", T0 + 2) is False
    with store.read() as tx:
        used = tx.get_node("rt_1")
    assert used is not None
    assert used.used_at == T0 + 1


def test_nodes_of_subject(store: Store) -> None:
    """nodes_of_subject returns the subject's nodes of one kind."""
    add(
        store,
        node("s_1", kind=NodeKind.SESSION),
        node("at_1"),
        node("s_2", kind=NodeKind.SESSION, at=T0 + 1),
    )
    with store.read() as tx:
        assert [n.id for n in tx.nodes_of_subject("cl_1", NodeKind.SESSION)] == ["s_1", "s_2"]
        assert tx.nodes_of_subject("nobody", NodeKind.SESSION) == []


def test_nodes_of_subject_live_at(store: Store) -> None:
    """With live_at, nodes expired by then are left out."""
    add(
        store,
        node("s_old", kind=NodeKind.SESSION, expires_at=T0 + 10),
        node("s_open", kind=NodeKind.SESSION, at=T0 + 1),
        node("s_new", kind=NodeKind.SESSION, at=T0 + 2, expires_at=T0 + 100),
    )
    with store.read() as tx:
        live = tx.nodes_of_subject("cl_1", NodeKind.SESSION, live_at=T0 + 10)
    assert [n.id for n in live] == ["s_open", "s_new"]


def test_touch_records_last_use(store: Store) -> None:
    """touch sets a node's used_at to the latest activity."""
    add(store, node("s_1", kind=NodeKind.SESSION))
    with store.write() as tx:
        tx.touch("s_1", T0 + 5)
        tx.touch("s_1", T0 + 9)
    with store.read() as tx:
        touched = tx.get_node("s_1")
    assert touched is not None
    assert touched.used_at == T0 + 9


# --- descendants -------------------------------------------------------------------------


@pytest.fixture
def dag(store: Store) -> Store:
    """cred -> at1, at2; at1 -> ex1; (at2, ex1) -> ex2 (a diamond); other -> at9."""
    cred = node("cred", kind=NodeKind.CREDENTIAL)
    at1 = node("at1", cred, at=T0 + 1)
    at2 = node("at2", cred, at=T0 + 2)
    ex1 = node("ex1", at1, at=T0 + 3)
    ex2 = node("ex2", at2, ex1, at=T0 + 4)
    other = node("other", kind=NodeKind.CREDENTIAL)
    add(store, cred, at1, at2, ex1, ex2, other, node("at9", other, at=T0 + 5))
    return store


def test_descendants_each_once_in_creation_order(dag: Store) -> None:
    """Every node below, each once even when reached twice, oldest first."""
    with dag.read() as tx:
        assert [n.id for n in tx.descendants("cred", limit=100)] == ["at1", "at2", "ex1", "ex2"]


def test_descendants_limit(dag: Store) -> None:
    """descendants stops at the limit."""
    with dag.read() as tx:
        assert [n.id for n in tx.descendants("cred", limit=2)] == ["at1", "at2"]


def test_descendants_of_a_leaf(dag: Store) -> None:
    """A leaf has no descendants."""
    with dag.read() as tx:
        assert tx.descendants("ex2", limit=10) == []
        assert tx.count_descendants("ex2") == 0


def test_count_descendants(dag: Store) -> None:
    """count_descendants counts each node below once."""
    with dag.read() as tx:
        assert tx.count_descendants("cred") == 4
        assert tx.count_descendants("at1") == 2
        assert tx.count_descendants("other") == 1


def test_ancestors_recorded(dag: Store) -> None:
    """A node's ancestors are its parents then theirs, each once."""
    with dag.read() as tx:
        ex2 = tx.get_node("ex2")
    assert ex2 is not None
    assert ex2.ancestors == ("at2", "ex1", "cred", "at1")


# --- revocation --------------------------------------------------------------------------


def test_revoke_records_one_row(store: Store) -> None:
    """revoke returns the revocation with its sequence number, reason and actor."""
    with store.write() as tx:
        rev = tx.revoke("n1", reason="leaked", actor="cli:ops", at=T0, matters_until=T0 + 60)
    assert rev is not None
    assert (rev.node_id, rev.reason, rev.actor) == ("n1", "leaked", "cli:ops")
    assert (rev.revoked_at, rev.matters_until) == (T0, T0 + 60)
    with store.read() as tx:
        assert tx.get_revocation("n1") == rev


def test_revoke_is_idempotent(store: Store) -> None:
    """Revoking an already-revoked node returns None and keeps the first revocation."""
    with store.write() as tx:
        first = revoke(tx, "n1", reason="first")
    with store.write() as tx:
        assert revoke(tx, "n1", reason="second", at=T0 + 5) is None
    with store.read() as tx:
        assert tx.get_revocation("n1") == first
        assert len(tx.revocations_since(0)) == 1


def test_get_revocation_of_live_node(store: Store) -> None:
    """A node never revoked has no revocation."""
    with store.read() as tx:
        assert tx.get_revocation("n1") is None


def test_first_revoked(store: Store) -> None:
    """first_revoked names a revoked id among those given, or None."""
    with store.write() as tx:
        revoke(tx, "b")
        revoke(tx, "d")
    with store.read() as tx:
        assert tx.first_revoked(["a", "b", "c"]) == "b"
        assert tx.first_revoked(["a", "b", "d"]) in {"b", "d"}
        assert tx.first_revoked(["a", "c"]) is None
        assert tx.first_revoked([]) is None


def test_revocations_among(store: Store) -> None:
    """revocations_among maps each revoked id among many to its revocation."""
    ids = [f"n{i}" for i in range(1200)]
    with store.write() as tx:
        revoke(tx, "n3")
        revoke(tx, "n1100")
    with store.read() as tx:
        found = tx.revocations_among(ids)
    assert set(found) == {"n3", "n1100"}
    assert found["n1100"].node_id == "n1100"


def test_revocations_since_in_sequence_order(store: Store) -> None:
    """revocations_since lists revocations after a sequence number, oldest first."""
    with store.write() as tx:
        for name in ("c", "a", "b"):
            revoke(tx, name)
    with store.read() as tx:
        all_revs = tx.revocations_since(0)
        assert [r.node_id for r in all_revs] == ["c", "a", "b"]
        seqs = [r.seq for r in all_revs]
        assert seqs == sorted(seqs)
        assert [r.node_id for r in tx.revocations_since(seqs[0])] == ["a", "b"]
        assert [r.node_id for r in tx.revocations_since(0, limit=1)] == ["c"]
        assert tx.revocations_since(seqs[-1]) == []


# --- replay protection -------------------------------------------------------------------


def test_remember_once_refuses_replay(store: Store) -> None:
    """A key is accepted once; presenting it again while it is live is refused."""
    with store.write() as tx:
        assert tx.remember_once("jti-1", expires_at=T0 + 60, now=T0) is True
    with store.write() as tx:
        assert tx.remember_once("jti-1", expires_at=T0 + 60, now=T0 + 30) is False


def test_remember_once_after_expiry(store: Store) -> None:
    """Once a key has expired it may be recorded again."""
    with store.write() as tx:
        tx.remember_once("jti-1", expires_at=T0 + 60, now=T0)
    with store.write() as tx:
        assert tx.remember_once("jti-1", expires_at=T0 + 120, now=T0 + 60) is True
    with store.write() as tx:
        assert tx.remember_once("jti-1", expires_at=T0 + 120, now=T0 + 61) is False


def test_remember_once_keys_are_independent(store: Store) -> None:
    """Different keys do not collide."""
    with store.write() as tx:
        assert tx.remember_once("jti-1", expires_at=T0 + 60, now=T0) is True
        assert tx.remember_once("jti-2", expires_at=T0 + 60, now=T0) is True


def test_purge_seen(store: Store) -> None:
    """purge_seen drops expired keys only."""
    with store.write() as tx:
        tx.remember_once("old", expires_at=T0 + 10, now=T0)
        tx.remember_once("new", expires_at=T0 + 100, now=T0)
    with store.write() as tx:
        assert tx.purge_seen(T0 + 10) == 1
    with store.write() as tx:
        assert tx.remember_once("new", expires_at=T0 + 100, now=T0 + 11) is False


# --- signing keys ------------------------------------------------------------------------


def _key(tx: Tx, kid: str, at: float) -> None:
    tx.insert_signing_key(
        kid=kid, alg="ES256", public_jwk={"kid": kid, "kty": "EC"}, sealed=b"sealed", at=at
    )


def test_signing_keys_newest_first(store: Store) -> None:
    """Published keys list newest first with their sealed private part."""
    with store.write() as tx:
        _key(tx, "k1", T0)
        _key(tx, "k2", T0 + 1)
    with store.read() as tx:
        rows = tx.signing_keys(now=T0 + 2)
    assert [r["kid"] for r in rows] == ["k2", "k1"]
    assert bytes(rows[0]["sealed_private"]) == b"sealed"
    assert rows[0]["public_jwk"] == {"kid": "k2", "kty": "EC"}


def test_retire_keeps_key_published_until(store: Store) -> None:
    """A retired key stays published until publish_until, then drops out."""
    with store.write() as tx:
        _key(tx, "k1", T0)
        _key(tx, "k2", T0 + 1)
        tx.retire_signing_keys(except_kid="k2", at=T0 + 1, publish_until=T0 + 600)
    with store.read() as tx:
        during = tx.signing_keys(now=T0 + 599)
        after = tx.signing_keys(now=T0 + 600)
    assert [(r["kid"], r["retired_at"]) for r in during] == [("k2", None), ("k1", T0 + 1)]
    assert [r["kid"] for r in after] == ["k2"]


def test_retire_leaves_earlier_retirements(store: Store) -> None:
    """A second rotation does not extend the publication of an already-retired key."""
    with store.write() as tx:
        _key(tx, "k1", T0)
        _key(tx, "k2", T0 + 1)
        tx.retire_signing_keys(except_kid="k2", at=T0 + 1, publish_until=T0 + 100)
        _key(tx, "k3", T0 + 2)
        tx.retire_signing_keys(except_kid="k3", at=T0 + 2, publish_until=T0 + 900)
    with store.read() as tx:
        rows = {r["kid"]: r for r in tx.signing_keys(now=T0 + 50)}
    assert rows["k1"]["publish_until"] == T0 + 100
    assert rows["k2"]["publish_until"] == T0 + 900
    assert rows["k3"]["retired_at"] is None


# --- admin keys --------------------------------------------------------------------------


def test_admin_key_by_hash(store: Store) -> None:
    """An admin key is found by its hash, with team and roles."""
    key = AdminKey("ak_1", "platform-iam", ("viewer", "operator"), "ci", T0)
    with store.write() as tx:
        tx.insert_admin_key(key, "k" * 64)
    with store.read() as tx:
        assert tx.admin_key_by_hash("k" * 64) == key
        assert tx.admin_key_by_hash("x" * 64) is None


def test_revoked_admin_key_is_not_found(store: Store) -> None:
    """An admin key with revoked_at set no longer authenticates."""
    with store.write() as tx:
        tx.insert_admin_key(AdminKey("ak_1", "platform-iam", ("admin",), "", T0), "k" * 64)
        tx.conn.execute(sa.update(t.admin_keys).values(revoked_at=T0 + 1))
    with store.read() as tx:
        assert tx.admin_key_by_hash("k" * 64) is None


# --- audit -------------------------------------------------------------------------------


def test_audit_append_and_read(store: Store) -> None:
    """Audit records read back in order with every field."""
    with store.write() as tx:
        tx.append_audit(
            Event.TOKEN_ISSUED,
            at=T0,
            actor="client:cl_1",
            node_id="at_1",
            client_id="cl_1",
            subject="cl_1",
            team_id="platform-iam",
            data={"scope": ["read"]},
        )
        tx.append_audit(Event.TEAM_CREATED, at=T0 + 1, actor="test")
    with store.read() as tx:
        first, second = tx.audit_records()
    assert (first.event, first.actor, first.node_id, first.client_id) == (
        "token.issued",
        "client:cl_1",
        "at_1",
        "cl_1",
    )
    assert (first.subject, first.team_id, first.data, first.at) == (
        "cl_1",
        "platform-iam",
        {"scope": ["read"]},
        T0,
    )
    assert second.data == {}
    assert second.seq > first.seq


def test_audit_query_filters(store: Store) -> None:
    """audit_records filters by event, node and sequence, and honours the limit."""
    with store.write() as tx:
        tx.append_audit(Event.TOKEN_ISSUED, at=T0, actor="a", node_id="at_1")
        tx.append_audit(Event.NODE_REVOKED, at=T0, actor="a", node_id="at_1")
        tx.append_audit(Event.TOKEN_ISSUED, at=T0, actor="a", node_id="at_2")
    with store.read() as tx:
        everything = tx.audit_records()
        issued = tx.audit_records(event=Event.TOKEN_ISSUED)
        about_at1 = tx.audit_records(node_id="at_1")
        after_first = tx.audit_records(after_seq=everything[0].seq)
        one = tx.audit_records(limit=1)
    assert [r.node_id for r in issued] == ["at_1", "at_2"]
    assert [r.event for r in about_at1] == ["token.issued", "node.revoked"]
    assert after_first == everything[1:]
    assert one == everything[:1]


# --- transactions ------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_failed_write_leaves_nothing(store: Store) -> None:
    """A write block that raises rolls back every statement in it."""

    def issue_then_fail() -> None:
        with store.write() as tx:
            tx.insert_node(node("at_1", node("cred_1", kind=NodeKind.CREDENTIAL)))
            tx.append_audit(Event.TOKEN_ISSUED, at=T0, actor="test", node_id="at_1")
            revoke(tx, "at_1")
            raise Boom

    with pytest.raises(Boom):
        issue_then_fail()
    with store.read() as tx:
        assert tx.get_node("at_1") is None
        assert tx.children("cred_1") == []
        assert tx.audit_records() == []
        assert tx.get_revocation("at_1") is None


def test_committed_write_is_visible_to_a_new_connection(store: Store) -> None:
    """A write block that ends normally is committed."""
    with store.write() as tx:
        tx.append_audit(Event.TEAM_CREATED, at=T0, actor="test")
    other = Store(store.engine)
    with other.read() as tx:
        assert len(tx.audit_records()) == 1


def test_issuance_is_atomic(
    http: TestClient, services: Services, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the audit record of an issuance cannot be written, no token node exists either."""
    worker = make.client(audiences=["https://api"])
    assert worker.secret
    real = Tx.append_audit

    def failing(self: Tx, event: str, **kw: object) -> None:
        if event == Event.TOKEN_ISSUED:
            raise sa.exc.OperationalError("INSERT INTO audit", {}, Exception("disk full"))
        real(self, event, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Tx, "append_audit", failing)
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(worker.client_id, worker.secret),
    )
    assert r.status_code == 503
    assert r.json()["error"] == "temporarily_unavailable"
    with services.store.read() as tx:
        assert tx.descendants(worker.credential_id, limit=10) == []
