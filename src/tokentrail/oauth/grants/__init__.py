"""Grants of the token endpoint, one module each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tokentrail.errors import OAuthError
from tokentrail.oauth.binding import Binding
from tokentrail.oauth.client_auth import AuthenticatedClient
from tokentrail.oauth.request import OAuthRequest
from tokentrail.storage.store import Store, Tx


@dataclass(frozen=True, slots=True)
class Pending:
    """A response whose durable half is still to run.

    ``write`` records what was issued in a write transaction and returns the
    response body; ``after`` (see :meth:`then`) runs on that body once the
    transaction has committed. Whoever owns the writes runs it: :meth:`run` in
    a transaction of its own, or the store's group committer
    (:mod:`tokentrail.storage.group_commit`), which may run ``write`` twice when
    a batch rolls back, so ``write`` must not act outside its transaction.
    """

    write: Callable[[Tx], dict[str, Any]]
    after: tuple[Callable[[dict[str, Any]], None], ...] = ()
    #: Called with an OAuth error ``write`` raised (its transaction rolled back),
    #: before the error reaches the client: where refusals fire their detections.
    refused: Callable[[OAuthError], None] | None = None

    def run(self, store: Store) -> dict[str, Any]:
        try:
            with store.write() as tx:
                body = self.write(tx)
        except OAuthError as exc:
            self.refuse(exc)
            raise
        return self.finish(body)

    def refuse(self, exc: OAuthError) -> None:
        if self.refused is not None:
            self.refused(exc)

    def finish(self, body: dict[str, Any]) -> dict[str, Any]:
        """The response body, once ``write`` has committed."""
        for step in self.after:
            step(body)
        return body

    def then(self, step: Callable[[dict[str, Any]], None]) -> Pending:
        """The same write, with ``step`` to run on its body after the commit."""
        return Pending(self.write, (*self.after, step), self.refused)


class TokenGrant(Protocol):
    """A grant type: validates its parameters and issues through the authority."""

    GRANT_TYPE: str
    #: True when :meth:`issue` answers with a :class:`Pending` (its write still to run).
    DEFERS_WRITE: bool

    def issue(
        self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding
    ) -> dict[str, Any] | Pending:
        """The response, or its durable half still to run (:class:`Pending`)."""
        ...
