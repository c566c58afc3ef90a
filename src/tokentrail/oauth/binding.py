"""Sender constraint of an issuance: what key or certificate the new tokens are bound to.

RFC 9449 §6 (``cnf.jkt``, DPoP) and RFC 8705 §3 (``cnf.x5t#S256``, mutual TLS).
A request proves at most one; an unbound request yields :data:`UNBOUND`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Binding:
    #: RFC 7638 thumbprint of the DPoP key the request proved possession of.
    jkt: str | None = None
    #: SHA-256 thumbprint of the client certificate of the TLS connection.
    x5t: str | None = None

    @property
    def kind(self) -> str:
        """``dpop``, ``mtls`` or ``none``: the vocabulary of a path's ``binding``."""
        if self.jkt is not None:
            return "dpop"
        if self.x5t is not None:
            return "mtls"
        return "none"

    def cnf(self) -> dict[str, Any] | None:
        """The ``cnf`` claim for tokens minted under this binding."""
        if self.jkt is not None:
            return {"jkt": self.jkt}
        if self.x5t is not None:
            return {"x5t#S256": self.x5t}
        return None

    @property
    def token_type(self) -> str:
        """RFC 9449 §5: DPoP-bound access tokens are of type ``DPoP``."""
        return "DPoP" if self.jkt is not None else "Bearer"


UNBOUND = Binding()
