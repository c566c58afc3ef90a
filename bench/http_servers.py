"""uvicorn (``tokentrail serve``) against granian running the same app, in interleaved rounds.

    pip install granian   # not a dependency of tokentrail, nor of the bench extra
    python bench/http_servers.py [--rounds 3] [--duration 5]

Both serve a freshly seeded SQLite data folder (bench/server.py) with one
process: uvicorn through ``tokentrail serve``, granian through the app factory
any ASGI server can run (``tokentrail.web.factory:create_app_from_environment``,
one worker, one runtime thread). wrk -t1 -c50 measures client_credentials
issuance and introspection on each, rounds alternating A B, B A. Prints req/s
and p99 per round; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import Clients, free_port, seed, tokentrail_command

FORM = "application/x-www-form-urlencoded"


def start(kind: str) -> tuple[subprocess.Popen[bytes], str, Clients, Path]:
    data = Path(tempfile.mkdtemp(prefix=f"tt-{kind}-"))
    clients = seed(data)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    if kind == "uvicorn":
        cmd = [*tokentrail_command(), "serve", "--data", str(data), "--port", str(port)]
        cmd += ["--host", "127.0.0.1"]
    else:
        granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or "granian"
        env.update(TOKENTRAIL_DATA=str(data), TOKENTRAIL_ISSUER=f"http://127.0.0.1:{port}")
        cmd = [granian, "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--workers", "1", "--runtime-threads", "1", "--no-ws"]
        cmd += ["tokentrail.web.factory:create_app_from_environment"]
    with (data / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url, clients, data
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{kind} did not start: {(data / 'server.log').read_text()[-2000:]}")


def load(url: str, clients: Clients, data: Path, op: str, seconds: float) -> tuple[float, str]:
    issue = "grant_type=client_credentials&scope=read"
    if op == "issuance":
        body, auth, path = issue, clients.worker.basic, "/oauth/token"
    else:
        r = httpx.post(
            f"{url}/oauth/token",
            content=issue.encode(),
            headers={"Authorization": clients.worker.basic, "Content-Type": FORM},
        )
        body = urlencode({"token": r.json()["access_token"]})
        auth, path = clients.gateway.basic, "/oauth/introspect"
    script = data / "post.lua"
    script.write_text(
        f'wrk.method="POST"\nwrk.body={json.dumps(body)}\n'
        f'wrk.headers["Content-Type"]="{FORM}"\nwrk.headers["Authorization"]={json.dumps(auth)}\n'
    )
    cmd = ["wrk", "-t1", "-c50", "-s", str(script), url + path]
    subprocess.run([*cmd, "-d1s"], capture_output=True, check=True)  # warm-up
    out = subprocess.run(
        [*cmd, f"-d{seconds:g}s", "--latency"], capture_output=True, text=True, check=True
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url}{path} answered errors:\n{out}")
    rps = float(
        next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1]
    )
    p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
    return rps, p99


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    for rnd in range(args.rounds):
        for kind in ("uvicorn", "granian") if rnd % 2 == 0 else ("granian", "uvicorn"):
            proc, url, clients, data = start(kind)
            try:
                for op in ("issuance", "introspection"):
                    rps, p99 = load(url, clients, data, op, args.duration)
                    print(f"round {rnd + 1} {kind:8s} {op:13s} {rps:8,.0f} req/s  p99 {p99}")
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
