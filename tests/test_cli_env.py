"""Settings without an option of their own reach every CLI command as TOKENTRAIL_<NAME>."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokentrail import cli
from tokentrail.config import BUNDLED_PATHS, Settings


def test_every_setting_has_an_option_or_a_variable() -> None:
    """Each Settings field is reachable from the command line one way or the other."""
    options = {"data_dir", "db_url", "paths_file", "issuer"}
    mtls = {name for name in Settings.model_fields if name.startswith("mtls_")}
    assert set(cli.ENV_SETTINGS) | options | mtls == set(Settings.model_fields)


def test_environment_sets_signing_algorithm_and_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOKENTRAIL_SIGNING_ALG and TOKENTRAIL_ACCESS_TOKEN_TTL configure the installation."""
    monkeypatch.setenv("TOKENTRAIL_SIGNING_ALG", "EdDSA")
    monkeypatch.setenv("TOKENTRAIL_ACCESS_TOKEN_TTL", "120")
    services = cli._open(tmp_path / "data", None, BUNDLED_PATHS)
    try:
        assert services.settings.access_token_ttl == 120
        assert services.keys.jwks()["keys"][0]["alg"] == "EdDSA"
    finally:
        services.close()


def test_invalid_environment_value_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed TOKENTRAIL_ value is an error message and exit status 1, not a traceback."""
    monkeypatch.setenv("TOKENTRAIL_ACCESS_TOKEN_TTL", "soon")
    result = CliRunner().invoke(cli.app, ["team", "list", "--data", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "access_token_ttl" in result.output
