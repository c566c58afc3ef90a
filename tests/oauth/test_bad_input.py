"""Malformed requests at every OAuth endpoint: the right RFC 6749 §5.2 error, never a 500."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.conftest import Factory, Registered
from tests.oauth.helpers import get_token
from tokentrail.storage.prepared import Lookups

ENDPOINTS = ["/oauth/token", "/oauth/introspect", "/oauth/revoke"]
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def reg(make: Factory) -> Registered:
    return make.client()


def _valid_form(endpoint: str) -> dict[str, str]:
    if endpoint == "/oauth/token":
        return {"grant_type": "client_credentials"}
    return {"token": "ttr_unknown"}


def _assert_error(r: Any, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    assert body["error"] == error
    assert "Traceback" not in r.text
    return body


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"]
)
def test_wrong_content_type_is_invalid_request(
    http: TestClient, reg: Registered, endpoint: str, content_type: str
) -> None:
    """A body that is not form-encoded answers 400 invalid_request."""
    assert reg.secret
    r = http.post(
        endpoint,
        content=b'{"grant_type": "client_credentials", "token": "x"}',
        headers={"Content-Type": content_type},
        auth=(reg.client_id, reg.secret),
    )
    _assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_missing_content_type_is_invalid_request(
    http: TestClient, reg: Registered, endpoint: str
) -> None:
    """A body without a Content-Type answers 400 invalid_request."""
    assert reg.secret
    r = http.post(endpoint, content=b"token=x", auth=(reg.client_id, reg.secret))
    _assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_form_type_with_charset_is_accepted(
    http: TestClient, reg: Registered, endpoint: str
) -> None:
    """Parameters on the form media type (charset) do not make it a wrong content type."""
    assert reg.secret
    r = http.post(
        endpoint,
        content="&".join(f"{k}={v}" for k, v in _valid_form(endpoint).items()).encode(),
        headers={"Content-Type": f"{FORM.upper()}; charset=UTF-8"},
        auth=(reg.client_id, reg.secret),
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_body_over_limit_is_413(
    http: TestClient, reg: Registered, endpoint: str, services: Any
) -> None:
    """A body larger than max_body_bytes answers 413 with a JSON error."""
    assert reg.secret
    big = b"token=" + b"a" * services.settings.max_body_bytes
    r = http.post(
        endpoint, content=big, headers={"Content-Type": FORM}, auth=(reg.client_id, reg.secret)
    )
    _assert_error(r, 413, "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_streamed_body_over_limit_is_413(
    http: TestClient, reg: Registered, endpoint: str, services: Any
) -> None:
    """A chunked body with no Content-Length is cut off at the limit too."""
    assert reg.secret
    limit = services.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b"token="
        for _ in range(limit // 1024 + 2):
            yield b"a" * 1024

    r = http.post(
        endpoint, content=chunks(), headers={"Content-Type": FORM}, auth=(reg.client_id, reg.secret)
    )
    _assert_error(r, 413, "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_body_at_limit_is_read(
    http: TestClient, reg: Registered, endpoint: str, services: Any
) -> None:
    """A body of exactly max_body_bytes is accepted (the limit is inclusive)."""
    assert reg.secret
    body = "&".join(f"{k}={v}" for k, v in _valid_form(endpoint).items())
    padded = (body + "&pad=").encode()
    padded += b"p" * (services.settings.max_body_bytes - len(padded))
    r = http.post(
        endpoint, content=padded, headers={"Content-Type": FORM}, auth=(reg.client_id, reg.secret)
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_repeated_parameter_is_invalid_request(
    http: TestClient, reg: Registered, endpoint: str
) -> None:
    """RFC 6749 §3.2: a repeated parameter answers invalid_request."""
    assert reg.secret
    name = "grant_type" if endpoint == "/oauth/token" else "token"
    r = http.post(
        endpoint,
        content=f"{name}=a&{name}=b".encode(),
        headers={"Content-Type": FORM},
        auth=(reg.client_id, reg.secret),
    )
    body = _assert_error(r, 400, "invalid_request")
    assert name in body["error_description"]


def test_repeated_client_secret_is_invalid_request(http: TestClient, reg: Registered) -> None:
    """A repeated credential parameter is invalid_request, not an authentication attempt."""
    r = http.post(
        "/oauth/token",
        content=f"grant_type=client_credentials&client_id={reg.client_id}"
        f"&client_secret=a&client_secret=b".encode(),
        headers={"Content-Type": FORM},
    )
    _assert_error(r, 400, "invalid_request")


def test_missing_grant_type_is_invalid_request(http: TestClient, reg: Registered) -> None:
    """A token request without grant_type answers invalid_request."""
    assert reg.secret
    r = http.post("/oauth/token", data={"scope": "read"}, auth=(reg.client_id, reg.secret))
    body = _assert_error(r, 400, "invalid_request")
    assert "grant_type" in body["error_description"]


def test_empty_grant_type_is_invalid_request(http: TestClient, reg: Registered) -> None:
    """An empty grant_type counts as missing."""
    assert reg.secret
    r = http.post("/oauth/token", data={"grant_type": ""}, auth=(reg.client_id, reg.secret))
    _assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize(
    "grant_type", ["password", "authorization_code", "implicit", "urn:example:made-up"]
)
def test_unsupported_grant_type(http: TestClient, reg: Registered, grant_type: str) -> None:
    """A grant type tokentrail does not implement answers unsupported_grant_type."""
    assert reg.secret
    r = http.post("/oauth/token", data={"grant_type": grant_type}, auth=(reg.client_id, reg.secret))
    _assert_error(r, 400, "unsupported_grant_type")


@pytest.mark.parametrize("endpoint", ["/oauth/introspect", "/oauth/revoke"])
def test_missing_token_is_invalid_request(http: TestClient, reg: Registered, endpoint: str) -> None:
    """Introspection and revocation without a token parameter answer invalid_request."""
    assert reg.secret
    r = http.post(
        endpoint, data={"token_type_hint": "access_token"}, auth=(reg.client_id, reg.secret)
    )
    _assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":secret-without-user").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
        "Basic " + base64.b64encode(b"cl_x\x00:secret").decode(),
        "Basic",
        "Basic ",
        "Bearer abc.def.ghi",
        "Digest username=x",
    ],
    ids=[
        "not-base64",
        "no-colon",
        "empty-user",
        "not-utf8",
        "nul-byte",
        "no-credentials",
        "empty-credentials",
        "bearer",
        "digest",
    ],
)
def test_malformed_authorization_is_invalid_client(
    http: TestClient, reg: Registered, endpoint: str, header: str
) -> None:
    """A malformed or non-Basic Authorization header answers 401 invalid_client."""
    r = http.post(endpoint, data=_valid_form(endpoint), headers={"Authorization": header})
    _assert_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_non_post_is_405(http: TestClient, endpoint: str, method: str) -> None:
    """Any method but POST answers 405 with Allow: POST and a JSON error."""
    r = http.request(method, endpoint)
    _assert_error(r, 405, "invalid_request")
    assert r.headers["allow"] == "POST"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\xfd\x00\x01garbage",
        b"\x00\x00\x00\x00",
        b"%%%%&&&===",
        b"grant_type",
        b"=",
        b"a=1&" * 100,
    ],
    ids=["binary", "nuls", "bad-escapes", "no-equals", "bare-equals", "too-many-fields"],
)
def test_garbage_body_is_invalid_request(
    http: TestClient, reg: Registered, endpoint: str, body: bytes
) -> None:
    """Bytes that are not a form body answer 400 invalid_request."""
    assert reg.secret
    r = http.post(
        endpoint, content=body, headers={"Content-Type": FORM}, auth=(reg.client_id, reg.secret)
    )
    _assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("value", ["cl_\x00x", "cl_\x1bx", "x" * 300, "é" * 40])
def test_odd_client_id_is_a_client_error(endpoint: str, http: TestClient, value: str) -> None:
    """A client_id with control characters or of absurd length is refused without a 5xx."""
    r = http.post(
        endpoint, data={**_valid_form(endpoint), "client_id": value, "client_secret": "s"}
    )
    assert r.status_code in (400, 401), r.text
    assert r.json()["error"] in ("invalid_request", "invalid_client")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_long_basic_client_id_is_invalid_client(endpoint: str, http: TestClient) -> None:
    """An overlong client_id in the Basic header answers 401, not a storage error."""
    r = http.post(endpoint, data=_valid_form(endpoint), auth=("c" * 500, "secret"))
    _assert_error(r, 401, "invalid_client")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_invalid_client_answers_401_with_www_authenticate(
    http: TestClient, reg: Registered, endpoint: str
) -> None:
    """A wrong secret answers 401 invalid_client with WWW-Authenticate at every endpoint."""
    r = http.post(endpoint, data=_valid_form(endpoint), auth=(reg.client_id, "tts_wrong"))
    _assert_error(r, 401, "invalid_client")
    assert 'realm="tokentrail"' in r.headers["www-authenticate"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unauthenticated_request_is_invalid_client(http: TestClient, endpoint: str) -> None:
    """A request with no client authentication at all answers 401 invalid_client."""
    r = http.post(endpoint, data=_valid_form(endpoint))
    _assert_error(r, 401, "invalid_client")
    assert "www-authenticate" in r.headers


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_success_responses_are_not_cached(http: TestClient, reg: Registered, endpoint: str) -> None:
    """Successful answers carry Cache-Control: no-store (RFC 6749 §5.1)."""
    assert reg.secret
    form = _valid_form(endpoint)
    if endpoint != "/oauth/token":
        form = {"token": get_token(http, reg)}
    r = http.post(endpoint, data=form, auth=(reg.client_id, reg.secret))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"


def test_error_description_is_rfc_safe(http: TestClient, reg: Registered) -> None:
    """error_description carries only the characters RFC 6749 §5.2 allows."""
    assert reg.secret
    r = http.post(
        "/oauth/token", data={"grant_type": 'evil"\\\u00e9\n'}, auth=(reg.client_id, reg.secret)
    )
    body = _assert_error(r, 400, "unsupported_grant_type")
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in body["error_description"])


@pytest.mark.parametrize("scope", ["read\x00", "read\twrite", "read  write", " read", "read "])
def test_malformed_scope_is_rejected(http: TestClient, reg: Registered, scope: str) -> None:
    """A scope that is not space-separated scope tokens is a 400, never a 5xx."""
    assert reg.secret
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(reg.client_id, reg.secret),
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_scope", "invalid_request")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.mark.parametrize(
    "payload",
    [b"[" * 1500 + b"]" * 1500, b'{"iss": "https://idp.example\\u0000", "sub": "x"}'],
    ids=["deeply-nested", "nul-in-iss"],
)
def test_jwt_bearer_assertion_garbage_is_invalid_grant(
    http: TestClient, make: Factory, payload: bytes
) -> None:
    """A JWT bearer assertion that cannot be read answers invalid_grant, never a 5xx."""
    make.team("app-team")
    reg = make.client(paths=["federated-login"], team="app-team")
    assert reg.secret
    r = http.post(
        "/oauth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": f"{_b64(b'{}')}.{_b64(payload)}.AAAA",
        },
        auth=(reg.client_id, reg.secret),
    )
    _assert_error(r, 400, "invalid_grant")


def test_deeply_nested_dpop_header_is_a_client_error(http: TestClient, reg: Registered) -> None:
    """A DPoP proof whose header JSON is nested too deep is refused with a 400, never a 500."""
    assert reg.secret
    proof = f"{_b64(b'[' * 1500 + b']' * 1500)}.e30.AAAA"
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"DPoP": proof},
        auth=(reg.client_id, reg.secret),
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_dpop_proof", "invalid_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_storage_outage_is_503_with_retry_after(
    http: TestClient, reg: Registered, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the database fails, every endpoint answers 503 temporarily_unavailable, retryable."""
    assert reg.secret

    def down(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT ...", {}, Exception("connection refused"))

    monkeypatch.setattr(Lookups, "client_with_credentials", down)
    r = http.post(endpoint, data=_valid_form(endpoint), auth=(reg.client_id, reg.secret))
    body = _assert_error(r, 503, "temporarily_unavailable")
    assert r.headers["retry-after"] == "1"
    assert "connection refused" not in body.get("error_description", "")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_internal_failure_is_a_json_500_without_details(
    http: TestClient, reg: Registered, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception still answers a JSON server_error and leaks nothing."""
    assert reg.secret

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(Lookups, "client_with_credentials", broken)
    r = http.post(endpoint, data=_valid_form(endpoint), auth=(reg.client_id, reg.secret))
    body = _assert_error(r, 500, "server_error")
    assert "internals" not in r.text
    assert body["error_description"] == "internal error"
