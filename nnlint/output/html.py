"""The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched).

`render(report) -> str` gives the page: the summary, the findings table (each code links to its rule's
documentation further down the same file), the measured signal through depth as charts with the
layers that have a finding colored by severity, the model input per channel with the normalization
to apply, and the documentation of every rule that fired. It reads the Report and its Trace only.
"""
from __future__ import annotations

import inspect
import os
from html import escape

from nnlint.diagnostics import Diagnostic
from nnlint.output import module_label, svg
from nnlint.output.grouping import Group, groups
from nnlint.output.html_charts import depth_section, input_section
from nnlint.output.html_style import PAGE_CSS
from nnlint.output.markdown import markdown_to_html

SEVERITY_LABEL = {"error": "Error", "warning": "Warning", "info": "Info"}


def render(report, *, fragment: bool = False) -> str:
    """The page; with `fragment`, its sections alone (no page, style or footer), for a page that embeds
    them: a notebook cell (nnlint.output.notebook)."""
    diagnostics = report.sorted()
    trace = report.trace
    parts = [
        _header(report),
        _summary(report),
        _findings(report, diagnostics),
    ]
    if trace is not None:
        parts.append(depth_section(trace, diagnostics))
        parts.append(input_section(trace, diagnostics))
    parts.append(_rules_section(diagnostics))
    if fragment:
        return "".join(parts)
    parts.append(_footer())
    title = f"nnlint: {report.model_name}" + (f" ({os.path.basename(report.source_file)})" if report.source_file else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"color-scheme\" content=\"light dark\">\n"
        f"<title>{escape(title)}</title>\n<style>{PAGE_CSS}{svg.CHART_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{''.join(parts)}\n</main>\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------- header and summary

def _header(report) -> str:
    trace = report.trace
    facts = []
    if report.source_file:
        facts.append(f"<code>{escape(report.source_file)}</code>")
    if report.batch_description:
        facts.append(f"batch of {escape(report.batch_description)}")
    passes = []
    if trace is not None:
        passes.append("train forward" + (" + backward" if trace.backward_ran else ""))
        if trace.eval_ran:
            passes.append("eval forward")
        if trace.backward_ran:
            passes.append("true loss" if not trace.loss_is_surrogate else "surrogate loss (relative gradients)")
    if passes:
        facts.append(", ".join(passes))
    if report.seconds:
        facts.append(f"{report.seconds:.1f} s" if report.seconds >= 1 else f"{report.seconds:.2f} s")
    return (f'<header class="page-header"><p class="kicker">nnlint report</p>'
            f"<h1>{escape(report.model_name)}</h1>"
            f'<p class="facts">{" · ".join(facts)}</p></header>')


def _summary(report) -> str:
    s = report.summary()
    if s["total"] == 0:
        verdict = '<p class="verdict ok">No problems found.</p>'
    else:
        problems = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                             ((s["errors"], "error"), (s["warnings"], "warning"), (s["infos"], "info")) if n)
        status = "ok" if report.ok else "fail"
        verdict = (f'<p class="verdict {status}">{s["total"]} finding{"" if s["total"] == 1 else "s"}: {problems}.'
                   + (" Info findings do not fail the check." if report.ok else "") + "</p>")
    cards = "".join(
        f'<div class="card {cls if n else "zero"}"><span class="count">{n}</span><span class="what">{label}</span></div>'
        for n, label, cls in ((s["errors"], "errors", "sev-error"), (s["warnings"], "warnings", "sev-warning"),
                              (s["infos"], "info", "sev-info"), (s["fixable"], "fixable", "fixable")))
    fix_hint = ""
    if s["fixable"]:
        unsafe = sum(1 for d in report.fixable if not d.fix.safe)
        if report.source_file:
            how, unsafe_flag = f"Preview the fixes with <code>nnlint fix {escape(report.source_file)} --diff</code>", "--unsafe-fixes"
        else:   # a model checked in Python (a notebook) or named on the command line: no file to edit
            how, unsafe_flag = "Apply the fixes in memory with <code>nnlint.fix(model, batch)</code>", "unsafe=True"
        fix_hint = (f'<p class="hint">{how}'
                    + (f"; {unsafe} of them change the architecture and need <code>{unsafe_flag}</code>" if unsafe else "")
                    + ".</p>")
    notes = list(report.notes)   # regions the tracer could not see are NN001 findings, not notes
    note_html = ""
    if notes:
        note_html = '<ul class="notes">' + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>"
    return f'<section class="summary"><div class="cards">{cards}</div>{verdict}{fix_hint}{note_html}</section>'


# ---------------------------------------------------------------- findings table

def _findings(report, diagnostics: list[Diagnostic]) -> str:
    if not diagnostics:
        return ('<section id="findings"><h2>Findings</h2><p class="empty">Every selected rule passed on this '
                'batch.</p></section>')
    rows = []
    known = frozenset(report.trace.modules) if report.trace is not None else frozenset()
    for i, g in enumerate(groups(diagnostics)):
        d = g.first
        rows.append(
            f'<tr id="finding-{i + 1}" class="row-{escape(d.severity)}">'
            f'<td><span class="badge sev-{escape(d.severity)}">{escape(SEVERITY_LABEL.get(d.severity, d.severity))}</span></td>'
            f'<td class="code"><a href="#rule-{escape(d.code)}" title="{escape(d.name)}: what it is and how to fix it">'
            f'{escape(d.code)}</a><div class="rule-name">{escape(d.name)}</div></td>'
            f'<td class="module"><code>{escape(g.label if d.module else module_label(d))}</code></td>'
            f"<td class=\"line\">{_location_cell(d)}</td>"
            f'<td class="message">{escape(g.message(known))}{_members(g)}</td>'
            f'<td class="fix">{_fix_cell(d)}</td></tr>')
    return ('<section id="findings"><h2>Findings</h2>'
            '<p class="section-intro">In execution order. A code links to its rule: what it checks, why it matters, '
            'how to fix it.</p>'
            '<div class="table-wrap"><table class="findings"><thead><tr><th>Severity</th><th>Rule</th><th>Module</th>'
            '<th>Line</th><th>Finding</th><th>Fix</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div></section>")


def _members(g: Group) -> str:
    """The findings of a group, one per module, folded (a <details>: no script)."""
    if len(g.diagnostics) == 1:
        return ""
    items = "".join(f"<li><code>{escape(d.module)}</code>: {escape(d.message)}</li>" for d in g.diagnostics)
    return f'<details class="members"><summary>{len(g.diagnostics)} findings, one per module</summary><ul>{items}</ul></details>'


def _location_cell(d: Diagnostic) -> str:
    if d.location is None:
        return '<span class="muted">–</span>'
    return f'<span title="{escape(str(d.location))}">{escape(os.path.basename(d.location.file))}:{d.location.line}</span>'


def _fix_cell(d: Diagnostic) -> str:
    if d.fix is None:
        return '<span class="muted">–</span>'
    kind = "safe" if d.fix.safe else "unsafe"
    return f'<span class="fix-kind {kind}">{kind}</span> {escape(d.fix.description)}'


# ---------------------------------------------------------------- rule documentation

def _rules_section(diagnostics: list[Diagnostic]) -> str:
    codes = sorted({d.code for d in diagnostics})
    if not codes:
        return ""
    docs = []
    for code in codes:
        cls = _rule_class(code)
        name = next(d.name for d in diagnostics if d.code == code)
        if cls is None:
            body = '<p class="muted">No documentation found for this rule.</p>'
            meta = ""
        else:
            body = markdown_to_html(inspect.cleandoc(cls.documentation()), heading_level=4)
            meta = (f'<p class="rule-meta">default severity <span class="badge sev-{escape(cls.severity)}">'
                    f'{escape(cls.severity)}</span> · fix: {escape(cls.fixable)} · {escape(cls.summary)}</p>')
        docs.append(f'<article class="rule-doc" id="rule-{escape(code)}"><h3>{escape(code)} '
                    f'<span class="rule-name">{escape(name)}</span></h3>{meta}{body}'
                    '<p class="back"><a href="#findings">↑ back to the findings</a></p></article>')
    return f'<section id="rules"><h2>Rules</h2>{"".join(docs)}</section>'


def _rule_class(code: str):
    try:
        from nnlint.registry import all_rules

        return all_rules().get(code)
    except Exception:   # noqa: BLE001 - a broken rule import must not cost the user the report
        return None


def _footer() -> str:
    from nnlint._version import __version__

    return (f'<footer><p>Generated by nnlint {escape(__version__)}. This file is self-contained: no scripts, '
            "nothing loaded from the network.</p></footer>")
