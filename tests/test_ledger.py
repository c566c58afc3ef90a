"""The tamper-evident audit ledger: chain, checkpoints, verification, export, query."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import Factory
from tokentrail.audit import GENESIS, chain_hash
from tokentrail.cli import app as cli_app
from tokentrail.ocsf import to_ocsf
from tokentrail.services import Services
from tokentrail.storage import tables as t


def _issue(http: TestClient, make: Factory, n: int = 3) -> Any:
    reg = make.client()
    for _ in range(n):
        r = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(reg.client_id, reg.secret),
        )
        assert r.status_code == 200
    return reg


def _exec(services: Services, stmt: Any) -> None:
    with services.store.engine.begin() as conn:
        conn.execute(stmt)


def _rows(services: Services) -> list[dict[str, Any]]:
    with services.store.read() as tx:
        return list(tx.audit_rows())


class TestChain:
    def test_every_record_links_to_the_previous(
        self, http: TestClient, make: Factory, services: Services
    ) -> None:
        """seq runs 1..n without gaps and each hash covers the previous one."""
        _issue(http, make)
        rows = _rows(services)
        prev = GENESIS
        for i, row in enumerate(rows, start=1):
            assert row["seq"] == i
            assert row["prev_hash"] == prev
            assert row["hash"] == chain_hash(prev, row)
            prev = row["hash"]
        assert services.ledger.verify().ok

    def test_several_records_in_one_transaction(self, services: Services) -> None:
        """Appends inside one transaction chain to each other."""
        with services.store.write() as tx:
            a = tx.append_audit("test.one", at=1.0, actor="t")
            b = tx.append_audit("test.two", at=2.0, actor="t", data={"x": [1, 2.5, "é"]})
        assert b == a + 1
        assert services.ledger.verify().ok


class TestTamper:
    @pytest.fixture
    def filled(self, http: TestClient, make: Factory, services: Services) -> Services:
        _issue(http, make, n=5)
        return services

    def test_modified_record(self, filled: Services) -> None:
        """Editing a record's data is caught at that record."""
        _exec(filled, sa.update(t.audit).where(t.audit.c.seq == 4).values(actor="someone-else"))
        result = filled.ledger.verify()
        assert not result.ok
        assert result.first_bad_seq == 4
        assert "content" in (result.problem or "")

    def test_deleted_record(self, filled: Services) -> None:
        """Deleting a record leaves a gap named by its seq."""
        _exec(filled, sa.delete(t.audit).where(t.audit.c.seq == 3))
        result = filled.ledger.verify()
        assert (result.ok, result.first_bad_seq) == (False, 3)

    def test_inserted_record(self, filled: Services) -> None:
        """A forged record slipped in (renumbering the rest) breaks the link after it."""
        rows = _rows(filled)
        _exec(filled, sa.delete(t.audit).where(t.audit.c.seq >= 3))
        forged = {**rows[1], "seq": 3, "event": "token.issued", "actor": "forger"}
        forged["prev_hash"] = rows[1]["hash"]
        forged["hash"] = chain_hash(rows[1]["hash"], forged)
        _exec(filled, sa.insert(t.audit).values(**forged))
        for r in rows[2:]:
            _exec(filled, sa.insert(t.audit).values(**{**r, "seq": r["seq"] + 1}))
        result = filled.ledger.verify()
        assert (result.ok, result.first_bad_seq) == (False, 4)

    def test_reordered_records(self, filled: Services) -> None:
        """Swapping two records breaks the chain at the first of them."""
        rows = _rows(filled)
        a, b = rows[2], rows[3]
        _exec(filled, sa.delete(t.audit).where(t.audit.c.seq.in_([a["seq"], b["seq"]])))
        _exec(filled, sa.insert(t.audit).values(**{**b, "seq": a["seq"]}))
        _exec(filled, sa.insert(t.audit).values(**{**a, "seq": b["seq"]}))
        result = filled.ledger.verify()
        assert (result.ok, result.first_bad_seq) == (False, a["seq"])

    def test_truncation_after_checkpoint(self, filled: Services) -> None:
        """Cutting the tail is caught against the newest signed checkpoint."""
        cp = filled.ledger.checkpoint()
        assert cp is not None
        _exec(filled, sa.delete(t.audit).where(t.audit.c.seq >= cp.seq - 1))
        result = filled.ledger.verify()
        assert not result.ok
        assert result.first_bad_seq == cp.seq - 1
        assert "truncated" in (result.problem or "")

    def test_full_rewrite_caught_by_checkpoint(self, filled: Services) -> None:
        """Rewriting a record and rehashing everything after it still fails the checkpoint."""
        cp = filled.ledger.checkpoint()
        assert cp is not None
        rows = _rows(filled)
        prev = rows[1]["hash"]
        for r in rows[2:]:
            if r["seq"] == 3:
                r = {**r, "actor": "rewritten"}
            new = {**r, "prev_hash": prev}
            new["hash"] = chain_hash(prev, new)
            _exec(filled, sa.update(t.audit).where(t.audit.c.seq == r["seq"]).values(**new))
            prev = new["hash"]
        result = filled.ledger.verify()
        assert not result.ok
        assert result.first_bad_seq == cp.seq
        assert "checkpoint" in (result.problem or "")

    def test_forged_checkpoint_signature(self, filled: Services) -> None:
        """A checkpoint whose signature does not verify is reported."""
        cp = filled.ledger.checkpoint()
        assert cp is not None
        _exec(
            filled,
            sa.update(t.audit_checkpoints)
            .where(t.audit_checkpoints.c.seq == cp.seq)
            .values(hash="00" * 32),
        )
        result = filled.ledger.verify()
        assert (result.ok, result.first_bad_seq) == (False, cp.seq)
        assert "signature" in (result.problem or "")

    def test_checkpoint_is_idempotent(self, filled: Services) -> None:
        """Without new records there is nothing new to sign."""
        assert filled.ledger.checkpoint() is not None
        assert filled.ledger.checkpoint() is None
        assert len(filled.ledger.checkpoints()) == 1

    def test_verify_from_last_checkpoint(
        self, filled: Services, http: TestClient, make: Factory
    ) -> None:
        """The quick startup check covers what came after the newest checkpoint."""
        filled.ledger.checkpoint()
        _issue(http, make, n=2)
        assert filled.ledger.verify(from_last_checkpoint=True).ok
        _exec(
            filled,
            sa.update(t.audit).where(t.audit.c.seq == _rows(filled)[-1]["seq"]).values(actor="x"),
        )
        assert not filled.ledger.verify(from_last_checkpoint=True).ok


class TestCli:
    def _common(self, s: Services) -> list[str]:
        return ["--data", str(s.settings.data_dir)] + (
            ["--db", s.settings.db_url] if s.settings.db_url else []
        )

    def test_verify_checkpoint_export_query(
        self, http: TestClient, make: Factory, services: Services
    ) -> None:
        """The audit commands work end to end, and verify fails with exit 2 when tampered."""
        reg = _issue(http, make)
        runner = CliRunner()
        common = self._common(services)
        r = runner.invoke(cli_app, ["audit", "checkpoint", *common])
        assert "checkpoint at seq" in r.stdout
        r = runner.invoke(cli_app, ["audit", "verify", *common])
        assert r.exit_code == 0, r.output
        assert "ledger intact" in r.stdout
        r = runner.invoke(cli_app, ["audit", "checkpoints", *common])
        doc = json.loads(r.stdout)
        assert doc["checkpoints"]
        assert doc["keys"]["keys"]
        r = runner.invoke(
            cli_app, ["audit", "query", "--credential", reg.credential_id, "--json", *common]
        )
        events = [x["event"] for x in json.loads(r.stdout)]
        assert events == ["credential.issued", "token.issued", "token.issued", "token.issued"]
        r = runner.invoke(
            cli_app, ["audit", "query", "--event", "token.", "--client", reg.client_id, *common]
        )
        assert r.stdout.count("token.issued") == 3
        r = runner.invoke(cli_app, ["audit", "export", "--format", "ocsf", *common])
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        assert {x["class_uid"] for x in lines} >= {3002, 3004}
        r = runner.invoke(cli_app, ["audit", "export", "--format", "xml", *common])
        assert r.exit_code == 1
        r = runner.invoke(cli_app, ["audit", "query", "--node", "nope", *common])
        assert r.exit_code == 1
        _exec(services, sa.update(t.audit).where(t.audit.c.seq == 2).values(event="x"))
        r = runner.invoke(cli_app, ["audit", "verify", "--json", *common])
        assert r.exit_code == 2
        assert json.loads(r.stdout)["first_bad_seq"] == 2


class TestOcsf:
    def test_mapping(self) -> None:
        """Issuance is Authentication, a revoked session Logoff, a detection a finding."""
        base = {
            "seq": 7,
            "at": 1.5,
            "actor": "a",
            "hash": "h",
            "prev_hash": "p",
            "node_id": "n",
            "client_id": "c",
            "subject": "s",
            "team_id": "x",
        }
        issued = to_ocsf({**base, "event": "token.issued", "data": {}})
        assert (issued["class_uid"], issued["activity_id"], issued["type_uid"]) == (3002, 3, 300203)
        assert issued["unmapped"]["hash"] == "h"
        assert issued["time"] == 1500
        logoff = to_ocsf({**base, "event": "node.revoked", "data": {"kind": "session"}})
        assert (logoff["class_uid"], logoff["activity_id"]) == (3002, 2)
        finding = to_ocsf({**base, "event": "detection.refresh_reuse", "data": {}})
        assert finding["class_uid"] == 2004
        failed = to_ocsf({**base, "event": "client_auth.failed", "data": {}})
        assert failed["status_id"] == 2

    def test_detection_severity_is_mapped(self) -> None:
        """A detection's severity becomes the OCSF severity_id; without one it is Medium."""
        base = {"seq": 1, "at": 1.0, "actor": "a", "hash": "h", "prev_hash": "p"}
        ids = {
            word: to_ocsf({**base, "event": "detection.x", "data": {"severity": word}})[
                "severity_id"
            ]
            for word in ("low", "medium", "high")
        }
        assert ids == {"low": 2, "medium": 3, "high": 4}
        assert to_ocsf({**base, "event": "incident.opened", "data": {}})["severity_id"] == 3
        assert to_ocsf({**base, "event": "token.issued", "data": {}})["severity_id"] == 1


CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from tokentrail.config import Settings
    from tokentrail.services import build_services
    from tokentrail.model import Node, NodeKind
    s = build_services(Settings(data_dir=sys.argv[1], db_url=sys.argv[2] or None))
    with s.store.write() as tx:
        tx.insert_node(Node("at_crash", NodeKind.ACCESS_TOKEN, None, None, None, None, (), (),
                            1.0, None))
        # The state change is written; the process dies before the audit record and commit.
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_crash_between_state_change_and_audit_leaves_neither(services: Services) -> None:
    """A process killed mid-transaction leaves no node without its audit record."""
    before = len(_rows(services))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASH,
            str(services.settings.data_dir),
            services.settings.db_url or "",
        ],
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGKILL
    with services.store.read() as tx:
        assert tx.get_node("at_crash") is None
    assert len(_rows(services)) == before
    assert services.ledger.verify().ok
    assert os.path.exists(services.settings.data_dir)


def test_serve_refuses_a_broken_ledger(http: TestClient, make: Factory, services: Services) -> None:
    """`serve` exits with a clear message on a broken chain unless told to go on."""
    _issue(http, make)
    _exec(services, sa.update(t.audit).where(t.audit.c.seq == 2).values(actor="x"))
    args = [
        sys.executable,
        "-m",
        "tokentrail",
        "serve",
        "--data",
        str(services.settings.data_dir),
        "--port",
        "1",
    ]
    if services.settings.db_url:
        args += ["--db", services.settings.db_url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "audit ledger is broken at seq 2" in proc.stderr
    assert "Traceback" not in proc.stderr
