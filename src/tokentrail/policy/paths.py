"""The issuance-path map: which tokens may be minted, from what, and who owns each step.

A path is a declared route from an input (a client credential, an upstream
login, a token) through a grant to an output (an access token or a session),
with its controls (max TTL, binding, audiences, scopes, refresh and delegation
limits) and the owning team of each of the four functions the seed article
names. The token authority refuses any issuance no path declares, and every
minted node records its path id.

The map is YAML (see ``docs/paths.md``); it is validated strictly: unknown
keys, wrong types, duplicate ids and references to undeclared teams are errors
that name the file, line and column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from tokentrail.errors import PathMapError
from tokentrail.model import CredentialKind
from tokentrail.policy.yamlsource import Source, read_yaml

#: The map format this code reads.
SCHEMA_VERSION = 1

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> Any:
    """``300``, ``"300s"``, ``"5m"``, ``"12h"``, ``"30d"`` -> seconds; other values pass on."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration such as 300, 90s, 5m, 12h or 30d")
        return int(m.group(1)) * _UNIT[m.group(2)]
    return value


Duration = Annotated[int, BeforeValidator(parse_duration), Field(gt=0)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$")]


class Grant(StrEnum):
    """Grants a path can declare, with their RFC ``grant_type`` values."""

    CLIENT_CREDENTIALS = "client_credentials"
    JWT_BEARER = "jwt_bearer"
    TOKEN_EXCHANGE = "token_exchange"

    @property
    def grant_type(self) -> str:
        return _GRANT_TYPES[self]


_GRANT_TYPES = {
    Grant.CLIENT_CREDENTIALS: "client_credentials",
    Grant.JWT_BEARER: "urn:ietf:params:oauth:grant-type:jwt-bearer",
    Grant.TOKEN_EXCHANGE: "urn:ietf:params:oauth:grant-type:token-exchange",
}


class Function(StrEnum):
    """The four functions whose owner every path names."""

    CREDENTIAL_ISSUANCE = "credential_issuance"
    AUTHENTICATION = "authentication"
    RECOVERY = "recovery"
    DETECTION = "detection"

    @property
    def label(self) -> str:
        return _FUNCTION_TITLES[self]


_FUNCTION_TITLES = {
    Function.CREDENTIAL_ISSUANCE: "credential issuance and storage",
    Function.AUTHENTICATION: "authentication and session creation",
    Function.RECOVERY: "recovery and support",
    Function.DETECTION: "detection and response",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeamSpec(_Strict):
    id: Ident
    name: str = ""
    contact: str = ""


class Owners(_Strict):
    """The owning team of each of the four functions."""

    credential_issuance: Ident
    authentication: Ident
    recovery: Ident
    detection: Ident

    def of(self, function: Function) -> str:
        return str(getattr(self, function.value))


class RefreshPolicy(_Strict):
    """Refresh tokens under a session path (RFC 6749 §6, RFC 9700 §4.14)."""

    rotation: bool = True
    absolute_lifetime: Duration
    idle_timeout: Duration | None = None


class PathSpec(_Strict):
    """One declared issuance path."""

    id: Ident
    description: str = ""
    principal: Literal["workload", "human"]
    grant: Grant
    inputs: list[CredentialKind] = Field(min_length=1)
    output: Literal["access_token", "session"]
    max_ttl: Duration
    binding: Literal["none", "dpop", "mtls"] = "none"
    audiences: list[str] | None = None
    scopes: list[str] | None = None
    refresh: RefreshPolicy | None = None
    max_delegation_depth: int | None = Field(default=None, ge=1, le=16)
    owners: Owners


class PathMapSpec(_Strict):
    version: Literal[1]
    teams: list[TeamSpec] = Field(min_length=1)
    paths: list[PathSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class PathMap:
    """A validated path map, with lookups the token authority needs."""

    spec: PathMapSpec
    source: Source | None
    by_id: dict[str, PathSpec]

    @property
    def paths(self) -> list[PathSpec]:
        return self.spec.paths

    def get(self, path_id: str) -> PathSpec | None:
        return self.by_id.get(path_id)

    def match(
        self, *, grant: Grant, input_kind: CredentialKind, allowed: Iterable[str]
    ) -> PathSpec | None:
        """The first path (in map order) for ``grant`` and ``input_kind`` among ``allowed`` ids."""
        allowed_ids = set(allowed)
        for p in self.spec.paths:
            if p.id in allowed_ids and p.grant is grant and input_kind in p.inputs:
                return p
        return None

    def max_lifetime(self) -> int:
        """The longest anything minted under this map can live, in seconds."""
        return max(
            max(p.max_ttl, p.refresh.absolute_lifetime if p.refresh else 0) for p in self.paths
        )


def load_path_map(path: Path) -> PathMap:
    """Read and validate a path map; errors name file, line and column."""
    return build_path_map(read_yaml(path))


def build_path_map(source: Source) -> PathMap:
    try:
        spec = PathMapSpec.model_validate(source.data)
    except ValidationError as exc:
        raise PathMapError(_format_errors(source, exc)) from None
    problems: list[str] = []
    team_ids: set[str] = set()
    for i, team in enumerate(spec.teams):
        if team.id in team_ids:
            problems.append(f"{source.where(('teams', i, 'id'))}: duplicate team id {team.id!r}")
        team_ids.add(team.id)
    by_id: dict[str, PathSpec] = {}
    for i, p in enumerate(spec.paths):
        if p.id in by_id:
            problems.append(f"{source.where(('paths', i, 'id'))}: duplicate path id {p.id!r}")
        by_id[p.id] = p
        for function in Function:
            owner = p.owners.of(function)
            if owner not in team_ids:
                problems.append(
                    f"{source.where(('paths', i, 'owners', function.value))}: path {p.id!r} "
                    f"names undeclared team {owner!r} as owner of {function.label}"
                )
        if p.refresh is not None and p.output != "session":
            problems.append(
                f"{source.where(('paths', i, 'refresh'))}: path {p.id!r}: only a path whose "
                "output is a session may declare refresh"
            )
        if p.grant is Grant.TOKEN_EXCHANGE and p.max_delegation_depth is None:
            problems.append(
                f"{source.where(('paths', i))}: path {p.id!r}: a token-exchange path must "
                "bound max_delegation_depth"
            )
    if problems:
        raise PathMapError("\n".join(problems))
    return PathMap(spec=spec, source=source, by_id=by_id)


def _format_errors(source: Source, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        field = ".".join(str(x) for x in loc) or "document"
        lines.append(f"{source.where(loc)}: {field}: {msg}")
    return "\n".join(lines)
