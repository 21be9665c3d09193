"""The report's own plotting module: ticks, scales, and charts a browser can parse and hover."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from nnlint.output import svg

NS = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    """Charts are embedded in HTML without a namespace; parsed alone they must be well-formed XML."""
    return ET.fromstring(markup)


def titles(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter() if el.tag.endswith("title")]


def with_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if cls in (el.get("class") or "").split()]


# ---------------------------------------------------------------- ticks and numbers

@pytest.mark.parametrize("lo, hi", [(0, 1), (0.013, 0.87), (-3.2, 7.9), (0, 100), (1, 18), (2.4, 2.6)])
def test_nice_ticks_are_round_evenly_spaced_and_cover_the_range(lo, hi):
    ticks = svg.nice_ticks(lo, hi)
    assert 2 <= len(ticks) <= 7
    assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks)
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5)
    lo_n, hi_n = svg.nice_range(lo, hi)
    assert lo_n <= lo and hi_n >= hi


def test_log_ticks_are_decades_thinned_when_many_and_filled_when_few():
    assert svg.log_ticks(1e-3, 1e2) == [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
    many = svg.log_ticks(1e-12, 1e12)
    assert len(many) <= 7 and all(math.log10(t) == round(math.log10(t)) for t in many)
    few = svg.log_ticks(1.0, 10.0)
    assert few == [1.0, 2.0, 5.0, 10.0]
    assert svg.log_range(0.3, 45) == (0.1, 100.0)
    lo, hi = svg.log_range(1.0, 1.0)
    assert lo < 1.0 < hi


@pytest.mark.parametrize("value, text", [(0, "0"), (0.5, "0.5"), (12.25, "12.2"), (1000, "1000"), (2.5e4, "2.5e4"),
                                         (1e-5, "1e-5"), (-0.036, "-0.036"), (math.inf, "inf"), (math.nan, "nan")])
def test_format_number_is_short(value, text):
    assert svg.format_number(value) == text


# ---------------------------------------------------------------- line chart

def points(values, marks=None):
    marks = marks or {}
    return [svg.Point(i + 1, v, f"layer{i} <b>&", marks.get(i, "")) for i, v in enumerate(values)]


def test_line_chart_has_a_hoverable_point_per_value_with_escaped_titles():
    chart = svg.line_chart([svg.Series("std", points([1.0, 0.5, 0.2, 0.1]))], x_label="layer", y_label="std",
                           standalone=True)
    root = parse(chart)
    assert root.tag == NS + "svg"
    point_groups = with_class(root, "point")
    assert len(point_groups) == 4
    # ElementTree unescaped the text: the markup held &lt;b&gt;&amp; and no raw tag.
    assert titles(root).count("layer0 <b>&") == 1
    assert "<b>" not in chart
    labels = [el.text for el in root.iter() if el.get("class") == "axis-label"]
    assert labels == ["layer", "std"]


def test_line_chart_highlights_marked_points_and_draws_references():
    chart = svg.line_chart([svg.Series("dead", points([0.1, 0.7, 0.3], {1: "sev-error"}))],
                           y_range=(0.0, 1.0), references=[svg.Reference(0.5, "error > 0.5", "ref-error")])
    root = parse(chart)
    highlighted = with_class(root, "sev-error")
    assert len(highlighted) == 1 and highlighted[0].find(NS + "title") is None  # no namespace when embedded
    assert any(t.text == "layer1 <b>&" for t in highlighted[0].iter("title"))
    refs = with_class(root, "ref-error")
    assert len(refs) == 1 and "error &gt; 0.5" in chart


def test_log_chart_places_points_by_decade():
    chart = svg.line_chart([svg.Series("std", points([1e-3, 1e-2, 1e-1, 1.0]))], log_y=True)
    root = parse(chart)
    ys = [float(c.get("cy")) for g in with_class(root, "point") for c in g.iter("circle")]
    gaps = [b - a for a, b in zip(ys, ys[1:])]
    assert all(g < 0 for g in gaps)                     # larger values are higher up
    assert max(gaps) - min(gaps) < 0.2                  # one decade = one fixed distance
    tick_texts = [t.text for t in with_class(root, "tick")]
    assert {"0.001", "0.01", "0.1", "1"} <= set(tick_texts)


def test_values_off_a_log_axis_and_missing_values_stay_visible():
    values = [0.0, 1.0, math.inf, None, 10.0, 5.0]
    root = parse(svg.line_chart([svg.Series("grad", points(values))], log_y=True))
    groups = with_class(root, "point")
    assert len(groups) == len(values)                   # every layer keeps a hover target
    assert len(with_class(root, "clipped")) == 2        # 0 below the axis, inf above it
    assert len(with_class(root, "missing")) == 1
    note = with_class(root, "clip-note")[0].text
    assert "zero" in note and "infinite" in note and "not measured" in note
    # The line breaks at the missing value instead of bridging it.
    assert len(list(root.iter("polyline"))) == 2


def test_several_series_get_a_legend_and_their_own_class():
    chart = svg.line_chart([svg.Series("std", points([1, 2])), svg.Series("|mean|", points([0.1, 0.2]), "series-1",
                                                                         dashed=True)])
    root = parse(chart)
    assert [t.text for t in with_class(root, "legend-label")] == ["std", "|mean|"]
    assert with_class(root, "series-1") and "stroke-dasharray" in chart


def test_an_empty_or_flat_series_still_renders():
    parse(svg.line_chart([svg.Series("x", [])]))
    parse(svg.line_chart([svg.Series("x", points([3.0]))]))
    parse(svg.line_chart([svg.Series("x", points([0.0, 0.0]))], log_y=True))


# ---------------------------------------------------------------- bar chart

def test_bar_chart_draws_a_bar_per_value_negative_ones_below_zero():
    bars = [svg.Bar("0", 2.0, "c0", error=0.5), svg.Bar("1", -1.0, "c1 <x>", mark="sev-warning"), svg.Bar("2", 0.5, "c2")]
    chart = svg.bar_chart(bars, x_label="channel", y_label="mean")
    root = parse(chart)
    rects = [g.find("rect") for g in with_class(root, "bar")]
    assert len(rects) == 3
    baseline = float(with_class(root, "baseline")[0].get("y1"))
    pos, neg, _ = rects
    assert float(pos.get("y")) + float(pos.get("height")) == pytest.approx(baseline, abs=0.2)
    assert float(neg.get("y")) == pytest.approx(baseline, abs=0.2)
    assert len(with_class(root, "whisker")) == 1
    assert len(with_class(root, "sev-warning")) == 1
    assert "c1 <x>" in titles(root)


def test_standalone_svg_carries_its_style_and_references_nothing_external():
    chart = svg.bar_chart([svg.Bar("0", 1.0)], standalone=True)
    assert "<style>" in chart
    stripped = chart.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http" not in stripped and "href" not in stripped and "url(" not in stripped


def test_hundreds_of_bars_get_round_tick_labels_and_no_whiskers():
    bars = [svg.Bar(str(i), 0.1 * (i % 7), f"feature {i}", error=0.3) for i in range(784)]
    root = parse(svg.bar_chart(bars))
    assert len(with_class(root, "bar")) == 784
    assert not with_class(root, "whisker")            # 0.5-pixel bars with whiskers are a hedge
    labels = [int(t.text) for t in with_class(root, "tick") if t.text.isdigit() and t.get("text-anchor") == "middle"]
    step = labels[1] - labels[0]
    assert labels[0] == 0 and step in (50, 100, 200) and all(b - a == step for a, b in zip(labels, labels[1:]))
    # The y range is the values', not the absent whiskers'.
    ticks = [float(t.text) for t in with_class(root, "tick") if t.get("text-anchor") == "end"]
    assert max(ticks) < 0.9
