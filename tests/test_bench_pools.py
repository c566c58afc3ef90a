"""The benchmark harness's single-use pools: proofs and assertions verify, and wrk
(bench/wrk/post.lua) or the Python fallback spends each pool item at most once.

No timing is asserted; the figures come from ``make bench`` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import pytest
from bench.harness import Context, Options
from bench.loadgen import LoadGenerator, PythonLoad, Spend, Wrk, chunks
from bench.pools import Upstream, dpop_proofs, evenly
from bench.rounds import op_table
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet


def test_dpop_proofs_verify_and_are_unique() -> None:
    proofs = dpop_proofs("http://127.0.0.1:1/oauth/token", 50)
    jtis = set()
    for proof in proofs:
        header = jws.extract_compact(proof.encode()).headers()
        key = ECKey.import_key(header["jwk"])
        obj = jws.deserialize_compact(proof, key, algorithms=["ES256"])
        claims = json.loads(obj.payload)
        assert header["typ"] == "dpop+jwt"
        assert claims["htm"] == "POST"
        assert claims["htu"] == "http://127.0.0.1:1/oauth/token"
        jtis.add(claims["jti"])
    assert len(jtis) == 50


def test_upstream_assertions_verify_against_its_jwks() -> None:
    upstream = Upstream()
    keys = KeySet.import_key_set(upstream.jwks())
    tokens = upstream.assertions(5, subjects=2)
    subjects = {jwt.decode(t, keys, algorithms=["ES256"]).claims["sub"] for t in tokens}
    assert len(subjects) == 2


def test_evenly_keeps_first_and_last() -> None:
    items = [str(i) for i in range(100)]
    picked = evenly(items, 5)
    assert picked[0] == "0"
    assert picked[-1] == "99"
    assert len(picked) == 5
    assert evenly(items[:3], 5) == ["0", "1", "2"]


class _Echo(BaseHTTPRequestHandler):
    """Answers every POST with the token it got, once; a second use of one is a 400."""

    seen: ClassVar[set[str]] = set()
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        token = parse_qs(self.rfile.read(length).decode()).get("token", [""])[0]
        token = self.headers.get("X-Item", token)
        with self.lock:
            fresh = token not in self.seen
            self.seen.add(token)
        body = json.dumps({"access_token": f"issued-{token}", "fresh": fresh}).encode()
        try:
            self.send_response(200 if fresh else 400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # wrk closes its connections at the end of a run, mid-answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    _Echo.seen = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


def _generators() -> list[LoadGenerator]:
    found = shutil.which("wrk")
    return [PythonLoad(), *([Wrk(found)] if found else [])]


@pytest.mark.parametrize("gen", _generators(), ids=lambda g: g.name.split()[0])
@pytest.mark.parametrize("header", [None, "X-Item"])
def test_pool_items_are_spent_once(
    gen: LoadGenerator, header: str | None, echo: str, tmp_path: Path
) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("".join(f"item{i}\n" for i in range(100_000)))
    result = gen.run(
        echo,
        body="token={item}",
        authorization="",
        expect='"fresh": true',
        duration=1,
        connections=4,
        threads=1,
        spend=Spend(pool=pool, header=header),
    )
    assert result.ok > 0
    assert result.bad == 0  # no item was sent twice
    assert not result.exhausted
    assert result.used >= result.requests


@pytest.mark.parametrize("gen", _generators(), ids=lambda g: g.name.split()[0])
def test_a_short_pool_runs_out_without_resending(
    gen: LoadGenerator, echo: str, tmp_path: Path
) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("".join(f"item{i}\n" for i in range(20)))
    result = gen.run(
        echo,
        body="token={item}",
        authorization="",
        expect='"fresh": true',
        duration=1,
        connections=2,
        threads=1,
        spend=Spend(pool=pool),
    )
    assert result.exhausted
    assert result.bad == 0


@pytest.mark.parametrize("loadgen", ["python", *(["wrk"] if shutil.which("wrk") else [])])
def test_chunks_collect_a_field_until_the_count(loadgen: str, echo: str, tmp_path: Path) -> None:
    ctx = Context(Options.full(connections=4, loadgen=loadgen, install=False), tmp_path)
    counter = iter(range(10**9))

    def make(n: int) -> list[str]:
        return [f"a{next(counter)}" for _ in range(n)]

    values = [
        v
        for _result, vs in chunks(
            ctx,
            echo,
            body="token={item}",
            authorization="",
            expect='"fresh": true',
            count=300,
            field="access_token",
            make=make,
            seconds=2,
        )
        for v in vs
    ]
    assert len(values) >= 300
    assert len(set(values)) == len(values)
    assert all(v.startswith("issued-a") for v in values)


def test_op_table_reports_ratios_and_failures() -> None:
    from bench.loadgen import LoadResult

    def res(rps: float) -> LoadResult:
        return LoadResult("wrk", int(rps), 1.0, int(rps), 0, 0, 0.01, 0.02, 0.05, 0.06)

    text = op_table(
        {"a": [res(100), res(200)], "peer": [res(200), res(200)]},
        {"a": "peer"},
        {"b": "round 1: stalled | no responses"},
    )
    assert "| a | 150 |" in text
    assert "0.75 of peer (0.50 - 1.00)" in text
    assert "| b | failed |" in text
    assert "stalled / no responses" in text
