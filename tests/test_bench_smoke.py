"""The benchmark scripts keep working: their in-process parts run at tiny sizes.

No timing is asserted; the full figures come from ``make bench`` (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

from bench import run


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
