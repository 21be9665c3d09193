"""The HTML report inside a notebook cell: what `Report._repr_html_` shows in Jupyter.

The report's own sections (nnlint.output.html, `fragment=True`: the summary, the findings table, the
charts through depth, the input, the rules' documentation) in one `<div class="nnlint-report">`, with
the report's stylesheet scoped to that div. A notebook puts cell outputs into its own page, so an
unscoped `h2 { ... }` or `:root { --bg: ... }` would restyle the whole notebook; here every selector is
prefixed with the div's class, and the page-level selectors (`:root`, `html`, `body`, `main`) become
the div itself. No script, as in the file.
"""
from __future__ import annotations

from nnlint.output import html, svg

SCOPE = ".nnlint-report"
PAGE_SELECTORS = {":root", "html", "body", "main"}


def render(report) -> str:
    style = scoped_css(html.PAGE_CSS + svg.CHART_CSS, SCOPE)
    return f'<div class="{SCOPE[1:]}"><style>{style}</style>{html.render(report, fragment=True)}</div>'


def scoped_css(css: str, scope: str) -> str:
    """`css` with every rule's selectors inside `scope`; at-rule blocks (@media) are scoped inside.
    The stylesheet is the report's own: rules of plain `selectors { declarations }`, no nested braces
    in declarations, no comments."""
    out = []
    pos = 0
    while True:
        brace = css.find("{", pos)
        if brace < 0:
            break
        head = css[pos:brace].strip()
        if head.startswith("@"):
            end = _matching_brace(css, brace)
            out.append(f"{head} {{{scoped_css(css[brace + 1:end], scope)}}}")
        else:
            end = css.find("}", brace)
            out.append(f"{_scoped_selectors(head, scope)} {{{css[brace + 1:end].strip()}}}")
        pos = end + 1
    return "\n".join(out)


def _scoped_selectors(selectors: str, scope: str) -> str:
    scoped = []
    for selector in (s.strip() for s in selectors.split(",")):
        if selector in PAGE_SELECTORS:
            scoped.append(scope)
        elif selector == "*":
            scoped += [scope, f"{scope} *"]
        else:
            scoped.append(f"{scope} {selector}")
    return ", ".join(dict.fromkeys(scoped))   # `html, body` -> the scope once


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced braces in the report's stylesheet")
