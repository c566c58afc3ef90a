"""Drawing the path map: inputs -> paths (with owners) -> tokens, as DOT, Mermaid or SVG.

The SVG is laid out and drawn here, in four columns (credentials; paths that
consume credentials; tokens; paths that consume tokens), with no system
binary. Where Graphviz is installed, ``tokentrail paths graph --format svg
--renderer graphviz`` pipes the DOT text through ``dot -Tsvg`` instead.

Paths are coloured by the most severe finding on them when a report is given.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from tokentrail.errors import TokentrailError
from tokentrail.policy.analyze import Report
from tokentrail.policy.paths import TOKEN_INPUTS, Function, PathMap, PathSpec, format_duration
from tokentrail.policy.rules import Severity

_FILL = {
    Severity.CRITICAL: "#f8d0d0",
    Severity.HIGH: "#fde0c2",
    Severity.MEDIUM: "#fff2c4",
    Severity.LOW: "#e3f1dc",
    Severity.INFO: "#e3f1dc",
    None: "#e6f0fa",
}
_SHORT = {
    Function.CREDENTIAL_ISSUANCE: "issuance",
    Function.AUTHENTICATION: "authn",
    Function.RECOVERY: "recovery",
    Function.DETECTION: "detection",
}


class GraphError(TokentrailError):
    """The graph cannot be drawn as asked (for example Graphviz is missing)."""


@dataclass
class Node:
    id: str
    kind: str  # "input", "path", "token"
    lines: list[str]
    column: int
    severity: Severity | None = None


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, node: Node) -> None:
        self.nodes.setdefault(node.id, node)

    def link(self, a: str, b: str, label: str = "") -> None:
        self.edges.append((a, b, label))


def build(m: PathMap, report: Report | None = None) -> Graph:
    """The graph of ``m``; paths carry their worst finding when ``report`` is given."""
    worst: dict[str, Severity] = {}
    if report is not None:
        for f in report.findings:
            if f.subject.startswith("path:"):
                pid = f.subject[5:]
                if pid not in worst or f.severity.rank > worst[pid].rank:
                    worst[pid] = f.severity
    kinds_of: dict[str, list[str]] = {}
    for k in m.spec.credential_kinds:
        kinds_of.setdefault(k.type.value, []).append(k.id)
    g = Graph()
    for p in m.paths:
        token_only = all(i.value in TOKEN_INPUTS for i in p.inputs)
        g.add(Node(f"path:{p.id}", "path", _path_lines(p), 3 if token_only else 1, worst.get(p.id)))
        for inp in p.inputs:
            value = inp.value
            if value in TOKEN_INPUTS:
                g.add(Node(f"token:{value}", "token", [value], 2))
                g.link(f"token:{value}", f"path:{p.id}")
            else:
                lines = [value, *(f"kind {k}" for k in kinds_of.get(value, [])[:3])]
                g.add(Node(f"input:{value}", "input", lines, 0))
                g.link(f"input:{value}", f"path:{p.id}")
        g.add(Node(f"token:{p.output}", "token", [p.output], 2))
        g.link(f"path:{p.id}", f"token:{p.output}", format_duration(p.max_ttl))
        if p.refresh is not None:
            g.add(Node("token:refresh_token", "token", ["refresh_token"], 2))
            g.link(f"path:{p.id}", "token:refresh_token", "refresh")
    return g


def _path_lines(p: PathSpec) -> list[str]:
    binding = "bearer" if p.binding == "none" else p.binding
    lines = [p.id, f"{p.grant.value} → {p.output} {format_duration(p.max_ttl)} {binding}"]
    for a, b in (
        (Function.CREDENTIAL_ISSUANCE, Function.AUTHENTICATION),
        (
            Function.RECOVERY,
            Function.DETECTION,
        ),
    ):
        first = f"{_SHORT[a]}: {p.owners.get(a) or 'MISSING'}"
        lines.append(f"{first} | {_SHORT[b]}: {p.owners.get(b) or 'MISSING'}")
    account = p.accountable_owner()
    if account:
        lines.append(f"accountable: {account}")
    return lines


# --- DOT ------------------------------------------------------------------------------


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: Graph) -> str:
    out = [
        "digraph paths {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#555555"];',
    ]
    for n in g.nodes.values():
        label = "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in n.lines)
        if n.kind == "path":
            attrs = f'shape=box, style="rounded,filled", fillcolor="{_FILL[n.severity]}"'
        elif n.kind == "token":
            attrs = 'shape=note, style=filled, fillcolor="#f2f2f2"'
        else:
            attrs = 'shape=ellipse, style=filled, fillcolor="#ffffff"'
        out.append(f'  {_dot_str(n.id)} [{attrs}, label="{label}"];')
    for a, b, label in g.edges:
        extra = f" [label={_dot_str(label)}]" if label else ""
        out.append(f"  {_dot_str(a)} -> {_dot_str(b)}{extra};")
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid --------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def to_mermaid(g: Graph) -> str:
    ids = {nid: f"n{i}" for i, nid in enumerate(g.nodes)}
    out = ["flowchart LR"]
    for n in g.nodes.values():
        label = "<br/>".join(_mermaid_text(line) for line in n.lines)
        if n.kind == "path":
            out.append(f'  {ids[n.id]}["{label}"]')
        elif n.kind == "token":
            out.append(f'  {ids[n.id]}[/"{label}"/]')
        else:
            out.append(f'  {ids[n.id]}(["{label}"])')
    for a, b, label in g.edges:
        arrow = f'-->|"{_mermaid_text(label)}"|' if label else "-->"
        out.append(f"  {ids[a]} {arrow} {ids[b]}")
    for sev, color in _FILL.items():
        name = sev.value if sev is not None else "ok"
        out.append(f"  classDef {name} fill:{color},stroke:#555")
    for n in g.nodes.values():
        if n.kind == "path":
            out.append(f"  class {ids[n.id]} {n.severity.value if n.severity else 'ok'}")
    return "\n".join(out) + "\n"


# --- SVG --------------------------------------------------------------------------------

_LINE = 14
_PAD = 8
_COL_W = {0: 190, 1: 330, 2: 150, 3: 330}
_GAP_X = 90
_GAP_Y = 18
_MARGIN = 20
_CHAR = 6.2  # average glyph width at 11px


def _size(n: Node) -> tuple[float, float]:
    width = max(_COL_W[n.column], max(len(s) for s in n.lines) * _CHAR + 2 * _PAD)
    return width, len(n.lines) * _LINE + 2 * _PAD


def to_svg(g: Graph, *, title: str = "issuance paths") -> str:
    columns: dict[int, list[Node]] = {c: [] for c in _COL_W}
    for n in g.nodes.values():
        columns[n.column].append(n)
    widths = {c: max([_COL_W[c], *(_size(n)[0] for n in columns[c])]) for c in columns}
    pos: dict[str, tuple[float, float, float, float]] = {}
    x = float(_MARGIN)
    top = _MARGIN + 40
    height = float(top)
    for c in sorted(columns):
        y = float(top)
        for n in columns[c]:
            h = _size(n)[1]
            pos[n.id] = (x, y, widths[c], h)
            y += h + _GAP_Y
        height = max(height, y)
        x += widths[c] + _GAP_X
    width = x - _GAP_X + _MARGIN
    height += _MARGIN
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="11">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    out.append(_legend())
    labelled: dict[str, int] = {}
    for a, b, label in g.edges:
        k = labelled.get(a, 0)
        labelled[a] = k + (1 if label else 0)
        out.append(_edge(pos[a], pos[b], label, k))
    for n in g.nodes.values():
        out.append(_node(n, pos[n.id]))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend() -> str:
    items = [("no finding", None), *((s.value, s) for s in Severity if s is not Severity.INFO)]
    bits = []
    x = _MARGIN
    for label, sev in items:
        bits.append(
            f'<rect x="{x}" y="{_MARGIN}" width="12" height="12" fill="{_FILL[sev]}" '
            'stroke="#555" stroke-width="0.5"/>'
            f'<text x="{x + 16}" y="{_MARGIN + 10}">{escape(label)}</text>'
        )
        x += 16 + int(len(label) * _CHAR) + 18
    return '<g class="legend">' + "".join(bits) + "</g>"


def _node(n: Node, box: tuple[float, float, float, float]) -> str:
    x, y, w, h = box
    if n.kind == "path":
        shape = (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="8" '
            f'fill="{_FILL[n.severity]}" stroke="#555"/>'
        )
    elif n.kind == "token":
        shape = (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
            'fill="#f2f2f2" stroke="#777" stroke-dasharray="4 2"/>'
        )
    else:
        shape = (
            f'<ellipse cx="{x + w / 2:.1f}" cy="{y + h / 2:.1f}" rx="{w / 2:.1f}" '
            f'ry="{h / 2:.1f}" fill="#ffffff" stroke="#555"/>'
        )
    text = []
    for i, line in enumerate(n.lines):
        weight = ' font-weight="bold"' if i == 0 else ""
        anchor_x = x + w / 2 if n.kind != "path" else x + _PAD
        anchor = "middle" if n.kind != "path" else "start"
        text.append(
            f'<text x="{anchor_x:.1f}" y="{y + _PAD + (i + 1) * _LINE - 3:.1f}" '
            f'text-anchor="{anchor}"{weight}>{escape(line)}</text>'
        )
    return f'<g class="{n.kind}" id="{escape(n.id)}">' + shape + "".join(text) + "</g>"


def _edge(
    a: tuple[float, float, float, float],
    b: tuple[float, float, float, float],
    label: str,
    k: int = 0,
) -> str:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if bx > ax:
        x1, y1 = ax + aw, ay + ah / 2
        x2, y2 = bx, by + bh / 2
        dx = (x2 - x1) / 2
        d = (
            f"M {x1:.1f} {y1:.1f} C {x1 + dx:.1f} {y1:.1f}, "
            f"{x2 - dx:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}"
        )
        lx, ly = x1 + 18, y1 - 4 + 11 * k
        anchor = "start"
    else:  # back edge: from the top of a later column round to the right side of the target
        x1, y1 = ax + aw / 2, ay
        x2, y2 = bx + bw, by + bh / 2
        d = (
            f"M {x1:.1f} {y1:.1f} C {x1:.1f} {min(y1, y2) - 24:.1f}, "
            f"{x2 + 40:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}"
        )
        lx, ly = x1 + 4, y1 - 6
        anchor = "start"
    path = f'<path d="{d}" fill="none" stroke="#555" stroke-width="1" marker-end="url(#arrow)"/>'
    if label:
        path += (
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" font-size="9" '
            f'fill="#333">{escape(label)}</text>'
        )
    return path


def render(m: PathMap, fmt: str, *, report: Report | None = None, renderer: str = "builtin") -> str:
    """The graph of ``m`` as ``dot``, ``mermaid`` or ``svg``."""
    g = build(m, report)
    if fmt == "dot":
        return to_dot(g)
    if fmt == "mermaid":
        return to_mermaid(g)
    if renderer == "graphviz":
        return graphviz_svg(to_dot(g))
    return to_svg(g, title=f"issuance paths: {m.file}")


def graphviz_svg(dot: str) -> str:
    """``dot -Tsvg`` where Graphviz is installed."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError("Graphviz is not installed (no `dot` on PATH); use --renderer builtin")
    done = subprocess.run(  # noqa: S603 - fixed argv, the DOT text goes to stdin
        [exe, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise GraphError(f"dot failed: {done.stderr.strip()[:500]}")
    return done.stdout
