"""Bad path maps through the CLI: a clear error with its location, exit 2, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.policy.maps import clean, write
from tokentrail.cli_paths import paths_app
from tokentrail.policy.yamlsource import MAX_FILE_BYTES, MAX_VALUES

COMMANDS = ["check", "owners", "windows", "graph", "validate"]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(paths_app, [str(a) for a in args])


def assert_clean_error(result: Result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert re.search(pattern, result.stderr), result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_malformed_yaml(tmp_path: Path, command: str) -> None:
    """Broken YAML is reported at its line and column by every command."""
    path = write(tmp_path, "version: 1\nteams: [iam\npaths: x\n")
    assert_clean_error(run(command, path), rf"{re.escape(str(path))}:\d+:\d+: malformed YAML")


def test_fifty_megabyte_file(tmp_path: Path) -> None:
    """A 50 MB file is refused before it is parsed."""
    path = tmp_path / "big.yaml"
    line = b"# " + b"x" * 1021 + b"\n"
    with path.open("wb") as fh:
        for _ in range(50 * 1024):
            fh.write(line)
    assert path.stat().st_size == 50 * 1024 * 1024
    assert_clean_error(
        run("check", path), rf"file is 52428800 bytes; the limit is {MAX_FILE_BYTES}"
    )


def test_billion_laughs(tmp_path: Path) -> None:
    """Nested aliases stop at the value budget with the place they blew up."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert_clean_error(
        run("check", path), rf":\d+:\d+: expands to more than {MAX_VALUES} values \(alias bomb\?\)"
    )


def test_cycle_between_paths(tmp_path: Path) -> None:
    """Paths extending each other in a cycle: the cycle, at the `extends` that closes it."""
    data = clean()
    first = data["paths"][0]
    data["paths"] = [
        {**first, "id": "a", "extends": "b"},
        {**first, "id": "b", "extends": "a"},
    ]
    path = write(tmp_path, data)
    assert_clean_error(
        run("check", path), r"paths\.yaml:\d+:\d+: cycle between paths through extends: a -> b -> a"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["paths"][0]["owners"].update(recovery="ghosts"), "undeclared team 'ghosts'"),
        (
            lambda d: d.update(
                clients=[{"id": "c", "team": "iam", "credentials": ["k"], "paths": ["svc"]}]
            ),
            "undeclared credential kind 'k'",
        ),
        (
            lambda d: d["credential_kinds"][0].update(type="smoke_signal"),
            "'smoke_signal' is not an input kind",
        ),
        (lambda d: d["paths"][0].update(grant="password"), r"paths\.0\.grant: Input should be"),
    ],
    ids=["team", "credential-kind", "credential-type", "grant"],
)
def test_unknown_references(tmp_path: Path, change: object, message: str) -> None:
    """Unknown teams, kinds and grants name file, line and column."""
    data = clean()
    change(data)  # type: ignore[operator]
    path = write(tmp_path, data)
    assert_clean_error(run("check", path), rf"{re.escape(str(path))}:\d+:\d+: .*{message}")


def test_missing_file(tmp_path: Path) -> None:
    """A map that does not exist is a clear error."""
    assert_clean_error(run("check", tmp_path / "nope.yaml"), r"nope\.yaml: cannot read")


def test_not_a_mapping(tmp_path: Path) -> None:
    """A document that is a list is refused at its start."""
    path = write(tmp_path, "- 1\n- 2\n")
    assert_clean_error(run("check", path), r":1:1: a path map is a mapping")


def test_every_error_at_once(tmp_path: Path) -> None:
    """Several consistency problems are reported together, one a line."""
    data = clean()
    data["paths"][0]["owners"].update(recovery="x", detection="y")
    result = run("check", write(tmp_path, data))
    assert_clean_error(result, "undeclared team 'x'")
    assert "undeclared team 'y'" in result.stderr
