"""A parsed request to an OAuth endpoint: form parameters and the headers that matter.

RFC 6749 §3.2 and §2.3: token-endpoint parameters arrive form-encoded and MUST
NOT repeat, except the ones that are lists by definition (``resource``,
RFC 8707; ``audience``, RFC 8693 §2.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from tokentrail.errors import InvalidRequest

_REPEATABLE = frozenset({"resource", "audience"})
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class OAuthRequest:
    form: dict[str, list[str]]
    authorization: str | None = None
    #: The ``DPoP`` header (RFC 9449 §4.1), when the request carried exactly one.
    dpop: str | None = None
    #: The request's public URL (issuer + path): what a DPoP proof's ``htu`` must name.
    url: str = ""
    #: PEM client certificate of the TLS connection (direct or via a trusted proxy).
    client_cert: str | None = None
    #: The peer address of the connection.
    client_ip: str | None = None

    @classmethod
    def parse(
        cls,
        body: bytes,
        *,
        content_type: str | None,
        authorization: str | None,
        dpop: list[str] | None = None,
        url: str = "",
        client_cert: str | None = None,
        client_ip: str | None = None,
    ) -> OAuthRequest:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != FORM_TYPE:
            raise InvalidRequest(f"the request body must be {FORM_TYPE}")
        try:
            pairs = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=bool(body),
                max_num_fields=64,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRequest("the request body is not valid form encoding") from exc
        form: dict[str, list[str]] = {}
        for key, value in pairs:
            form.setdefault(key, []).append(value)
        for key, values in form.items():
            if len(values) > 1 and key not in _REPEATABLE:
                raise InvalidRequest(f"parameter {key!r} is repeated")
        if dpop is not None and len(dpop) > 1:
            raise InvalidRequest("send at most one DPoP header")
        return cls(
            form=form,
            authorization=authorization,
            dpop=dpop[0] if dpop else None,
            url=url,
            client_cert=client_cert,
            client_ip=client_ip,
        )

    def get(self, name: str) -> str | None:
        """A single-valued parameter; empty values count as absent (RFC 6749 §3.1)."""
        values = self.form.get(name)
        if not values or values[0] == "":
            return None
        return values[0]

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise InvalidRequest(f"missing parameter {name!r}")
        return value

    def get_all(self, name: str) -> list[str]:
        return [v for v in self.form.get(name, []) if v]
