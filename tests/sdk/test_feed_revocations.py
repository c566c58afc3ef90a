"""FeedRevocations: a verifier's revocation view that follows a real server's feed.

Each test runs a server in a thread (``live``) on SQLite and PostgreSQL; the
view follows it over HTTP like a resource server in another process would.
Waits are generous; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import ISSUER, Factory, LiveServer, Registered
from tokentrail.clock import FrozenClock
from tokentrail.sdk import (
    FeedRevocations,
    Revoked,
    StaleRevocationView,
    StaticJwks,
    VerificationError,
    Verifier,
)
from tokentrail.services import Services, build_services
from tokentrail.web.feed import FEED_SCOPE, feed_audience

WAIT = 60.0
AUDIENCE = "https://api.example"


def eventually(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _feed_client(make: Factory) -> Registered:
    return make.client(scopes=[FEED_SCOPE], audiences=[feed_audience(ISSUER)])


def _mint(url: str, client: Registered, scope: str = "read") -> str:
    r = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client.client_id, client.secret or ""),
        timeout=WAIT,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _verifier(url: str, view: FeedRevocations, clock: FrozenClock) -> Verifier:
    jwks = httpx.get(f"{url}/jwks.json", timeout=WAIT).json()
    return Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=StaticJwks(jwks), revocations=view, clock=clock
    )


def _outcome(verifier: Verifier, token: str) -> type[Exception] | None:
    try:
        verifier.verify(token)
    except VerificationError as exc:
        return type(exc)
    return None


@pytest.fixture
def follower(live: LiveServer, make: Factory) -> Iterator[FeedRevocations]:
    client = _feed_client(make)
    view = FeedRevocations(
        ISSUER, url=live.url, client_id=client.client_id, client_secret=client.secret, bound=WAIT
    )
    yield view
    view.close()


def test_stream_brings_revocations_to_the_verifier(
    live: LiveServer,
    follower: FeedRevocations,
    make: Factory,
    services: Services,
    clock: FrozenClock,
) -> None:
    """A token verifies while its credential is live and is Revoked once the revocation
    arrives on the stream."""
    app = make.client()
    token = _mint(live.url, app)
    assert follower.wait_synced(WAIT)
    verifier = _verifier(live.url, follower, clock)
    assert verifier.verify(token).client_id == app.client_id
    services.admin.revoke(app.credential_id, reason="leaked", actor="test")
    eventually(lambda: _outcome(verifier, token) is Revoked)
    assert follower.seq >= 1
    assert app.credential_id in follower
    assert len(follower) == 1
    assert follower.connected


def test_polling_brings_revocations(live: LiveServer, make: Factory, services: Services) -> None:
    """In poll mode the view catches up with GET /revocations in pages."""
    client = _feed_client(make)
    creds = [make.client().credential_id for _ in range(3)]
    for cred in creds[:2]:
        services.admin.revoke(cred, reason="test", actor="test")
    view = FeedRevocations(
        ISSUER,
        url=live.url + "/",
        client_id=client.client_id,
        client_secret=client.secret,
        mode="poll",
        poll_interval=0.1,
    )
    try:
        assert view.wait_synced(WAIT)
        eventually(lambda: creds[0] in view and creds[1] in view)
        services.admin.revoke(creds[2], reason="test", actor="test")
        eventually(lambda: view.is_revoked(["x", creds[2]]) == creds[2])
        assert view.is_revoked(["x", "y"]) is None
    finally:
        view.close()


def test_feed_cut_fails_closed_and_recovers(
    services: Services, make: Factory, clock: FrozenClock
) -> None:
    """With the node gone the verifier refuses every token once the bound passes, and
    after the node returns it catches up (a revocation made meanwhile included)."""
    settings = services.settings.model_copy(update={"feed_keepalive": 0.3})
    node = build_services(settings, clock=clock)
    live = LiveServer(node).start()
    client = _feed_client(make)
    app = make.client()
    token = _mint(live.url, app)
    view = FeedRevocations(
        ISSUER, url=live.url, client_id=client.client_id, client_secret=client.secret, bound=3.0
    )
    verifier = _verifier(live.url, view, clock)
    try:
        eventually(lambda: _outcome(verifier, token) is None)
        live.stop()
        eventually(lambda: _outcome(verifier, token) is StaleRevocationView)
        assert view.failures >= 1
        services.admin.revoke(app.credential_id, reason="leaked", actor="test")
        live.start()
        eventually(lambda: _outcome(verifier, token) is Revoked)
    finally:
        view.close()
        live.stop()
        node.close()


def test_refused_token_is_fetched_again(live: LiveServer, make: Factory) -> None:
    """A feed token the node refuses (401) is dropped and a new one used."""
    client = _feed_client(make)
    tokens = iter(["not-a-token", _mint(live.url, client, FEED_SCOPE)])
    last: list[str] = []

    def token() -> str:
        last[:] = [next(tokens, last[0] if last else "")]
        return last[0]

    view = FeedRevocations(ISSUER, url=live.url, token=token, max_backoff=0.2)
    try:
        assert view.wait_synced(WAIT)
        assert view.failures >= 1
    finally:
        view.close()


def test_poll_mode_fetches_a_new_token_after_401(live: LiveServer, make: Factory) -> None:
    """In poll mode a refused token is replaced at once."""
    client = _feed_client(make)
    good = _mint(live.url, client, FEED_SCOPE)
    calls = [0]

    def token() -> str:
        calls[0] += 1
        return "not-a-token" if calls[0] == 1 else good

    view = FeedRevocations(ISSUER, url=live.url, token=token, mode="poll", poll_interval=0.1)
    try:
        assert view.wait_synced(WAIT)
    finally:
        view.close()


def test_wrong_client_secret_never_syncs(live: LiveServer, make: Factory) -> None:
    """When the token endpoint refuses the feed client the view stays unsynced (stale)."""
    client = _feed_client(make)
    for mode in ("stream", "poll"):
        view = FeedRevocations(
            ISSUER,
            url=live.url,
            client_id=client.client_id,
            client_secret="wrong",
            mode=mode,  # type: ignore[arg-type]
            max_backoff=0.1,
        )
        try:
            eventually(lambda v=view: v.failures >= 2)  # type: ignore[misc]
            assert view.staleness() == float("inf")
        finally:
            view.close()


def test_unreachable_node_in_poll_mode(make: Factory) -> None:
    """Polling a node that does not answer counts failures and keeps retrying."""
    view = FeedRevocations(
        ISSUER,
        url="http://127.0.0.1:9",
        token=lambda: "t",
        mode="poll",
        max_backoff=0.05,
        timeout=2,
    )
    try:
        eventually(lambda: view.failures >= 2)
        assert not view.connected
    finally:
        view.close()


def test_node_answering_an_error_is_retried(live: LiveServer) -> None:
    """A feed URL that answers another status than 200 or 401 is a failure, retried."""
    view = FeedRevocations(ISSUER, url=live.url + "/nowhere", token=lambda: "t", max_backoff=0.05)
    try:
        eventually(lambda: view.failures >= 2)
    finally:
        view.close()


def test_settings_are_checked() -> None:
    """Unusable settings are refused at construction."""
    with pytest.raises(ValueError, match="mode"):
        FeedRevocations(ISSUER, token=lambda: "t", mode="push", start=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="client_id"):
        FeedRevocations(ISSUER, client_id="c", start=False)
    with pytest.raises(ValueError, match="bound"):
        FeedRevocations(ISSUER, token=lambda: "t", bound=0, start=False)
    with pytest.raises(ValueError, match="http"):
        FeedRevocations("ftp://x", token=lambda: "t", start=False)


def test_metrics_before_the_first_sync() -> None:
    """Before any sync the staleness metric is +Inf and nothing is held."""
    view = FeedRevocations(ISSUER, token=lambda: "t", bound=7, start=False)
    metrics = view.metrics()
    assert metrics["tokentrail_revocation_view_staleness_seconds"] == float("inf")
    assert metrics["tokentrail_revocation_view_bound_seconds"] == 7
    text = view.prometheus()
    assert "tokentrail_revocation_view_staleness_seconds +Inf" in text
    assert "# TYPE tokentrail_revocation_feed_connects_total counter" in text
    assert view.bound == 7
    with view:
        assert not view.connected


def test_feed_entries_are_validated() -> None:
    """An entry without seq, node_id and matters_until is refused."""
    view = FeedRevocations(ISSUER, token=lambda: "t", start=False)
    for bad in (["x"], [{"seq": "1", "node_id": "a", "matters_until": 1.0}], [{"seq": 1}]):
        with pytest.raises(ValueError, match="entry"):
            view._apply(bad)


def test_entries_past_matters_until_are_forgotten() -> None:
    """Entries that already stopped mattering are not kept, and sweeping drops the rest later."""
    now = [1000.0]
    view = FeedRevocations(ISSUER, token=lambda: "t", start=False, clock=lambda: now[0])
    view._apply(
        [
            {"seq": 1, "node_id": "old", "matters_until": 999.0},
            {"seq": 2, "node_id": "new", "matters_until": 1500},
        ]
    )
    assert "old" not in view
    assert view.seq == 2
    now[0] = 2000.0
    view._comment("keep-alive seq=2 staleness=0.5", time.monotonic())
    assert "new" not in view


def test_keep_alive_comments_confirm_the_view() -> None:
    """Only a well-formed keep-alive for the current seq confirms the view, minus the
    node's own staleness."""
    ticks = [100.0]
    view = FeedRevocations(ISSUER, token=lambda: "t", start=False, monotonic=lambda: ticks[0])
    view._apply([{"seq": 5, "node_id": "a", "matters_until": time.time() + 60}])
    for ignored in ("hello", "", "keep-alive seq=x", "keep-alive seq=4 staleness=0"):
        view._comment(ignored, 100.0)
        assert view.staleness() == float("inf")
    view._comment("keep-alive seq=5 staleness=0.25", 100.0)
    assert view.staleness() == pytest.approx(0.25)
    ticks[0] = 103.0
    assert view.staleness() == pytest.approx(3.25)


def test_https_feeds_use_tls() -> None:
    """An https URL gets a TLS connection (with the given or the default context)."""
    import http.client

    view = FeedRevocations("https://auth.example.com", token=lambda: "t", start=False)
    conn = view._connection(1.0)
    assert isinstance(conn, http.client.HTTPSConnection)


def test_one_view_serves_threads_and_tasks(
    live: LiveServer,
    follower: FeedRevocations,
    make: Factory,
    services: Services,
    clock: FrozenClock,
) -> None:
    """Threads and asyncio tasks verify through one view while revocations stream in;
    each sees a valid token or Revoked, and every one sees Revoked at the end."""
    apps = [make.client() for _ in range(4)]
    tokens = [_mint(live.url, a) for a in apps]
    assert follower.wait_synced(WAIT)
    verifier = _verifier(live.url, follower, clock)
    stop = threading.Event()
    seen: list[type[Exception] | None] = []

    def hammer() -> None:
        while not stop.is_set():
            seen.extend(_outcome(verifier, t) for t in tokens)

    async def tasks() -> list[type[Exception] | None]:
        async def one(t: str) -> type[Exception] | None:
            try:
                await verifier.averify(t)
            except VerificationError as exc:
                return type(exc)
            return None

        return list(await asyncio.gather(*(one(t) for t in tokens)))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        for a in apps:
            services.admin.revoke(a.credential_id, reason="test", actor="test")
        eventually(lambda: all(_outcome(verifier, t) is Revoked for t in tokens))
        assert asyncio.run(tasks()) == [Revoked] * len(tokens)
    finally:
        stop.set()
        for th in threads:
            th.join(WAIT)
    assert set(seen) <= {None, Revoked}
