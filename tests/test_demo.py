"""`tokentrail demo`: the seed article's story, end to end, on a real server."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tokentrail.cli import app as cli_app
from tokentrail.demo import run_demo


def test_demo_tells_the_story(tmp_path: Path) -> None:
    """Everything stolen dies, detections fire, and each report names its owner."""
    lines: list[str] = []
    outcome = run_demo(tmp_path / "data", tmp_path / "out", say=lines.append)
    assert outcome.still_alive == 0
    assert outcome.dead_after_containment == 5
    assert outcome.accountable == {
        "leaked-credential": "platform-iam",
        "recovery-takeover": "identity-ops",
    }
    assert "detection.revoked_token_use" in outcome.detections
    assert len(outcome.reports) == 4
    html = (tmp_path / "out" / "report-recovery-takeover.html").read_text()
    assert "helpdesk-recovery" in html
    assert "<script" not in html
    assert any("intact=True" in line for line in lines)


def test_demo_needs_a_fresh_folder(tmp_path: Path) -> None:
    """The CLI refuses a non-empty data folder with a clear error."""
    (tmp_path / "x").write_text("keep me")
    r = CliRunner().invoke(cli_app, ["demo", "--data", str(tmp_path)])
    assert r.exit_code == 1
    assert "not empty" in r.output
