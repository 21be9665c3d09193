"""The HTML report's charts: the signal through depth, and the model input per channel.

Which charts there are is the rules' to say: each rule may declare a `Chart` (nnlint.registry) naming the
series it draws, its words and the options drawn as reference lines; this module plots what they declare,
in rule-code order, and colors the points that carry a finding. It names no rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Optional

from nnlint.diagnostics import SEVERITY_RANK, Diagnostic
from nnlint.output import svg
from nnlint.output.depth import LayerValue, depth_profile

DEPTH_SERIES = ("activations", "dead", "saturated", "gradients", "residual")
INPUT_SERIES = ("input_mean", "input_std")
# Beyond this many channels the code gives one overall mean/std: a 784-number literal helps nobody.
MAX_LISTED_CHANNELS = 32


@dataclass
class Declared:
    """A rule's chart with the rule's code and default options (the thresholds it draws)."""

    code: str
    chart: object                 # nnlint.registry.Chart
    options: dict


def declared_charts() -> list[Declared]:
    try:
        from nnlint.registry import charts

        return [Declared(cls.code, chart, dict(cls.options)) for cls, chart in charts()]
    except Exception:   # noqa: BLE001 - a broken rule import must not cost the user the report
        return []


# ---------------------------------------------------------------- through depth

def depth_section(trace, diagnostics: list[Diagnostic]) -> str:
    declared = [d for d in declared_charts() if d.chart.series in DEPTH_SERIES]
    dead = next((d for d in declared if d.chart.series == "dead"), None)
    profile = depth_profile(trace, active_below=dead.options.get("active_below") if dead else None)
    by_module = _diagnostics_by_module(diagnostics)
    drawn, missing = [], []
    for d in declared:
        values = getattr(profile, d.chart.series)
        if values:
            drawn.append(_chart_block(d, values, by_module, diagnostics))
        else:   # a chart with nothing to plot becomes one line below the others instead of an empty box
            missing.append(d.chart.empty)
    note = f'<p class="empty">Not plotted: {escape("; ".join(missing))}.</p>' if missing else ""
    legend = ('<p class="legend">Layers with a finding: <span class="dot sev-error"></span>error '
              '<span class="dot sev-warning"></span>warning <span class="dot sev-info"></span>info '
              '<span class="dot plain"></span>none. Hover a point for its module and numbers.</p>')
    return (f'<section id="depth"><h2>Through depth</h2>{legend}<div class="charts">{"".join(drawn)}</div>'
            f"{note}</section>")


def _chart_block(declared: Declared, values: list[LayerValue], by_module: dict[str, list[Diagnostic]],
                 diagnostics: list[Diagnostic]) -> str:
    """One chart with its caption. A point takes the findings on its own module; for a `nested` chart
    also the chart rule's findings on a module inside it or around it (a residual-growth finding on a
    block's branch layer, or on the stage that holds a run of blocks)."""
    chart = declared.chart
    related = [d for d in diagnostics if chart.nested and d.code == declared.code and d.module]
    points = []
    for v in values:
        found = list(by_module.get(v.module, []))
        found += [d for d in related if d not in found and _nested(d.module, v.module)]
        points.append(svg.Point(v.position, v.value, _hover(v, found), mark(found)))
    series = [svg.Series(chart.primary or chart.y_label, points, "series-0")]
    if chart.secondary and any(v.secondary is not None for v in values):
        series.append(svg.Series(chart.secondary, [
            svg.Point(v.position, abs(v.secondary) if v.secondary is not None else None,
                      _hover(v, by_module.get(v.module, []))) for v in values], "series-1", dashed=True))
    plot = svg.line_chart(series, x_label=chart.x_label, y_label=chart.y_label, log_y=chart.log_y,
                          y_range=chart.y_range, references=_references(declared), aria_label=chart.title)
    caption = f"{chart.caption} ({declared.code})"
    return (f'<figure class="chart-block"><figcaption><h3>{escape(chart.title)}</h3><p>{escape(caption)}</p>'
            f"</figcaption>{plot}</figure>")


def _references(declared: Declared) -> list:
    """The rule's reference lines: `warning > 0.2` at the option's default value."""
    refs = []
    for option, label in declared.chart.references:
        value = declared.options[option]
        refs.append(svg.Reference(value, f"{label} > {value:g}", f"ref-{label}"))
    return refs


def _nested(a: str, b: str) -> bool:
    return bool(a and b) and (a.startswith(b + ".") or b.startswith(a + "."))


def _hover(v: LayerValue, found: list[Diagnostic]) -> str:
    lines = [f"#{v.position} {v.label}", v.detail]
    for d in found:
        message = d.message if len(d.message) <= 160 else d.message[:157] + "..."
        lines.append(f"{d.code} {d.severity}: {message}")
    return "\n".join(lines)


def mark(found: list[Diagnostic]) -> str:
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


# ---------------------------------------------------------------- the input

def input_section(trace, diagnostics: list[Diagnostic]) -> str:
    if not trace.inputs:
        return ""
    declared = [d for d in declared_charts() if d.chart.series in INPUT_SERIES]
    blocks = [_input_block(rec, diagnostics, declared) for rec in trace.inputs]
    return f'<section id="input"><h2>Input</h2>{"".join(blocks)}</section>'


def _input_block(rec, diagnostics: list[Diagnostic], declared: list[Declared]) -> str:
    shape = "x".join(str(s) for s in rec.summary.shape)
    head = f'<h3><code>{escape(rec.path)}</code> <span class="muted">{escape(shape)} {escape(rec.summary.dtype)}</span></h3>'
    if not rec.is_float:
        return head + '<p class="empty">Integer input (token ids or labels): not normalized, not checked.</p>'
    if not rec.channel_mean:
        return head + (f'<p>mean {svg.format_number(rec.summary.mean)}, std {svg.format_number(rec.summary.std)} '
                       "(no channel dimension to break it down by).</p>")
    mine = [d for d in diagnostics if d.evidence.get("input") == rec.path or
            (d.fix is not None and getattr(d.fix.params, "input", None) == rec.path)]
    charts = "".join(_input_chart(rec, d, next((x for x in mine if x.code == d.code), None)) for d in declared)
    return head + f'<div class="charts">{charts}</div>' + _normalization(rec, mine)


def _input_chart(rec, declared: Declared, finding: Optional[Diagnostic]) -> str:
    """Bars per channel: the means (with ± one std) or the stds; the channels a finding of the chart's
    rule is about are colored by its severity."""
    chart, what = declared.chart, unit_word(rec)
    bars = []
    for i, (m, s) in enumerate(zip(rec.channel_mean, rec.channel_std)):
        flagged = finding is not None and chart.flag is not None and chart.flag(declared.options, m, s)
        flag = mark([finding]) if flagged else ""
        if chart.series == "input_mean":
            bars.append(svg.Bar(str(i), m, f"{what} {i}: mean {svg.format_number(m)} ± std {svg.format_number(s)}",
                                error=s, mark=flag))
        else:
            bars.append(svg.Bar(str(i), s, f"{what} {i}: std {svg.format_number(s)}", mark=flag))
    refs = [svg.Reference(1.0, "target 1", "ref-target")] if chart.series == "input_std" else []
    title = chart.title.format(unit=what)
    return (f'<figure class="chart-block"><figcaption><h4>{escape(title)}</h4></figcaption>'
            + svg.bar_chart(bars, x_label=chart.x_label.format(unit=what), y_label=chart.y_label, height=220,
                            references=refs, aria_label=f"{rec.path} {title.lower()}")
            + "</figure>")


def _normalization(rec, mine: list[Diagnostic]) -> str:
    fix = next((d.fix for d in mine if d.fix is not None and d.fix.kind == "normalize_input"), None)
    if fix is not None:
        mean, std = list(fix.params.mean), list(fix.params.std)
        lead = "The fixer would normalize this input with the statistics measured on the batch:"
    elif any(d.severity in ("error", "warning") for d in mine):
        mean, std = rec.channel_mean, rec.channel_std
        lead = "To normalize it with the statistics measured on the batch:"
    else:
        return '<p class="ok-note">Centered and scaled: no normalization needed.</p>'
    std = [s if s > 0 else 1.0 for s in std]
    after = ("the input as a whole has" if len(mean) > MAX_LISTED_CHANNELS else f"every {unit_word(rec)} has")
    return (f'<p>{escape(lead)}</p><pre class="code"><code>{escape(normalization_code(rec, mean, std))}</code></pre>'
            f'<p class="muted">After it {after} mean 0 and std 1 on this batch. It belongs in the data '
            "pipeline, so that training and test data get the same statistics.</p>")


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
    return (f"# {rec.path}: per {unit_word(rec)} (dim {rec.channel_dim} of the batch)\n"
            f"mean = torch.tensor({values(mean)}){view}\nstd = torch.tensor({values(std)}){view}\n"
            "x = (x - mean) / std")


def unit_word(rec) -> str:
    return "channel" if rec.channel_dim == 1 and len(rec.summary.shape) >= 3 else "feature"
