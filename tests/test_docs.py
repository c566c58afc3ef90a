"""The documentation that is generated from code stays in step with the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_docs", ROOT / "scripts" / "gen_config_docs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_docs_are_current() -> None:
    """docs/configuration.md is exactly what scripts/gen_config_docs.py renders from Settings."""
    expected = _generator().render()
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == expected, "docs/configuration.md is stale: run scripts/gen_config_docs.py"


def test_configuration_docs_name_every_setting() -> None:
    """Every Settings field has its own section in docs/configuration.md."""
    from tokentrail.config import Settings

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"## `{name}`" not in text]
    assert missing == []
