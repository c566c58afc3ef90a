"""Where the verifier gets the issuer's public signing keys.

A :class:`JwksSource` hands out an immutable :class:`PublishedKeys` snapshot;
the verifier reads it without a lock. :class:`StaticJwks` holds a fixed set;
:class:`RemoteJwks` fetches the issuer's ``jwks_uri``, keeps it for
``cache_seconds``, and refetches early when a token names a ``kid`` it does not
know (key rotation), at most once per ``refetch_interval`` so that junk ``kid``
values cannot turn into a request flood against the issuer.

Fetching blocks. The asynchronous verifier path asks with ``block=False`` and
gets :class:`FetchNeeded` instead, then runs the fetch in a worker thread; the
event loop never waits on the network.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

from tokentrail import crypto
from tokentrail.sdk.errors import KeysUnavailable

__all__ = [
    "FetchNeeded",
    "JwksSource",
    "PublishedKeys",
    "RemoteJwks",
    "StaticJwks",
]

#: Largest JWKS document accepted from the network.
MAX_JWKS_BYTES = 1 << 20


class FetchNeeded(Exception):
    """Raised with ``block=False`` when the keys can only be had by fetching."""

    def __init__(self, kid: str | None) -> None:
        super().__init__(kid)
        self.kid = kid


@dataclass(frozen=True, slots=True)
class PublishedKeys:
    """An immutable snapshot of the issuer's usable signing keys."""

    #: kid -> alg of every usable key.
    algs: Mapping[str, str]
    #: Verifier for ``typ: at+jwt`` (what tokentrail writes).
    at_jwt: crypto.TokenVerifier = field(repr=False)
    #: Verifier for the long form ``typ: application/at+jwt`` (RFC 9068 §2.1).
    application_at_jwt: crypto.TokenVerifier = field(repr=False)

    @classmethod
    def from_jwks(cls, document: Any) -> PublishedKeys:
        """Keys of a JWKS document that can sign tokentrail access tokens.

        Entries without ``kid`` or ``alg``, of another algorithm or for another
        use are skipped; a document holding private keys is refused (``ValueError``).
        """
        parsed = crypto.parse_jwks(document)
        usable = [
            jwk
            for jwk in parsed["keys"]
            if isinstance(jwk.get("kid"), str)
            and jwk.get("alg") in crypto.SIGNING_ALGORITHMS
            and jwk.get("use", "sig") == "sig"
        ]
        return cls(
            algs=MappingProxyType({str(j["kid"]): str(j["alg"]) for j in usable}),
            at_jwt=crypto.TokenVerifier(usable, typ="at+jwt"),
            application_at_jwt=crypto.TokenVerifier(usable, typ="application/at+jwt"),
        )


class JwksSource(Protocol):
    """Hands the verifier the issuer's keys."""

    def keys(self, *, block: bool = True) -> PublishedKeys:
        """The current keys, fetching first when there are none or they are too old.

        With ``block=False`` a needed fetch raises :class:`FetchNeeded` instead.
        Raises :class:`~tokentrail.sdk.errors.KeysUnavailable` when no keys can be had.
        """
        ...

    def keys_with(self, kid: str, *, block: bool = True) -> PublishedKeys:
        """Keys that include ``kid`` if the issuer publishes it (refetching if allowed)."""
        ...


class StaticJwks:
    """A fixed JWKS document (tests, or keys distributed out of band)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = PublishedKeys.from_jwks(dict(jwks))

    def keys(self, *, block: bool = True) -> PublishedKeys:
        return self._keys

    def keys_with(self, kid: str, *, block: bool = True) -> PublishedKeys:
        return self._keys


HttpGet = Callable[[str, float], bytes]


def urllib_get(url: str, timeout: float) -> bytes:
    """GET ``url`` with the standard library; raises ``OSError`` on failure."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise OSError("JWKS document too large")
    return body


class RemoteJwks:
    """The issuer's ``jwks_uri``, cached; thread-safe (one fetch at a time).

    ``http_get(url, timeout) -> bytes`` replaces the standard-library client
    (for example with an ``httpx`` client); it raises on a failed fetch or a
    non-success status. When a
    fetch fails the last good keys stay in use, and the next attempt waits
    ``refetch_interval`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        refetch_interval: float = 30.0,
        timeout: float = 5.0,
        http_get: HttpGet | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if urlsplit(url).scheme not in ("https", "http"):
            raise ValueError("the JWKS URL must be http(s)")
        self._url = url
        self._cache_seconds = cache_seconds
        self._refetch_interval = refetch_interval
        self._timeout = timeout
        self._get = http_get or urllib_get
        self._now = monotonic
        self._lock = threading.Lock()
        self._keys: PublishedKeys | None = None
        self._fetched_at = -math.inf
        self._failed_at = -math.inf
        self._kid_fetch_at = -math.inf
        #: Successful fetches so far (a metric; tests read it).
        self.fetches = 0

    @property
    def url(self) -> str:
        return self._url

    def keys(self, *, block: bool = True) -> PublishedKeys:
        current = self._keys
        if current is not None and self._now() - self._fetched_at < self._cache_seconds:
            return current
        if self._backing_off():
            if current is None:
                raise KeysUnavailable("the issuer's signing keys could not be fetched")
            return current
        if not block:
            raise FetchNeeded(None)
        return self._fetch(lambda: not self._backing_off() and not self._fresh())

    def keys_with(self, kid: str, *, block: bool = True) -> PublishedKeys:
        current = self.keys(block=block)
        if kid in current.algs or not self._may_fetch_for_kid():
            return current
        if not block:
            raise FetchNeeded(kid)
        return self._fetch(
            lambda: self._may_fetch_for_kid() and kid not in self._current_algs(), for_kid=True
        )

    def _fresh(self) -> bool:
        return self._keys is not None and self._now() - self._fetched_at < self._cache_seconds

    def _current_algs(self) -> Mapping[str, str]:
        return self._keys.algs if self._keys is not None else {}

    def _backing_off(self) -> bool:
        """A fetch failed less than ``refetch_interval`` ago."""
        return self._now() - self._failed_at < self._refetch_interval

    def _may_fetch_for_kid(self) -> bool:
        now = self._now()
        return (
            now - self._kid_fetch_at >= self._refetch_interval
            and now - self._failed_at >= self._refetch_interval
        )

    def _fetch(self, still_needed: Callable[[], bool], *, for_kid: bool = False) -> PublishedKeys:
        with self._lock:
            if still_needed():  # another thread may have fetched while we waited
                now = self._now()
                if for_kid:
                    self._kid_fetch_at = now
                try:
                    keys = PublishedKeys.from_jwks(json.loads(self._get(self._url, self._timeout)))
                except Exception as exc:  # any failure of the fetch: keep the last good keys
                    self._failed_at = now
                    if self._keys is None:
                        raise KeysUnavailable(
                            f"the issuer's signing keys could not be fetched: {type(exc).__name__}"
                        ) from exc
                else:
                    self._keys = keys
                    self._fetched_at = now
                    self.fetches += 1
            if self._keys is None:
                raise KeysUnavailable("the issuer's signing keys could not be fetched")
            return self._keys
