"""The revocation feed: who may read it, the catch-up answer, and the SSE stream.

The JSON catch-up runs through the in-process test client; the stream needs a
real server (the ``live`` fixture), read here with httpx as any SSE client would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory, LiveServer, Registered
from tokentrail.clock import FrozenClock
from tokentrail.services import Services
from tokentrail.web.feed import FEED_SCOPE, feed_audience

WAIT = 60.0


def feed_client(make: Factory, *, scopes: list[str] | None = None) -> Registered:
    return make.client(
        scopes=[FEED_SCOPE] if scopes is None else scopes,
        audiences=[feed_audience(ISSUER)],
    )


def token_for(http: TestClient | httpx.Client, client: Registered, scope: str = FEED_SCOPE) -> str:
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client.client_id, client.secret or ""),
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def revoke(services: Services, node_id: str) -> int:
    rev = services.admin.revoke(node_id, reason="test", actor="test")
    assert rev is not None
    return rev.seq


# --- who may read it --------------------------------------------------------------------


def test_feed_requires_an_access_token(http: TestClient) -> None:
    """Without a token the catch-up and the stream answer 401 with a Bearer challenge."""
    for path in ("/revocations", "/revocations/feed"):
        r = http.get(path)
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_token"
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_feed_requires_its_scope(http: TestClient, make: Factory) -> None:
    """A token for the feed audience without the feed scope gets 403 insufficient_scope."""
    client = feed_client(make, scopes=["read"])
    token = token_for(http, client, scope="read")
    r = http.get("/revocations", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert r.json()["error"] == "insufficient_scope"
    assert FEED_SCOPE in r.headers["www-authenticate"]


def test_feed_requires_its_audience(http: TestClient, make: Factory) -> None:
    """A token with the feed scope for another audience is refused as invalid_token."""
    client = make.client(scopes=[FEED_SCOPE], audiences=["https://api.example"])
    token = token_for(http, client)
    r = http.get("/revocations", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert "aud" in r.json()["error_description"]


def test_revoked_feed_token_is_refused(http: TestClient, make: Factory, services: Services) -> None:
    """A feed token whose credential was revoked is refused."""
    client = feed_client(make)
    token = token_for(http, client)
    revoke(services, client.credential_id)
    r = http.get("/revocations", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_feed_verifications_are_counted(http: TestClient, make: Factory) -> None:
    """Accepted and refused feed tokens show in the verification counter."""
    token = token_for(http, feed_client(make))
    http.get("/revocations", headers={"Authorization": f"Bearer {token}"})
    http.get("/revocations", headers={"Authorization": "Bearer nope"})
    text = http.get("/metrics").text
    assert 'tokentrail_token_verifications_total{endpoint="feed",result="ok"} 1' in text
    assert 'tokentrail_token_verifications_total{endpoint="feed",result="invalid_token"} 1' in text


# --- catch-up (JSON) ----------------------------------------------------------------------


def test_catch_up_pages_by_sequence(
    http: TestClient, make: Factory, services: Services, clock: FrozenClock
) -> None:
    """GET /revocations answers entries after `since`, `limit` at a time, with next_since,
    more and server_time."""
    token = token_for(http, feed_client(make))
    auth = {"Authorization": f"Bearer {token}"}
    creds = [make.client().credential_id for _ in range(3)]
    seqs = [revoke(services, c) for c in creds]
    r = http.get("/revocations", params={"since": 0, "limit": 2}, headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert [e["node_id"] for e in body["revocations"]] == creds[:2]
    assert body["next_since"] == seqs[1]
    assert body["more"] is True
    assert body["server_time"] == clock.now()
    assert set(body["revocations"][0]) == {"seq", "node_id", "matters_until"}
    rest = http.get("/revocations", params={"since": body["next_since"]}, headers=auth).json()
    assert [e["seq"] for e in rest["revocations"]] == [seqs[2]]
    assert rest["more"] is False
    assert rest["next_since"] == seqs[2]
    assert r.headers["cache-control"] == "no-store"


def test_catch_up_refuses_a_malformed_since(http: TestClient, make: Factory) -> None:
    """A since that is not a non-negative integer is invalid_request."""
    token = token_for(http, feed_client(make))
    r = http.get("/revocations?since=-1", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_stream_refuses_a_malformed_last_event_id(http: TestClient, make: Factory) -> None:
    """A Last-Event-ID that is not a sequence number is invalid_request."""
    token = token_for(http, feed_client(make))
    r = http.get(
        "/revocations/feed",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "abc"},
    )
    assert r.status_code == 400


# --- the stream (SSE) ---------------------------------------------------------------------


class Sse:
    """Reads one SSE response: events as (id, data) and comments, with a deadline."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines: Iterator[str] = response.iter_lines()

    def next_item(self) -> tuple[str, Any]:
        """The next event ("event", (id, data)) or comment ("comment", text)."""
        event_id, data = None, []
        for line in self.lines:
            if line.startswith(":"):
                return "comment", line[1:].strip()
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                return "event", (event_id, json.loads("\n".join(data)))
        return "end", None

    def until(self, kind: str, predicate: Any = lambda _: True) -> Any:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            got, value = self.next_item()
            if got == "end":
                return None
            if got == kind and predicate(value):
                return value
        raise AssertionError(f"no {kind} in time")


@pytest.fixture
def web(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=WAIT) as client:
        yield client


def test_stream_sends_backlog_live_events_and_keep_alives(
    web: httpx.Client, make: Factory, services: Services
) -> None:
    """The stream replays revocations after `since`, vouches with a keep-alive, then
    pushes a new revocation as it commits."""
    token = token_for(web, feed_client(make))
    first = make.client().credential_id
    seq = revoke(services, first)
    with web.stream(
        "GET", "/revocations/feed", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = Sse(response)
        event_id, data = sse.until("event")
        assert (event_id, data["node_id"], data["seq"]) == (str(seq), first, seq)
        keep_alive = sse.until("comment", lambda c: c.startswith("keep-alive"))
        assert f"seq={seq}" in keep_alive
        later = make.client().credential_id
        later_seq = revoke(services, later)
        _, data = sse.until("event")
        assert (data["node_id"], data["seq"]) == (later, later_seq)


def test_stream_resumes_after_last_event_id(
    web: httpx.Client, make: Factory, services: Services
) -> None:
    """A reconnecting subscriber (Last-Event-ID) gets only what it missed."""
    token = token_for(web, feed_client(make))
    seen = revoke(services, make.client().credential_id)
    missed = make.client().credential_id
    revoke(services, missed)
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(seen)}
    with web.stream("GET", "/revocations/feed", headers=headers) as response:
        _, data = Sse(response).until("event")
    assert data["node_id"] == missed


def test_stream_reads_the_table_when_far_behind(
    web: httpx.Client, make: Factory, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber older than the view's memory is served from the table."""
    view = services.revocation_view
    monkeypatch.setattr(view, "entries_after", lambda seq, limit: None)
    token = token_for(web, feed_client(make))
    cred = make.client().credential_id
    revoke(services, cred)
    with web.stream(
        "GET", "/revocations/feed", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        _, data = Sse(response).until("event")
    assert data["node_id"] == cred


def test_stream_ends_when_its_token_is_revoked(
    web: httpx.Client, make: Factory, services: Services
) -> None:
    """Revoking the subscriber's own credential ends its stream after that event."""
    client = feed_client(make)
    token = token_for(web, client)
    with web.stream(
        "GET", "/revocations/feed", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        sse = Sse(response)
        sse.until("comment", lambda c: c.startswith("keep-alive"))
        revoke(services, client.credential_id)
        _, data = sse.until("event")
        assert data["node_id"] == client.credential_id
        assert sse.until("comment", lambda c: "revoked" in c)
        assert sse.until("event") is None  # the server closed the stream


def test_stream_ends_when_its_token_expires(
    web: httpx.Client, make: Factory, services: Services, clock: FrozenClock
) -> None:
    """At the token's expiry the stream says so and ends (the subscriber reconnects)."""
    token = token_for(web, feed_client(make))
    with web.stream(
        "GET", "/revocations/feed", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        sse = Sse(response)
        sse.until("comment", lambda c: c.startswith("keep-alive"))
        clock.advance(services.settings.access_token_ttl + 1)
        revoke(services, make.client().credential_id)  # wakes the stream
        assert sse.until("comment", lambda c: "expired" in c)
        assert sse.until("event") is None


def test_stale_node_stops_vouching(
    web: httpx.Client, make: Factory, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose view is stale still sends events but vouches with no keep-alive until
    its view is current again."""
    token = token_for(web, feed_client(make))
    view = services.revocation_view
    stale = [True]
    real = view.staleness
    monkeypatch.setattr(view, "staleness", lambda: 100.0 if stale[0] else real())
    with web.stream(
        "GET", "/revocations/feed", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        sse = Sse(response)
        cred = make.client().credential_id
        revoke(services, cred)
        _, data = sse.until("event")
        assert data["node_id"] == cred
        stale[0] = False
        keep_alive = sse.until("comment", lambda c: c.startswith("keep-alive"))
    assert float(keep_alive.split("staleness=")[1]) <= view.bound
