"""Generated docs stay in sync with the code, and the example maps keep their findings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.policy.maps import EXAMPLES, REPO
from tokentrail.config import BUNDLED_PATHS
from tokentrail.policy.analyze import analyze
from tokentrail.policy.docs import field_reference, main, splice
from tokentrail.policy.paths import load_path_map
from tokentrail.policy.report import rules_markdown
from tokentrail.policy.rules import RULES

STALE = "stale: run `python -m tokentrail.policy.docs` and commit the result"


def findings(path: Path) -> Counter[str]:
    return Counter(f.rule.id for f in analyze(load_path_map(path, analysis=True)).findings)


def test_rules_md_is_generated_from_the_rules() -> None:
    """docs/rules.md is exactly what the rule definitions generate."""
    assert (REPO / "docs" / "rules.md").read_text(encoding="utf-8") == rules_markdown(), STALE


def test_paths_md_field_reference_is_current() -> None:
    """The field reference in docs/paths.md is what the models generate."""
    text = (REPO / "docs" / "paths.md").read_text(encoding="utf-8")
    assert splice(text, field_reference()) == text, STALE


def test_docs_generator_writes_both_files(tmp_path: Path) -> None:
    """The generator rewrites docs/paths.md's reference and docs/rules.md."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "paths.md").write_text(
        "intro\n<!-- BEGIN GENERATED FIELD REFERENCE -->\nold\n"
        "<!-- END GENERATED FIELD REFERENCE -->\ntail\n"
    )
    assert main(["docs", str(tmp_path)]) == 0
    out = (tmp_path / "docs" / "paths.md").read_text()
    assert out.startswith("intro\n")
    assert out.endswith("tail\n")
    assert "| `max_ttl` | duration | required |" in out
    assert (tmp_path / "docs" / "rules.md").read_text() == rules_markdown()


def test_every_rule_has_a_page_in_rules_md() -> None:
    """Each rule has its own section in docs/rules.md."""
    text = rules_markdown()
    for r in RULES:
        assert f"## {r.id} {r.name}" in text


def test_examples_readme_has_a_line_per_map() -> None:
    """examples/README.md describes every example map."""
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLES.glob("*.yaml"):
        assert f"[`{path.name}`]({path.name})" in readme


@pytest.mark.parametrize("name", ["mesh.yaml", "customer-portal.yaml"])
def test_realistic_examples_are_clean(name: str) -> None:
    """The mesh and the customer portal have no findings."""
    assert findings(EXAMPLES / name) == Counter()


def test_ci_cd_example_has_its_documented_risk() -> None:
    """The CI/CD example's only findings are its three documented bearer paths."""
    assert findings(EXAMPLES / "ci-cd.yaml") == Counter({"TT-BIND-001": 3})


def test_bundled_map_findings() -> None:
    """The bundled map has only its documented medium and low findings."""
    found = findings(BUNDLED_PATHS)
    assert set(found) == {"TT-BIND-001", "TT-SCP-002"}
    assert found["TT-BIND-001"] == 4  # incl. helpdesk-recovery (DPoP optional, docs/recovery.md)


def test_weak_example_breaks_every_rule() -> None:
    """The weak example triggers every rule, with its documented counts."""
    found = findings(EXAMPLES / "weak.yaml")
    assert set(found) == {r.id for r in RULES}
    assert found["TT-REC-001"] == 2
    assert found["TT-WIN-001"] == 2
    assert found["TT-HUM-001"] == 3
    assert sum(found.values()) == 40
