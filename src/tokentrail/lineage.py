"""Lineage: the DAG of everything issued, and revocation that cascades through it.

A node is *dead* when it or any ancestor is revoked. Revoking writes one row for
one node id; nothing enumerates descendants, so revoking a credential with a
million descendants costs the same as revoking one token, and checking a token
costs one indexed lookup of its own id and its (depth-bounded) ancestors.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokentrail.audit import Event
from tokentrail.errors import NotFound
from tokentrail.model import Node, NodeKind, Revocation
from tokentrail.storage.store import Tx


def ancestors_of(parents: list[Node]) -> tuple[str, ...]:
    """A new node's ancestor ids: its parents, then their ancestors, each once, in order."""
    seen: dict[str, None] = {}
    for p in parents:
        seen.setdefault(p.id, None)
    for p in parents:
        for a in p.ancestors:
            seen.setdefault(a, None)
    return tuple(seen)


def matters_until(node: Node, *, now: float, horizon: float) -> float:
    """When a revocation of ``node`` can be forgotten: once every descendant has expired.

    Token nodes bound their descendants' lifetime by their own expiry (children
    never outlive parents). Credentials have no such bound, but nothing new
    descends from a revoked node, so ``horizon`` (the longest lifetime any path
    allows) after the revocation nothing derived from it is alive.
    """
    limit = now + horizon
    if node.kind is not NodeKind.CREDENTIAL and node.expires_at is not None:
        return min(node.expires_at, limit)
    return limit


def revoke(
    tx: Tx, node_id: str, *, reason: str, actor: str, now: float, horizon: float
) -> Revocation | None:
    """Revoke one node (and so everything below it); None if it was already revoked."""
    node = tx.get_node(node_id)
    if node is None:
        raise NotFound(f"no node {node_id!r}")
    rev = tx.revoke(
        node_id,
        reason=reason,
        actor=actor,
        at=now,
        matters_until=matters_until(node, now=now, horizon=horizon),
    )
    if rev is not None:
        tx.append_audit(
            Event.NODE_REVOKED,
            at=now,
            actor=actor,
            node_id=node_id,
            client_id=node.client_id,
            subject=node.subject,
            team_id=node.team_id,
            data={"reason": reason, "kind": node.kind.value, "seq": rev.seq},
        )
    return rev


@dataclass(frozen=True, slots=True)
class TreeNode:
    node: Node
    revoked: Revocation | None
    #: The revoked node (itself or an ancestor) that makes this one dead.
    dead_by: str | None


@dataclass(frozen=True, slots=True)
class Tree:
    root: TreeNode
    descendants: list[TreeNode]
    total_descendants: int
    truncated: bool


def tree(tx: Tx, node_id: str, *, limit: int = 1000) -> Tree:
    """Everything derived from ``node_id``, with revocation state (at most ``limit`` nodes)."""
    root = tx.get_node(node_id)
    if root is None:
        raise NotFound(f"no node {node_id!r}")
    below = tx.descendants(node_id, limit=limit)
    total = len(below) if len(below) < limit else tx.count_descendants(node_id)
    ids: set[str] = set(root.lineage)
    for n in below:
        ids.update(n.lineage)
    revoked = tx.revocations_among(ids)

    def entry(n: Node) -> TreeNode:
        dead_by = next((i for i in n.lineage if i in revoked), None)
        return TreeNode(n, revoked.get(n.id), dead_by)

    return Tree(entry(root), [entry(n) for n in below], total, total > len(below))
