"""The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched).

`render(report) -> str` gives the page: the summary, the findings table (each code links to its rule's
documentation further down the same file), the measured signal through depth as charts with the
layers that have a finding colored by severity, the model input per channel with the normalization
to apply, and the documentation of every rule that fired. It reads the Report and its Trace only.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from html import escape
from typing import Optional

from nnlint.diagnostics import SEVERITY_RANK, Diagnostic
from nnlint.output import svg
from nnlint.output.markdown import markdown_to_html
from nnlint.output.depth import DepthProfile, LayerValue, depth_profile

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
        parts.append(_depth_section(depth_profile(trace), diagnostics))
        parts.append(_input_section(trace, diagnostics))
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
    for i, d in enumerate(diagnostics):
        rows.append(
            f'<tr id="finding-{i + 1}" class="row-{escape(d.severity)}">'
            f'<td><span class="badge sev-{escape(d.severity)}">{escape(SEVERITY_LABEL.get(d.severity, d.severity))}</span></td>'
            f'<td class="code"><a href="#rule-{escape(d.code)}" title="{escape(d.name)}: what it is and how to fix it">'
            f'{escape(d.code)}</a><div class="rule-name">{escape(d.name)}</div></td>'
            f'<td class="module"><code>{escape(_module_label(d))}</code></td>'
            f"<td class=\"line\">{_location_cell(d)}</td>"
            f'<td class="message">{escape(d.message)}</td>'
            f'<td class="fix">{_fix_cell(d)}</td></tr>')
    return ('<section id="findings"><h2>Findings</h2>'
            '<p class="section-intro">In execution order. A code links to its rule: what it checks, why it matters, '
            'how to fix it.</p>'
            '<div class="table-wrap"><table class="findings"><thead><tr><th>Severity</th><th>Rule</th><th>Module</th>'
            '<th>Line</th><th>Finding</th><th>Fix</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div></section>")


def _module_label(d: Diagnostic) -> str:
    if d.module:
        return d.module
    return "input" if "input" in d.evidence or d.code.startswith("NN3") else "model"


def _location_cell(d: Diagnostic) -> str:
    if d.location is None:
        return '<span class="muted">–</span>'
    return f'<span title="{escape(str(d.location))}">{escape(os.path.basename(d.location.file))}:{d.location.line}</span>'


def _fix_cell(d: Diagnostic) -> str:
    if d.fix is None:
        return '<span class="muted">–</span>'
    kind = "safe" if d.fix.safe else "unsafe"
    return f'<span class="fix-kind {kind}">{kind}</span> {escape(d.fix.description)}'


# ---------------------------------------------------------------- through depth

@dataclass
class _Chart:
    """One plot through depth: what it shows, how, and what to say when there is nothing to plot."""

    title: str
    caption: str
    values: list[LayerValue]
    x_label: str
    y_label: str
    empty: str                                   # "no sigmoid or tanh ran"
    log_y: bool = False
    y_range: Optional[tuple[float, float]] = None
    references: list = field(default_factory=list)
    primary_name: str = ""
    secondary_name: str = ""                     # a dashed second series from LayerValue.secondary
    related_codes: tuple[str, ...] = ()          # findings that also count when on a nested module


def _depth_section(profile: DepthProfile, diagnostics: list[Diagnostic]) -> str:
    charts = [
        _Chart("Activations after each weight layer",
               "Standard deviation (and |mean|, dashed) of every linear/conv output, log scale. A steady fall "
               "or rise through depth is a vanishing or exploding signal (NN401/NN402).",
               profile.activations, "weight layer, execution order", "activation (log)",
               "no linear or convolution layer ran", log_y=True, primary_name="std", secondary_name="|mean|"),
        _Chart("Dead units after each ReLU",
               "Fraction of units active on under 1% of the batch's positions (NN203).",
               profile.dead, "ReLU-family call, execution order", "dead fraction", "no ReLU-family activation ran",
               y_range=(0.0, 1.0), references=_threshold_refs("NN203")),
        _Chart("Saturated sigmoid/tanh",
               "Fraction of pre-activations in the flat region, where the derivative is under 5% of its peak (NN202).",
               profile.saturated, "sigmoid/tanh call, execution order", "saturated fraction", "no sigmoid or tanh ran",
               y_range=(0.0, 1.0), references=_threshold_refs("NN202")),
        _Chart("Gradient through depth",
               "Gradient norm relative to the weight norm, per weight, log scale. A fall of 1000x from the last "
               "layer to the first is a vanishing gradient (NN404).",
               profile.gradients, "weight, execution order", "|grad| / |weight| (log)",
               "gradients: no backward pass ran" if not profile.backward_ran
               else "gradients: no trainable weight received one", log_y=True),
        _Chart("Residual stream variance",
               "Variance of the stream after each residual add, log scale. Roughly constant or linear growth is "
               "healthy; doubling per block is the un-normalized growth NN403 reports.",
               profile.residual, "residual add, execution order", "variance (log)", "no residual connection found",
               log_y=True, related_codes=("NN403",)),
    ]
    by_module = _diagnostics_by_module(diagnostics)
    drawn = [_chart_block(c, by_module) for c in charts if c.values]
    # A chart with nothing to plot becomes one line below the others instead of an empty box.
    missing = [c.empty for c in charts if not c.values]
    note = f'<p class="empty">Not plotted: {escape("; ".join(missing))}.</p>' if missing else ""
    legend = ('<p class="legend">Layers with a finding: <span class="dot sev-error"></span>error '
              '<span class="dot sev-warning"></span>warning <span class="dot sev-info"></span>info '
              '<span class="dot plain"></span>none. Hover a point for its module and numbers.</p>')
    return (f'<section id="depth"><h2>Through depth</h2>{legend}<div class="charts">{"".join(drawn)}</div>'
            f"{note}</section>")


def _chart_block(chart: _Chart, by_module: dict[str, list[Diagnostic]]) -> str:
    """One chart with its caption. A point takes the findings on its own module; for the chart's
    `related_codes` also those on a module inside it or around it (a residual-growth finding on a
    block's branch layer, or on the stage that holds a run of blocks)."""
    related = [d for ds in by_module.values() for d in ds if d.code in chart.related_codes]
    points = []
    for v in chart.values:
        found = list(by_module.get(v.module, []))
        found += [d for d in related if d not in found and _nested(d.module, v.module)]
        points.append(svg.Point(v.position, v.value, _hover(v, found), _mark(found)))
    series = [svg.Series(chart.primary_name or chart.y_label, points, "series-0")]
    if chart.secondary_name and any(v.secondary is not None for v in chart.values):
        series.append(svg.Series(chart.secondary_name, [
            svg.Point(v.position, abs(v.secondary) if v.secondary is not None else None,
                      _hover(v, by_module.get(v.module, []))) for v in chart.values], "series-1", dashed=True))
    plot = svg.line_chart(series, x_label=chart.x_label, y_label=chart.y_label, log_y=chart.log_y,
                          y_range=chart.y_range, references=chart.references, aria_label=chart.title)
    return (f'<figure class="chart-block"><figcaption><h3>{escape(chart.title)}</h3><p>{escape(chart.caption)}</p>'
            f"</figcaption>{plot}</figure>")


def _nested(a: str, b: str) -> bool:
    return bool(a and b) and (a.startswith(b + ".") or b.startswith(a + "."))


def _hover(v: LayerValue, found: list[Diagnostic]) -> str:
    lines = [f"#{v.position} {v.label}", v.detail]
    for d in found:
        message = d.message if len(d.message) <= 160 else d.message[:157] + "..."
        lines.append(f"{d.code} {d.severity}: {message}")
    return "\n".join(lines)


def _mark(found: list[Diagnostic]) -> str:
    if not found:
        return ""
    worst = min(found, key=lambda d: SEVERITY_RANK.get(d.severity, 9))
    return f"sev-{worst.severity}"


def _diagnostics_by_module(diagnostics: list[Diagnostic]) -> dict[str, list[Diagnostic]]:
    out: dict[str, list[Diagnostic]] = {}
    for d in diagnostics:
        if d.module:
            out.setdefault(d.module, []).append(d)
    return out


def _threshold_refs(code: str) -> list[svg.Reference]:
    """The rule's default warning/error fractions as reference lines (from the rule class itself)."""
    cls = _rule_class(code)
    options = cls.options if cls is not None else {}
    refs = []
    if "warning_fraction" in options:
        refs.append(svg.Reference(options["warning_fraction"], f"warning > {options['warning_fraction']:g}", "ref-warning"))
    if "error_fraction" in options:
        refs.append(svg.Reference(options["error_fraction"], f"error > {options['error_fraction']:g}", "ref-error"))
    return refs


# ---------------------------------------------------------------- the input

def _input_section(trace, diagnostics: list[Diagnostic]) -> str:
    if not trace.inputs:
        return ""
    blocks = [_input_block(rec, diagnostics) for rec in trace.inputs]
    return f'<section id="input"><h2>Input</h2>{"".join(blocks)}</section>'


def _input_block(rec, diagnostics: list[Diagnostic]) -> str:
    shape = "x".join(str(s) for s in rec.summary.shape)
    head = f'<h3><code>{escape(rec.path)}</code> <span class="muted">{escape(shape)} {escape(rec.summary.dtype)}</span></h3>'
    if not rec.is_float:
        return head + '<p class="empty">Integer input (token ids or labels): not normalized, not checked.</p>'
    if not rec.channel_mean:
        return head + (f'<p>mean {svg.format_number(rec.summary.mean)}, std {svg.format_number(rec.summary.std)} '
                       "(no channel dimension to break it down by).</p>")
    mine = [d for d in diagnostics if d.evidence.get("input") == rec.path or
            (d.fix is not None and d.fix.params.get("input") == rec.path)]
    centered = next((d for d in mine if d.code == "NN301"), None)
    scaled = next((d for d in mine if d.code == "NN302"), None)
    means, stds = rec.channel_mean, rec.channel_std
    what = _unit_word(rec)
    # Color the channels the findings are about, by the rules' own default thresholds.
    mean_to_std = _rule_option("NN301", "mean_to_std", 0.5)
    min_std, max_std = _rule_option("NN302", "min_std", 0.2), _rule_option("NN302", "max_std", 5.0)
    mean_bars = [svg.Bar(str(i), m, f"{what} {i}: mean {svg.format_number(m)} ± std {svg.format_number(s)}",
                         error=s, mark=_mark([centered]) if centered and abs(m) > mean_to_std * s else "")
                 for i, (m, s) in enumerate(zip(means, stds))]
    std_bars = [svg.Bar(str(i), s, f"{what} {i}: std {svg.format_number(s)}",
                        mark=_mark([scaled]) if scaled and not (min_std <= s <= max_std) else "")
                for i, s in enumerate(stds)]
    charts = (
        '<div class="charts">'
        f'<figure class="chart-block"><figcaption><h4>Mean per {what}, with ± one std</h4></figcaption>'
        + svg.bar_chart(mean_bars, x_label=what, y_label="mean ± std", height=220,
                        aria_label=f"{rec.path} mean per {what}")
        + '</figure>'
        f'<figure class="chart-block"><figcaption><h4>Std per {what}</h4></figcaption>'
        + svg.bar_chart(std_bars, x_label=what, y_label="std", height=220,
                        references=[svg.Reference(1.0, "target 1", "ref-target")], aria_label=f"{rec.path} std per {what}")
        + "</figure></div>")
    return head + charts + _normalization(rec, mine)


def _normalization(rec, mine: list[Diagnostic]) -> str:
    fix = next((d.fix for d in mine if d.fix is not None and d.fix.kind == "normalize_input"), None)
    if fix is not None:
        mean, std = fix.params.get("mean", rec.channel_mean), fix.params.get("std", rec.channel_std)
        lead = "The fixer would normalize this input with the statistics measured on the batch:"
    elif any(d.severity in ("error", "warning") for d in mine):
        mean, std = rec.channel_mean, rec.channel_std
        lead = "To normalize it with the statistics measured on the batch:"
    else:
        return '<p class="ok-note">Centered and scaled: no normalization needed.</p>'
    std = [s if s > 0 else 1.0 for s in std]
    after = ("the input as a whole has" if len(mean) > MAX_LISTED_CHANNELS else f"every {_unit_word(rec)} has")
    return (f'<p>{escape(lead)}</p><pre class="code"><code>{escape(normalization_code(rec, mean, std))}</code></pre>'
            f'<p class="muted">After it {after} mean 0 and std 1 on this batch. It belongs in the data '
            "pipeline, so that training and test data get the same statistics.</p>")


# Beyond this many channels the code gives one overall mean/std: a 784-number literal helps nobody.
MAX_LISTED_CHANNELS = 32


def normalization_code(rec, mean: list[float], std: list[float]) -> str:
    """The normalization as code a user pastes: torchvision's Normalize for images, plain tensor
    arithmetic for feature vectors (Normalize expects a channel-first image)."""
    def values(v: list[float]) -> str:
        return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"

    if len(set(mean)) == 1 and len(set(std)) == 1:
        mean, std = mean[:1], std[:1]
    if len(mean) > MAX_LISTED_CHANNELS:
        # Hundreds of features (a flattened image): one overall mean/std is what a person types; the
        # per-feature statistics are what the fixer inserts, and it measures them itself.
        return (f"# {rec.path}: {len(mean)} features; one mean and std over all of them\n"
                f"x = (x - {rec.summary.mean:.4g}) / {rec.summary.std:.4g}\n"
                f"# per feature, as the fixer does: x = (x - x_train.mean(0)) / x_train.std(0).clamp_min(1e-6)")
    ndim = len(rec.summary.shape)
    if ndim >= 4 and rec.channel_dim == 1:
        return f"transforms.Normalize(\n    mean={values(mean)},\n    std={values(std)},\n)"
    # Broadcast along the channel dim of one sample: (C, L) signals need the stats as a column.
    view = ".view(-1, 1)" if ndim == 3 and rec.channel_dim == 1 else ""
    return (f"# {rec.path}: per {_unit_word(rec)} (dim {rec.channel_dim} of the batch)\n"
            f"mean = torch.tensor({values(mean)}){view}\nstd = torch.tensor({values(std)}){view}\n"
            "x = (x - mean) / std")


def _unit_word(rec) -> str:
    return "channel" if rec.channel_dim == 1 and len(rec.summary.shape) >= 3 else "feature"


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


def _rule_option(code: str, name: str, default: float) -> float:
    cls = _rule_class(code)
    return (cls.options if cls is not None else {}).get(name, default)


def _rule_class(code: str):
    try:
        from nnlint.registry import all_rules

        return all_rules().get(code)
    except Exception:   # noqa: BLE001 - a broken rule import must not cost the user the report
        return None


def _footer() -> str:
    from nnlint import __version__

    return (f'<footer><p>Generated by nnlint {escape(__version__)}. This file is self-contained: no scripts, '
            "nothing loaded from the network.</p></footer>")


# ---------------------------------------------------------------- style

PAGE_CSS = """
:root {
  --bg: #ffffff; --bg-soft: #f5f6f8; --text: #1f2329; --muted: #5f6673; --border: #d9dce2;
  --link: #1a5fb4; --code-bg: #f1f3f6;
  --sev-error: #c62828; --sev-error-bg: #fdecea; --sev-warning: #a85d00; --sev-warning-bg: #fff3e0;
  --sev-info: #1565c0; --sev-info-bg: #e8f1fc; --sev-ok: #2e7d32; --sev-ok-bg: #e8f5e9;
  --series-0: #5a6372; --series-1: #a7adb8; --chart-grid: #e9ebef; --chart-frame: #c4c8cf;
  --chart-text: #2b2f36; --chart-text-muted: #5f6673; --chart-ref: #8a909c; --chart-bg-solid: #ffffff;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #16181d; --bg-soft: #1e2128; --text: #e4e6eb; --muted: #a0a6b2; --border: #343842;
    --link: #8ab4f8; --code-bg: #242832;
    --sev-error: #ff6b6b; --sev-error-bg: #3a1f22; --sev-warning: #ffb74d; --sev-warning-bg: #3a2e1a;
    --sev-info: #7cb4ff; --sev-info-bg: #1c2a40; --sev-ok: #6fcf7a; --sev-ok-bg: #1b3020;
    --series-0: #aeb6c2; --series-1: #6b7280; --chart-grid: #2b2f38; --chart-frame: #4a4f5a;
    --chart-text: #e4e6eb; --chart-text-muted: #a0a6b2; --chart-ref: #7d8492; --chart-bg-solid: #16181d;
  }
}
* { box-sizing: border-box; }
html { background: var(--bg); color: var(--text); }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 32px 32px 48px; }
a { color: var(--link); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: 0.88em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
h1 { font-size: 30px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 21px; margin: 40px 0 8px; padding-bottom: 6px; border-bottom: 1px solid var(--border); }
h3 { font-size: 16px; margin: 0 0 4px; }
h4 { font-size: 14px; margin: 0 0 4px; }
.kicker { text-transform: uppercase; letter-spacing: 0.08em; font-size: 12px; font-weight: 600; color: var(--muted); margin: 0 0 4px; }
.facts { color: var(--muted); margin: 0; }
.facts code { color: var(--text); }
.muted { color: var(--muted); }
.summary { margin-top: 24px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { min-width: 120px; padding: 10px 16px; border: 1px solid var(--border); border-left-width: 5px; border-radius: 8px; background: var(--bg-soft); display: flex; flex-direction: column; }
.card .count { font-size: 28px; font-weight: 700; line-height: 1.1; }
.card .what { color: var(--muted); font-size: 13px; }
.card.sev-error { border-left-color: var(--sev-error); } .card.sev-error .count { color: var(--sev-error); }
.card.sev-warning { border-left-color: var(--sev-warning); } .card.sev-warning .count { color: var(--sev-warning); }
.card.sev-info { border-left-color: var(--sev-info); } .card.sev-info .count { color: var(--sev-info); }
.card.fixable { border-left-color: var(--sev-ok); } .card.fixable .count { color: var(--sev-ok); }
.card.zero .count { color: var(--muted); }
.verdict { font-weight: 600; margin: 16px 0 4px; }
.verdict.fail { color: var(--sev-error); } .verdict.ok { color: var(--sev-ok); }
.hint, .section-intro, .legend { color: var(--muted); margin: 4px 0 12px; }
.notes { color: var(--muted); margin: 8px 0 0; padding-left: 20px; }
.table-wrap { overflow-x: auto; border: 1px solid var(--border); border-radius: 8px; }
table.findings { border-collapse: collapse; width: 100%; font-size: 14px; }
.findings th { text-align: left; font-size: 12px; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); background: var(--bg-soft); padding: 8px 10px; border-bottom: 1px solid var(--border); }
.findings td { padding: 9px 10px; border-bottom: 1px solid var(--border); vertical-align: top; overflow-wrap: anywhere; }
.findings tbody tr:last-child td { border-bottom: none; }
.findings tr.row-error td:first-child { box-shadow: inset 4px 0 0 var(--sev-error); }
.findings tr.row-warning td:first-child { box-shadow: inset 4px 0 0 var(--sev-warning); }
.findings tr.row-info td:first-child { box-shadow: inset 4px 0 0 var(--sev-info); }
.findings td.code a { font-weight: 700; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.findings .rule-name { color: var(--muted); font-size: 12px; white-space: nowrap; }
.findings td.module code { white-space: nowrap; }
.findings td.module, .findings td.line, .findings td.code, .findings td:first-child { width: 1%; }
.findings td.line { white-space: nowrap; color: var(--muted); }
.findings td.message { width: 48%; min-width: 260px; }
.findings td.fix { font-size: 13px; color: var(--muted); min-width: 220px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; border: 1px solid currentColor; white-space: nowrap; }
.badge.sev-error { color: var(--sev-error); background: var(--sev-error-bg); }
.badge.sev-warning { color: var(--sev-warning); background: var(--sev-warning-bg); }
.badge.sev-info { color: var(--sev-info); background: var(--sev-info-bg); }
.fix-kind { display: inline-block; font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: 0.04em; padding: 0 6px; border-radius: 4px; margin-right: 4px; }
.fix-kind.safe { color: var(--sev-ok); background: var(--sev-ok-bg); }
.fix-kind.unsafe { color: var(--sev-warning); background: var(--sev-warning-bg); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 16px; }
.chart-block { margin: 0; padding: 14px 16px 8px; border: 1px solid var(--border); border-radius: 8px; background: var(--bg); break-inside: avoid; }
.chart-block figcaption p { margin: 0 0 6px; color: var(--muted); font-size: 13px; }
.chart-block svg.chart { width: 100%; height: auto; display: block; }
.empty { color: var(--muted); font-style: italic; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin: 0 4px 0 10px; vertical-align: baseline; }
.dot.sev-error { background: var(--sev-error); } .dot.sev-warning { background: var(--sev-warning); }
.dot.sev-info { background: var(--sev-info); } .dot.plain { background: var(--series-0); }
#input h3 { margin: 16px 0 8px; }
pre.code { background: var(--code-bg); border: 1px solid var(--border); border-radius: 6px; padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
pre.code code { font-size: 13px; }
p code, li code, td code { background: var(--code-bg); padding: 1px 4px; border-radius: 4px; }
.ok-note { color: var(--sev-ok); }
.rule-doc { border: 1px solid var(--border); border-radius: 8px; padding: 16px 20px; margin: 16px 0; break-inside: avoid-page; }
.rule-doc:target { border-color: var(--link); box-shadow: 0 0 0 3px color-mix(in srgb, var(--link) 25%, transparent); }
.rule-doc h3 { font-size: 18px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.rule-doc h3 .rule-name { font-family: system-ui, sans-serif; font-weight: 500; color: var(--muted); margin-left: 6px; }
.rule-doc h4 { margin: 14px 0 4px; }
.rule-doc p, .rule-doc li { max-width: 80ch; }
.rule-meta { color: var(--muted); font-size: 13px; }
.rule-doc .back { font-size: 13px; margin-bottom: 0; }
.url { color: var(--muted); font-size: 0.9em; word-break: break-all; }
footer { margin-top: 48px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--border); padding-top: 12px; }
@media print {
  :root {
    --bg: #ffffff; --bg-soft: #f5f6f8; --text: #000000; --muted: #444a55; --border: #c4c8cf; --link: #1a5fb4;
    --code-bg: #f3f4f6; --sev-error: #b71c1c; --sev-error-bg: #ffffff; --sev-warning: #8a4b00; --sev-warning-bg: #ffffff;
    --sev-info: #0d47a1; --sev-info-bg: #ffffff; --sev-ok: #1b5e20; --sev-ok-bg: #ffffff; --series-0: #4a525e;
    --series-1: #9aa0aa; --chart-grid: #e3e5e9; --chart-frame: #9aa0aa; --chart-text: #000000;
    --chart-text-muted: #333a44; --chart-ref: #6b7280; --chart-bg-solid: #ffffff;
  }
  html, body { background: #fff; color: #000; }
  main { max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .charts { grid-template-columns: 1fr; }
  .chart-block svg.chart { max-width: 80%; margin: 0 auto; }
  #input h3 { break-after: avoid; }
  .chart-block, .rule-doc, tr { break-inside: avoid; }
  h2 { break-after: avoid; }
  .table-wrap { overflow: visible; }
  .rule-doc .back { display: none; }
  a { color: inherit; }
}
"""
