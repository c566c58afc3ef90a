"""A revocation view that follows tokentrail's revocation feed (docs/scaling.md).

:class:`FeedRevocations` keeps the revoked lineage ids that still matter in a
dict (``id -> matters_until``) and keeps it current from a tokentrail node, in
a background thread:

* ``mode="stream"`` (default): ``GET /revocations/feed``, server-sent events.
  Each event adds an id; each keep-alive comment (``: keep-alive seq=N
  staleness=S``) confirms that everything committed up to ``S`` seconds before
  it arrived is here. When the stream breaks, stalls for ``read_timeout`` or
  ends (the feed token expired), it reconnects with back-off and resumes after
  the last seq it holds (``Last-Event-ID``), so nothing is missed.
* ``mode="poll"``: ``GET /revocations?since=N`` every ``poll_interval``
  seconds; each complete answer confirms the view as of when it was asked.

:meth:`staleness` is the time since the last confirmation. The
:class:`~tokentrail.sdk.verifier.Verifier` refuses every token with
:class:`~tokentrail.sdk.errors.StaleRevocationView` (503) once it exceeds
``bound``: with the feed cut (the node gone, a partition, a proxy buffering the
stream), the resource server fails closed after at most ``bound`` seconds, and
recovers by itself once the feed is back. Before the first confirmation the
staleness is infinite.

The feed needs an access token with the scope ``tokentrail:revocations`` for
the audience ``<issuer>/revocations``: give ``client_id``/``client_secret`` of
a client registered for it (tokens are fetched with the client credentials
grant and renewed before they expire) or a ``token`` callable.

Reads take no lock (one dict lookup per lineage id); the background thread is
the only writer. One object serves every thread and asyncio task of the process.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from tokentrail.sdk.revocation import FollowedRevocations

log = logging.getLogger("tokentrail.sdk.feed")

__all__ = ["FEED_SCOPE", "FeedRevocations"]

FEED_SCOPE = "tokentrail:revocations"
#: Longest SSE line or JSON answer read.
MAX_LINE = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
#: Entries asked for per catch-up request.
PAGE = 5_000
#: Seconds between sweeps of entries whose ``matters_until`` has passed.
SWEEP_INTERVAL = 60.0


class _Unauthorized(Exception):
    """The node refused the feed token (expired or revoked): fetch a new one."""


class FeedRevocations(FollowedRevocations):
    """A :class:`~tokentrail.sdk.revocation.RevocationView` fed by a tokentrail node.

    ``issuer`` is the authority's issuer identifier (the tokens' audience is
    ``<issuer>/revocations``); ``url`` the node to follow (default: the issuer).
    ``bound`` is the staleness after which the verifier fails closed;
    ``read_timeout`` how long a silent stream is kept before reconnecting
    (default: half the bound). ``start=False`` leaves starting to :meth:`start`.
    """

    def __init__(
        self,
        issuer: str,
        *,
        url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token: Callable[[], str] | None = None,
        bound: float = 30.0,
        mode: Literal["stream", "poll"] = "stream",
        poll_interval: float = 5.0,
        read_timeout: float | None = None,
        timeout: float = 10.0,
        max_backoff: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        start: bool = True,
    ) -> None:
        if mode not in ("stream", "poll"):
            raise ValueError("mode must be 'stream' or 'poll'")
        if token is None and (client_id is None or client_secret is None):
            raise ValueError("give client_id and client_secret, or a token callable")
        if bound <= 0:
            raise ValueError("bound must be positive")
        super().__init__(bound=bound, monotonic=monotonic)
        self._issuer = issuer.rstrip("/")
        base = urlsplit((url or issuer).rstrip("/"))
        if base.scheme not in ("http", "https") or not base.hostname:
            raise ValueError("url must be an http(s) URL")
        self._base = base
        self._client = (client_id, client_secret) if token is None else None
        self._token_source = token
        self._mode = mode
        self._poll_interval = poll_interval
        self._read_timeout = read_timeout if read_timeout is not None else bound / 2
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._ssl = ssl_context
        self._clock = clock
        self._swept_at = -math.inf
        self._cached_token: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None
        #: Whether a stream is open (stream mode) or the last poll succeeded.
        self.connected = False
        #: Streams opened or polls answered, and failed attempts, since start.
        self.connects = 0
        self.failures = 0
        if start:
            self.start()

    # --- the RevocationView protocol -------------------------------------------

    # --- state -----------------------------------------------------------------

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until the view has been confirmed current once (or ``timeout``)."""
        return self._synced.wait(timeout)

    def metrics(self) -> dict[str, float]:
        """Gauges and counters of this view, by Prometheus name."""
        return {
            "tokentrail_revocation_view_staleness_seconds": self.staleness(),
            "tokentrail_revocation_view_bound_seconds": self._bound,
            "tokentrail_revocation_view_entries": float(len(self._ids)),
            "tokentrail_revocation_view_seq": float(self._seq),
            "tokentrail_revocation_view_connected": 1.0 if self.connected else 0.0,
            "tokentrail_revocation_feed_connects_total": float(self.connects),
            "tokentrail_revocation_feed_failures_total": float(self.failures),
        }

    def prometheus(self) -> str:
        """:meth:`metrics` in the Prometheus text format, for a resource server's /metrics."""
        lines: list[str] = []
        for name, value in self.metrics().items():
            kind = "counter" if name.endswith("_total") else "gauge"
            text = "+Inf" if math.isinf(value) else repr(value)
            lines += [f"# TYPE {name} {kind}", f"{name} {text}"]
        return "\n".join(lines) + "\n"

    # --- applying what the feed says -------------------------------------------

    def _apply(self, entries: Sequence[Any]) -> None:
        now = self._clock()
        with self._lock:
            ids = self._ids
            for entry in entries:
                if not isinstance(entry, dict):
                    raise ValueError("a feed entry is not an object")
                seq, node_id, until = (
                    entry.get("seq"),
                    entry.get("node_id"),
                    entry.get("matters_until"),
                )
                if (
                    not isinstance(seq, int)
                    or not isinstance(node_id, str)
                    or not isinstance(until, int | float)
                    or isinstance(seq, bool)
                ):
                    raise ValueError("a feed entry lacks seq, node_id or matters_until")
                if until > now:
                    ids[node_id] = float(until)
                self._seq = max(self._seq, seq)

    def _confirm(self, at: float) -> None:
        """Everything committed up to monotonic time ``at`` is in the view."""
        if at > self._synced_at:
            self._synced_at = at
        self._synced.set()
        if self._monotonic() - self._swept_at >= SWEEP_INTERVAL:
            self._sweep()

    def _sweep(self) -> None:
        now = self._clock()
        with self._lock:
            ids = self._ids
            for node_id in [k for k, until in ids.items() if until <= now]:
                del ids[node_id]
        self._swept_at = self._monotonic()

    # --- HTTP ----------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        host, port = self._base.hostname or "", self._base.port
        if self._base.scheme == "https":
            context = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _path(self, path: str) -> str:
        return self._base.path + path

    def _token(self) -> str:
        if self._token_source is not None:
            return self._token_source()
        cached = self._cached_token
        if cached is not None and self._monotonic() < cached[1]:
            return cached[0]
        assert self._client is not None
        client_id, secret = self._client
        basic = base64.b64encode(
            f"{quote(client_id or '', safe='')}:{quote(secret or '', safe='')}".encode()
        ).decode()
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "scope": FEED_SCOPE,
                "resource": f"{self._issuer}/revocations",
            }
        )
        conn = self._connection(self._timeout)
        try:
            conn.request(
                "POST",
                self._path("/oauth/token"),
                body=body,
                headers={
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
            )
            resp = conn.getresponse()
            answer = json.loads(resp.read(MAX_BODY))
        finally:
            conn.close()
        if resp.status != 200 or not isinstance(answer.get("access_token"), str):
            raise OSError(f"the token endpoint refused the feed client: {answer.get('error')}")
        lifetime = float(answer.get("expires_in", 60))
        token: str = answer["access_token"]
        # Renew at 80% of the lifetime: a stream ends when its token expires.
        self._cached_token = (token, self._monotonic() + 0.8 * lifetime)
        return token

    @contextlib.contextmanager
    def _get(
        self, path: str, headers: dict[str, str], timeout: float
    ) -> Iterator[http.client.HTTPResponse]:
        """A GET whose 200 response is yielded; 401 raises :class:`_Unauthorized`."""
        conn = self._connection(timeout)
        self._conn = conn
        try:
            conn.request("GET", self._path(path), headers=headers)
            resp = conn.getresponse()
            if resp.status == 401:
                raise _Unauthorized
            if resp.status != 200:
                raise OSError(f"{path} answered HTTP {resp.status}")
            yield resp
        finally:
            self._conn = None
            conn.close()

    # --- the background thread ----------------------------------------------------

    def start(self) -> FeedRevocations:
        """Start following the feed (once)."""
        if self._thread is None:
            self._stop.clear()
            run = self._stream_loop if self._mode == "stream" else self._poll_loop
            self._thread = threading.Thread(target=run, name="tokentrail-feed", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop following (the view keeps what it holds, and keeps ageing)."""
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(2)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.connected = False

    def __enter__(self) -> FeedRevocations:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _backoff(self, attempt: int) -> None:
        delay = min(self._max_backoff, 0.25 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
        self._stop.wait(delay)

    def _stream_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._stream_once()
                attempt = 0
                # The server ended the stream (token expiry, shutdown): reconnect soon.
                self._stop.wait(0.05 + random.random() / 10)  # noqa: S311
            except _Unauthorized:
                self._cached_token = None
                self.failures += 1
                attempt += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if self._stop.is_set():
                    break
                self.failures += 1
                attempt += 1
                log.warning("revocation feed: %s; reconnecting", exc)
            finally:
                self.connected = False
            if not self._stop.is_set() and attempt:
                self._backoff(attempt)

    def _stream_once(self) -> None:
        token = self._token()
        seq = self._seq
        with self._get(
            f"/revocations/feed?since={seq}",
            {
                "Authorization": f"Bearer {token}",
                "Accept": "text/event-stream",
                "Cache-Control": "no-cache",
                "Last-Event-ID": str(seq),
            },
            self._read_timeout,
        ) as resp:
            self.connects += 1
            self.connected = True
            self._read_events(resp)

    def _read_events(self, resp: http.client.HTTPResponse) -> None:
        data: list[bytes] = []
        while not self._stop.is_set():
            line = resp.readline(MAX_LINE + 1)
            if not line:
                return  # the server ended the stream: reconnect
            if len(line) > MAX_LINE:
                raise ValueError("feed line too long")
            line = line.rstrip(b"\r\n")
            if not line:
                if data:
                    self._apply([json.loads(b"\n".join(data))])
                    data = []
            elif line.startswith(b":"):
                self._comment(line[1:].decode("utf-8", "replace"), self._monotonic())
            else:
                name, _, value = line.partition(b":")
                if name == b"data":
                    data.append(value[1:] if value.startswith(b" ") else value)

    def _comment(self, text: str, received: float) -> None:
        words = text.split()
        if not words or words[0] != "keep-alive":
            return
        fields = dict(w.partition("=")[::2] for w in words[1:])
        try:
            staleness = max(0.0, float(fields.get("staleness", "0")))
            seq = int(fields.get("seq", "-1"))
        except ValueError:
            return
        if seq >= self._seq and not math.isnan(staleness):
            self._confirm(received - staleness)

    def _poll_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._poll_once()
                attempt = 0
            except _Unauthorized:
                self._cached_token = None
                self.failures += 1
                attempt += 1
                continue  # a new token at once
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if self._stop.is_set():
                    break
                self.failures += 1
                attempt += 1
                self.connected = False
                log.warning("revocation feed: %s; retrying", exc)
                self._backoff(attempt)
                continue
            self._stop.wait(self._poll_interval)

    def _poll_once(self) -> None:
        started = self._monotonic()
        token = self._token()
        while True:
            with self._get(
                f"/revocations?since={self._seq}&limit={PAGE}",
                {"Authorization": f"Bearer {token}", "Accept": "application/json"},
                self._timeout,
            ) as resp:
                answer = json.loads(resp.read(MAX_BODY))
            entries, next_since = answer.get("revocations"), answer.get("next_since")
            if not isinstance(entries, list) or type(next_since) is not int:
                raise ValueError("the catch-up answer lacks revocations or next_since")
            self._apply(entries)
            with self._lock:
                self._seq = max(self._seq, next_since)
            if not answer.get("more"):
                break
        self.connects += 1
        self.connected = True
        self._confirm(started)
