"""docs/scaling.md's two-node walkthrough runs as written and prints what the page shows.

The shell block between the ``scaling-walkthrough`` marker and the end of its
fence is run with bash in an empty folder, on free ports and a database of its
own (the variables the page lets readers override), and its output is compared
with the block the page prints under ``scaling-walkthrough-output``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import NO_PG, PG_URL
from tests.e2e.conftest import _free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"


def _block(marker: str, lang: str) -> str:
    found = re.search(
        rf"<!-- {marker}(?:[ :][^>]*)? -->\n```{lang}\n(.*?)```", DOC.read_text(), re.S
    )
    assert found is not None, f"no {marker} block in {DOC}"
    return found.group(1)


def test_two_node_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """The documented command sequence (two nodes, one PostgreSQL, a resource server
    following a feed) runs to the end and prints the documented output."""
    if not PG_URL:
        pytest.skip(NO_PG)
    if shutil.which("psql") is None or shutil.which("curl") is None:
        pytest.skip("the walkthrough needs psql and curl")
    server = PG_URL.split("?", 1)[0].rsplit("/", 1)[0]  # the server, without the database
    db = f"tt_walk_{secrets.token_hex(5)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PGURL=server,
        DBNAME=db,
        A=str(_free_port()),
        B=str(_free_port()),
        API=str(_free_port()),
    )
    script = tmp_path / "walkthrough.sh"
    script.write_text(_block("scaling-walkthrough", "sh"))
    try:
        result = subprocess.run(
            ["bash", str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,
        )
    finally:
        admin = sa.create_engine(
            PG_URL.replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.dispose()
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout == _block("scaling-walkthrough-output", "text")
