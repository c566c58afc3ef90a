"""Key sources: a static JWKS, and the issuer's jwks_uri fetched, cached and refetched on
rotation (RemoteJwks against the real app, in-process and over a socket)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER
from tests.sdk.conftest import AUDIENCE, Minted, mint_bearer
from tokentrail import crypto
from tokentrail.clock import FrozenClock
from tokentrail.sdk import (
    KeysUnavailable,
    PublishedKeys,
    RemoteJwks,
    StaticJwks,
    StaticRevocations,
    UnknownKey,
    Verifier,
)
from tokentrail.services import Services

JWKS_URL = f"{ISSUER}/jwks.json"


class Ticker:
    """A monotonic clock for RemoteJwks that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """``http_get`` through the in-process app (httpx transport), counting calls."""

    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.calls = 0
        self.fail = False

    def __call__(self, url: str, timeout: float) -> bytes:
        self.calls += 1
        if self.fail:
            raise OSError("issuer unreachable")
        r = self.http.get(url)  # the in-process transport needs no timeout
        r.raise_for_status()
        return r.content


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def fetcher(http: TestClient) -> Fetcher:
    return Fetcher(http)


@pytest.fixture
def remote(fetcher: Fetcher, ticker: Ticker) -> RemoteJwks:
    return RemoteJwks(
        JWKS_URL, cache_seconds=300, refetch_interval=30, http_get=fetcher, monotonic=ticker
    )


def _verifier(jwks: Any, clock: FrozenClock) -> Verifier:
    return Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=jwks,
        revocations=StaticRevocations(),
        clock=clock,
    )


class TestPublishedKeys:
    def test_private_keys_refused(self) -> None:
        """A JWKS carrying private key material is refused."""
        key = crypto.generate_signing_key("ES256")
        jwk = {**key.public_jwk(), "d": "secret"}
        with pytest.raises(ValueError, match="private"):
            StaticJwks({"keys": [jwk]})

    def test_unusable_keys_skipped(self) -> None:
        """Keys without kid, for another algorithm or for encryption are ignored."""
        good = crypto.generate_signing_key("EdDSA").public_jwk()
        no_kid = {k: v for k, v in crypto.generate_signing_key("ES256").public_jwk().items()}
        del no_kid["kid"]
        enc = {**crypto.generate_signing_key("ES256").public_jwk(), "use": "enc"}
        keys = PublishedKeys.from_jwks({"keys": [good, no_kid, enc]})
        assert dict(keys.algs) == {good["kid"]: "EdDSA"}


class TestRemoteJwks:
    def test_fetches_once_and_caches(
        self, remote: RemoteJwks, fetcher: Fetcher, bearer: Minted, clock: FrozenClock
    ) -> None:
        """The first verification fetches the JWKS; later ones use the cache."""
        verifier = _verifier(remote, clock)
        for _ in range(3):
            assert verifier.verify(bearer.token)
        assert fetcher.calls == 1
        assert remote.fetches == 1
        assert remote.url == JWKS_URL

    def test_refetches_after_cache_seconds(
        self, remote: RemoteJwks, fetcher: Fetcher, ticker: Ticker, bearer: Minted, clock: Any
    ) -> None:
        """Once cache_seconds have passed, the next verification refetches."""
        verifier = _verifier(remote, clock)
        verifier.verify(bearer.token)
        ticker.now += 301
        verifier.verify(bearer.token)
        assert fetcher.calls == 2

    def test_rotation_refetches_on_unknown_kid(
        self,
        remote: RemoteJwks,
        fetcher: Fetcher,
        http: TestClient,
        bearer: Minted,
        services: Services,
        clock: FrozenClock,
    ) -> None:
        """After the issuer rotates keys, a token with the new kid triggers one refetch."""
        verifier = _verifier(remote, clock)
        verifier.verify(bearer.token)
        services.keys.rotate(publish_for=3600)
        fresh = mint_bearer(http, bearer.client)
        assert verifier.verify(fresh)
        assert verifier.verify(bearer.token)  # the retired key is still published
        assert fetcher.calls == 2

    def test_unknown_kid_refetch_is_rate_limited(
        self,
        remote: RemoteJwks,
        fetcher: Fetcher,
        ticker: Ticker,
        bearer: Minted,
        clock: FrozenClock,
    ) -> None:
        """Tokens naming unknown kids cause at most one refetch per refetch_interval."""
        verifier = _verifier(remote, clock)
        stranger = crypto.generate_signing_key("ES256")
        claims = dict(verifier.verify(bearer.token).claims)
        forged = crypto.TokenSigner(stranger, typ="at+jwt").sign(claims)
        ticker.now += 31
        for _ in range(5):
            with pytest.raises(UnknownKey):
                verifier.verify(forged)
        assert fetcher.calls == 2
        ticker.now += 31
        with pytest.raises(UnknownKey):
            verifier.verify(forged)
        assert fetcher.calls == 3

    def test_unreachable_without_keys(
        self, remote: RemoteJwks, fetcher: Fetcher, ticker: Ticker, bearer: Minted, clock: Any
    ) -> None:
        """With no keys ever fetched, verification fails closed with a 503 error."""
        fetcher.fail = True
        verifier = _verifier(remote, clock)
        with pytest.raises(KeysUnavailable) as caught:
            verifier.verify(bearer.token)
        assert caught.value.status == 503
        with pytest.raises(KeysUnavailable):  # within the interval: no new attempt
            verifier.verify(bearer.token)
        assert fetcher.calls == 1

    def test_unreachable_keeps_last_keys(
        self, remote: RemoteJwks, fetcher: Fetcher, ticker: Ticker, bearer: Minted, clock: Any
    ) -> None:
        """A failed refresh keeps the last good keys in use."""
        verifier = _verifier(remote, clock)
        verifier.verify(bearer.token)
        fetcher.fail = True
        ticker.now += 301
        assert verifier.verify(bearer.token)
        assert verifier.verify(bearer.token)
        assert fetcher.calls == 2

    def test_only_http_urls(self) -> None:
        """A JWKS URL must be http or https."""
        with pytest.raises(ValueError, match="http"):
            RemoteJwks("file:///etc/jwks.json")

    def test_async_fetch_runs_in_a_thread(
        self, remote: RemoteJwks, fetcher: Fetcher, bearer: Minted, clock: FrozenClock
    ) -> None:
        """averify fetches the keys off the event loop, then verifies."""
        verifier = _verifier(remote, clock)
        loop_thread: list[int] = []
        fetch_threads: list[int] = []
        inner: Callable[[str, float], bytes] = fetcher.__call__

        def recording_get(url: str, timeout: float) -> bytes:
            fetch_threads.append(threading.get_ident())
            return inner(url, timeout)

        remote._get = recording_get

        async def main() -> Any:
            loop_thread.append(threading.get_ident())
            return await verifier.averify(bearer.token)

        assert asyncio.run(main())
        assert fetch_threads
        assert fetch_threads[0] != loop_thread[0]

    def test_async_rotation_fetch(
        self,
        remote: RemoteJwks,
        fetcher: Fetcher,
        http: TestClient,
        bearer: Minted,
        services: Services,
        clock: FrozenClock,
    ) -> None:
        """averify also refetches on an unknown kid (rotation) without blocking the loop."""
        verifier = _verifier(remote, clock)
        verifier.verify(bearer.token)
        services.keys.rotate(publish_for=3600)
        fresh = mint_bearer(http, bearer.client)
        assert asyncio.run(verifier.averify(fresh))
        assert fetcher.calls == 2


class _Handler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[bytes], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes) -> str:
        handler = type("Handler", (_Handler,), {"body": body})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/jwks.json"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class TestOverASocket:
    def test_standard_library_client(
        self,
        serve: Callable[[bytes], str],
        http: TestClient,
        bearer: Minted,
        clock: FrozenClock,
    ) -> None:
        """The default client (urllib) fetches the app's JWKS from a real HTTP server."""
        url = serve(http.get("/jwks.json").content)
        assert _verifier(RemoteJwks(url), clock).verify(bearer.token)

    def test_oversized_document(
        self, serve: Callable[[bytes], str], bearer: Minted, clock: FrozenClock
    ) -> None:
        """A JWKS document over 1 MiB is refused."""
        url = serve(b" " * (1 << 20 + 1))
        with pytest.raises(KeysUnavailable):
            _verifier(RemoteJwks(url), clock).verify(bearer.token)
