"""The ownership matrix: who owns each function on every path and every chain.

A chain is an end-to-end route credential -> path -> ... -> token or session.
Chains come from the map's ``chains`` section, and one is derived for every
path that consumes a credential (an entry path) and no declared chain starts
with: the entry path followed by the token-exchange paths its tokens can reach.

A chain's accountable owner is the one it declares, else the single team all
its paths are accountable to (a path's ``accountable`` team, or the owner of
all four functions when that is one team). A chain with none is a finding
(TT-OWN-002).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.policy.paths import TOKEN_INPUTS, Function, PathMap, PathSpec
from tokentrail.policy.persistence import PREVIEW, Group, Windows
from tokentrail.policy.yamlsource import Loc


@dataclass(frozen=True, slots=True)
class PathRow:
    path: str
    principal: str
    grant: str
    output: str
    owners: dict[Function, str | None]
    accountable: str | None
    loc: Loc

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "principal": self.principal,
            "grant": self.grant,
            "output": self.output,
            "owners": {f.value: self.owners[f] for f in Function},
            "accountable": self.accountable,
        }


@dataclass(frozen=True, slots=True)
class ChainRow:
    id: str
    declared: bool
    entry: str
    steps: tuple[str, ...]
    #: Token-exchange paths the chain's tokens can reach (derived chains).
    follow_on: tuple[str, ...]
    #: The chain's paths, as shared groups (owners are computed when shown).
    groups: tuple[Group, ...]
    accountable: str | None
    loc: Loc

    @property
    def owners(self) -> dict[Function, tuple[str, ...]]:
        """Teams owning each function somewhere on the chain ("" for a missing owner)."""
        out = {}
        for f in Function:
            teams: set[str | None] = set()
            for g in self.groups:
                teams |= g.owners[f]
            out[f] = tuple(sorted(t if t is not None else "" for t in teams))
        return out

    @property
    def candidates(self) -> tuple[str, ...]:
        """Accountable teams named along the chain ("" stands for a path with none)."""
        seen: set[str | None] = set()
        for g in self.groups:
            seen |= g.accountables
        return tuple(sorted(t if t is not None else "" for t in seen))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "declared": self.declared,
            "entry": self.entry,
            "steps": list(self.steps),
            "follow_on": list(self.follow_on[:PREVIEW]),
            "follow_on_count": len(self.follow_on),
            "owners": {f.value: list(self.owners[f][:PREVIEW]) for f in Function},
            "accountable": self.accountable,
            "candidates": list(self.candidates[:PREVIEW]),
        }


@dataclass(frozen=True, slots=True)
class Matrix:
    paths: list[PathRow]
    chains: list[ChainRow]

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": [r.to_json() for r in self.paths],
            "chains": [c.to_json() for c in self.chains],
        }


def ownership(m: PathMap, windows: Windows | None = None) -> Matrix:
    """The ownership matrix of ``m``."""
    w = windows or Windows(m)
    rows = [
        PathRow(
            path=p.id,
            principal=p.principal,
            grant=p.grant.value,
            output=p.output,
            owners={f: p.owners.get(f) for f in Function},
            accountable=p.accountable_owner(),
            loc=("paths", i),
        )
        for i, p in enumerate(m.paths)
    ]
    chains: list[ChainRow] = []
    starts = set()
    for i, chain in enumerate(m.spec.chains):
        steps = [m.by_id[s] for s in chain.steps]
        starts.add(chain.steps[0])
        group = w.group(steps)
        entry = chain.entry or ", ".join(_credential_inputs(steps[0])) or steps[0].id
        chains.append(
            ChainRow(
                id=chain.id,
                declared=True,
                entry=entry,
                steps=tuple(chain.steps),
                follow_on=(),
                groups=(group,),
                accountable=_accountable(chain.accountable, (group,)),
                loc=("chains", i),
            )
        )
    for i, p in enumerate(m.paths):
        inputs = _credential_inputs(p)
        if not inputs or p.id in starts:
            continue
        follow = w.exchange_for(w.index.clients_of.get(p.id, []))
        follow_paths = tuple(x for x in follow.ids if x != p.id)
        groups = (w.group([p]), follow) if follow_paths else (w.group([p]),)
        chains.append(
            ChainRow(
                id=f"{p.id}~",
                declared=False,
                entry=", ".join(inputs),
                steps=(p.id,),
                follow_on=follow_paths,
                groups=groups,
                accountable=_accountable(None, groups),
                loc=("paths", i),
            )
        )
    return Matrix(rows, chains)


def _credential_inputs(p: PathSpec) -> list[str]:
    return [i.value for i in p.inputs if i.value not in TOKEN_INPUTS]


def _accountable(declared: str | None, groups: tuple[Group, ...]) -> str | None:
    if declared is not None:
        return declared
    seen: set[str | None] = set()
    for g in groups:
        seen |= g.accountables
        if len(seen) > 1:
            return None
    return next(iter(seen)) if len(seen) == 1 and None not in seen else None
