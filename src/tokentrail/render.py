"""Presenting lineage trees: JSON for machines, an indented tree for people."""

from __future__ import annotations

from typing import Any

from tokentrail.lineage import Tree, TreeNode
from tokentrail.policy.paths import Function, PathMap


def _entry(t: TreeNode, paths: PathMap) -> dict[str, Any]:
    n = t.node
    path = paths.get(n.path_id) if n.path_id else None
    out: dict[str, Any] = {
        "id": n.id,
        "kind": n.kind.value,
        "path": n.path_id,
        "client_id": n.client_id,
        "subject": n.subject,
        "team": n.team_id,
        "parents": list(n.parents),
        "created_at": n.created_at,
        "expires_at": n.expires_at,
        "state": "revoked" if t.revoked else ("dead" if t.dead_by else "live"),
    }
    if path is not None:
        out["owners"] = {f.value: path.owners.of(f) for f in Function}
    if t.revoked is not None:
        out["revocation"] = {
            "reason": t.revoked.reason,
            "actor": t.revoked.actor,
            "revoked_at": t.revoked.revoked_at,
            "seq": t.revoked.seq,
        }
    elif t.dead_by is not None:
        out["dead_by"] = t.dead_by
    return out


def tree_json(tree: Tree, paths: PathMap) -> dict[str, Any]:
    return {
        "root": _entry(tree.root, paths),
        "descendants": [_entry(d, paths) for d in tree.descendants],
        "total_descendants": tree.total_descendants,
        "truncated": tree.truncated,
    }


def tree_lines(tree: Tree, paths: PathMap) -> list[str]:
    """An indented text tree: each node under its first parent within the tree."""
    entries = {tree.root.node.id: tree.root, **{d.node.id: d for d in tree.descendants}}
    kids: dict[str, list[str]] = {i: [] for i in entries}
    for d in tree.descendants:
        parent = next((p for p in d.node.parents if p in entries), tree.root.node.id)
        kids[parent].append(d.node.id)
    lines: list[str] = []

    def label(t: TreeNode) -> str:
        n = t.node
        state = "REVOKED" if t.revoked else ("dead" if t.dead_by else "live")
        bits = [n.kind.value, n.id, f"[{state}]"]
        if n.path_id:
            path = paths.get(n.path_id)
            owner = f" owner={path.owners.authentication}" if path else ""
            bits.append(f"path={n.path_id}{owner}")
        if n.client_id:
            bits.append(f"client={n.client_id}")
        if len(n.parents) > 1:
            bits.append(f"parents={','.join(n.parents)}")
        if t.revoked:
            bits.append(f"reason={t.revoked.reason!r} by {t.revoked.actor}")
        return " ".join(bits)

    def walk(node_id: str, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        lines.append(prefix + branch + label(entries[node_id]))
        children = kids[node_id]
        for i, child in enumerate(children):
            walk(
                child,
                prefix + ("" if root else ("    " if last else "│   ")),
                i == len(children) - 1,
                False,
            )

    walk(tree.root.node.id, "", True, True)
    if tree.truncated:
        lines.append(f"... {tree.total_descendants - len(tree.descendants)} more descendants")
    return lines
