"""Independent OAuth and DPoP clients (npm: oauth4webapi, dpop) against a real server.

The packages are installed outside the repository by ``.ci/run`` (into
``~/.cache/tokentrail-node``, or ``TOKENTRAIL_NODE_MODULES``); where Node.js or
the packages are missing the test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

NODE_DIR = Path(
    os.environ.get("TOKENTRAIL_NODE_MODULES", Path.home() / ".cache" / "tokentrail-node")
)
SCRIPT = Path(__file__).parent / "node" / "clients.mjs"


def _node_ready() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed"
    for pkg in ("oauth4webapi", "dpop"):
        if not (NODE_DIR / "node_modules" / pkg).is_dir():
            return f"npm package {pkg} is not installed in {NODE_DIR} (.ci/run installs it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(data: Path, *args: str) -> dict[str, str]:
    r = subprocess.run(
        [sys.executable, "-m", "tokentrail", *args, "--data", str(data)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    reason = _node_ready()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "data"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokentrail", "serve", "--data", str(data), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        yield base, data
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def test_oauth4webapi_and_dpop_packages(server: tuple[str, Path], tmp_path: Path) -> None:
    """Metadata, client credentials, introspection, revocation and DPoP all work for them."""
    base, data = server
    _cli(data, "team", "create", "platform-iam")
    bearer = _cli(
        data,
        "client",
        "create",
        "--team",
        "platform-iam",
        "--name",
        "w",
        "--path",
        "workload-client-credentials",
        "--scope",
        "read",
        "--audience",
        "https://api.example",
        "--json",
    )
    bound = _cli(
        data,
        "client",
        "create",
        "--team",
        "platform-iam",
        "--name",
        "d",
        "--path",
        "workload-dpop",
        "--audience",
        "https://api.example",
        "--json",
    )
    work = tmp_path / "node"
    work.mkdir()
    shutil.copy(SCRIPT, work / "clients.mjs")
    (work / "node_modules").symlink_to(NODE_DIR / "node_modules")
    env = {
        **os.environ,
        "ISSUER": base,
        "CLIENT_ID": bearer["client_id"],
        "CLIENT_SECRET": bearer["client_secret"],
        "DPOP_CLIENT_ID": bound["client_id"],
        "DPOP_CLIENT_SECRET": bound["client_secret"],
    }
    r = subprocess.run(
        ["node", "clients.mjs"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["metadata_issuer"] == base
    assert out["bearer_token_type"] == "bearer"
    assert out["introspection_active"] is True
    assert out["introspection_path"] == "workload-client-credentials"
    assert out["after_revocation_active"] is False
    assert out["dpop_token_type"] == "dpop"
    assert out["dpop_cnf_jkt"]
    assert out["protected_status"] == 200
    assert out["dpop_pkg_status"] == 200
    assert out["dpop_pkg_token_type"] == "DPoP"
    assert out["replay_error"] == "invalid_dpop_proof"
