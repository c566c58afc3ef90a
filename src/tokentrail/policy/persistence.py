"""Persistence window and blast radius of every entry point of a path map.

An entry point is something a thief can steal: a credential kind (or, when
the map declares none for it, a credential type a path accepts), or a token
minted by a path (its access tokens, its refresh tokens, its recovery grants).
For each one this module computes

- the **blast radius**: the paths where the thief can mint, the token kinds,
  audiences and scopes they reach (directly, and by token exchange); and
- the **persistence window**: how long they can keep minting without
  presenting anything else. It is infinite when a static credential has no
  maximum age or rotation, or a refresh chain has no absolute lifetime.

Assumptions (documented in docs/paths.md): a thief holding a client's tokens
can also authenticate as that client (its secret usually sits next to them),
but cannot use a sender-constrained token (``binding: dpop|mtls``) without the
holder's private key. Exchanged tokens never outlive their subject token (the
token authority clamps them), so exchange widens the reach but not the window.
When the map declares clients, reach is limited to the paths those clients
may use; otherwise every path accepting the input is assumed reachable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from tokentrail.policy.paths import (
    DEFAULT_ASSERTION_LIFETIME,
    NO_SECRET_INPUTS,
    STATIC_TYPES,
    TOKEN_INPUTS,
    ClientSpec,
    CredentialKindSpec,
    Function,
    PathMap,
    PathSpec,
    format_duration,
    is_unlimited,
)
from tokentrail.policy.yamlsource import Loc

#: Most items a rendered list shows (JSON carries counts for the rest).
PREVIEW = 50


class Group:
    """A set of paths with its aggregate reach, computed once and shared."""

    __slots__ = ("__dict__", "members")

    def __init__(self, members: Iterable[PathSpec], audiences_of: AudienceIndex) -> None:
        seen: dict[str, PathSpec] = {}
        for p in members:
            seen.setdefault(p.id, p)
        self.members: tuple[PathSpec, ...] = tuple(seen.values())
        self._index = audiences_of

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.members)

    @cached_property
    def audiences(self) -> frozenset[str]:
        out: set[str] = set()
        for p in self.members:
            out |= self._index.audiences(p)
        return frozenset(out)

    @cached_property
    def scopes(self) -> frozenset[str]:
        out: set[str] = set()
        for p in self.members:
            out |= self._index.scopes(p)
        return frozenset(out)

    @cached_property
    def token_kinds(self) -> frozenset[str]:
        out: set[str] = set()
        for p in self.members:
            out.update(("access_token", p.output))
            if p.refresh is not None:
                out.add("refresh_token")
        return frozenset(out)

    @cached_property
    def max_window(self) -> int:
        return max((p.output_window for p in self.members), default=0)

    @cached_property
    def owners(self) -> dict[Function, frozenset[str | None]]:
        return {f: frozenset(p.owners.get(f) for p in self.members) for f in Function}

    @cached_property
    def accountables(self) -> frozenset[str | None]:
        return frozenset(p.accountable_owner() for p in self.members)


class AudienceIndex:
    """Audiences and scopes a path can reach: its own bounds, else its clients'."""

    def __init__(self, m: PathMap) -> None:
        self.clients_of: dict[str, list[ClientSpec]] = {}
        for c in m.clients.values():
            for pid in c.paths:
                self.clients_of.setdefault(pid, []).append(c)
        self._aud: dict[str, frozenset[str]] = {}
        self._scope: dict[str, frozenset[str]] = {}

    def audiences(self, p: PathSpec) -> frozenset[str]:
        if p.id not in self._aud:
            self._aud[p.id] = self._bound(p.audiences, [c.audiences for c in self._clients(p)])
        return self._aud[p.id]

    def scopes(self, p: PathSpec) -> frozenset[str]:
        if p.id not in self._scope:
            self._scope[p.id] = self._bound(p.scopes, [c.scopes for c in self._clients(p)])
        return self._scope[p.id]

    def _clients(self, p: PathSpec) -> list[ClientSpec]:
        return self.clients_of.get(p.id, [])

    @staticmethod
    def _bound(own: list[str] | None, theirs: list[list[str] | None]) -> frozenset[str]:
        if own is not None:
            return frozenset(own)
        if theirs and all(t is not None for t in theirs):
            return frozenset(x for t in theirs if t is not None for x in t)
        return frozenset({"*"})


@dataclass(frozen=True, slots=True)
class EntryPoint:
    """What a thief holding one credential or token can mint, and for how long."""

    id: str
    kind: Literal["credential", "token"]
    label: str
    #: Seconds; None is infinite; 0 means it mints nothing.
    window: int | None
    explanation: str
    loc: Loc
    direct: Group | None
    exchange: Group | None
    declared: bool = True
    holders: tuple[str, ...] = ()
    principal: str = "workload"
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: A stolen access token's own path: where the token itself is accepted.
    carries: Group | None = None

    @property
    def infinite(self) -> bool:
        return self.window is None

    @property
    def window_text(self) -> str:
        if self.window == 0:
            return "none"
        return format_duration(self.window)

    def groups(self) -> list[Group]:
        found = (self.direct, self.exchange, self.carries)
        return [g for g in found if g is not None and g.members]

    @property
    def audiences(self) -> list[str]:
        out: set[str] = set()
        for g in self.groups():
            out |= g.audiences
        return sorted(out)

    @property
    def scopes(self) -> list[str]:
        out: set[str] = set()
        for g in self.groups():
            out |= g.scopes
        return sorted(out)

    @property
    def token_kinds(self) -> list[str]:
        out: set[str] = {"access_token"} if self.carries is not None else set()
        for g in (self.direct, self.exchange):
            if g is not None:
                out |= g.token_kinds
        return sorted(out)

    def to_json(self) -> dict[str, object]:
        direct = self.direct.ids if self.direct else ()
        via = self.exchange.ids if self.exchange else ()
        audiences, scopes = self.audiences, self.scopes
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "declared": self.declared,
            "principal": self.principal,
            "holders": list(self.holders),
            "window_seconds": self.window,
            "window": self.window_text,
            "infinite": self.infinite,
            "explanation": self.explanation,
            "token_kinds": self.token_kinds,
            "paths": list(direct[:PREVIEW]),
            "paths_count": len(direct),
            "exchange_paths": list(via[:PREVIEW]),
            "exchange_paths_count": len(via),
            "audiences": audiences[:PREVIEW],
            "audiences_count": len(audiences),
            "scopes": scopes[:PREVIEW],
            "scopes_count": len(scopes),
            "notes": list(self.notes),
        }


class Windows:
    """Entry points of a map with their windows and reach."""

    def __init__(self, m: PathMap) -> None:
        self.m = m
        self.index = AudienceIndex(m)
        self._groups: dict[tuple[str, ...], Group] = {}
        self.exchangers = [p for p in m.paths if _accepts(p, "access_token")]
        self.exchanger_ids = {p.id for p in self.exchangers}
        self.all_exchange = self.group(self.exchangers)
        self.by_type: dict[str, list[tuple[int, PathSpec]]] = {}
        for i, p in enumerate(m.paths):
            for inp in p.inputs:
                self.by_type.setdefault(inp.value, []).append((i, p))
        self.accepting_ids = {t: {p.id for _, p in users} for t, users in self.by_type.items()}
        self.holders: dict[str, list[ClientSpec]] = {}
        for c in m.clients.values():
            for kind_id in c.credentials:
                self.holders.setdefault(kind_id, []).append(c)

    def group(self, paths: Iterable[PathSpec]) -> Group:
        members = list(paths)
        key = tuple(p.id for p in members)
        found = self._groups.get(key)
        if found is None:
            found = self._groups[key] = Group(members, self.index)
        return found

    def exchange_for(self, clients: list[ClientSpec]) -> Group:
        """Exchange paths these clients may use (every one when the map names no client)."""
        if not clients:
            return self.all_exchange
        allowed = dict.fromkeys(pid for c in clients for pid in c.paths)
        return self.group(self.m.by_id[pid] for pid in allowed if pid in self.exchanger_ids)

    # --- entry points ------------------------------------------------------------

    def entry_points(self) -> list[EntryPoint]:
        out = [self.credential_entry(i, k) for i, k in enumerate(self.m.spec.credential_kinds)]
        out += self.implicit_entries()
        for i, p in enumerate(self.m.paths):
            out += self.token_entries(i, p)
        return out

    def credential_entry(self, i: int, kind: CredentialKindSpec) -> EntryPoint:
        holders = self.holders.get(kind.id, [])
        if holders:
            ids = self.accepting_ids.get(kind.type.value, set())
            allowed = dict.fromkeys(pid for c in holders for pid in c.paths)
            accepting = [self.m.by_id[pid] for pid in allowed if pid in ids]
        else:
            accepting = [p for _, p in self.by_type.get(kind.type.value, [])]
        direct = self.group(accepting)
        validity, how = _validity(kind, self.m.spec.policy.rotation_grace)
        exchange = self.exchange_for(holders) if direct.members else None
        window, explanation = _combine(validity, how, direct)
        notes = () if holders else ("no client declares it: every path accepting it is reachable",)
        return EntryPoint(
            id=f"credential_kind:{kind.id}",
            kind="credential",
            label=f"{kind.id} ({kind.type.value})",
            window=window,
            explanation=explanation,
            loc=("credential_kinds", i),
            direct=direct,
            exchange=exchange,
            holders=tuple(c.id for c in holders),
            principal=kind.principal,
            notes=notes,
        )

    def implicit_entries(self) -> list[EntryPoint]:
        declared = {k.type.value for k in self.m.spec.credential_kinds}
        out = []
        for type_, users in self.by_type.items():
            if type_ in declared or type_ in TOKEN_INPUTS | NO_SECRET_INPUTS:
                continue
            first_index, first = users[0]
            j = next(n for n, inp in enumerate(first.inputs) if inp.value == type_)
            direct = self.group(p for _, p in users)
            if type_ in STATIC_TYPES:
                validity: int | None = None
                how = f"{type_}: no credential kind declares its maximum age or rotation"
            else:
                validity = DEFAULT_ASSERTION_LIFETIME
                how = f"one {type_} lives up to {format_duration(validity)} (default)"
            window, explanation = _combine(validity, how, direct)
            out.append(
                EntryPoint(
                    id=f"credential_type:{type_}",
                    kind="credential",
                    label=f"{type_} (no credential kind declared)",
                    window=window,
                    explanation=explanation,
                    loc=("paths", first_index, "inputs", j),
                    direct=direct,
                    exchange=self.all_exchange if direct.members else None,
                    declared=False,
                    principal=first.principal,
                )
            )
        return out

    def token_entries(self, i: int, p: PathSpec) -> list[EntryPoint]:
        clients = self.index.clients_of.get(p.id, [])
        own = self.group([p])
        out = []
        bound = p.binding != "none"
        exchange = self.exchange_for(clients)
        if bound:
            out.append(self._useless(f"access_token@{p.id}", "access token", p, i))
        else:
            out.append(
                EntryPoint(
                    id=f"access_token@{p.id}",
                    kind="token",
                    label=f"access token of {p.id}",
                    window=p.max_ttl,
                    explanation=f"usable until it expires ({format_duration(p.max_ttl)})",
                    loc=("paths", i, "max_ttl"),
                    direct=None,
                    exchange=exchange,
                    principal=p.principal,
                    carries=own,
                )
            )
        if p.refresh is not None:
            if bound:
                out.append(self._useless(f"refresh_token@{p.id}", "refresh token", p, i))
            else:
                life = p.refresh.absolute_lifetime
                infinite = is_unlimited(life)
                out.append(
                    EntryPoint(
                        id=f"refresh_token@{p.id}",
                        kind="token",
                        label=f"refresh token of {p.id}",
                        window=None if infinite else max(life, p.max_ttl),
                        explanation=(
                            "refreshes forever: the family has no absolute lifetime"
                            if infinite
                            else f"refreshes until the family's absolute lifetime "
                            f"({format_duration(life)})"
                        ),
                        loc=("paths", i, "refresh", "absolute_lifetime"),
                        direct=own,
                        exchange=exchange,
                        principal=p.principal,
                    )
                )
        if p.is_recovery or _accepts(p, "recovery_grant"):
            grant_ttl = p.recovery.grant_ttl if p.recovery else DEFAULT_ASSERTION_LIFETIME
            window, explanation = _combine(
                grant_ttl, f"the grant lives {format_duration(grant_ttl)}", own
            )
            out.append(
                EntryPoint(
                    id=f"recovery_grant@{p.id}",
                    kind="token",
                    label=f"recovery grant of {p.id}",
                    window=window,
                    explanation=explanation,
                    loc=("paths", i, "recovery"),
                    direct=own,
                    exchange=exchange,
                    principal=p.principal,
                )
            )
        return out

    def _useless(self, ident: str, what: str, p: PathSpec, i: int) -> EntryPoint:
        return EntryPoint(
            id=ident,
            kind="token",
            label=f"{what} of {p.id}",
            window=0,
            explanation=f"{p.binding}-bound: useless without the holder's private key",
            loc=("paths", i, "binding"),
            direct=None,
            exchange=None,
            principal=p.principal,
        )


def _accepts(p: PathSpec, value: str) -> bool:
    return any(i.value == value for i in p.inputs)


def _validity(kind: CredentialKindSpec, default_grace: int) -> tuple[int | None, str]:
    """How long one stolen credential of ``kind`` keeps working."""
    if not kind.is_static:
        life = kind.max_age or DEFAULT_ASSERTION_LIFETIME
        return life, f"one {kind.type.value} lives up to {format_duration(life)}"
    bounds: list[tuple[int, str]] = []
    if kind.max_age is not None:
        bounds.append((kind.max_age, f"max_age {format_duration(kind.max_age)}"))
    if kind.rotation_period is not None:
        grace = kind.rotation_grace if kind.rotation_grace is not None else default_grace
        bounds.append(
            (
                kind.rotation_period + grace,
                f"rotation every {format_duration(kind.rotation_period)} "
                f"+ {format_duration(grace)} grace",
            )
        )
    if not bounds:
        return None, "static credential with no max_age and no rotation_period"
    seconds, how = min(bounds)
    return seconds, f"valid up to {format_duration(seconds)} ({how})"


def _combine(validity: int | None, how: str, direct: Group) -> tuple[int | None, str]:
    """Window of a credential: its validity plus the longest life of what it last mints."""
    if not direct.members:
        return 0, f"{how}; no path accepts it, so it mints nothing"
    tail = direct.max_window
    if validity is None or is_unlimited(tail):
        why = how if validity is None else "a refresh family it mints has no absolute lifetime"
        return None, f"infinite: {why}"
    return validity + tail, f"{how}, then what it minted lives {format_duration(tail)}"


def entry_points(m: PathMap) -> list[EntryPoint]:
    """Every entry point of ``m`` with its persistence window and blast radius."""
    return Windows(m).entry_points()
