"""The issuance-path map loader: the bundled map, and errors that point at file:line:column."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tokentrail.config import BUNDLED_PATHS, Settings
from tokentrail.errors import PathMapError
from tokentrail.model import CredentialKind
from tokentrail.policy import yamlsource
from tokentrail.policy.paths import Function, Grant, load_path_map, parse_duration
from tokentrail.policy.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, parse_yaml
from tokentrail.services import build_services

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "paths.yaml"

#: A small valid map; tests change one thing in it. Line numbers are stated in comments.
MINIMAL = """\
version: 1
teams:
  - id: iam
  - id: soc
paths:
  - id: cc
    principal: workload
    grant: client_credentials
    inputs: [client_secret]
    output: access_token
    max_ttl: 5m
    owners:
      credential_issuance: iam
      authentication: iam
      recovery: iam
      detection: soc
"""
# line 6: "  - id: cc"; line 11: "    max_ttl: 5m"; line 12: "    owners:"; line 16: detection.
# A value's problem is reported at its key (a list item's at the item).


def write(tmp_path: Path, text: str, name: str = "paths.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PathMapError) as info:
        load_path_map(path)
    return str(info.value)


def at(tmp_path: Path, line: int, column: int) -> str:
    """The ``file:line:column:`` prefix an error about that place starts with."""
    return f"{tmp_path / 'paths.yaml'}:{line}:{column}: "


# --- valid maps --------------------------------------------------------------------


def test_bundled_map_declares_the_documented_paths() -> None:
    """The bundled map loads and declares the three path ids the docs and tests use."""
    m = load_path_map(BUNDLED_PATHS)
    ids = [p.id for p in m.paths]
    assert {"workload-client-credentials", "workload-token-exchange", "federated-login"} <= set(ids)


def test_bundled_map_names_an_owner_for_every_function() -> None:
    """Every bundled path names a declared team as owner of each of the four functions."""
    m = load_path_map(BUNDLED_PATHS)
    teams = {t.id for t in m.spec.teams}
    for p in m.paths:
        assert {p.owners.of(f) for f in Function} <= teams


def test_bundled_map_controls() -> None:
    """Durations are read as seconds and the session path carries its refresh policy."""
    m = load_path_map(BUNDLED_PATHS)
    cc = m.get("workload-client-credentials")
    te = m.get("workload-token-exchange")
    login = m.get("federated-login")
    assert cc is not None
    assert te is not None
    assert login is not None
    assert (cc.max_ttl, cc.binding, cc.grant) == (600, "none", Grant.CLIENT_CREDENTIALS)
    assert te.max_delegation_depth == 2
    assert login.refresh is not None
    assert (login.refresh.absolute_lifetime, login.refresh.idle_timeout) == (12 * 3600, 3600)
    assert m.max_lifetime() == 12 * 3600


def test_example_map_is_the_bundled_map() -> None:
    """examples/paths.yaml is a copy of the bundled map, so the docs show what runs."""
    assert EXAMPLE.read_text(encoding="utf-8") == BUNDLED_PATHS.read_text(encoding="utf-8")


def test_minimal_map_loads(tmp_path: Path) -> None:
    """The minimal test map is valid, with its source kept for locations."""
    m = load_path_map(write(tmp_path, MINIMAL))
    assert m.get("cc") is not None
    assert m.source is not None
    assert m.source.where(("paths", 0, "max_ttl")) == f"{tmp_path / 'paths.yaml'}:11:5"


def test_unknown_path_id_is_none() -> None:
    """Looking up an undeclared path id gives None."""
    assert load_path_map(BUNDLED_PATHS).get("no-such-path") is None


def test_match_by_grant_input_and_allowed_ids() -> None:
    """match finds the path for a grant and input among the client's allowed ids."""
    m = load_path_map(BUNDLED_PATHS)
    found = m.match(
        grant=Grant.CLIENT_CREDENTIALS,
        input_kind=CredentialKind.PRIVATE_KEY_JWT,
        allowed=["workload-client-credentials"],
    )
    assert found is not None
    assert found.id == "workload-client-credentials"


@pytest.mark.parametrize(
    ("grant", "kind", "allowed"),
    [
        (Grant.CLIENT_CREDENTIALS, CredentialKind.CLIENT_SECRET, []),
        (
            Grant.CLIENT_CREDENTIALS,
            CredentialKind.UPSTREAM_ASSERTION,
            ["workload-client-credentials"],
        ),
        (Grant.JWT_BEARER, CredentialKind.CLIENT_SECRET, ["workload-client-credentials"]),
    ],
    ids=["not-allowed", "wrong-input", "wrong-grant"],
)
def test_match_refuses_undeclared_issuance(
    grant: Grant, kind: CredentialKind, allowed: list[str]
) -> None:
    """No path matches when the client may not use it, or its grant or input differ."""
    assert load_path_map(BUNDLED_PATHS).match(grant=grant, input_kind=kind, allowed=allowed) is None


def test_grant_types_are_the_rfc_values() -> None:
    """Each grant maps to its RFC grant_type value."""
    assert Grant.CLIENT_CREDENTIALS.grant_type == "client_credentials"
    assert Grant.JWT_BEARER.grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert Grant.TOKEN_EXCHANGE.grant_type == "urn:ietf:params:oauth:grant-type:token-exchange"


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(300, 300), ("300", 300), ("90s", 90), ("5m", 300), ("12h", 43200), ("30d", 2592000)],
)
def test_durations(value: object, seconds: int) -> None:
    """Durations accept plain seconds and s/m/h/d suffixes."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "1y", "-5m", "", "1.5h"])
def test_bad_duration_strings(value: str) -> None:
    """Strings that are not durations are refused with an example of the syntax."""
    with pytest.raises(ValueError, match="is not a duration such as 300"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_boolean_is_not_a_duration(value: bool) -> None:
    """YAML booleans (`yes`, `true`) are refused rather than read as 1 or 0 seconds."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(value)


# --- validation errors with locations --------------------------------------------------------


def test_unknown_key(tmp_path: Path) -> None:
    """An unknown key is named at its own line and column."""
    text = MINIMAL.replace("    max_ttl: 5m\n", "    max_ttl: 5m\n    max_tll: 5m\n")
    msg = load_error(tmp_path, text)
    assert msg == at(tmp_path, 12, 5) + "paths.0.max_tll: unknown key 'max_tll'"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """An unknown top-level key is named at line 1 of its place."""
    msg = load_error(tmp_path, "extra: 1\n" + MINIMAL)
    assert msg.startswith(at(tmp_path, 1, 1) + "extra: unknown key 'extra'")


def test_wrong_type(tmp_path: Path) -> None:
    """A value of the wrong type is reported where the value is."""
    text = MINIMAL.replace("inputs: [client_secret]", "inputs: client_secret")
    msg = load_error(tmp_path, text)
    assert msg.startswith(at(tmp_path, 9, 5) + "paths.0.inputs: ")


def test_unknown_enum_value(tmp_path: Path) -> None:
    """A grant that does not exist is reported at the value."""
    text = MINIMAL.replace("grant: client_credentials", "grant: password")
    msg = load_error(tmp_path, text)
    assert msg.startswith(at(tmp_path, 8, 5) + "paths.0.grant: ")


def test_wrong_type_in_list(tmp_path: Path) -> None:
    """A bad item in a list is reported at that item."""
    text = MINIMAL.replace("inputs: [client_secret]", "inputs: [client_secret, magic]")
    msg = load_error(tmp_path, text)
    assert msg.startswith(at(tmp_path, 9, 29) + "paths.0.inputs.1")


def test_missing_required_key(tmp_path: Path) -> None:
    """A missing key is reported at the mapping that lacks it."""
    text = MINIMAL.replace("    output: access_token\n", "")
    msg = load_error(tmp_path, text)
    assert msg.startswith(at(tmp_path, 6, 5) + "paths.0.output: Field required")


def test_bad_duration(tmp_path: Path) -> None:
    """A duration that does not parse is reported at its value with the syntax."""
    msg = load_error(tmp_path, MINIMAL.replace("max_ttl: 5m", "max_ttl: 5 minutes"))
    assert msg.startswith(at(tmp_path, 11, 5) + "paths.0.max_ttl: ")
    assert "is not a duration such as 300, 90s, 5m, 12h or 30d" in msg


def test_zero_duration(tmp_path: Path) -> None:
    """A zero TTL is refused."""
    msg = load_error(tmp_path, MINIMAL.replace("max_ttl: 5m", "max_ttl: 0s"))
    assert msg.startswith(at(tmp_path, 11, 5) + "paths.0.max_ttl: Input should be greater than 0")


def test_boolean_duration(tmp_path: Path) -> None:
    """`max_ttl: yes` is refused, not read as a one-second TTL."""
    msg = load_error(tmp_path, MINIMAL.replace("max_ttl: 5m", "max_ttl: yes"))
    assert msg.startswith(at(tmp_path, 11, 5) + "paths.0.max_ttl: ")


def test_wrong_version(tmp_path: Path) -> None:
    """A map version this code does not read is refused at the version."""
    msg = load_error(tmp_path, MINIMAL.replace("version: 1", "version: 2"))
    assert msg.startswith(at(tmp_path, 1, 1) + "version: ")


def test_bad_identifier(tmp_path: Path) -> None:
    """A path id outside the identifier syntax is refused."""
    msg = load_error(tmp_path, MINIMAL.replace("  - id: cc", "  - id: Client Creds"))
    assert msg.startswith(at(tmp_path, 6, 5) + "paths.0.id: ")


def test_duplicate_path_id(tmp_path: Path) -> None:
    """A second path with the same id is reported at its id."""
    second = MINIMAL.split("paths:\n", 1)[1]
    msg = load_error(tmp_path, MINIMAL + second)
    assert msg == at(tmp_path, 17, 5) + "duplicate path id 'cc'"


def test_duplicate_team_id(tmp_path: Path) -> None:
    """A second team with the same id is reported at its id."""
    msg = load_error(tmp_path, MINIMAL.replace("  - id: soc", "  - id: iam"))
    assert msg.startswith(at(tmp_path, 4, 5) + "duplicate team id 'iam'")


def test_undeclared_owner_team(tmp_path: Path) -> None:
    """An owner that is not a declared team is named with the function it owns."""
    msg = load_error(tmp_path, MINIMAL.replace("detection: soc", "detection: noc"))
    assert msg == (
        at(tmp_path, 16, 7)
        + "path 'cc' names undeclared team 'noc' as owner of detection and response"
    )


def test_refresh_on_non_session_path(tmp_path: Path) -> None:
    """Only a session path may declare refresh; the error points at `refresh`."""
    text = MINIMAL.replace(
        "    max_ttl: 5m\n", "    max_ttl: 5m\n    refresh:\n      absolute_lifetime: 1h\n"
    )
    msg = load_error(tmp_path, text)
    assert msg == (
        at(tmp_path, 12, 5) + "path 'cc': only a path whose output is a session may declare refresh"
    )


def test_refresh_on_session_path(tmp_path: Path) -> None:
    """A session path may declare refresh, and it counts towards the longest lifetime."""
    text = MINIMAL.replace("output: access_token", "output: session").replace(
        "    max_ttl: 5m\n", "    max_ttl: 5m\n    refresh:\n      absolute_lifetime: 1d\n"
    )
    assert load_path_map(write(tmp_path, text)).max_lifetime() == 86400


def test_token_exchange_needs_delegation_depth(tmp_path: Path) -> None:
    """A token-exchange path without max_delegation_depth is refused at the path."""
    text = MINIMAL.replace("grant: client_credentials", "grant: token_exchange").replace(
        "[client_secret]", "[access_token]"
    )
    msg = load_error(tmp_path, text)
    assert (
        msg
        == at(tmp_path, 6, 5) + "path 'cc': a token-exchange path must bound max_delegation_depth"
    )


def test_delegation_depth_bounds(tmp_path: Path) -> None:
    """max_delegation_depth outside 1..16 is refused."""
    text = MINIMAL.replace("    max_ttl: 5m\n", "    max_ttl: 5m\n    max_delegation_depth: 17\n")
    assert load_error(tmp_path, text).startswith(
        at(tmp_path, 12, 5) + "paths.0.max_delegation_depth"
    )


def test_every_problem_is_reported(tmp_path: Path) -> None:
    """Consistency problems are all reported together, one a line."""
    text = MINIMAL.replace("detection: soc", "detection: noc").replace(
        "recovery: iam", "recovery: help"
    )
    lines = load_error(tmp_path, text).splitlines()
    assert len(lines) == 2
    assert "'help' as owner of recovery and support" in lines[0]
    assert "'noc' as owner of detection and response" in lines[1]


def test_empty_lists(tmp_path: Path) -> None:
    """A map with no teams or no paths is refused."""
    msg = load_error(tmp_path, "version: 1\nteams: []\npaths: []\n")
    assert msg.splitlines() == [
        at(tmp_path, 2, 1) + "teams: List should have at least 1 item after validation, not 0",
        at(tmp_path, 3, 1) + "paths: List should have at least 1 item after validation, not 0",
    ]


def test_document_not_a_mapping(tmp_path: Path) -> None:
    """A document that is a list is refused at its start."""
    msg = load_error(tmp_path, "- version: 1\n")
    assert msg.startswith(at(tmp_path, 1, 1))


# --- YAML-level errors -------------------------------------------------------------------


def test_malformed_yaml(tmp_path: Path) -> None:
    """Broken YAML is reported with its line and column."""
    msg = load_error(tmp_path, "version: 1\nteams: [iam\npaths: x\n")
    assert re.match(re.escape(str(tmp_path / "paths.yaml")) + r":\d+:\d+: malformed YAML: ", msg)


def test_bad_indentation(tmp_path: Path) -> None:
    """Mis-indented YAML is reported at the offending line."""
    msg = load_error(tmp_path, "version: 1\n teams: x\n")
    assert msg.startswith(at(tmp_path, 2, 7) + "malformed YAML: ")


def test_several_documents(tmp_path: Path) -> None:
    """A file with two YAML documents is refused."""
    msg = load_error(tmp_path, MINIMAL + "---\n" + MINIMAL)
    assert "malformed YAML" in msg


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    """An empty file (or one of only comments) is refused as empty."""
    assert load_error(tmp_path, text) == at(tmp_path, 1, 1) + "the document is empty"


def test_null_document(tmp_path: Path) -> None:
    """A document that is just null is refused."""
    assert load_error(tmp_path, "~\n").startswith(at(tmp_path, 1, 1))


def test_non_string_key(tmp_path: Path) -> None:
    """A mapping key that is a number is refused at the key."""
    msg = load_error(tmp_path, MINIMAL.replace("    max_ttl: 5m\n", "    max_ttl: 5m\n    42: x\n"))
    assert msg == at(tmp_path, 12, 5) + "keys must be strings"


def test_complex_key(tmp_path: Path) -> None:
    """A mapping key that is a list is refused at the key."""
    msg = load_error(tmp_path, "? [a, b]\n: c\n")
    assert msg == at(tmp_path, 1, 3) + "keys must be plain strings"


def test_duplicate_key(tmp_path: Path) -> None:
    """A key given twice in one mapping is refused at its second occurrence."""
    text = MINIMAL.replace("    max_ttl: 5m\n", "    max_ttl: 5m\n    max_ttl: 1d\n")
    assert load_error(tmp_path, text) == at(tmp_path, 12, 5) + "duplicate key 'max_ttl'"


def test_merge_key(tmp_path: Path) -> None:
    """A YAML merge key (`<<`) is a clear error, not a crash."""
    text = MINIMAL.replace("    max_ttl: 5m\n", "    max_ttl: 5m\n    <<: {a: 1}\n")
    msg = load_error(tmp_path, text)
    assert msg.startswith(at(tmp_path, 12, 5) + "bad value: ")


def test_python_tag_is_not_constructed(tmp_path: Path) -> None:
    """A Python object tag is refused by the safe loader, at the value."""
    text = MINIMAL.replace("max_ttl: 5m", "max_ttl: !!python/name:os.getpid x")
    msg = load_error(tmp_path, text)
    assert msg.startswith(at(tmp_path, 11, 14) + "bad value: could not determine a constructor")


@pytest.mark.parametrize("tag", ["int", "float", "bool", "timestamp"])
def test_value_its_tag_cannot_read(tmp_path: Path, tag: str) -> None:
    """A scalar its explicit tag cannot construct is a clear error at the value, not a crash."""
    msg = load_error(tmp_path, f"version: !!{tag} not-a-{tag}\n")
    assert msg == at(tmp_path, 1, 10) + f"bad value: not a valid tag:yaml.org,2002:{tag}"


def test_alias_bomb(tmp_path: Path) -> None:
    """A "billion laughs" document stops at the value budget with a clear error."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    msg = load_error(tmp_path, "\n".join(lines) + "\n")
    assert f"expands to more than {MAX_VALUES} values (alias bomb?)" in msg
    assert msg.startswith(str(tmp_path / "paths.yaml") + ":")


def test_aliases_within_budget_are_expanded(tmp_path: Path) -> None:
    """Ordinary anchors and aliases are expanded like their targets."""
    text = MINIMAL.replace("  - id: iam\n", "  - id: &team iam\n").replace(
        "authentication: iam", "authentication: *team"
    )
    m = load_path_map(write(tmp_path, text))
    cc = m.get("cc")
    assert cc is not None
    assert cc.owners.authentication == "iam"


def test_recursive_alias(tmp_path: Path) -> None:
    """A self-referencing alias is refused as too deep instead of looping."""
    msg = load_error(tmp_path, "a: &x [*x]\n")
    assert msg == at(tmp_path, 1, 4) + f"nesting deeper than {MAX_DEPTH}"


def test_deep_nesting(tmp_path: Path) -> None:
    """Nesting beyond the depth limit is refused."""
    depth = MAX_DEPTH + 5
    msg = load_error(tmp_path, "a: " + "[" * depth + "]" * depth + "\n")
    assert f"nesting deeper than {MAX_DEPTH}" in msg


def test_nesting_beyond_the_parser_stack(tmp_path: Path) -> None:
    """Nesting deep enough to exhaust PyYAML's recursion is a PathMapError, not a crash."""
    msg = load_error(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert msg == f"{tmp_path / 'paths.yaml'}: nesting deeper than {MAX_DEPTH}"


def test_file_over_size_limit(tmp_path: Path) -> None:
    """A file above the size limit is refused before it is parsed."""
    path = tmp_path / "paths.yaml"
    with path.open("wb") as fh:
        fh.write(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(PathMapError, match=f"file is {MAX_FILE_BYTES + 1} bytes; the limit is"):
        load_path_map(path)


def test_file_at_size_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file exactly at the size limit is parsed."""
    monkeypatch.setattr(yamlsource, "MAX_FILE_BYTES", len(MINIMAL.encode()))
    assert load_path_map(write(tmp_path, MINIMAL)).get("cc") is not None


def test_missing_file(tmp_path: Path) -> None:
    """A map file that does not exist is a PathMapError naming it."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PathMapError, match=r"nope\.yaml: cannot read"):
        load_path_map(missing)


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is refused."""
    path = tmp_path / "paths.yaml"
    path.write_bytes(b"version: 1\nteams: \xff\xfe\n")
    with pytest.raises(PathMapError, match="not UTF-8 text"):
        load_path_map(path)


def test_parse_yaml_default_name() -> None:
    """Text parsed without a file name is reported as <paths>."""
    with pytest.raises(PathMapError, match=r"^<paths>:1:1: the document is empty$"):
        parse_yaml("")


# --- composition root -------------------------------------------------------------------------


def test_build_services_with_bad_map(tmp_path: Path) -> None:
    """Starting tokentrail with an invalid map fails with the map's PathMapError."""
    bad = write(tmp_path, MINIMAL.replace("detection: soc", "detection: noc"))
    settings = Settings(data_dir=tmp_path / "data", paths_file=bad)
    with pytest.raises(PathMapError, match="undeclared team 'noc'"):
        build_services(settings)


def test_build_services_with_custom_map(tmp_path: Path) -> None:
    """A valid custom map is the one the services enforce."""
    settings = Settings(data_dir=tmp_path / "data", paths_file=write(tmp_path, MINIMAL))
    services = build_services(settings)
    try:
        assert [p.id for p in services.paths.paths] == ["cc"]
    finally:
        services.close()
