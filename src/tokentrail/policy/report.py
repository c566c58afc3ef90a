"""Rendering an analysis report: text for terminals, JSON for scripts, Markdown for reviews."""

from __future__ import annotations

from typing import Any

from tokentrail.policy.analyze import Report
from tokentrail.policy.owners import Matrix
from tokentrail.policy.paths import Function
from tokentrail.policy.persistence import EntryPoint
from tokentrail.policy.rules import RULES, Finding, Rule, Severity, framework_title

#: Entry points listed in text and Markdown (all of them in JSON).
TEXT_ENTRIES = 40


def finding_json(report: Report, f: Finding) -> dict[str, Any]:
    mark = report.map.mark(f.loc)
    return {
        "rule": f.rule.id,
        "name": f.rule.name,
        "severity": f.severity.value,
        "message": f.message,
        "subject": f.subject,
        "file": report.file,
        "line": mark.line,
        "column": mark.column,
        "frameworks": f.rule.mappings(nhi=f.nhi),
    }


def to_json(report: Report) -> dict[str, Any]:
    return {
        "file": report.file,
        "summary": {"findings": len(report.findings), **report.counts()},
        "findings": [finding_json(report, f) for f in report.findings],
        "persistence": [e.to_json() for e in report.entry_points],
    }


def _summary_line(report: Report) -> str:
    counts = report.counts()
    parts = [f"{n} {sev}" for sev, n in counts.items() if n]
    total = len(report.findings)
    noun = "finding" if total == 1 else "findings"
    return f"{report.file}: {total} {noun}" + (f" ({', '.join(parts)})" if parts else "")


def _entries_for_display(entries: list[EntryPoint]) -> list[EntryPoint]:
    """Infinite windows first, then the longest; at most TEXT_ENTRIES."""

    def key(e: EntryPoint) -> tuple[int, float]:
        return (0 if e.infinite else 1, -(e.window or 0))

    return sorted(entries, key=key)[:TEXT_ENTRIES]


def _reach(e: EntryPoint) -> str:
    if e.window == 0 and not e.groups():
        return "mints nothing"
    bits = []
    if e.direct is not None and e.direct.members:
        bits.append(f"mints at {_names(e.direct.ids)}")
    if e.carries is not None:
        bits.append(f"used as is at {_names(e.carries.ids)}")
    if e.exchange is not None and e.exchange.members:
        bits.append(f"exchanges at {_names(e.exchange.ids)}")
    bits.append(f"tokens {', '.join(e.token_kinds) or '-'}")
    bits.append(f"audiences {_names(e.audiences, 'any')}")
    bits.append(f"scopes {_names(e.scopes, 'any')}")
    return "; ".join(bits)


def _names(items: tuple[str, ...] | list[str], star: str = "*") -> str:
    shown = [star if x == "*" else x for x in items[:5]]
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return ", ".join(shown) + more


def to_text(report: Report) -> str:
    lines = [_summary_line(report), ""]
    for f in report.findings:
        where = report.map.where(f.loc)
        lines.append(f"{f.severity.value.upper():<8} {f.rule.id:<11} {where}")
        lines.append(f"         {f.message}")
        maps = f.rule.mappings(nhi=f.nhi)
        refs = [x for values in maps.values() for x in values]
        if refs:
            lines.append(f"         maps to: {'; '.join(refs)}")
    if report.findings:
        lines.append("")
    shown = _entries_for_display(report.entry_points)
    lines.append(_windows_lines(shown))
    hidden = len(report.entry_points) - len(shown)
    if hidden > 0:
        lines.append(f"  ... {hidden} more entry points (use --format json)")
    lines.append("")
    lines.append(
        "explain a rule: tokentrail paths explain RULE; owners: tokentrail paths owners FILE"
    )
    return "\n".join(lines) + "\n"


def _windows_lines(entries: list[EntryPoint]) -> str:
    lines = ["Persistence windows (how long a thief holding only this can keep minting):"]
    width = max((len(e.label) for e in entries), default=0)
    for e in entries:
        lines.append(f"  {e.label:<{width}}  {e.window_text:>9}  {e.explanation}")
        lines.append(f"  {'':<{width}}  {'':>9}  {_reach(e)}")
    return "\n".join(lines)


def windows_text(entries: list[EntryPoint]) -> str:
    """Every entry point, infinite windows first, then the longest."""
    ordered = sorted(entries, key=lambda e: (0 if e.infinite else 1, -(e.window or 0)))
    return _windows_lines(ordered) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    counts = report.counts()
    badge = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
    out = [f"### tokentrail path-map check: `{report.file}`", "", f"**{badge}**", ""]
    if report.findings:
        out += ["| Severity | Rule | Where | Finding | Maps to |", "|---|---|---|---|---|"]
        for f in report.findings:
            mark = report.map.mark(f.loc)
            maps = [x for v in f.rule.mappings(nhi=f.nhi).values() for x in v]
            out.append(
                f"| {f.severity.value} | `{f.rule.id}` {f.rule.name} | "
                f"`{report.file}:{mark.line}` | {_md(f.message)} | {_md(', '.join(maps))} |"
            )
        out.append("")
    shown = _entries_for_display(report.entry_points)
    out += [
        "<details><summary>Persistence windows</summary>",
        "",
        "| Entry point | Window | Why | Reach |",
        "|---|---|---|---|",
    ]
    for e in shown:
        out.append(
            f"| {_md(e.label)} | {e.window_text} | {_md(e.explanation)} | {_md(_reach(e))} |"
        )
    hidden = len(report.entry_points) - len(shown)
    if hidden > 0:
        out.append(f"| … {hidden} more | | | |")
    out += ["", "</details>", ""]
    return "\n".join(out)


# --- ownership matrix -------------------------------------------------------------------

_SHORT = {
    Function.CREDENTIAL_ISSUANCE: "credential issuance",
    Function.AUTHENTICATION: "authentication",
    Function.RECOVERY: "recovery",
    Function.DETECTION: "detection",
}


def _team(value: str | None) -> str:
    return value if value else "MISSING"


def _teams(values: tuple[str, ...]) -> str:
    named = [v if v else "MISSING" for v in values]
    return _names(named)


def owners_text(matrix: Matrix) -> str:
    header = ["path", *(_SHORT[f] for f in Function), "accountable"]
    rows = [
        [r.path, *(_team(r.owners[f]) for f in Function), _team(r.accountable)]
        for r in matrix.paths
    ]
    out = ["Paths", *_table(header, rows), "", "Chains"]
    header = ["chain", "entry", "steps", *(_SHORT[f] for f in Function), "accountable"]
    rows = []
    for c in matrix.chains:
        steps = " -> ".join(c.steps)
        if c.follow_on:
            steps += f" -> exchange: {_names(c.follow_on)}"
        rows.append(
            [
                c.id,
                c.entry,
                steps,
                *(_teams(c.owners[f]) for f in Function),
                c.accountable or "NONE (finding TT-OWN-002)",
            ]
        )
    out += _table(header, rows)
    out.append("")
    out.append(
        "A chain id ending in ~ is derived from an entry path (no declared chain starts there)."
    )
    return "\n".join(out) + "\n"


def owners_markdown(matrix: Matrix) -> str:
    out = ["### Ownership matrix", "", "#### Paths", ""]
    header = ["Path", *(_SHORT[f].capitalize() for f in Function), "Accountable"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in matrix.paths:
        cells = [f"`{r.path}`", *(_team(r.owners[f]) for f in Function), _team(r.accountable)]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "#### Chains", ""]
    header = ["Chain", "Entry", "Steps", *(_SHORT[f].capitalize() for f in Function), "Accountable"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in matrix.chains:
        steps = " → ".join(c.steps) + (f" → exchange ({len(c.follow_on)})" if c.follow_on else "")
        cells = [
            f"`{c.id}`",
            _md(c.entry),
            _md(steps),
            *(_md(_teams(c.owners[f])) for f in Function),
            c.accountable or "**none**",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return lines


# --- rules ------------------------------------------------------------------------------


def rule_markdown(r: Rule, *, level: int = 2) -> str:
    """The page of one rule (docs/rules.md section, ``paths explain``)."""
    h = "#" * level
    out = [f"{h} {r.id} {r.name}", "", f"**{r.title}.** Severity: **{r.severity.value}**.", ""]
    out += ["**Why it matters.** " + r.rationale, "", "**How to fix it.** " + r.remediation, ""]
    maps = r.mappings()
    labels = {
        "owasp_nhi": "OWASP NHI Top 10 (2025)",
        "nist_csf": "NIST CSF 2.0",
        "sp800_207": "NIST SP 800-207",
        "sp800_63b": "NIST SP 800-63B-4",
    }
    out.append("**Maps to:**")
    out.append("")
    idents: dict[str, tuple[str | int, ...]] = {
        "owasp_nhi": r.owasp,
        "nist_csf": r.csf,
        "sp800_207": r.zta,
        "sp800_63b": r.sp800_63b,
    }
    kinds = {"owasp_nhi": "owasp", "nist_csf": "csf", "sp800_207": "zta", "sp800_63b": "sp800_63b"}
    for key, label in labels.items():
        for shown, ident in zip(maps[key], idents[key], strict=True):
            out.append(f"- {label}: {shown} — {framework_title(kinds[key], ident)}")
    if not any(maps.values()):
        out.append("- (none)")
    if r.references:
        out += ["", "**References:** " + ", ".join(r.references)]
    if r.example:
        out += [
            "",
            "**Example of a compliant map fragment:**",
            "",
            "```yaml",
            r.example.rstrip(),
            "```",
        ]
    return "\n".join(out) + "\n"


def rules_markdown() -> str:
    """docs/rules.md, generated from the rule definitions."""
    out = [
        "# Path-map analyzer rules",
        "",
        "<!-- Generated from src/tokentrail/policy/rules.py by "
        "`python -m tokentrail.policy.docs`; a test fails when it is stale. -->",
        "",
        "`tokentrail paths check FILE` applies these rules to an issuance-path map "
        "(see [paths.md](paths.md)). Each finding names its rule id, the exact YAML "
        "location and the framework identifiers it maps to, as shared/STANDARDS.md "
        "writes them. `tokentrail paths explain RULE` prints one page.",
        "",
        "| Id | Name | Severity | Title |",
        "|---|---|---|---|",
    ]
    for r in RULES:
        anchor = f"{r.id} {r.name}".lower().replace(" ", "-")
        out.append(f"| [{r.id}](#{anchor}) | {r.name} | {r.severity.value} | {r.title} |")
    out.append("")
    out.append(
        "OWASP NHI mappings apply to non-human identities; findings about human paths "
        "and human credential kinds leave them out and rely on SP 800-63B-4."
    )
    out.append("")
    for r in RULES:
        out.append(rule_markdown(r))
    return "\n".join(out).rstrip() + "\n"


def rules_text() -> str:
    width = max(len(r.name) for r in RULES)
    lines = [f"{r.id:<11} {r.severity.value:<8} {r.name:<{width}}  {r.title}" for r in RULES]
    return "\n".join(lines) + "\n"


def rules_json() -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "name": r.name,
            "title": r.title,
            "severity": r.severity.value,
            "rationale": r.rationale,
            "remediation": r.remediation,
            "frameworks": r.mappings(),
            "references": list(r.references),
        }
        for r in RULES
    ]


SEVERITY_CHOICES = [s.value for s in Severity]
