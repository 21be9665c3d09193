"""The HTML report: every finding, every layer and every fired rule is in one file that loads nothing.

One faulty model with several findings (a tanh MLP with a zero weight and a saturated first layer, a
dead ReLU, an uncentered input, plus a small residual net without normalization) is checked once;
the tests read the page it renders. When Debian's `chromium` is installed, a headless browser renders
the page to a PNG and the test reads the pixels back.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import nnlint  # noqa: E402
from nnlint.diagnostics import Diagnostic, Fix, Location  # noqa: E402
from nnlint.output import html, html_charts  # noqa: E402
from nnlint.output.depth import depth_profile  # noqa: E402
from nnlint.output.grouping import groups  # noqa: E402
from nnlint.output.markdown import markdown_to_html  # noqa: E402
from nnlint.registry import all_rules  # noqa: E402
from nnlint.report import Report  # noqa: E402


class TanhMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 32)
        self.act1 = nn.Tanh()
        self.fc2 = nn.Linear(32, 32)
        self.act2 = nn.Tanh()
        self.fc3 = nn.Linear(32, 32)
        self.relu = nn.ReLU()
        self.out = nn.Linear(32, 4)
        nn.init.normal_(self.fc1.weight, std=1.0)     # tanh saturates (NN202)
        nn.init.zeros_(self.fc2.weight)                # NN101
        nn.init.constant_(self.fc3.bias, -6.0)         # every unit of the ReLU dead (NN203)

    def forward(self, x):
        return self.out(self.relu(self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))))


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d)
        for layer in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class NoNormResNet(nn.Module):
    def __init__(self, d=16, blocks=4):
        super().__init__()
        self.stem = nn.Linear(12, d)
        self.blocks = nn.Sequential(*[Block(d) for _ in range(blocks)])
        self.head = nn.Linear(d, 4)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class Faulty(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = TanhMLP()
        self.res = NoNormResNet()

    def forward(self, x):
        return self.mlp(x), self.res(x)


@pytest.fixture(scope="module")
def report() -> Report:
    torch.manual_seed(0)
    model = Faulty()
    batch = torch.rand(128, 12) * 2 + 1          # uncentered: mean 2, std 0.58 (NN301)
    r = nnlint.check(model, batch)
    r.source_file = "models/faulty.py"
    return r


@pytest.fixture(scope="module")
def page(report) -> str:
    return html.render(report)


class Collector(HTMLParser):
    """Tags, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.titles: list[str] = []
        self._in_title = False
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "title":
            self._in_title = True
            self.titles.append("")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.titles[-1] += data


def parsed(page: str) -> Collector:
    c = Collector()
    c.feed(page)
    c.close()
    return c


# ---------------------------------------------------------------- structure

def test_the_model_has_the_findings_the_report_is_meant_to_show(report):
    codes = {d.code for d in report.diagnostics}
    assert {"NN101", "NN202", "NN203", "NN301"} <= codes


def test_every_diagnostic_is_in_the_table_linked_to_its_rule_section(report, page):
    doc = parsed(page)
    text = " ".join(doc.text)
    links = [a.get("href") for tag, a in doc.tags if tag == "a"]
    rows = [a for tag, a in doc.tags if tag == "tr" and (a.get("id") or "").startswith("finding-")]
    assert len(rows) == len(groups(report.sorted()))      # one row per cause; every finding is in its group
    for d in report.diagnostics:
        assert d.message in text
        assert f"#rule-{d.code}" in links
        assert f"rule-{d.code}" in doc.ids
        if d.module:
            assert d.module in text


def test_rule_sections_render_the_documentation(report, page):
    doc = parsed(page)
    text = " ".join(doc.text)
    heads = [t for t in doc.text if t in ("What it does", "Why is this bad?", "Use instead", "Fix safety")]
    assert len(heads) >= 4 * len({d.code for d in report.diagnostics})
    # The docstring's code examples arrive as code blocks, not as prose.
    assert '<pre class="code"><code class="language-python">' in page
    assert "nn.init.zeros_(self.fc2.weight)" in text


def test_every_layer_appears_in_the_plots_with_its_module_name_on_hover(report, page):
    titles = parsed(page).titles
    profile = depth_profile(report.trace, active_below=all_rules()["NN203"].options["active_below"])
    assert len(profile.activations) == 4 + 2 + 4 * 2     # mlp: 4 linears; res: stem, head, 2 per block
    assert len(profile.dead) == 1 + 4
    assert len(profile.saturated) == 2
    assert len(profile.residual) == 4
    assert len(profile.gradients) == len(profile.activations)
    for series in (profile.activations, profile.dead, profile.saturated, profile.gradients, profile.residual):
        for v in series:
            assert any(t.startswith(f"#{v.position} {v.label}\n") for t in titles), v.label
    assert "mlp.fc2 (Linear)" in {v.label for v in profile.activations}


def test_layers_with_a_finding_are_drawn_in_their_severity_color(report, page):
    errors = {d.module for d in report.diagnostics if d.severity == "error" and d.module}
    assert "mlp.relu" in errors and "mlp.fc2" in errors
    for module in ("mlp.relu", "mlp.fc2"):
        pattern = rf'<g class="point sev-error"><circle[^>]*/><title>#\d+ {re.escape(module)} \('
        assert re.search(pattern, page), module
    # A layer without a finding is plain.
    assert re.search(r'<g class="point"><circle[^>]*/><title>#\d+ res\.stem \(', page)


def test_residual_stream_variance_is_plotted_from_the_adds(report):
    profile = depth_profile(report.trace, active_below=all_rules()["NN203"].options["active_below"])
    variances = [v.value for v in profile.residual]
    assert [v.site for v in profile.residual] == [f"res.blocks.{i}" for i in range(4)]
    assert all(b > a for a, b in zip(variances, variances[1:]))    # no norm: the stream keeps growing


def test_input_section_shows_channel_stats_and_the_fixers_normalization(report, page):
    doc = parsed(page)
    fix = next(d.fix for d in report.diagnostics if d.code == "NN301")
    assert sum(1 for t in doc.titles if t.startswith("feature ") and "mean" in t) == 12
    assert "The fixer would normalize this input" in page
    first_mean = f"{fix.params.mean[0]:.4g}"
    assert f"mean = torch.tensor([{first_mean}," in " ".join(doc.text)


def test_normalization_code_for_images_signals_and_many_features():
    from nnlint.trace.records import InputRecord, TensorSummary

    def rec(shape, n):
        return InputRecord("batch", 0, TensorSummary(shape, "float32", 0.14, 0.3), True, channel_dim=1,
                           channel_mean=[0.5] * n, channel_std=[0.25] * n)

    image = html_charts.normalization_code(rec((8, 3, 32, 32), 3), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    assert image == "transforms.Normalize(\n    mean=[0.49, 0.48, 0.45],\n    std=[0.25, 0.24, 0.26],\n)"
    signal = html_charts.normalization_code(rec((8, 2, 100), 2), [1.0, 2.0], [0.5, 0.5])
    assert "mean = torch.tensor([1, 2]).view(-1, 1)" in signal and "x = (x - mean) / std" in signal
    flat = html_charts.normalization_code(rec((64, 784), 784), [0.1] * 783 + [0.2], [0.3] * 784)
    assert "x = (x - 0.14) / 0.3" in flat and "784 features" in flat and flat.count("\n") == 2


def test_the_page_references_nothing_external(page):
    doc = parsed(page)
    tags = {tag for tag, _ in doc.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "base"}
    for tag, attrs in doc.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)          # no inline event handlers either
            if name in ("href", "src", "xlink:href", "action", "srcset", "poster"):
                assert value.startswith("#"), (tag, name, value)
    assert "url(" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page


def test_dark_mode_and_print_styles_are_present(page):
    assert "@media (prefers-color-scheme: dark)" in page
    assert "@media print" in page
    assert '<meta name="color-scheme" content="light dark">' in page


class Exploding(nn.Module):
    """Functional activations in a custom forward, and an exp that overflows to inf (then NaN)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 4)
        nn.init.normal_(self.fc1.weight, std=60.0)

    def forward(self, x):
        return self.fc2(torch.exp(torch.relu(self.fc1(x))))


def test_functional_calls_and_non_finite_values_still_render():
    torch.manual_seed(0)
    r = nnlint.check(Exploding(), torch.randn(64, 4))
    assert "NN002" in {d.code for d in r.diagnostics}
    page = html.render(r)
    titles = parsed(page).titles
    assert any(t.startswith("#1 relu() in forward\n") for t in titles)
    assert any(t.startswith("#2 fc2 (Linear)\n") and "non-finite" in t for t in titles)
    assert "\u25cb not measured" in page      # the NaN std keeps its place on the chart, as a hollow marker


def test_a_broken_residual_detection_costs_only_its_chart(report, monkeypatch):
    from nnlint.trace import structure

    def broken(self):
        raise RuntimeError("structure detection failed")

    monkeypatch.setattr(structure.Structure, "stream", property(broken))
    page = html.render(report)
    assert "no residual connection found" in page and "Dead units after each ReLU" in page


# ---------------------------------------------------------------- hand-made reports

def test_a_report_without_a_trace_renders_summary_table_and_rules():
    d = Diagnostic("NN999", "made-up <rule>", "warning", "enc.layer<0>", "std 3 & <rising>",
                   location=Location("/x/model.py", 12), fix=Fix("reinit", "enc", "re-init <it>", safe=False))
    page = html.render(Report([d], model_name="Net<1>"))
    assert "Through depth" not in page
    assert "enc.layer&lt;0&gt;" in page and "std 3 &amp; &lt;rising&gt;" in page and "Net&lt;1&gt;" in page
    assert "<rising>" not in page and "<it>" not in page
    assert 'href="#rule-NN999"' in page and 'id="rule-NN999"' in page
    assert "No documentation found" in page
    assert "model.py:12" in page and "unsafe" in page


def test_a_clean_report_says_so():
    page = html.render(Report([], model_name="Net"))
    assert "No problems found." in page and "Every selected rule passed" in page
    assert 'id="rules"' not in page


def test_markdown_subset_is_escaped_and_structured():
    out = markdown_to_html(
        "## Why is this bad?\nA <b> tag & `x < y` and **bold** and [paper](https://arxiv.org/abs/1).\n\n"
        "- first item\n  continued\n- `second`\n\n1. one\n2. two\n\n```python\nif a < b:\n    f()\n```\n")
    assert out.startswith("<h4>Why is this bad?</h4>")
    assert "A &lt;b&gt; tag &amp; <code>x &lt; y</code> and <strong>bold</strong>" in out
    assert 'paper <span class="url">(https://arxiv.org/abs/1)</span>' in out and "<a " not in out
    assert "<ul><li>first item continued</li><li><code>second</code></li></ul>" in out
    assert "<ol><li>one</li><li>two</li></ol>" in out
    assert '<pre class="code"><code class="language-python">if a &lt; b:\n    f()</code></pre>' in out


# ---------------------------------------------------------------- a real browser

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """Width, height, bytes per pixel and raw pixels of an 8-bit, non-interlaced RGB/RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0
    bpp = 3 if color_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 255
        elif kind == 2:
            row = bytearray((a + b) & 255 for a, b in zip(row, prev))
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[y * stride:(y + 1) * stride] = row
        prev = row
    return width, height, bpp, bytes(out)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (.ci/run installs Debian's package)")
def test_a_headless_browser_renders_the_report(page, tmp_path):
    report_file = tmp_path / "report.html"
    report_file.write_text(page, encoding="utf-8")
    shot = tmp_path / "report.png"
    profile = tempfile.mkdtemp(prefix="nnlint-chromium-")
    # A quarter of the device pixels keeps the pure-Python PNG decode fast; the layout is the 1280px one.
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--force-device-scale-factor=0.25",
           "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,2000", report_file.as_uri()]
    try:
        subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.exists(), "chromium wrote no screenshot"
    width, height, bpp, pixels = read_png(shot)
    assert width >= 300 and height >= 450
    colors = {}
    background = pixels[:3]
    for i in range(0, len(pixels), bpp):
        rgb = pixels[i:i + 3]
        colors[rgb] = colors.get(rgb, 0) + 1
    painted = 1 - colors.get(background, 0) / (width * height)
    assert painted > 0.05, f"only {painted:.1%} of the page is painted"
    assert len(colors) > 50, "the page rendered in a handful of colors: blank or unstyled"

    def near(target, tol=40):
        return sum(n for (r, g, b), n in ((tuple(c), n) for c, n in colors.items())
                   if abs(r - target[0]) + abs(g - target[1]) + abs(b - target[2]) < tol)

    assert near((0xC6, 0x28, 0x28)) > 20, "no error red on the page: the severity styles did not apply"
    assert near((0xA8, 0x5D, 0x00)) > 20, "no warning amber on the page"


def test_a_residual_growth_finding_inside_a_block_highlights_that_blocks_add(report, page):
    import dataclasses

    # NN403 reports on the branch's last layer (res.blocks.2.fc2); the chart's point is the block's add.
    for d in report.by_code("NN403"):
        block = d.module.rsplit(".", 1)[0]
        assert re.search(rf'<g class="point sev-{d.severity}"><circle[^>]*/><title>#\d+ {re.escape(block)} \(', page)
    others = [d for d in report.diagnostics if d.code != "NN403"]
    grown = Diagnostic("NN403", "residual-variance-growth", "warning", "res.blocks.2.fc2", "branch gain 1.0")
    single = html.render(dataclasses.replace(report, diagnostics=others + [grown]))
    assert re.search(r'<g class="point sev-warning"><circle[^>]*/><title>#3 res\.blocks\.2 \(', single)
    assert not re.search(r'<g class="point sev-warning"><circle[^>]*/><title>#2 res\.blocks\.1 \(', single)


MODEL_FILE = '''
import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    nn.init.zeros_(model[2].weight)
    return model


def sample_batch():
    torch.manual_seed(1)
    return torch.rand(64, 8) + 1.0
'''


def test_nnlint_check_html_writes_the_report(tmp_path):
    cli = pytest.importorskip("nnlint.cli")
    from click.testing import CliRunner

    model_file = tmp_path / "model.py"
    model_file.write_text(MODEL_FILE)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli.main, ["check", str(model_file), "--html", str(out)])
    assert result.exit_code == 1, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and str(model_file) in page
    for code in ("NN101", "NN301"):
        assert f'href="#rule-{code}"' in page and f'id="rule-{code}"' in page
