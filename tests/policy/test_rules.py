"""Analyzer rules: each fires on the map that breaks it, with its metadata and mappings."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from tests.policy.maps import EXCHANGE, HUMAN_SESSION, RECOVERY, Mutation, clean, report, rule_ids
from tokentrail.policy import frameworks
from tokentrail.policy.rules import RULES, Severity, find_rule

STANDARDS = Path(__file__).resolve().parents[3] / "shared" / "STANDARDS.md"


def _path(data: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return data["paths"][i]  # type: ignore[no-any-return]


def _put(data: dict[str, Any], path: dict[str, Any]) -> None:
    """Replace the path with the same id, or append it."""
    ids = [p["id"] for p in data["paths"]]
    if path["id"] in ids:
        data["paths"][ids.index(path["id"])] = path
    else:
        data["paths"].append(path)


def _session(**changes: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        p = copy.deepcopy(HUMAN_SESSION)
        for key, value in changes.items():
            if value is None:
                p.pop(key, None)
            else:
                p[key] = value
        _put(data, p)

    return mutate


def _recovery(**changes: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        p = copy.deepcopy(RECOVERY)
        p["recovery"].update(changes)
        _put(data, p)

    return mutate


def _exchange(**changes: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        p = copy.deepcopy(EXCHANGE)
        for key, value in changes.items():
            if value is None:
                p.pop(key)
            else:
                p[key] = value
        _put(data, p)

    return mutate


def _clients(*clients: dict[str, Any]) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["clients"] = list(clients)

    return mutate


BREAKS: dict[str, Mutation] = {
    "TT-OWN-001": lambda d: _path(d)["owners"].pop("recovery"),
    "TT-OWN-002": lambda d: _path(d).pop("accountable"),
    "TT-TTL-001": lambda d: _path(d).update(max_ttl="2h"),
    "TT-BIND-001": lambda d: _path(d).update(binding="none"),
    "TT-REF-001": _session(assurance_level=None, refresh={"absolute_lifetime": "unlimited"}),
    "TT-REF-002": _session(refresh={"rotation": False}),
    "TT-SES-001": _session(session={"absolute_lifetime": "3d"}),
    "TT-SES-002": _session(assurance_level=None, refresh={"absolute_lifetime": "12h"}),
    "TT-REC-001": _recovery(delivery="support"),
    "TT-REC-002": _recovery(proofing=[]),
    "TT-REC-003": _recovery(approvers={"count": 0}),
    "TT-REC-004": _recovery(notify_subject=False),
    "TT-AUD-001": lambda d: _path(d).update(audit=False),
    "TT-REV-001": lambda d: _path(d).update(revocation_check="none"),
    "TT-XCH-001": _exchange(act=False),
    "TT-CRD-001": lambda d: d["credential_kinds"][0].pop("rotation_period"),
    "TT-CRD-002": lambda d: d["credential_kinds"][0].update(max_age="400d"),
    "TT-CRD-003": _clients(
        {"id": "a", "team": "iam", "credentials": ["svc-key"], "paths": ["svc"]},
        {"id": "b", "team": "iam", "credentials": ["svc-key"], "paths": ["svc"]},
    ),
    "TT-HUM-001": _clients(
        {"id": "console", "team": "iam", "principal": "human", "paths": ["svc"]}
    ),
    "TT-SCP-001": lambda d: _path(d).update(scopes=["admin:*"]),
    "TT-SCP-002": lambda d: _path(d).pop("audiences"),
    "TT-DET-001": lambda d: _path(d).pop("detection"),
    "TT-WIN-001": lambda d: d["credential_kinds"][0].update(rotation_period=None, max_age=None),
}


def test_clean_map_has_no_findings(tmp_path: Path) -> None:
    """The reference map of these tests breaks no rule."""
    data = clean(HUMAN_SESSION, RECOVERY, EXCHANGE)
    assert report(tmp_path, data).findings == []


def test_every_rule_has_a_breaking_map() -> None:
    """Each rule id appears in the table of maps that break it."""
    assert set(BREAKS) == {r.id for r in RULES}


@pytest.mark.parametrize("rule_id", sorted(BREAKS))
def test_rule_fires_on_the_map_that_breaks_it(tmp_path: Path, rule_id: str) -> None:
    """Breaking the clean map in one way makes that rule report a finding."""
    data = clean(HUMAN_SESSION, RECOVERY, EXCHANGE)
    BREAKS[rule_id](data)
    assert rule_id in rule_ids(report(tmp_path, data))


def test_finding_points_at_the_offending_key(tmp_path: Path) -> None:
    """A finding's location is the line and column of the key that breaks the rule."""
    data = clean()
    data["paths"][0]["audit"] = False
    r = report(tmp_path, data)
    (f,) = [f for f in r.findings if f.rule.id == "TT-AUD-001"]
    text = (tmp_path / "paths.yaml").read_text().splitlines()
    mark = r.map.mark(f.loc)
    assert text[mark.line - 1][mark.column - 1 :].startswith("audit: false")


def test_human_findings_leave_out_owasp_nhi(tmp_path: Path) -> None:
    """A finding about a human path maps to no OWASP NHI item (NHI covers workloads)."""
    data = clean()
    _session(binding="none")(data)
    r = report(tmp_path, data)
    (f,) = [f for f in r.findings if f.rule.id == "TT-BIND-001"]
    assert f.rule.mappings(nhi=f.nhi)["owasp_nhi"] == []
    assert f.rule.mappings()["owasp_nhi"] == ["NHI2:2025"]


def test_admin_key_input_is_direct_minting(tmp_path: Path) -> None:
    """Any path taking an admin key mints for someone else: TT-REC-001."""
    data = clean()
    _path(data)["inputs"] = ["admin_key"]
    r = report(tmp_path, data)
    assert any(f.rule.id == "TT-REC-001" and "admin_key" in f.message for f in r.findings)


def test_recovery_path_with_other_inputs(tmp_path: Path) -> None:
    """A recovery path taking anything but a recovery grant is direct minting."""
    data = clean()
    _recovery()(data)
    data["paths"][-1]["inputs"] = ["upstream_assertion"]
    assert "TT-REC-001" in rule_ids(report(tmp_path, data))


def test_self_approval_is_a_finding(tmp_path: Path) -> None:
    """Recovery that lets the requester approve is TT-REC-003."""
    data = clean()
    _recovery(approvers={"count": 1, "distinct_from_requester": False})(data)
    assert "TT-REC-003" in rule_ids(report(tmp_path, data))


def test_idle_timeout_above_aal3(tmp_path: Path) -> None:
    """An AAL3 session idle for an hour breaks the 15-minute inactivity limit."""
    data = clean()
    _session(assurance_level="AAL3", session={"idle_timeout": "1h"})(data)
    r = report(tmp_path, data)
    assert any("inactivity limit 15m" in f.message for f in r.findings)


def test_missing_idle_timeout_at_aal2(tmp_path: Path) -> None:
    """An AAL2 session that explicitly has no inactivity timeout is a finding."""
    data = clean()
    _session(session={"idle_timeout": None}, refresh={"absolute_lifetime": "12h"})(data)
    r = report(tmp_path, data)
    assert any(f.rule.id == "TT-SES-001" and "no inactivity" in f.message for f in r.findings)


def test_token_lifetime_beyond_revocation_view(tmp_path: Path) -> None:
    """A token outliving the revocation-view bound is non-revocable."""
    data = clean()
    data["policy"] = {"revocation_view_bound": "2m"}
    assert "TT-REV-001" in rule_ids(report(tmp_path, data))


def test_exchange_without_depth_in_analysis(tmp_path: Path) -> None:
    """The analyzer accepts an exchange without depth bound and reports it."""
    data = clean()
    _exchange(max_delegation_depth=None)(data)
    r = report(tmp_path, data)
    assert any(
        f.rule.id == "TT-XCH-001" and "max_delegation_depth" in f.message for f in r.findings
    )


def test_undeclared_static_type_is_unrotated(tmp_path: Path) -> None:
    """A path accepting a secret type no credential kind declares gets TT-CRD-001."""
    data = clean()
    _path(data)["inputs"] = ["private_key_jwt", "client_secret"]
    r = report(tmp_path, data)
    assert any(f.rule.id == "TT-CRD-001" and "client_secret" in f.message for f in r.findings)


def test_rotation_longer_than_max_age(tmp_path: Path) -> None:
    """Rotating less often than the maximum age allows is TT-CRD-002."""
    data = clean()
    data["credential_kinds"][0].update(rotation_period="80d", max_age="60d")
    r = report(tmp_path, data)
    assert any(f.rule.id == "TT-CRD-002" and "rotation_period" in f.message for f in r.findings)


def test_human_credential_on_workload_path(tmp_path: Path) -> None:
    """A human credential kind accepted on a workload path is TT-HUM-001."""
    data = clean()
    data["credential_kinds"].append(
        {"id": "sso", "type": "upstream_assertion", "principal": "human", "max_age": "5m"}
    )
    _path(data)["inputs"] = ["private_key_jwt", "upstream_assertion"]
    assert "TT-HUM-001" in rule_ids(report(tmp_path, data))


def test_client_wildcard_scope(tmp_path: Path) -> None:
    """A client allowed a wildcard scope is TT-SCP-001."""
    data = clean()
    _clients({"id": "c", "team": "iam", "paths": ["svc"], "scopes": ["*"]})(data)
    assert "TT-SCP-001" in rule_ids(report(tmp_path, data))


def test_declared_chain_without_accountable(tmp_path: Path) -> None:
    """A declared chain whose paths answer to different teams has no accountable owner."""
    data = clean(EXCHANGE)
    data["paths"][1]["accountable"] = "soc"
    data["chains"] = [{"id": "c", "steps": ["svc", "exchange"]}]
    r = report(tmp_path, data)
    (f,) = [f for f in r.findings if f.rule.id == "TT-OWN-002" and f.subject == "chain:c"]
    assert "different teams (iam, soc)" in f.message


@pytest.mark.parametrize(
    ("threshold", "fails"),
    [(Severity.CRITICAL, False), (Severity.HIGH, True), (None, False)],
)
def test_fail_threshold(tmp_path: Path, threshold: Severity | None, fails: bool) -> None:
    """A report fails at a threshold when a finding is at or above it."""
    data = clean()
    _path(data)["audit"] = False
    assert report(tmp_path, data).fails(threshold) is fails


# --- rule metadata -----------------------------------------------------------------------


def test_rule_ids_are_stable_and_unique() -> None:
    """Rule ids follow TT-AAA-NNN and ids and names are unique."""
    assert all(re.fullmatch(r"TT-[A-Z]{3,4}-\d{3}", r.id) for r in RULES)
    assert len({r.id for r in RULES}) == len(RULES)
    assert len({r.name for r in RULES}) == len(RULES)


def test_every_rule_is_documented() -> None:
    """Every rule has a title, rationale, remediation and at least one framework mapping."""
    for r in RULES:
        assert r.title
        assert r.rationale
        assert r.remediation
        assert any(r.mappings().values()), r.id


def test_mappings_use_catalogued_identifiers() -> None:
    """Every mapped identifier is in the framework catalog (no CSF 1.1 ids)."""
    for r in RULES:
        assert all(frameworks.is_known("owasp", x) for x in r.owasp), r.id
        assert all(frameworks.is_known("csf", x) for x in r.csf), r.id
        assert all(frameworks.is_known("zta", x) for x in r.zta), r.id
        assert all(frameworks.is_known("sp800_63b", x) for x in r.sp800_63b), r.id
        assert not any(x.startswith("PR.AC") for x in r.csf)


def test_identifier_formats() -> None:
    """Identifiers are written the way STANDARDS.md writes them."""
    r = find_rule("TT-SES-001")
    assert r is not None
    maps = r.mappings()
    assert "SP 800-63B-4 §2.2.3" in maps["sp800_63b"]
    assert maps["sp800_207"] == ["SP 800-207 §2.1 tenet 6"]
    assert all(re.fullmatch(r"NHI\d{1,2}:2025", x) for x in frameworks.OWASP_NHI)
    assert all(re.fullmatch(r"[A-Z]{2}\.[A-Z]{2}-\d{2}", x) for x in frameworks.CSF)


@pytest.mark.skipif(not STANDARDS.exists(), reason="shared/STANDARDS.md is not beside the repo")
def test_catalog_matches_standards_md() -> None:
    """Every catalogued OWASP, CSF and SP 800-63B-4 identifier appears in STANDARDS.md."""
    text = STANDARDS.read_text(encoding="utf-8")
    for ident in [*frameworks.OWASP_NHI, *frameworks.CSF, *frameworks.SP800_63B]:
        assert ident in text, ident
    assert "Improper Offboarding" in text
    assert frameworks.OWASP_NHI["NHI1:2025"] in text


def test_find_rule_by_id_or_name() -> None:
    """Rules are found by id in any case or by name; unknown keys give None."""
    assert find_rule("tt-ref-001") is find_rule("refresh-without-absolute-lifetime")
    assert find_rule("nope") is None
