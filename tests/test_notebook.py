"""A Report shows itself in Jupyter: `_repr_html_` is the HTML report's table and charts, in one scoped
block that neither runs a script nor restyles the notebook around it."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import torch
import torch.nn as nn

import nnlint
from nnlint.output.notebook import SCOPE, scoped_css
from nnlint.report import Report


class Parsed(HTMLParser):
    """The tags, the findings table's rows ({cell class: text}) and the stylesheet of a rendered block."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.style = ""
        self._in_findings = self._in_style = False
        self._cell: list[str] | None = None
        self._cell_class = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "table" and "findings" in (attrs.get("class") or ""):
            self._in_findings = True
        elif tag == "tr" and self._in_findings:
            self.rows.append({})
        elif tag == "td" and self._in_findings:
            self._cell, self._cell_class = [], attrs.get("class") or ""
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_findings = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1][self._cell_class] = " ".join(" ".join(self._cell).split())
            self._cell = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.style += data


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act1, self.fc2 = nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32)
        self.act2, self.head = nn.ReLU(), nn.Linear(32, 4)
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)   # NN101 on fc2

    def forward(self, x):
        return self.head(self.act2(self.fc2(self.act1(self.fc1(x)))))


def test_repr_html_is_the_report_s_table_and_charts_with_no_script():
    report = nnlint.check(Net(), torch.randn(64, 16, generator=torch.Generator().manual_seed(1)))
    assert report.by_code("NN101")
    block = report._repr_html_()
    parsed = Parsed(block)
    assert block.startswith(f'<div class="{SCOPE[1:]}">') and block.endswith("</div>")
    assert "script" not in parsed.tags and not re.search(r"\son\w+=", block)   # no script, no inline handlers
    assert not {"html", "head", "body"} & set(parsed.tags)   # a block for the cell, not a page
    findings = [row for row in parsed.rows if row]
    assert {row["code"].split()[0] for row in findings} == {d.code for d in report.diagnostics}
    [zeros] = [row for row in findings if row["code"].startswith("NN101")]
    assert zeros["module"] == "fc2" and "zero" in zeros["message"]
    assert parsed.tags.count("svg") >= 2   # the charts through depth, inline
    assert "nnlint.fix(model, batch)" in block and "nnlint fix model.py" not in block   # no file to fix here


def test_its_stylesheet_touches_nothing_outside_the_block():
    parsed = Parsed(Report(diagnostics=[])._repr_html_())
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{[^{}]*\}", parsed.style) for s in rule.split(",")]
    assert selectors and all(s == SCOPE or s.startswith(SCOPE + " ") for s in selectors), \
        [s for s in selectors if not s.startswith(SCOPE)]
    assert ":root" not in parsed.style and "@media (prefers-color-scheme: dark)" in parsed.style


def test_scoped_css_maps_page_selectors_to_the_block_and_scopes_inside_at_rules():
    css = ":root { --bg: #fff; }\nhtml, body { margin: 0; }\nh2, .a b { x: 1; }\n* { y: 2; }\n" \
          "@media print { main { padding: 0; } .c { z: 3; } }"
    assert scoped_css(css, ".s") == (
        ".s {--bg: #fff;}\n.s {margin: 0;}\n.s h2, .s .a b {x: 1;}\n.s, .s * {y: 2;}\n"
        "@media print {.s {padding: 0;}\n.s .c {z: 3;}}")
