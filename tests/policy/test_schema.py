"""The full path-map schema: new sections, templates, defaults, references, JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.policy.maps import CLEAN, EXAMPLES, EXCHANGE, HUMAN_SESSION, RECOVERY, clean, load
from tokentrail.config import BUNDLED_PATHS
from tokentrail.errors import PathMapError
from tokentrail.model import CredentialKind
from tokentrail.policy.paths import (
    UNLIMITED,
    AssuranceLevel,
    DetectionKind,
    ExtraInput,
    Function,
    Grant,
    Response,
    format_duration,
    load_path_map,
    parse_lifetime,
)
from tokentrail.policy.schema import json_schema


def error(tmp_path: Path, data: dict[str, Any] | str, *, analysis: bool = False) -> str:
    with pytest.raises(PathMapError) as info:
        load(tmp_path, data, analysis=analysis)
    return str(info.value)


def where(tmp_path: Path, data: dict[str, Any] | str, needle: str) -> str:
    """``file:line:column`` of the first line containing ``needle`` (column of its start)."""
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            col = line.index(needle.lstrip(" -")) + 1
            return f"{tmp_path / 'paths.yaml'}:{n}:{col}"
    raise AssertionError(needle)


# --- JSON Schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [BUNDLED_PATHS, *sorted(EXAMPLES.glob("*.yaml"))],
    ids=lambda p: p.name,
)
def test_maps_validate_against_the_exported_json_schema(path: Path) -> None:
    """The bundled and example maps are valid under `tokentrail paths schema`."""
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if path.name == "weak.yaml":  # it lacks an owner: the form serve refuses
        assert errors
        assert all("recovery" in e.message for e in errors)
    else:
        assert errors == []


def test_json_schema_rejects_an_unknown_key() -> None:
    """Editors flag unknown keys, as the loader does."""
    data = yaml.safe_load(BUNDLED_PATHS.read_text(encoding="utf-8"))
    data["paths"][0]["max_tll"] = "5m"
    assert not jsonschema.Draft202012Validator(json_schema()).is_valid(data)


def test_json_schema_lets_an_extending_path_omit_fields() -> None:
    """A path that extends a template needs only its id and extends."""
    data = {**CLEAN, "templates": [{"id": "base", "max_ttl": "5m"}]}
    data = {**data, "paths": [*CLEAN["paths"], {"id": "child", "extends": "base"}]}
    assert jsonschema.Draft202012Validator(json_schema()).is_valid(data)


# --- durations --------------------------------------------------------------------------


def test_unlimited_lifetime() -> None:
    """`unlimited` is accepted as a lifetime, and printed as infinite."""
    assert parse_lifetime("unlimited") == UNLIMITED
    assert format_duration(UNLIMITED) == "infinite"
    assert format_duration(43800) == "12h10m"
    assert format_duration(0) == "0s"


def test_weeks_are_durations(tmp_path: Path) -> None:
    """A `w` suffix is a week."""
    data = clean()
    data["credential_kinds"][0]["rotation_period"] = "2w"
    assert load(tmp_path, data).credential_kinds["svc-key"].rotation_period == 14 * 86400


# --- sessions ---------------------------------------------------------------------------


def test_session_limits_default_from_the_assurance_level(tmp_path: Path) -> None:
    """An AAL2 session gets 24h / 1h from SP 800-63B-4, and its refresh family the same."""
    m = load(tmp_path, clean(HUMAN_SESSION))
    p = m.get("login")
    assert p is not None
    assert p.session is not None
    assert p.refresh is not None
    assert (p.session.absolute_lifetime, p.session.idle_timeout) == (86400, 3600)
    assert (p.refresh.absolute_lifetime, p.refresh.idle_timeout) == (86400, 3600)
    assert (p.session_lifetime, p.session_idle_timeout) == (86400, 3600)


def test_aal1_has_no_idle_default(tmp_path: Path) -> None:
    """AAL1 sets a 30-day overall timeout and no inactivity timeout."""
    data = clean({**HUMAN_SESSION, "assurance_level": "AAL1"})
    p = load(tmp_path, data).get("login")
    assert p is not None
    assert (p.session_lifetime, p.session_idle_timeout) == (30 * 86400, None)
    assert AssuranceLevel.AAL3.absolute_limit == 12 * 3600


def test_refresh_cannot_outlive_its_session(tmp_path: Path) -> None:
    """A refresh family longer than the session is refused at its lifetime."""
    data = clean({**HUMAN_SESSION, "refresh": {"absolute_lifetime": "2d"}})
    msg = error(tmp_path, data)
    assert "cannot outlive its session" in msg
    assert msg.startswith(where(tmp_path, data, "absolute_lifetime: 2d"))


def test_refresh_needs_a_lifetime_or_a_level(tmp_path: Path) -> None:
    """Without a level or session, a refresh block must state its lifetime."""
    session = {k: v for k, v in HUMAN_SESSION.items() if k != "assurance_level"}
    msg = error(tmp_path, clean(session))
    assert "refresh.absolute_lifetime: Field required" in msg
    assert "`unlimited`" in msg


def test_session_block_only_on_session_paths(tmp_path: Path) -> None:
    """A session block on an access-token path is an error."""
    data = clean()
    data["paths"][0]["session"] = {"absolute_lifetime": "1h"}
    assert "only a path whose output is a session may declare session" in error(tmp_path, data)


def test_assurance_level_only_on_human_paths(tmp_path: Path) -> None:
    """An assurance level on a workload path is an error."""
    data = clean()
    data["paths"][0]["assurance_level"] = "AAL2"
    assert "assurance_level applies to human paths only" in error(tmp_path, data)


def test_recovery_grant_needs_recovery_block(tmp_path: Path) -> None:
    """A `grant: recovery` path without a recovery block is refused."""
    data = clean({k: v for k, v in RECOVERY.items() if k != "recovery"})
    assert "a recovery path must declare recovery" in error(tmp_path, data)


# --- inputs and grants ----------------------------------------------------------------------


def test_extra_inputs_and_match(tmp_path: Path) -> None:
    """Recovery grants and admin keys are inputs; match finds paths by input value."""
    m = load(tmp_path, clean(RECOVERY))
    assert m.match(grant=Grant.RECOVERY, input_kind=ExtraInput.RECOVERY_GRANT, allowed=["recover"])
    assert (
        m.match(grant=Grant.RECOVERY, input_kind=CredentialKind.CLIENT_SECRET, allowed=["recover"])
        is None
    )
    assert Grant.RECOVERY.grant_type == "urn:tokentrail:params:oauth:grant-type:recovery"


def test_unknown_input_is_one_clear_error(tmp_path: Path) -> None:
    """An unknown input kind is one error listing the kinds."""
    data = clean()
    data["paths"][0]["inputs"] = ["password"]
    msg = error(tmp_path, data)
    assert len(msg.splitlines()) == 1
    assert "'password' is not an input kind; expected one of client_secret" in msg


def test_token_is_not_a_credential_kind(tmp_path: Path) -> None:
    """A credential kind whose type is a token is refused."""
    data = clean()
    data["credential_kinds"][0]["type"] = "access_token"
    assert "access_token is not a credential" in error(tmp_path, data)


# --- references ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        (
            lambda d: d.update(clients=[{"id": "c", "team": "nobody", "paths": ["svc"]}]),
            "team: nobody",
            "client 'c' names undeclared team 'nobody'",
        ),
        (
            lambda d: d.update(clients=[{"id": "c", "team": "iam", "paths": ["nope"]}]),
            "- nope",
            "client 'c' names undeclared path 'nope'",
        ),
        (
            lambda d: d.update(
                clients=[{"id": "c", "team": "iam", "credentials": ["ghost"], "paths": ["svc"]}]
            ),
            "- ghost",
            "client 'c' names undeclared credential kind 'ghost'",
        ),
        (
            lambda d: d["credential_kinds"][0].update(owner="nobody"),
            "owner: nobody",
            "credential kind 'svc-key' names undeclared team 'nobody'",
        ),
        (
            lambda d: d["paths"][0].update(accountable="nobody"),
            "accountable: nobody",
            "names undeclared team 'nobody'",
        ),
        (
            lambda d: d.update(chains=[{"id": "c", "steps": ["svc", "ghost"]}]),
            "- ghost",
            "chain 'c' names undeclared path 'ghost'",
        ),
        (
            lambda d: d.update(chains=[{"id": "c", "entry": "ghost", "steps": ["svc"]}]),
            "entry: ghost",
            "chain 'c' names undeclared credential kind 'ghost'",
        ),
    ],
    ids=[
        "client-team",
        "client-path",
        "client-kind",
        "kind-owner",
        "accountable",
        "chain-step",
        "chain-entry",
    ],
)
def test_dangling_references(tmp_path: Path, change: Any, needle: str, message: str) -> None:
    """A reference to something undeclared is an error at the reference."""
    data = clean()
    change(data)
    msg = error(tmp_path, data)
    assert message in msg
    assert msg.startswith(where(tmp_path, data, needle))


def test_recovery_revokes_unknown_kind(tmp_path: Path) -> None:
    """A recovery that revokes an undeclared credential kind is refused."""
    rec = {**RECOVERY, "recovery": {**RECOVERY["recovery"], "revokes": {"credential_kinds": ["x"]}}}
    assert "names undeclared credential kind 'x'" in error(tmp_path, clean(rec))


def test_chain_steps_must_connect(tmp_path: Path) -> None:
    """A chain step that does not accept the previous output is refused."""
    data = clean(HUMAN_SESSION)
    data["chains"] = [{"id": "c", "steps": ["svc", "login"]}]
    assert "step 'login' does not accept what 'svc' outputs" in error(tmp_path, data)


def test_chain_entry_must_be_accepted(tmp_path: Path) -> None:
    """A chain's entry credential must be an input of its first step."""
    data = clean(EXCHANGE)
    data["chains"] = [{"id": "c", "entry": "svc-key", "steps": ["exchange"]}]
    assert "does not accept private_key_jwt" in error(tmp_path, data)


@pytest.mark.parametrize("section", ["credential_kinds", "clients", "chains"])
def test_duplicate_ids_in_new_sections(tmp_path: Path, section: str) -> None:
    """Duplicate ids are refused in every section."""
    data = clean()
    data["clients"] = [{"id": "c", "team": "iam", "paths": ["svc"]}]
    data["chains"] = [{"id": "ch", "steps": ["svc"]}]
    data[section].append(dict(data[section][0]))
    assert "duplicate" in error(tmp_path, data)


def test_unknown_key_in_a_new_section(tmp_path: Path) -> None:
    """Unknown keys are errors in nested new blocks too, at the key."""
    data = clean(RECOVERY)
    data["paths"][1]["recovery"]["approvals"] = 2
    msg = error(tmp_path, data)
    assert "paths.1.recovery.approvals: unknown key 'approvals'" in msg
    assert msg.startswith(where(tmp_path, data, "approvals: 2"))


# --- serving and analysis modes ------------------------------------------------------------


def test_missing_owner_refused_for_serving_reported_for_analysis(tmp_path: Path) -> None:
    """Serving refuses a missing owner; analysis loads the map."""
    data = clean()
    data["paths"][0]["owners"].pop("detection")
    assert "names no owner of detection and response" in error(tmp_path, data)
    owners = load(tmp_path, data, analysis=True).paths[0].owners
    assert owners.detection is None
    assert owners.of(Function.DETECTION) == ""


def test_wrong_version_names_the_supported_one(tmp_path: Path) -> None:
    """A map of another version is refused with the version this code reads."""
    data = {**clean(), "version": 2}
    assert "unsupported map version 2; this tokentrail reads version 1" in error(tmp_path, data)


def test_missing_version(tmp_path: Path) -> None:
    """A map without a version is refused at its start."""
    data = clean()
    del data["version"]
    assert error(tmp_path, data).endswith("version: required (this tokentrail reads version 1)")


# --- templates -----------------------------------------------------------------------------

TEMPLATED = """\
version: 1
teams:
  - id: iam
  - id: soc
templates:
  - id: base
    principal: workload
    output: access_token
    max_ttl: 5m
    binding: dpop
    owners:
      credential_issuance: iam
      authentication: iam
      recovery: iam
      detection: soc
  - id: strict
    extends: base
    max_ttl: 2m
paths:
  - id: child
    extends: strict
    grant: client_credentials
    inputs: [private_key_jwt]
    owners:
      detection: iam
"""


def test_templates_merge_into_paths(tmp_path: Path) -> None:
    """A path inherits through two templates; mappings merge, values are replaced."""
    p = load(tmp_path, TEMPLATED).get("child")
    assert p is not None
    assert (p.max_ttl, p.binding, p.extends) == (120, "dpop", "strict")
    assert (p.owners.recovery, p.owners.detection) == ("iam", "iam")


def test_inherited_value_errors_point_at_the_template(tmp_path: Path) -> None:
    """A bad inherited value is reported at the template's line."""
    text = TEMPLATED.replace("    binding: dpop\n", "    binding: maybe\n")
    msg = error(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'paths.yaml'}:10:5: paths.0.binding")


def test_extends_cycle(tmp_path: Path) -> None:
    """Templates that extend each other in a cycle are refused, naming the cycle."""
    text = TEMPLATED.replace("  - id: base\n", "  - id: base\n    extends: strict\n")
    msg = error(tmp_path, text)
    assert "cycle between paths through extends: strict -> base -> strict" in msg


def test_self_extension(tmp_path: Path) -> None:
    """A path that extends itself is a cycle."""
    text = TEMPLATED.replace("    extends: strict\n    grant", "    extends: child\n    grant")
    assert "cycle between paths through extends: child -> child" in error(tmp_path, text)


def test_unknown_template(tmp_path: Path) -> None:
    """Extending something undeclared is an error at `extends`."""
    text = TEMPLATED.replace("    extends: strict\n    grant", "    extends: ghost\n    grant")
    msg = error(tmp_path, text)
    assert (
        msg
        == f"{tmp_path / 'paths.yaml'}:21:5: 'child' extends 'ghost', which is no template or path"
    )


def test_unknown_key_in_template(tmp_path: Path) -> None:
    """A template key that is no path field is refused at the key."""
    text = TEMPLATED.replace("    max_ttl: 2m\n", "    max_tll: 2m\n")
    assert error(tmp_path, text) == (
        f"{tmp_path / 'paths.yaml'}:18:5: templates.1.max_tll: unknown key 'max_tll'"
    )


def test_template_without_id(tmp_path: Path) -> None:
    """A template must be a mapping with an id."""
    text = TEMPLATED.replace("  - id: strict\n", "  - name: strict\n")
    assert "a template is a mapping with an id" in error(tmp_path, text)


def test_path_and_template_share_an_id(tmp_path: Path) -> None:
    """A template and a path may not have the same id."""
    text = TEMPLATED.replace("  - id: child\n", "  - id: base\n")
    assert "duplicate template or path id 'base'" in error(tmp_path, text)


def test_example_maps_load_for_serving() -> None:
    """The realistic examples are maps `tokentrail serve` accepts."""
    for name in ("mesh.yaml", "customer-portal.yaml", "ci-cd.yaml"):
        assert load_path_map(EXAMPLES / name).paths


def test_detection_response_lookup(tmp_path: Path) -> None:
    """A path's declared response to a detection kind is readable by kind."""
    p = load(tmp_path, clean()).paths[0]
    assert p.detection.response(DetectionKind.BINDING_MISMATCH) is Response.REVOKE_FAMILY
    assert p.detection.response(DetectionKind.REFRESH_REUSE) is None


def test_explicitly_non_static_secret(tmp_path: Path) -> None:
    """`static: false` overrides the type's default."""
    data = clean()
    data["credential_kinds"][0]["static"] = False
    assert not load(tmp_path, data).credential_kinds["svc-key"].is_static
