"""The benchmark scripts keep working: their in-process parts run at tiny sizes.

No timing is asserted; the full figures come from ``make bench`` (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import ab, run


def test_in_process_benchmarks_rewrite_only_their_section(tmp_path: Path) -> None:
    """A tiny in-process run replaces its generated section and keeps the hand-written rest."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\nHand-written intro.\n\n"
        "<!-- generated:issue-2 -->\nSTALE FIGURES\n<!-- /generated:issue-2 -->\n\n"
        "## Notes\n\nHand-written notes.\n",
        encoding="utf-8",
    )
    code = run.main(
        [
            "--quick",
            "--only",
            "verification",
            "--only",
            "revocation",
            "--rounds",
            "1",
            "--round-seconds",
            "0.01",
            "--sizes",
            "10,100",
            "--trials",
            "2",
            "--no-progress",
            "--workdir",
            str(tmp_path / "work"),
            "--output",
            str(doc),
        ]
    )
    text = doc.read_text(encoding="utf-8")
    assert code == 0
    assert "STALE FIGURES" not in text
    assert "Hand-written intro." in text
    assert "Hand-written notes." in text
    for block in ("machine", "verification", "revocation"):
        assert f"<!-- block:{block} -->" in text
    assert "| 100 |" in text  # the larger tree's row in the revocation table
    assert "tokentrail TokenVerifier + lineage check" in text
    assert "tokentrail.sdk Verifier.verify (all its checks) / raw verify:" in text


def test_issue_8_blocks_of_any_id_survive_a_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block that an earlier `bench/ab.py --block ID` wrote is kept when another run
    (peer.py, bench_memory.py, ab.py with another id) rewrites the section."""
    doc = tmp_path / "benchmarks.md"
    monkeypatch.setattr(ab, "DOCS", doc)
    ab.write_section({"cpu": "test"}, "python bench/ab.py", {"session-x": "SESSION X TABLE"})
    ab.write_section({"cpu": "test"}, "python bench/peer.py", {"peer": "PEER TABLE"})
    text = doc.read_text(encoding="utf-8")
    assert "SESSION X TABLE" in text
    assert text.index("PEER TABLE") < text.index("SESSION X TABLE")  # known blocks first
