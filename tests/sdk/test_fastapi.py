"""The FastAPI dependency in a small FastAPI resource server, driven by TestClient.

No ``from __future__ import annotations`` here: FastAPI reads the dependencies from
the route signatures, and ``read``/``write`` are local to ``_app``.
"""

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from tests.sdk.conftest import Minted
from tokentrail.clock import FrozenClock
from tokentrail.sdk import TokenAuthMiddleware, VerifiedToken, Verifier
from tokentrail.sdk.fastapi import RequireToken

API = "https://api.example"


def _app(verifier: Verifier, *, middleware: bool = False) -> FastAPI:
    app = FastAPI()
    read = RequireToken(verifier, scopes=["read"])
    write = RequireToken(verifier, scopes=["write"])

    @app.get("/items")
    async def items(token: Annotated[VerifiedToken, Depends(read)]) -> dict[str, Any]:
        return {"client_id": token.client_id, "scope": sorted(token.scope)}

    @app.post("/items")
    async def create(token: Annotated[VerifiedToken, Depends(write)]) -> dict[str, Any]:
        return {"created_by": token.client_id}

    @app.get("/both")
    async def both(
        a: Annotated[VerifiedToken, Depends(read)],
        b: Annotated[VerifiedToken, Depends(RequireToken(verifier))],
    ) -> dict[str, Any]:
        return {"same": a is b}

    if middleware:
        app.add_middleware(TokenAuthMiddleware, verifier=verifier)
    return app


@pytest.fixture
def api(verifier: Verifier) -> Iterator[TestClient]:
    with TestClient(_app(verifier), base_url=API) as client:
        yield client


def test_bearer_token(api: TestClient, bearer: Minted) -> None:
    """A valid token with the required scope reaches the route."""
    r = api.get("/items", headers={"Authorization": f"Bearer {bearer.token}"})
    assert r.status_code == 200
    assert r.json() == {"client_id": bearer.client.client_id, "scope": ["read"]}


def test_dpop_token(api: TestClient, bound: Minted, clock: FrozenClock) -> None:
    """A DPoP-bound token with its proof is accepted."""
    headers = {"Authorization": f"DPoP {bound.token}", "DPoP": bound.proof(clock)}
    assert api.get("/items", headers=headers).status_code == 200


def test_insufficient_scope(api: TestClient, bearer: Minted) -> None:
    """A token without the route's scope gets 403 insufficient_scope naming the scope."""
    r = api.post("/items", headers={"Authorization": f"Bearer {bearer.token}"})
    assert r.status_code == 403
    assert r.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="requires scope write", scope="write"'
    )
    assert r.json()["detail"]["error"] == "insufficient_scope"


def test_no_token(api: TestClient) -> None:
    """Without a token: 401 with both challenges."""
    r = api.get("/items")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="api", DPoP algs=')


def test_bound_token_as_bearer(api: TestClient, bound: Minted, clock: FrozenClock) -> None:
    """A DPoP-bound token presented as Bearer is refused."""
    r = api.get("/items", headers={"Authorization": f"Bearer {bound.token}"})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("DPoP ")


def test_two_dependencies_verify_once(api: TestClient, bound: Minted, clock: FrozenClock) -> None:
    """Two dependencies on one route share one verification (a proof is single-use)."""
    headers = {
        "Authorization": f"DPoP {bound.token}",
        "DPoP": bound.proof(clock, url=f"{API}/both"),
    }
    r = api.get("/both", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"same": True}


def test_behind_the_middleware(verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
    """Under TokenAuthMiddleware the dependency takes the token it verified."""
    with TestClient(_app(verifier, middleware=True), base_url=API) as client:
        headers = {"Authorization": f"DPoP {bound.token}", "DPoP": bound.proof(clock)}
        assert client.get("/items", headers=headers).status_code == 200


def test_lazy_export() -> None:
    """RequireToken is importable from tokentrail.sdk; unknown names are not."""
    import tokentrail.sdk as sdk

    assert sdk.RequireToken is RequireToken
    with pytest.raises(AttributeError):
        _ = sdk.NoSuchThing
