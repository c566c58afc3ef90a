"""The statements every token request makes, run on the database driver's own cursor.

SQLAlchemy Core builds, compiles, caches and wraps each statement it runs; on a
primary-key lookup that bookkeeping costs several times the query itself
(docs/benchmarks.md, "Hot-path statements"). The handful of statements on the
issuance, introspection and client-authentication paths are therefore written
here once, in SQL that SQLite and PostgreSQL both accept, and executed with the
DB-API connection underneath a SQLAlchemy connection: inside a :class:`Tx`
(same transaction) or on a pooled connection of its own (:meth:`Store.lookup`).
Everything else goes through SQLAlchemy Core in :mod:`.store`.

Column lists come from :mod:`.tables`, so the schema stays defined in one place.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from tokentrail.model import (
    AuthMethod,
    Client,
    ClientKind,
    Credential,
    CredentialKind,
    Node,
    NodeKind,
)
from tokentrail.storage import tables as t
from tokentrail.storage.engine import canonical_json


def _cols(table: Any, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c.name for c in table.columns)


_CLIENT_N = len(t.clients.columns)
_CRED_N = len(t.credentials.columns)
_NODE_PARAMS = ", ".join(f":{c.name}" for c in t.nodes.columns)
_AUDIT_PARAMS = ", ".join(f":{c.name}" for c in t.audit.columns)

#: A client with its live credentials (not past ``not_after``), newest first, each
#: with a flag telling whether the credential's node is revoked: one statement,
#: so the answer is one consistent snapshot.
CLIENT_WITH_CREDENTIALS = (
    f"SELECT {_cols(t.clients, 'c')}, {_cols(t.credentials, 'cr')}, {_cols(t.nodes, 'n')}, "
    "EXISTS (SELECT 1 FROM revocations r WHERE r.node_id = cr.id) "
    "FROM clients c LEFT JOIN credentials cr ON cr.client_id = c.id "
    "AND (cr.not_after IS NULL OR cr.not_after > :now) "
    "LEFT JOIN nodes n ON n.id = cr.id "
    "WHERE c.id = :client_id ORDER BY cr.created_at DESC"
)
NODE_BY_ID = f"SELECT {_cols(t.nodes)} FROM nodes WHERE id = :id"
INSERT_NODE = f"INSERT INTO nodes ({_cols(t.nodes)}) VALUES ({_NODE_PARAMS})"
INSERT_EDGE = "INSERT INTO edges (parent_id, child_id) VALUES (:parent_id, :child_id)"
AUDIT_TAIL = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
FORGET_EXPIRED_KEY = "DELETE FROM seen_jtis WHERE key = :key AND expires_at <= :now"
REMEMBER_KEY = (
    "INSERT INTO seen_jtis (key, expires_at) VALUES (:key, :expires_at) ON CONFLICT DO NOTHING"
)
INSERT_AUDIT = f"INSERT INTO audit ({_cols(t.audit)}) VALUES ({_AUDIT_PARAMS})"

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


@functools.lru_cache(maxsize=64)
def _first_revoked_sql(n: int) -> str:
    marks = ", ".join(f":i{k}" for k in range(n))
    return f"SELECT node_id FROM revocations WHERE node_id IN ({marks}) LIMIT 1"


@functools.lru_cache(maxsize=64)
def _issued_sql(n: int) -> str:
    """A node's recorded ``meta`` with one revoked id among ``n`` (or NULL): one statement."""
    return f"SELECT meta, ({_first_revoked_sql(n)}) FROM nodes WHERE id = :id"


def _id_params(ids: Sequence[str]) -> dict[str, Any]:
    """The ``:i0, :i1...`` parameters of :func:`_first_revoked_sql`."""
    return {f"i{k}": v for k, v in enumerate(ids)}


class Statements:
    """The hot-path SQL in the parameter style of one driver (``:name`` or ``%(name)s``)."""

    def __init__(self, dialect: str, dbapi_error: type[Exception]) -> None:
        self.dialect = dialect
        #: The driver's base exception, re-raised as SQLAlchemy's (callers catch those).
        self.dbapi_error = dbapi_error
        self._pyformat = dialect == "postgresql"
        self.client_with_credentials = self.sql(CLIENT_WITH_CREDENTIALS)
        self.node_by_id = self.sql(NODE_BY_ID)
        self.insert_node = self.sql(INSERT_NODE)
        self.insert_edge = self.sql(INSERT_EDGE)
        self.audit_tail = AUDIT_TAIL
        self.insert_audit = self.sql(INSERT_AUDIT)
        self.forget_expired_key = self.sql(FORGET_EXPIRED_KEY)
        self.remember_key = self.sql(REMEMBER_KEY)

    def sql(self, text: str) -> str:
        return _NAMED.sub(r"%(\1)s", text) if self._pyformat else text

    def first_revoked(self, n: int) -> str:
        return self.sql(_first_revoked_sql(n))

    def issued(self, n: int) -> str:
        return self.sql(_issued_sql(n))


class Lookups:
    """The hot-path statements on one DB-API connection.

    Driver errors come out as SQLAlchemy's exception classes (``IntegrityError``,
    ``OperationalError``...), like every other storage failure, and mark the
    lookups ``broken`` so that a connection of their own is replaced.
    """

    __slots__ = ("_db", "_sql", "broken")

    def __init__(self, dbapi_connection: Any, statements: Statements) -> None:
        self._db = dbapi_connection
        self._sql = statements
        self.broken = False

    def _run(self, sql: str, params: dict[str, Any] | None = None, fetch: str = "") -> Any:
        """Execute; ``fetch`` is ``"one"``, ``"all"``, ``"rowcount"`` or ``""`` (nothing)."""
        try:
            cur = self._db.execute(sql, params) if params is not None else self._db.execute(sql)
            if fetch == "one":
                return cur.fetchone()
            if fetch == "rowcount":
                return cur.rowcount
            return cur.fetchall() if fetch == "all" else None
        except self._sql.dbapi_error as exc:
            self.broken = True
            raise DBAPIError.instance(
                sql, params, exc, self._sql.dbapi_error, hide_parameters=True
            ) from exc

    def close(self) -> None:
        self._db.close()

    def client_with_credentials(
        self, client_id: str, *, now: float
    ) -> tuple[Client | None, list[tuple[Credential, Node | None]]]:
        """The client and its live, unrevoked credentials (newest first), each with
        its lineage node (the parent of what it authenticates for)."""
        rows = self._run(
            self._sql.client_with_credentials, {"client_id": client_id, "now": now}, "all"
        )
        if not rows:
            return None, []
        client = client_from(rows[0][:_CLIENT_N])
        live = []
        for row in rows:
            if row[_CLIENT_N] is None or row[-1]:
                continue  # no credential at all, or a revoked one
            node = row[_CLIENT_N + _CRED_N : -1]
            live.append(
                (
                    credential_from(row[_CLIENT_N : _CLIENT_N + _CRED_N]),
                    node_from(node) if node[0] is not None else None,
                )
            )
        return client, live

    def first_revoked(self, ids: Sequence[str]) -> str | None:
        """One of ``ids`` that is revoked (any one), or None: the whole liveness check."""
        if not ids:
            return None
        row = self._run(self._sql.first_revoked(len(ids)), _id_params(ids), "one")
        return str(row[0]) if row else None

    def issued(
        self, node_id: str, lineage: Sequence[str]
    ) -> tuple[dict[str, Any], str | None] | None:
        """What introspection needs of a node, in one statement: its ``meta`` and one
        revoked id among ``lineage`` (None if none is); None if there is no such node."""
        params = _id_params(lineage)
        params["id"] = node_id
        row = self._run(self._sql.issued(len(lineage)), params, "one")
        if row is None:
            return None
        return _json(row[0]), (str(row[1]) if row[1] is not None else None)

    def node(self, node_id: str) -> Node | None:
        row = self._run(self._sql.node_by_id, {"id": node_id}, "one")
        return node_from(row) if row else None

    def insert_node(self, node: Node, token_hash: str | None) -> None:
        self._run(
            self._sql.insert_node,
            {
                "id": node.id,
                "kind": node.kind.value,
                "path_id": node.path_id,
                "client_id": node.client_id,
                "subject": node.subject,
                "team_id": node.team_id,
                "parents": _ids_json(node.parents),
                "ancestors": _ids_json(node.ancestors),
                "created_at": node.created_at,
                "expires_at": node.expires_at,
                "meta": canonical_json(node.meta),
                "token_hash": token_hash,
                "used_at": node.used_at,
            },
        )
        for parent in node.parents:
            self._run(self._sql.insert_edge, {"parent_id": parent, "child_id": node.id})

    def remember_once(self, key: str, *, expires_at: float, now: float) -> bool:
        """Record ``key`` until ``expires_at``; False if it is already recorded and live."""
        self._run(self._sql.forget_expired_key, {"key": key, "now": now})
        inserted = self._run(
            self._sql.remember_key, {"key": key, "expires_at": expires_at}, "rowcount"
        )
        return bool(inserted)

    def audit_tail(self) -> tuple[int, str | None] | None:
        row = self._run(self._sql.audit_tail, None, "one")
        return (int(row[0]), row[1]) if row else None

    def insert_audit(self, row: dict[str, Any]) -> None:
        """One audit row, every column given (``data`` as its canonical JSON text)."""
        self._run(self._sql.insert_audit, row)


def _json(value: Any) -> Any:
    """JSON columns: text on SQLite, already decoded by psycopg on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


@functools.lru_cache(maxsize=1024)
def _ids_json(ids: tuple[str, ...]) -> str:
    """A list of node ids as stored; cached, since tokens of one credential share theirs."""
    return canonical_json(list(ids))


@functools.lru_cache(maxsize=1024)
def _json_tuple(text: str) -> tuple[Any, ...]:
    """A JSON list column as a tuple; cached, since a client's lists repeat on every request."""
    return tuple(json.loads(text))


def _tuple(value: Any) -> tuple[Any, ...]:
    return _json_tuple(value) if isinstance(value, str) else tuple(value)


def client_from(row: Sequence[Any]) -> Client:
    (id_, team_id, name, kind, method, paths, scopes, audiences, created_at, disabled_at) = row
    return Client(
        id=id_,
        team_id=team_id,
        name=name,
        kind=ClientKind(kind),
        auth_method=AuthMethod(method),
        paths=_tuple(paths),
        scopes=_tuple(scopes),
        audiences=_tuple(audiences),
        created_at=created_at,
        disabled_at=disabled_at,
    )


def credential_from(row: Sequence[Any]) -> Credential:
    (id_, client_id, kind, secret_hash, jwks, created_at, not_after, tls_subject_dn) = row
    jwks = _json(jwks)  # SQLAlchemy writes None into a JSON column as JSON null
    return Credential(
        id=id_,
        client_id=client_id,
        kind=CredentialKind(kind),
        secret_hash=secret_hash,
        jwks=dict(jwks) if jwks is not None else None,
        created_at=created_at,
        not_after=not_after,
        tls_subject_dn=tls_subject_dn,
    )


def node_from(row: Sequence[Any]) -> Node:
    (
        id_,
        kind,
        path_id,
        client_id,
        subject,
        team_id,
        parents,
        ancestors,
        created_at,
        expires_at,
        meta,
        _token_hash,
        used_at,
    ) = row
    return Node(
        id=id_,
        kind=NodeKind(kind),
        path_id=path_id,
        client_id=client_id,
        subject=subject,
        team_id=team_id,
        parents=_tuple(parents),
        ancestors=_tuple(ancestors),
        created_at=created_at,
        expires_at=expires_at,
        meta=dict(_json(meta)),
        used_at=used_at,
    )
