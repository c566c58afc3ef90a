"""docs/verifier.md's FastAPI resource server runs as written, against the app's real JWKS."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory
from tests.dpop_proofs import new_key, proof
from tests.sdk.conftest import TOKEN_URL
from tokentrail.clock import FrozenClock

DOC = Path(__file__).resolve().parents[2] / "docs" / "verifier.md"
AUDIENCE = "https://billing.example.com"
API = "http://127.0.0.1:9000"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- example: resource_server\.py.*?-->\n```python\n(.*?)```", text, re.S)
    assert found, "docs/verifier.md lost its resource_server.py example"
    return found.group(1)


@pytest.fixture
def jwks_url(http: TestClient) -> Iterator[str]:
    """The app's /jwks.json served over a real socket (the example uses urllib)."""
    body = http.get("/jwks.json").content

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(jwks_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("TOKENTRAIL_ISSUER", ISSUER)
    monkeypatch.setenv("TOKENTRAIL_JWKS_URL", jwks_url)
    monkeypatch.delenv("API_PUBLIC_URL", raising=False)
    namespace: dict[str, Any] = {"__name__": "resource_server"}
    exec(compile(_example(), "resource_server.py", "exec"), namespace)
    with TestClient(namespace["app"], base_url=API) as client:
        yield client


def _token(http: TestClient, make: Factory, clock: FrozenClock, key: Any = None) -> str:
    reg = make.client(
        paths=["workload-dpop" if key else "workload-client-credentials"],
        scopes=["invoices:read"],
        audiences=[AUDIENCE],
    )
    headers = {"DPoP": proof(key, "POST", TOKEN_URL, iat=clock.now())} if key else {}
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(reg.client_id, reg.secret or ""),
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_bearer_token(api: TestClient, http: TestClient, make: Factory, clock: FrozenClock) -> None:
    """The example answers a billing-worker-like bearer token."""
    token = _token(http, make, clock)
    r = api.get("/invoices", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["issued_through"] == "workload-client-credentials"
    assert r.json()["bound_to"] == "none"


def test_dpop_token(api: TestClient, http: TestClient, make: Factory, clock: FrozenClock) -> None:
    """The example answers a DPoP-bound token with its proof."""
    key = new_key()
    token = _token(http, make, clock, key)
    p = proof(key, "GET", f"{API}/invoices", iat=clock.now(), access_token=token)
    r = api.get("/invoices", headers={"Authorization": f"DPoP {token}", "DPoP": p})
    assert r.status_code == 200, r.text
    assert r.json()["bound_to"] == "dpop"


def test_challenge(api: TestClient) -> None:
    """Without a token the example answers 401 with the challenge the doc shows."""
    r = api.get("/invoices")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        'Bearer realm="billing", DPoP algs="ES256 ES384 ES512 EdDSA RS256 PS256"'
    )
    assert r.headers["www-authenticate"] in DOC.read_text(encoding="utf-8")
