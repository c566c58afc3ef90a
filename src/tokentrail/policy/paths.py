"""The issuance-path map: which tokens may be minted, from what, and who owns each step.

A path is a declared route from an input (a client credential, an upstream
login, a token, a recovery grant) through a grant to an output (an access
token or a session), with its controls (max TTL, binding, audiences, scopes,
session limits, refresh, delegation, step-up, approvals, audit, detection
responses) and the owning team of each of the four functions the seed article
names. The token authority refuses any issuance no path declares, and every
minted node records its path id.

Besides paths, a map declares teams, the bounds per principal kind, credential
kinds (with rotation period and maximum age), clients, reusable path templates
(``extends``) and end-to-end chains with their accountable owner.

The map is YAML (see ``docs/paths.md``); it is validated strictly: unknown
keys, wrong types, duplicate ids, references to undeclared teams, paths,
credential kinds or templates, and cycles between templates are errors that
name the file, line and column.

Two modes: :func:`load_path_map` (serving) also refuses what the token
authority cannot run safely (a path without an owner for each function, a
token exchange without a delegation bound); ``analysis=True`` accepts those so
``tokentrail paths check`` can report them as findings with rule ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from tokentrail.errors import PathMapError
from tokentrail.model import CredentialKind
from tokentrail.policy.yamlsource import Loc, Mark, Source, read_yaml

#: The map format this code reads.
SCHEMA_VERSION = 1

#: What ``unlimited`` means where a lifetime may be declared unbounded (100 years).
UNLIMITED = 100 * 365 * 86_400

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}
_DURATION_PATTERN = r"^\s*\d+\s*(s|m|h|d|w)?\s*$"


def parse_duration(value: Any) -> Any:
    """``300``, ``"300s"``, ``"5m"``, ``"12h"``, ``"30d"``, ``"2w"`` -> seconds; others pass on."""
    if isinstance(value, bool):  # YAML `yes`/`true` must not become a 1-second TTL
        raise ValueError(f"{value!r} is not a duration such as 300, 90s, 5m, 12h or 30d")
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration such as 300, 90s, 5m, 12h or 30d")
        return int(m.group(1)) * _UNIT[m.group(2)]
    return value


def parse_lifetime(value: Any) -> Any:
    """A duration, or ``unlimited`` (stored as :data:`UNLIMITED`)."""
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return UNLIMITED
    return parse_duration(value)


def is_unlimited(seconds: int | None) -> bool:
    return seconds is not None and seconds >= UNLIMITED


def format_duration(seconds: int | float | None) -> str:
    """``None`` or :data:`UNLIMITED` -> ``"infinite"``; else ``"12h10m"``-style text."""
    if seconds is None or seconds >= UNLIMITED:
        return "infinite"
    s = int(seconds)
    if s == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return "".join(parts)


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "exclusiveMinimum": 0, "description": "seconds"},
        {"type": "string", "pattern": _DURATION_PATTERN, "description": "e.g. 90s, 5m, 12h, 30d"},
    ]
}
_LIFETIME_SCHEMA: dict[str, Any] = {
    "anyOf": [*_DURATION_SCHEMA["anyOf"], {"const": "unlimited"}],
}

Duration = Annotated[
    int, BeforeValidator(parse_duration), Field(gt=0), WithJsonSchema(_DURATION_SCHEMA)
]
Lifetime = Annotated[
    int, BeforeValidator(parse_lifetime), Field(gt=0), WithJsonSchema(_LIFETIME_SCHEMA)
]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$")]


class Grant(StrEnum):
    """Grants a path can declare, with their ``grant_type`` values."""

    CLIENT_CREDENTIALS = "client_credentials"
    JWT_BEARER = "jwt_bearer"
    TOKEN_EXCHANGE = "token_exchange"
    #: Redeeming a help-desk recovery grant (an extension grant type, issue 5).
    RECOVERY = "recovery"

    @property
    def grant_type(self) -> str:
        return _GRANT_TYPES[self]


_GRANT_TYPES = {
    Grant.CLIENT_CREDENTIALS: "client_credentials",
    Grant.JWT_BEARER: "urn:ietf:params:oauth:grant-type:jwt-bearer",
    Grant.TOKEN_EXCHANGE: "urn:ietf:params:oauth:grant-type:token-exchange",
    Grant.RECOVERY: "urn:tokentrail:params:oauth:grant-type:recovery",
}


class ExtraInput(StrEnum):
    """Inputs a path may accept beyond the token authority's credential kinds."""

    #: A static API key.
    API_KEY = "api_key"
    #: A support or operator credential (an admin-API key): a path taking it mints for others.
    ADMIN_KEY = "admin_key"
    #: A single-use recovery grant delivered to the subject (issue 5).
    RECOVERY_GRANT = "recovery_grant"


def _input_kind(value: Any) -> Any:
    """One clear error for an unknown input kind (rather than one per enum)."""
    if isinstance(value, CredentialKind | ExtraInput):
        return value
    if isinstance(value, str):
        for enum in (CredentialKind, ExtraInput):
            try:
                return enum(value)
            except ValueError:
                continue
    raise ValueError(f"{value!r} is not an input kind; expected one of {', '.join(INPUT_KINDS)}")


INPUT_KINDS: tuple[str, ...] = (*(k.value for k in CredentialKind), *(k.value for k in ExtraInput))
InputKind = Annotated[
    CredentialKind | ExtraInput,
    BeforeValidator(_input_kind),
    WithJsonSchema({"type": "string", "enum": list(INPUT_KINDS)}),
]

#: Inputs that are tokens minted by tokentrail (not credentials).
TOKEN_INPUTS = frozenset({"access_token", "refresh_token", "recovery_grant"})
#: Inputs that hold no secret at all.
NO_SECRET_INPUTS = frozenset({"public_client"})
#: Credential types that are long-lived secrets (static) unless a kind says otherwise.
STATIC_TYPES = frozenset(
    {
        "client_secret",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
        "api_key",
        "admin_key",
    }
)
#: Lifetime of one assertion when its credential kind declares no ``max_age``.
DEFAULT_ASSERTION_LIFETIME = 600


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


class AssuranceLevel(StrEnum):
    """Authenticator assurance levels of NIST SP 800-63B-4."""

    AAL1 = "AAL1"
    AAL2 = "AAL2"
    AAL3 = "AAL3"

    @property
    def absolute_limit(self) -> int:
        """SP 800-63B-4 overall reauthentication timeout for this level, in seconds."""
        return AAL_LIMITS[self][0]

    @property
    def idle_limit(self) -> int | None:
        """SP 800-63B-4 inactivity timeout for this level (None: not required)."""
        return AAL_LIMITS[self][1]

    @property
    def section(self) -> str:
        """The SP 800-63B-4 section that sets this level's reauthentication limits."""
        return {"AAL1": "§2.1.3", "AAL2": "§2.2.3", "AAL3": "§2.3.3"}[self.value]


#: SP 800-63B-4 reauthentication limits (STANDARDS.md §4.1): overall, inactivity.
AAL_LIMITS: dict[AssuranceLevel, tuple[int, int | None]] = {
    AssuranceLevel.AAL1: (30 * 86400, None),
    AssuranceLevel.AAL2: (24 * 3600, 3600),
    AssuranceLevel.AAL3: (12 * 3600, 15 * 60),
}


class DetectionKind(StrEnum):
    """Runtime signals a path can declare a response to (issue 6)."""

    REFRESH_REUSE = "refresh_reuse"
    BINDING_MISMATCH = "binding_mismatch"
    PROOF_REPLAY = "proof_replay"
    REVOKED_TOKEN_USE = "revoked_token_use"
    EXPIRED_TOKEN_USE = "expired_token_use"
    CLIENT_AUTH_FAILURES = "client_auth_failures"
    POST_ROTATION_USE = "post_rotation_use"
    RECOVERY_VOLUME = "recovery_volume"


class Response(StrEnum):
    """What happens when a detection fires."""

    RECORD = "record"
    NOTIFY = "notify"
    REVOKE_NODE = "revoke_node"
    REVOKE_FAMILY = "revoke_family"
    REVOKE_ROOT = "revoke_root"


class ProofingStep(StrEnum):
    """Identity-proofing steps a recovery path can require (SP 800-63B-4 §4.2)."""

    ONE_TIME_CODE = "one_time_code"
    UPSTREAM_REAUTHENTICATION = "upstream_reauthentication"
    RECOVERY_CODE = "recovery_code"
    IDENTITY_PROOFING = "identity_proofing"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class TeamSpec(_Strict):
    """A team that owns control points."""

    id: Ident
    """Team id, referenced by owners, clients, credential kinds and chains."""
    name: str = ""
    """Display name."""
    contact: str = ""
    """How to reach the team (on-call address, channel)."""


class PrincipalPolicy(_Strict):
    """Bounds for one principal kind."""

    max_access_token_ttl: Duration = 3600
    """Longest access-token TTL a path for this principal kind should declare."""


class Principals(_Strict):
    """Bounds per principal kind (``workload``, ``human``)."""

    workload: PrincipalPolicy = PrincipalPolicy()
    """Non-human identities: services, jobs, pipelines."""
    human: PrincipalPolicy = PrincipalPolicy()
    """People signing in through an upstream identity provider."""


class MapPolicy(_Strict):
    """Map-wide bounds the analyzer and drift report use."""

    revocation_view_bound: Duration = 86_400
    """Longest a verifier keeps a revoked id in its revocation view; longer-lived tokens
    are not reliably revocable."""
    max_credential_age: Duration = 90 * 86400
    """Longest any static credential may live before it must be replaced."""
    rotation_grace: Duration = 3600
    """Default time an old credential keeps working after rotation."""
    unused_after: Duration = 90 * 86400
    """Clients and credentials unused for this long are offboarding candidates (drift)."""


class CredentialKindSpec(_Strict):
    """A kind of credential some principals hold, with its lifecycle."""

    id: Ident
    """Credential kind id, referenced by clients, chains and recovery policies."""
    description: str = ""
    """What it is and where it lives."""
    type: InputKind
    """The input a path accepts for it (client_secret, private_key_jwt, tls_client_auth,
    upstream_assertion, api_key, admin_key, ...)."""
    principal: Literal["workload", "human"] = "workload"
    """Who holds it."""
    static: bool | None = None
    """A long-lived secret kept by its holder. Default: from ``type`` (secrets, keys and
    certificates are static; assertions are not)."""
    rotation_period: Duration | None = None
    """Rotate at least this often (static kinds)."""
    max_age: Duration | None = None
    """Never valid for longer than this (for assertions: the lifetime of one)."""
    rotation_grace: Duration | None = None
    """How long the previous credential keeps working after a rotation (default:
    ``policy.rotation_grace``)."""
    storage: str = ""
    """Where it is stored (secret manager, HSM, CI secret store, ...)."""
    owner: Ident | None = None
    """Team that issues, stores and rotates it."""

    @property
    def is_static(self) -> bool:
        if self.static is not None:
            return self.static
        return self.type.value in STATIC_TYPES


class ClientSpec(_Strict):
    """An OAuth client: an application or a workload, with what it may use."""

    id: Ident
    """Client id (as named in the map; not necessarily the registered client_id)."""
    description: str = ""
    """What the client is."""
    team: Ident
    """Owning team."""
    principal: Literal["workload", "human"] = "workload"
    """Who operates it: ``workload`` (automation) or ``human`` (people use it interactively)."""
    credentials: list[Ident] = []
    """Credential kinds it authenticates with."""
    paths: list[Ident] = Field(min_length=1)
    """Paths it may use."""
    audiences: list[str] | None = None
    """Audiences it may request (None: whatever its registration says)."""
    scopes: list[str] | None = None
    """Scopes it may request (None: whatever its registration says)."""
    environment: str = ""
    """Deployment environment (prod, staging, ...)."""


class Owners(_Strict):
    """The owning team of each of the four functions."""

    credential_issuance: Ident | None = None
    """Owns credential issuance and storage (creation, rotation, revocation of secrets)."""
    authentication: Ident | None = None
    """Owns authentication and session creation (token scope, TTL, binding)."""
    recovery: Ident | None = None
    """Owns recovery and support (identity proofing, escalation, approvals)."""
    detection: Ident | None = None
    """Owns detection and response (invalidation, audit, notification)."""

    def of(self, function: Function) -> str:
        """The owner of ``function`` ("" when the map names none, which serving refuses)."""
        return self.get(function) or ""

    def get(self, function: Function) -> str | None:
        value = getattr(self, function.value)
        return str(value) if value is not None else None


class RefreshPolicy(_Strict):
    """Refresh tokens under a session path (RFC 6749 §6, RFC 9700 §4.14)."""

    rotation: bool = True
    """Issue a new refresh token on every use."""
    reuse_detection: bool = True
    """Treat presenting a rotated-out refresh token as theft (RFC 9700 §4.14.2)."""
    absolute_lifetime: Lifetime
    """Lifetime of the refresh-token family; ``unlimited`` declares none. Default: the
    session's absolute lifetime."""
    idle_timeout: Duration | None = None
    """A refresh token unused for this long expires. Default: the session's idle timeout."""


class SessionPolicy(_Strict):
    """Limits of a human session (SP 800-63B-4 §2.x.3, §5.2)."""

    absolute_lifetime: Duration | None = None
    """Overall timeout: reauthenticate after this long. Default: the limit for the path's
    assurance level (AAL1 30d, AAL2 24h, AAL3 12h)."""
    idle_timeout: Duration | None = None
    """Inactivity timeout. Default: AAL2 1h, AAL3 15m; none at AAL1."""
    networks: list[IPvAnyNetwork] | None = None
    """Client network ranges (CIDR) the session may be created and refreshed from; any
    other address is refused. Unset: no network restriction."""


class StepUp(_Strict):
    """Fresh, stronger authentication required for some scopes (RFC 9470)."""

    assurance_level: AssuranceLevel
    """Level the fresh authentication must reach."""
    max_age: Duration = 300
    """How recent that authentication must be."""
    scopes: list[str] = []
    """Scopes that need step-up (empty: every issuance on the path)."""


class Approvals(_Strict):
    """Approvals an issuance or recovery needs (separation of duties)."""

    count: int = Field(default=1, ge=0, le=10)
    """How many distinct approvers."""
    team: Ident | None = None
    """Team the approvers must belong to."""
    role: str = "approver"
    """Admin-API role the approvers must hold."""
    expires: Duration = 3600
    """An approval lapses after this long."""
    distinct_from_requester: bool = True
    """The requester can never approve their own request."""


class RecoveryRate(_Strict):
    """At most ``max`` recoveries per subject per ``per``."""

    max: int = Field(ge=1)
    """Recoveries allowed per subject in the window."""
    per: Duration
    """The window."""


class RecoveryRevokes(_Strict):
    """What a completed recovery revokes."""

    sessions: bool = True
    """The subject's previous sessions."""
    credential_kinds: list[Ident] = []
    """Credential kinds of the subject to revoke (for example a lost device key)."""


class RecoveryPolicy(_Strict):
    """A help-desk recovery path (SP 800-63B-4 §4.2; issue 5)."""

    proofing: list[ProofingStep] = []
    """Identity-proofing steps the subject completes."""
    approvers: Approvals = Approvals()
    """Approvals before a recovery grant is issued."""
    rate: RecoveryRate | None = None
    """Recoveries per subject per window."""
    grant_ttl: Duration = 600
    """Lifetime of the single-use recovery grant."""
    delivery: Literal["subject", "support"] = "subject"
    """Who receives the recovery grant: the subject's registered channel, or the support
    engineer (who then holds session material)."""
    revokes: RecoveryRevokes = RecoveryRevokes()
    """What a completed recovery revokes."""
    notify_subject: bool = True
    """Notify the subject on every registered channel (SP 800-63B-4 §4.6)."""


class DetectionPolicy(_Strict):
    """Response per detection kind (issue 6)."""

    refresh_reuse: Response | None = None
    """A rotated-out refresh token presented again."""
    binding_mismatch: Response | None = None
    """A bound token presented with another key or certificate."""
    proof_replay: Response | None = None
    """A DPoP proof replayed."""
    revoked_token_use: Response | None = None
    """A revoked token presented."""
    expired_token_use: Response | None = None
    """An expired token presented."""
    client_auth_failures: Response | None = None
    """A burst of failed client authentications."""
    post_rotation_use: Response | None = None
    """A credential used after its rotation grace period."""
    recovery_volume: Response | None = None
    """Unusual recovery volume."""

    def response(self, kind: DetectionKind) -> Response | None:
        value = getattr(self, kind.value)
        return Response(value) if value is not None else None


class PathSpec(_Strict):
    """One declared issuance path."""

    id: Ident
    """Path id; every minted node records it."""
    extends: Ident | None = None
    """A template or path whose settings this path inherits (mappings merge, lists and
    values are replaced)."""
    description: str = ""
    """What the path is for."""
    principal: Literal["workload", "human"]
    """Whose tokens it mints."""
    grant: Grant
    """OAuth grant: client_credentials, jwt_bearer, token_exchange or recovery."""
    inputs: list[InputKind] = Field(min_length=1)
    """What is presented: credential types or token kinds."""
    output: Literal["access_token", "session"]
    """What is minted: an access token, or a session (refresh-token family + access tokens)."""
    max_ttl: Duration
    """Longest access-token lifetime."""
    binding: Literal["none", "dpop", "mtls"] = "none"
    """Sender constraint on minted tokens: none (bearer), dpop (RFC 9449), mtls (RFC 8705)."""
    audiences: list[str] | None = None
    """Audiences allowed (None: not bounded by the path)."""
    scopes: list[str] | None = None
    """Scopes allowed (None: not bounded by the path)."""
    assurance_level: AssuranceLevel | None = None
    """Human paths: AAL of the authentication behind the session."""
    session: SessionPolicy | None = None
    """Human session limits (defaults from the assurance level)."""
    refresh: RefreshPolicy | None = None
    """Refresh tokens (session paths only)."""
    max_delegation_depth: int | None = Field(default=None, ge=1, le=16)
    """Token exchange: most nested ``act`` levels."""
    act: bool = True
    """Token exchange records the acting party in ``act`` (delegation, RFC 8693 §4.1);
    false declares impersonation."""
    step_up: StepUp | None = None
    """Step-up authentication."""
    approvals: Approvals | None = None
    """Approvals each issuance needs (break-glass paths)."""
    audit: bool = True
    """Record every issuance in the audit ledger."""
    revocation_check: Literal["lineage", "introspection", "none"] = "lineage"
    """How resource servers learn of revocation: lineage claim against a revocation view,
    introspection, or none (signature and expiry only)."""
    detection: DetectionPolicy = DetectionPolicy()
    """Response per detection kind."""
    recovery: RecoveryPolicy | None = None
    """Recovery settings (recovery paths)."""
    owners: Owners
    """Owning team of each of the four functions."""
    accountable: Ident | None = None
    """The single team accountable for the path end to end (default: the owner of all four
    functions when it is one team)."""

    @model_validator(mode="before")
    @classmethod
    def _session_defaults(cls, data: Any) -> Any:
        """Fill session and refresh limits from the assurance level (SP 800-63B-4)."""
        if not isinstance(data, dict) or data.get("output") != "session":
            return data
        level = data.get("assurance_level")
        session = data.get("session")
        refresh = data.get("refresh")
        out = dict(data)
        if level in AAL_LIMITS and (session is None or isinstance(session, dict)):
            absolute, idle = AAL_LIMITS[AssuranceLevel(level)]
            filled = dict(session or {})
            filled.setdefault("absolute_lifetime", absolute)
            if idle is not None:
                filled.setdefault("idle_timeout", idle)
            out["session"] = session = filled
        if isinstance(refresh, dict) and isinstance(session, dict):
            filled_refresh = dict(refresh)
            for key in ("absolute_lifetime", "idle_timeout"):
                if session.get(key) is not None:
                    filled_refresh.setdefault(key, session[key])
            out["refresh"] = filled_refresh
        return out

    @property
    def is_recovery(self) -> bool:
        return self.recovery is not None or self.grant is Grant.RECOVERY

    @property
    def session_lifetime(self) -> int | None:
        """How long a session minted here lasts at most (None: not a session path)."""
        if self.output != "session":
            return None
        bounds = [self.refresh.absolute_lifetime] if self.refresh else []
        if self.session and self.session.absolute_lifetime is not None:
            bounds.append(self.session.absolute_lifetime)
        return min(bounds) if bounds else self.max_ttl

    @property
    def session_idle_timeout(self) -> int | None:
        bounds = []
        if self.refresh and self.refresh.idle_timeout is not None:
            bounds.append(self.refresh.idle_timeout)
        if self.session and self.session.idle_timeout is not None:
            bounds.append(self.session.idle_timeout)
        return min(bounds) if bounds else None

    @property
    def output_window(self) -> int:
        """How long what one issuance mints stays usable (UNLIMITED when unbounded)."""
        lifetime = self.session_lifetime
        return max(self.max_ttl, lifetime) if lifetime is not None else self.max_ttl

    def accountable_owner(self) -> str | None:
        """The declared accountable team, else the owner of all four functions if one team."""
        if self.accountable is not None:
            return self.accountable
        owners = {self.owners.get(f) for f in Function}
        if len(owners) == 1 and None not in owners:
            return owners.pop()
        return None


class ChainSpec(_Strict):
    """An end-to-end chain: credential -> path -> ... -> session, with one accountable owner."""

    id: Ident
    """Chain id."""
    description: str = ""
    """What the chain is (a user journey, a deployment flow)."""
    entry: Ident | None = None
    """Credential kind the chain starts from."""
    steps: list[Ident] = Field(min_length=1)
    """Paths in order; each step must accept what the previous one outputs."""
    accountable: Ident | None = None
    """The single team accountable for the whole chain."""


class PathMapSpec(_Strict):
    """An issuance-path map."""

    version: Literal[1]
    """Map format version (1)."""
    teams: list[TeamSpec] = Field(min_length=1)
    """Teams that own control points."""
    principals: Principals = Principals()
    """Bounds per principal kind."""
    policy: MapPolicy = MapPolicy()
    """Map-wide bounds."""
    credential_kinds: list[CredentialKindSpec] = []
    """Kinds of credentials, with rotation period and maximum age."""
    clients: list[ClientSpec] = []
    """Clients and the credential kinds and paths they use."""
    templates: list[dict[str, Any]] = []
    """Partial paths that paths can ``extends`` (not paths themselves)."""
    paths: list[PathSpec] = Field(min_length=1)
    """Declared issuance paths."""
    chains: list[ChainSpec] = []
    """End-to-end chains with their accountable owner."""


@dataclass(frozen=True, slots=True)
class PathMap:
    """A validated path map, with lookups the token authority needs."""

    spec: PathMapSpec
    source: Source | None
    by_id: dict[str, PathSpec]
    credential_kinds: dict[str, CredentialKindSpec] = field(default_factory=dict)
    clients: dict[str, ClientSpec] = field(default_factory=dict)
    chains: dict[str, ChainSpec] = field(default_factory=dict)
    teams: dict[str, TeamSpec] = field(default_factory=dict)

    @property
    def paths(self) -> list[PathSpec]:
        return self.spec.paths

    @property
    def file(self) -> str:
        return self.source.file if self.source else "<paths>"

    def get(self, path_id: str) -> PathSpec | None:
        return self.by_id.get(path_id)

    def match(
        self,
        *,
        grant: Grant,
        input_kind: CredentialKind | ExtraInput,
        allowed: Iterable[str],
    ) -> PathSpec | None:
        """The first path (in map order) for ``grant`` and ``input_kind`` among ``allowed`` ids."""
        allowed_ids = set(allowed)
        wanted = input_kind.value
        for p in self.spec.paths:
            if (
                p.id in allowed_ids
                and p.grant is grant
                and any(i.value == wanted for i in p.inputs)
            ):
                return p
        return None

    def max_lifetime(self) -> int:
        """The longest anything minted under this map can live, in seconds."""
        return max(p.output_window for p in self.paths)

    def where(self, loc: Loc) -> str:
        """``file:line:column`` of a location in the map."""
        return self.source.where(loc) if self.source else f"{self.file}:1:1"

    def mark(self, loc: Loc) -> Mark:
        return self.source.mark(loc) if self.source else Mark(1, 1)


def load_path_map(path: Path, *, analysis: bool = False) -> PathMap:
    """Read and validate a path map; errors name file, line and column."""
    return build_path_map(read_yaml(path), analysis=analysis)


def build_path_map(source: Source, *, analysis: bool = False) -> PathMap:
    """Validate ``source``; ``analysis`` accepts what only the analyzer should report."""
    _check_version(source)
    source = resolve_templates(source)
    try:
        spec = PathMapSpec.model_validate(source.data)
    except ValidationError as exc:
        raise PathMapError(_format_errors(source, exc)) from None
    problems = _Checker(source, spec, analysis=analysis).run()
    if problems:
        raise PathMapError("\n".join(problems))
    return PathMap(
        spec=spec,
        source=source,
        by_id={p.id: p for p in spec.paths},
        credential_kinds={k.id: k for k in spec.credential_kinds},
        clients={c.id: c for c in spec.clients},
        chains={c.id: c for c in spec.chains},
        teams={t.id: t for t in spec.teams},
    )


def _check_version(source: Source) -> None:
    data = source.data
    if not isinstance(data, dict):
        raise PathMapError(
            f"{source.where(())}: a path map is a mapping with version, teams, paths"
        )
    if "version" not in data:
        raise PathMapError(
            f"{source.where(())}: version: required (this tokentrail reads version 1)"
        )
    version = data["version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise PathMapError(
            f"{source.where(('version',))}: version: unsupported map version {version!r}; "
            f"this tokentrail reads version {SCHEMA_VERSION}"
        )


# --- templates ---------------------------------------------------------------------


_TEMPLATE_KEYS = frozenset(PathSpec.model_fields) - {"id"}


def resolve_templates(source: Source) -> Source:
    """Expand ``extends`` (templates or paths) into each path, with cycle detection.

    Mappings merge key by key (the path wins), lists and scalars are replaced;
    ``id`` and ``extends`` are never inherited. Inherited values keep the line
    and column of the template they came from.
    """
    data = source.data
    paths = data.get("paths")
    templates = data.get("templates", [])
    if not isinstance(templates, list):
        return source  # the schema reports it
    for i, item in enumerate(templates):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise PathMapError(
                f"{source.where(('templates', i))}: templates.{i}: a template is a mapping "
                "with an id"
            )
        for key in item:
            if key not in _TEMPLATE_KEYS and key != "id":
                raise PathMapError(
                    f"{source.where(('templates', i, key))}: templates.{i}.{key}: "
                    f"unknown key {key!r}"
                )
    if not isinstance(paths, list) or not any(
        isinstance(p, dict) and "extends" in p for p in paths
    ):
        return source
    entries: dict[str, tuple[Loc, dict[str, Any]]] = {}
    for section, items in (("templates", templates), ("paths", paths)):
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            if item["id"] in entries:
                raise PathMapError(
                    f"{source.where((section, i, 'id'))}: duplicate template or path id "
                    f"{item['id']!r}"
                )
            entries[item["id"]] = ((section, i), item)
    resolved: dict[str, tuple[dict[str, Any], tuple[Loc, ...]]] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> tuple[dict[str, Any], tuple[Loc, ...]]:
        """The merged settings of ``name`` and the prefixes it inherits from, nearest first."""
        if name in resolved:
            return resolved[name]
        prefix, item = entries[name]
        base_name = item.get("extends")
        if base_name is None:
            result: tuple[dict[str, Any], tuple[Loc, ...]] = (item, ())
        else:
            where = source.where((*prefix, "extends"))
            if not isinstance(base_name, str) or base_name not in entries:
                raise PathMapError(
                    f"{where}: {name!r} extends {base_name!r}, which is no template or path"
                )
            if base_name == name:
                raise PathMapError(
                    f"{where}: cycle between paths through extends: {name} -> {name}"
                )
            if base_name in stack:
                cycle = " -> ".join((*stack[stack.index(base_name) :], name, base_name))
                raise PathMapError(f"{where}: cycle between paths through extends: {cycle}")
            base, base_chain = resolve(base_name, (*stack, name))
            merged = _merge({k: v for k, v in base.items() if k not in ("id", "extends")}, item)
            result = (merged, (entries[base_name][0], *base_chain))
        resolved[name] = result
        return result

    new_paths = list(paths)
    redirects = dict(source.redirects)
    for i, item in enumerate(paths):
        if isinstance(item, dict) and "extends" in item and isinstance(item.get("id"), str):
            merged, chain = resolve(item["id"], ())
            new_paths[i] = merged
            redirects[("paths", i)] = chain
    new_data = dict(data)
    new_data["paths"] = new_paths
    return Source(source.file, new_data, source.marks, source.root, redirects)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# --- cross-reference checks ------------------------------------------------------


class _Checker:
    """Everything the schema alone cannot say: ids, references, consistency."""

    def __init__(self, source: Source, spec: PathMapSpec, *, analysis: bool) -> None:
        self.source = source
        self.spec = spec
        self.analysis = analysis
        self.problems: list[str] = []

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append(f"{self.source.where(loc)}: {message}")

    def unique(self, section: str, ids: list[str], what: str) -> set[str]:
        seen: set[str] = set()
        for i, ident in enumerate(ids):
            if ident in seen:
                self.fail((section, i, "id"), f"duplicate {what} id {ident!r}")
            seen.add(ident)
        return seen

    def team(self, loc: Loc, team: str | None, context: str) -> None:
        if team is not None and team not in self.teams:
            self.fail(loc, f"{context} names undeclared team {team!r}")

    def run(self) -> list[str]:
        spec = self.spec
        self.teams = self.unique("teams", [t.id for t in spec.teams], "team")
        kinds = self.unique(
            "credential_kinds", [k.id for k in spec.credential_kinds], "credential kind"
        )
        self.kinds_by_id = {k.id: k for k in spec.credential_kinds}
        paths = self.unique("paths", [p.id for p in spec.paths], "path")
        self.unique("clients", [c.id for c in spec.clients], "client")
        self.unique("chains", [c.id for c in spec.chains], "chain")
        for i, kind in enumerate(spec.credential_kinds):
            self.team(("credential_kinds", i, "owner"), kind.owner, f"credential kind {kind.id!r}")
            if kind.type.value in TOKEN_INPUTS | NO_SECRET_INPUTS:
                self.fail(
                    ("credential_kinds", i, "type"),
                    f"credential kind {kind.id!r}: {kind.type.value} is not a credential",
                )
        for i, p in enumerate(spec.paths):
            self.check_path(i, p, kinds)
        for i, c in enumerate(spec.clients):
            self.team(("clients", i, "team"), c.team, f"client {c.id!r}")
            for j, kind_id in enumerate(c.credentials):
                if kind_id not in kinds:
                    self.fail(
                        ("clients", i, "credentials", j),
                        f"client {c.id!r} names undeclared credential kind {kind_id!r}",
                    )
            for j, path_id in enumerate(c.paths):
                if path_id not in paths:
                    self.fail(
                        ("clients", i, "paths", j),
                        f"client {c.id!r} names undeclared path {path_id!r}",
                    )
        by_id = {p.id: p for p in spec.paths}
        for i, chain in enumerate(spec.chains):
            self.check_chain(i, chain, by_id, kinds)
        return self.problems

    def check_path(self, i: int, p: PathSpec, kinds: set[str]) -> None:
        loc = ("paths", i)
        for function in Function:
            owner = p.owners.get(function)
            if owner is None:
                if not self.analysis:
                    self.fail(
                        (*loc, "owners"),
                        f"paths.{i}.owners.{function.value}: path {p.id!r} names no owner of "
                        f"{function.label} (Field required)",
                    )
            elif owner not in self.teams:
                self.fail(
                    (*loc, "owners", function.value),
                    f"path {p.id!r} names undeclared team {owner!r} as owner of {function.label}",
                )
        self.team((*loc, "accountable"), p.accountable, f"path {p.id!r} (accountable)")
        if p.approvals is not None:
            self.team((*loc, "approvals", "team"), p.approvals.team, f"path {p.id!r} (approvals)")
        if p.refresh is not None and p.output != "session":
            self.fail(
                (*loc, "refresh"),
                f"path {p.id!r}: only a path whose output is a session may declare refresh",
            )
        if p.session is not None and p.output != "session":
            self.fail(
                (*loc, "session"),
                f"path {p.id!r}: only a path whose output is a session may declare session",
            )
        if p.principal != "human":
            for key in ("assurance_level", "step_up"):
                if getattr(p, key) is not None:
                    self.fail((*loc, key), f"path {p.id!r}: {key} applies to human paths only")
        if (
            p.refresh is not None
            and p.session is not None
            and p.session.absolute_lifetime is not None
            and p.refresh.absolute_lifetime > p.session.absolute_lifetime
        ):
            self.fail(
                (*loc, "refresh", "absolute_lifetime"),
                f"path {p.id!r}: the refresh-token family "
                f"({format_duration(p.refresh.absolute_lifetime)}) cannot outlive its session "
                f"({format_duration(p.session.absolute_lifetime)})",
            )
        if p.grant is Grant.RECOVERY and p.recovery is None:
            self.fail(loc, f"path {p.id!r}: a recovery path must declare recovery")
        if p.recovery is not None:
            rec = p.recovery
            self.team((*loc, "recovery", "approvers", "team"), rec.approvers.team, f"path {p.id!r}")
            for j, kind_id in enumerate(rec.revokes.credential_kinds):
                if kind_id not in kinds:
                    self.fail(
                        (*loc, "recovery", "revokes", "credential_kinds", j),
                        f"path {p.id!r} names undeclared credential kind {kind_id!r}",
                    )
        if p.grant is Grant.TOKEN_EXCHANGE and p.max_delegation_depth is None and not self.analysis:
            self.fail(loc, f"path {p.id!r}: a token-exchange path must bound max_delegation_depth")

    def check_chain(
        self, i: int, chain: ChainSpec, by_id: dict[str, PathSpec], kinds: set[str]
    ) -> None:
        loc = ("chains", i)
        self.team((*loc, "accountable"), chain.accountable, f"chain {chain.id!r}")
        steps: list[PathSpec | None] = []
        for j, step in enumerate(chain.steps):
            if step not in by_id:
                self.fail((*loc, "steps", j), f"chain {chain.id!r} names undeclared path {step!r}")
            steps.append(by_id.get(step))
        if chain.entry is not None:
            kind = self.kinds_by_id.get(chain.entry)
            if kind is None:
                self.fail(
                    (*loc, "entry"),
                    f"chain {chain.id!r} names undeclared credential kind {chain.entry!r}",
                )
            elif steps[0] is not None and not any(
                inp.value == kind.type.value for inp in steps[0].inputs
            ):
                self.fail(
                    (*loc, "entry"),
                    f"chain {chain.id!r}: its first step {steps[0].id!r} does not accept "
                    f"{kind.type.value} (credential kind {kind.id!r})",
                )
        for j in range(1, len(steps)):
            prev, cur = steps[j - 1], steps[j]
            if prev is None or cur is None:
                continue
            produced = {"access_token"} | ({"refresh_token"} if prev.refresh else set())
            if not any(inp.value in produced for inp in cur.inputs):
                self.fail(
                    (*loc, "steps", j),
                    f"chain {chain.id!r}: step {cur.id!r} does not accept what "
                    f"{prev.id!r} outputs ({', '.join(sorted(produced))})",
                )


def _format_errors(source: Source, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        elif loc[-2:] == ("refresh", "absolute_lifetime") and err["type"] == "missing":
            msg = (
                "Field required: set a lifetime, declare assurance_level or session to default "
                "it, or write `unlimited` to declare none"
            )
        field_name = ".".join(str(x) for x in loc) or "document"
        lines.append(f"{source.where(loc)}: {field_name}: {msg}")
    return "\n".join(lines)
