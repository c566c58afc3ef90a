"""Rendering the accountability report: Markdown for tickets, one self-contained HTML file.

The HTML page embeds its styles and an SVG lineage diagram (no scripts, no
external assets), reads on screen and prints cleanly.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from tokentrail.policy.paths import format_duration


def _t(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return format_duration(int(seconds))


def _summary(e: dict[str, Any]) -> str:
    d = e["data"]
    bits = []
    keys = ("path", "reason", "response", "revoke", "kind", "aud", "scope", "incident")
    for key in (*keys, "recovery", "requester", "approvers"):
        if d.get(key):
            value = d[key]
            bits.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    return " ".join(bits)


# --- Markdown -------------------------------------------------------------------------


def to_markdown(r: dict[str, Any]) -> str:
    inc = r["incident"]
    acc = r["accountable"]
    br = r["blast_radius"]
    out = [
        f"# Accountability report: incident {inc['id']}",
        "",
        f"**Reason:** {inc['reason']}  ",
        f"**Target:** {inc['target_kind']} `{inc['target']}`  ",
        f"**Opened:** {_t(inc['opened_at'])} by {inc['opened_by']}  ",
        f"**Status:** {inc['status']}",
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
        f"| First detection | {_t(r['detected_at'])} |",
        f"| Contained (revocation in force) | {_t(r['contained_at'])} |",
        f"| Time to contain | {_dur(r['time_to_contain_seconds'])} |",
        f"| Descendants | {br['descendants']} ({br['live_at_compromise']} live at compromise) |",
        f"| Longest possible exposure | {_dur(br['longest_exposure_seconds'])} |",
        f"| Accountable owner | **{acc['team'] or 'none declared'}** ({acc['function'] or '-'}) |",
        "",
        f"Why: {acc['why']}."
        + (
            f" The chain's declared accountable owner is `{acc['declared']}`."
            if acc.get("declared")
            else ""
        ),
        "",
        "## Timeline",
        "",
        "| seq | time | event | actor | node | details |",
        "|---|---|---|---|---|---|",
    ]
    for e in r["timeline"]:
        out.append(
            f"| {e['seq']} | {_t(e['at'])} | `{e['event']}` | {e['actor']} | "
            f"{e['node_id'] or ''} | {_summary(e)} |"
        )
    if r["timeline_truncated"]:
        out.append("")
        out.append("_The timeline shows the first and the last events; the ledger holds all._")
    last = r["last_rejected_use"]
    out += [
        "",
        "Last rejected use after containment: "
        + (f"`{last['event']}` at {_t(last['at'])} (seq {last['seq']})" if last else "none seen"),
    ]
    out += ["", "## Blast radius", "", "| path | total | live at compromise |", "|---|---|---|"]
    for key, v in br["by_path"].items():
        out.append(f"| {key} | {v['total']} | {v['live_at_compromise']} |")
    out += ["", "| client | total | live at compromise |", "|---|---|---|"]
    for key, v in br["by_client"].items():
        out.append(f"| {key} | {v['total']} | {v['live_at_compromise']} |")
    out += [
        "",
        "Audiences reachable: "
        + (", ".join(f"`{a}` ({n})" for a, n in br["audiences"].items()) or "none"),
    ]
    out += ["", "## Control points", ""]
    for cp in r["control_points"]:
        out += [
            f"### Path `{cp['path']}`",
            "",
            cp["description"] or "",
            "",
            "| function | owning team |",
            "|---|---|",
        ]
        out += [f"| {f['title']} | {f['owner'] or '**missing**'} |" for f in cp["functions"]]
        c = cp["controls"]
        out += [
            "",
            "Controls in force: "
            f"binding **{c['binding']}**, max TTL {_dur(c['max_ttl_seconds'])}, "
            f"assurance {c['assurance_level'] or 'undeclared'}, "
            f"step-up {'yes' if c['step_up'] else 'no'}, approvals {c['approvals']}, "
            f"audit {'on' if c['audit'] else 'off'}.",
            "",
        ]
        if cp["gaps"]:
            out += ["| gap | severity | frameworks |", "|---|---|---|"]
            for g in cp["gaps"]:
                maps = "; ".join(x for v in g["mappings"].values() for x in v)
                out.append(f"| {g['rule']}: {g['message']} | {g['severity']} | {maps} |")
        else:
            out.append("No gaps found by the analyzer.")
        out.append("")
    return "\n".join(out) + "\n"


# --- HTML --------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:#1d2330;margin:2rem auto;
max-width:1080px;padding:0 1.2rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #e3e7ef;padding-bottom:.2rem;
margin-top:2rem}h3{margin-bottom:.3rem}
.meta{color:#5b6475}.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));
gap:.8rem;margin:1rem 0}.card{border:1px solid #e3e7ef;border-radius:8px;padding:.7rem .9rem}
.card b{display:block;font-size:1.25rem}.owner{background:#fff4e5;border-color:#f0b35e}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{border-bottom:1px solid #eceff5;
padding:.35rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}th{background:#f6f8fb}
code{font-size:.85em;background:#f3f5f9;padding:0 .2em;border-radius:3px}
.sev-critical,.sev-high{color:#b3261e;font-weight:600}.sev-medium{color:#a15c00}
.ev-detection{background:#fff1f0}.ev-incident{background:#eef6ff}.missing{color:#b3261e}
svg text{font:12px system-ui,sans-serif}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}
.card{break-inside:avoid}}
"""


def _e(s: Any) -> str:
    return html.escape("" if s is None else str(s))


def _diagram(r: dict[str, Any]) -> str:
    """Roots on the left, what descends from them by path and client, then audiences."""
    roots = r["roots"]
    groups = list(r["blast_radius"]["by_path"].items())
    auds = list(r["blast_radius"]["audiences"].items())[:8]
    rows = max(len(roots), len(groups), len(auds), 1)
    height = 40 + rows * 56
    parts = [
        f'<svg viewBox="0 0 960 {height}" width="100%" role="img" aria-label="lineage diagram">'
    ]

    def box(x: int, y: int, w: int, title: str, sub: str, fill: str) -> None:
        parts.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="40" rx="6" fill="{fill}" stroke="#8a94a6"/>'
        )
        parts.append(f'<text x="{x + 8}" y="{y + 17}" font-weight="600">{_e(title)}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 33}" fill="#5b6475">{_e(sub)}</text>')

    for i, n in enumerate(roots):
        box(10, 20 + i * 56, 280, f"{n['kind']} (revoked)", n["id"], "#ffe3e0")
    for j, (path, v) in enumerate(groups):
        y = 20 + j * 56
        box(360, y, 280, path, f"{v['total']} nodes, {v['live_at_compromise']} live", "#eef3ff")
        for i in range(len(roots)):
            parts.append(
                f'<line x1="290" y1="{40 + i * 56}" x2="360" y2="{y + 20}" stroke="#8a94a6"/>'
            )
    for k, (aud, count) in enumerate(auds):
        y = 20 + k * 56
        box(710, y, 240, aud, f"{count} tokens", "#effaf1")
        for j in range(len(groups)):
            parts.append(
                f'<line x1="640" y1="{40 + j * 56}" x2="710" y2="{y + 20}" stroke="#c5ccd8"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def to_html(r: dict[str, Any]) -> str:
    inc = r["incident"]
    acc = r["accountable"]
    br = r["blast_radius"]
    p: list[str] = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Incident {_e(inc['id'])}: accountability report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Accountability report: incident {_e(inc['id'])}</h1>",
        f"<p class=meta>{_e(inc['reason'])} — {_e(inc['target_kind'])} "
        f"<code>{_e(inc['target'])}</code>, opened {_e(_t(inc['opened_at']))} by "
        f"{_e(inc['opened_by'])}, {_e(inc['status'])}</p>",
        "<div class=cards>",
        f"<div class='card owner'>Accountable owner<b>{_e(acc['team'] or 'none declared')}</b>"
        f"{_e(acc['function'] or '')}</div>",
        f"<div class=card>Time to contain<b>{_e(_dur(r['time_to_contain_seconds']))}</b>"
        "detection to revocation in force</div>",
        f"<div class=card>Descendants<b>{br['descendants']}</b>{br['live_at_compromise']} live "
        "at compromise</div>",
        f"<div class=card>Longest exposure<b>{_e(_dur(br['longest_exposure_seconds']))}</b>"
        "had nothing been revoked</div>",
        "</div>",
        f"<p><b>Why this owner:</b> {_e(acc['why'])}."
        + (
            f" The declared accountable owner is <code>{_e(acc['declared'])}</code>."
            if acc.get("declared")
            else ""
        )
        + "</p>",
        "<h2>Lineage</h2>",
        _diagram(r),
        "<h2>Timeline</h2><table><tr><th>seq<th>time<th>event<th>actor<th>node<th>details</tr>",
    ]
    for e in r["timeline"]:
        cls = (
            "ev-detection"
            if e["event"].startswith("detection.")
            else ("ev-incident" if e["event"].startswith("incident.") else "")
        )
        p.append(
            f"<tr class='{cls}'><td>{e['seq']}<td>{_e(_t(e['at']))}<td><code>{_e(e['event'])}"
            f"</code><td>{_e(e['actor'])}<td>{_e(e['node_id'])}<td>{_e(_summary(e))}</tr>"
        )
    p.append("</table>")
    last = r["last_rejected_use"]
    p.append(
        "<p><b>Last rejected use after containment:</b> "
        + (
            f"<code>{_e(last['event'])}</code> at {_e(_t(last['at']))} (seq {last['seq']})"
            if last
            else "none seen"
        )
        + "</p>"
    )
    p.append("<h2>Blast radius</h2><table><tr><th>path<th>total<th>live at compromise</tr>")
    p += [
        f"<tr><td>{_e(k)}<td>{v['total']}<td>{v['live_at_compromise']}</tr>"
        for k, v in br["by_path"].items()
    ]
    p.append("</table><table><tr><th>client<th>total<th>live at compromise</tr>")
    p += [
        f"<tr><td>{_e(k)}<td>{v['total']}<td>{v['live_at_compromise']}</tr>"
        for k, v in br["by_client"].items()
    ]
    p.append(
        "</table><p><b>Audiences reachable:</b> "
        + (", ".join(f"<code>{_e(a)}</code> ({n})" for a, n in br["audiences"].items()) or "none")
        + "</p>"
    )
    p.append("<h2>Control points</h2>")
    for cp in r["control_points"]:
        c = cp["controls"]
        p.append(
            f"<h3>Path <code>{_e(cp['path'])}</code></h3><p class=meta>"
            f"{_e(cp['description'])}</p><table><tr><th>function<th>owning team</tr>"
        )
        for f in cp["functions"]:
            owner = _e(f["owner"]) if f["owner"] else "<span class=missing>missing</span>"
            p.append(f"<tr><td>{_e(f['title'])}<td>{owner}</tr>")
        p.append(
            "</table><p>Controls in force: binding <b>"
            + _e(c["binding"])
            + "</b>, max TTL "
            + _e(_dur(c["max_ttl_seconds"]))
            + ", assurance "
            + _e(c["assurance_level"] or "undeclared")
            + ", step-up "
            + ("yes" if c["step_up"] else "no")
            + f", approvals {c['approvals']}, audit "
            + ("on" if c["audit"] else "off")
            + ".</p>"
        )
        if cp["gaps"]:
            p.append("<table><tr><th>gap<th>severity<th>frameworks<th>remediation</tr>")
            for g in cp["gaps"]:
                maps = "; ".join(x for v in g["mappings"].values() for x in v)
                p.append(
                    f"<tr><td><b>{_e(g['rule'])}</b> {_e(g['message'])}<td class='sev-"
                    f"{_e(g['severity'])}'>{_e(g['severity'])}<td>{_e(maps)}<td>"
                    f"{_e(g['remediation'])}</tr>"
                )
            p.append("</table>")
        else:
            p.append("<p>No gaps found by the analyzer.</p>")
    p.append(
        "<p class=meta>Generated by tokentrail from the lineage and the hash-chained "
        "audit ledger.</p></body></html>"
    )
    return "\n".join(p)
