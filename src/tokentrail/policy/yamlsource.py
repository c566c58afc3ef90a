"""Safe YAML reading that remembers where every value came from.

The path map is read with PyYAML's safe composer into a node graph, then turned
into plain Python values while recording the line and column of each one, so
that a validation error can point at the exact place in the file. Aliases are
expanded under a budget, so a "billion laughs" document fails fast instead of
eating memory; files above a size limit are refused before parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """A parsed YAML document with the location of each value.

    Locations are looked up in the composed node tree when asked for (most values
    never are), so reading a large map does not pay for a mark per value: a
    mapping value is located at its key, a list item at the item. ``marks`` holds
    explicit locations; ``redirects`` sends the locations of a path's inherited
    values (``extends``) to the templates they came from, nearest first.
    """

    file: str
    data: Any
    marks: dict[Loc, Mark] = field(default_factory=dict)
    root: yaml.Node | None = None
    redirects: dict[Loc, tuple[Loc, ...]] = field(default_factory=dict)

    def mark(self, loc: Loc) -> Mark:
        """The mark of ``loc``, or of its nearest located parent."""
        if self.root is not None and loc not in self.marks:
            found, depth = _lookup(self.root, loc)
            if depth < len(loc) and len(loc) >= 2 and loc[:2] in self.redirects:
                for base in self.redirects[loc[:2]]:
                    inherited, got = _lookup(self.root, (*base, *loc[2:]))
                    if got == len(base) + len(loc) - 2:
                        return inherited
            return found
        while loc not in self.marks and loc:
            loc = loc[:-1]
        return self.marks.get(loc, Mark(1, 1))

    def where(self, loc: Loc) -> str:
        m = self.mark(loc)
        return f"{self.file}:{m.line}:{m.column}"


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _lookup(root: yaml.Node, loc: Loc) -> tuple[Mark, int]:
    """The mark of the deepest prefix of ``loc`` in the tree, and that prefix's length."""
    node, best = root, _mark(root)
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    node, best = value_node, _mark(key_node)
                    break
            else:
                return best, depth
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            best = _mark(node)
        else:
            return best, depth
    return best, len(loc)


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
    data = walker.convert(node, 0)
    return Source(name, data, root=node)


class _Walker:
    """Turns a composed node graph into values, under a budget."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.budget = MAX_VALUES
        self.constructor = yaml.constructor.SafeConstructor()

    def _fail(self, node: yaml.Node, message: str) -> PathMapError:
        m = node.start_mark
        return PathMapError(f"{self.name}:{m.line + 1}:{m.column + 1}: {message}")

    def convert(self, node: yaml.Node, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self._fail(node, f"expands to more than {MAX_VALUES} values (alias bomb?)")
        if depth > MAX_DEPTH:
            raise self._fail(node, f"nesting deeper than {MAX_DEPTH}")
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
                out[key] = self.convert(value_node, depth + 1)
            return out
        return [self.convert(item, depth + 1) for item in node.value]

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
