"""Safe YAML reading that remembers where every value came from.

The path map is read with PyYAML's safe composer into a node graph, then turned
into plain Python values while recording the line and column of each one, so
that a validation error can point at the exact place in the file. Aliases are
expanded under a budget, so a "billion laughs" document fails fast instead of
eating memory; files above a size limit are refused before parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tokentrail.errors import PathMapError

#: Largest path-map file read, in bytes.
MAX_FILE_BYTES = 8 * 1024 * 1024
#: Most values (after alias expansion) one document may produce.
MAX_VALUES = 500_000
#: Deepest nesting accepted.
MAX_DEPTH = 64

#: libyaml's safe loader where PyYAML was built with it (an order of magnitude faster on
#: large maps; same marks and errors), else the pure-Python one.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed YAML document with the location of each value."""

    file: str
    data: Any
    marks: dict[Loc, Mark]

    def mark(self, loc: Loc) -> Mark:
        """The mark of ``loc``, or of its nearest located parent."""
        while loc not in self.marks and loc:
            loc = loc[:-1]
        return self.marks.get(loc, Mark(1, 1))

    def where(self, loc: Loc) -> str:
        m = self.mark(loc)
        return f"{self.file}:{m.line}:{m.column}"


def read_yaml(path: Path) -> Source:
    """Read ``path`` as YAML with locations; every failure is a :class:`PathMapError`."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PathMapError(f"{name}: file is {size} bytes; the limit is {MAX_FILE_BYTES}")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PathMapError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PathMapError(f"{name}: not UTF-8 text") from exc
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str = "<paths>") -> Source:
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except RecursionError:
        raise PathMapError(f"{name}: nesting deeper than {MAX_DEPTH}") from None
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own stack limit
            raise PathMapError(f"{name}: nesting deeper than {MAX_DEPTH}") from None
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise PathMapError(f"{where}: malformed YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise PathMapError(f"{name}: malformed YAML: {exc}") from exc
    if node is None:
        raise PathMapError(f"{name}:1:1: the document is empty")
    walker = _Walker(name)
    data = walker.convert(node, (), 0)
    return Source(name, data, walker.marks)


class _Walker:
    """Turns a composed node graph into values, recording marks, under a budget."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.marks: dict[Loc, Mark] = {}
        self.budget = MAX_VALUES
        self.constructor = yaml.constructor.SafeConstructor()

    def _fail(self, node: yaml.Node, message: str) -> PathMapError:
        m = node.start_mark
        return PathMapError(f"{self.name}:{m.line + 1}:{m.column + 1}: {message}")

    def convert(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self._fail(node, f"expands to more than {MAX_VALUES} values (alias bomb?)")
        if depth > MAX_DEPTH:
            raise self._fail(node, f"nesting deeper than {MAX_DEPTH}")
        if loc not in self.marks:  # a mapping value already has its key's mark
            self.marks[loc] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._construct(node)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._fail(key_node, "keys must be plain strings")
                key = self._construct(key_node)
                if not isinstance(key, str):
                    raise self._fail(key_node, "keys must be strings")
                if key in out:
                    raise self._fail(key_node, f"duplicate key {key!r}")
                self.marks[(*loc, key)] = Mark(
                    key_node.start_mark.line + 1, key_node.start_mark.column + 1
                )
                out[key] = self.convert(value_node, (*loc, key), depth + 1)
            return out
        return [self.convert(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]

    def _construct(self, node: yaml.Node) -> Any:
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # what SafeConstructor returns for a string, minus its overhead
        try:
            return self.constructor.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            raise self._fail(node, f"bad value: {exc.problem}") from exc
        except yaml.YAMLError as exc:  # pragma: no cover - the constructor raises marked errors
            raise self._fail(node, f"bad value: {exc}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # PyYAML's constructors fail this way on explicit tags with values they
            # cannot read (`!!int abc`, `!!bool maybe`, `!!timestamp soon`).
            raise self._fail(node, f"bad value: not a valid {node.tag}") from exc
