"""The application built from the environment: what each ``serve --workers N`` worker runs.

uvicorn starts every worker in a fresh interpreter and calls
:func:`create_app_from_environment` there (an import string with
``factory=True``), so each worker builds its own services: its own database
pool, key cache, revocation view with its own LISTEN connection, janitor and
metrics. ``tokentrail serve`` writes its whole configuration into the
environment first (:func:`export_environment`); any ASGI server can run the
factory the same way::

    TOKENTRAIL_DB=postgresql://... TOKENTRAIL_ISSUER=https://auth.example.com \\
        uvicorn --factory tokentrail.web.factory:create_app_from_environment --workers 4
"""

from __future__ import annotations

import atexit
import os
import re
from collections.abc import Mapping
from typing import Any, get_origin

from starlette.types import ASGIApp

from tokentrail.config import Settings
from tokentrail.services import build_services
from tokentrail.web.tls import protocol_class

#: Settings whose variable is the command-line option's, not ``TOKENTRAIL_<NAME>``.
OPTION_VARIABLES = {
    "data_dir": "TOKENTRAIL_DATA",
    "db_url": "TOKENTRAIL_DB",
    "paths_file": "TOKENTRAIL_PATHS",
    "issuer": "TOKENTRAIL_ISSUER",
    "mtls_ca_file": "TOKENTRAIL_MTLS_CA_FILE",
    "mtls_proxy_header": "TOKENTRAIL_MTLS_PROXY_HEADER",
    "mtls_trusted_proxies": "TOKENTRAIL_MTLS_TRUSTED_PROXIES",
}

#: uvicorn's HTTP protocol with the client certificate in the scope (see
#: :mod:`tokentrail.web.tls`), importable by name in the workers.
HTTP_PROTOCOL = protocol_class()
HTTP_PROTOCOL_NAME = f"{__name__}:HTTP_PROTOCOL"


def variable(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return OPTION_VARIABLES.get(name, f"TOKENTRAIL_{name.upper()}")


def settings_from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``TOKENTRAIL_*`` variables (unset or empty: the default)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, spec in Settings.model_fields.items():
        raw = env.get(variable(name))
        if raw:
            is_list = get_origin(spec.annotation) is tuple
            values[name] = tuple(re.split(r"[\s,]+", raw.strip())) if is_list else raw
    return Settings(**values)


def export_environment(settings: Settings) -> dict[str, str]:
    """The variables that make :func:`settings_from_environment` rebuild ``settings``."""
    out: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None or value == ():
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple | list):
            text = " ".join(str(v) for v in value)
        else:
            text = str(value)
        out[variable(name)] = text
    return out


def create_app_from_environment() -> ASGIApp:
    """Build this process's services from the environment, and the app on them."""
    from tokentrail.web.app import create_app

    services = build_services(settings_from_environment())
    atexit.register(services.close)
    return create_app(services)
