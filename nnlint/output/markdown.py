"""The markdown subset rule docstrings are written in, rendered to safe HTML.

Rule documentation is ruff-shaped markdown: `## ` headings, ``` fenced code, `- ` and `1. ` lists with
indented continuation lines, paragraphs, and inline `code`, **bold** and [links](url). That is all
this renders; every character of the source is escaped, so a docstring cannot inject markup.
"""
from __future__ import annotations

import re
from html import escape

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """`code`, **bold** and [text](url) in escaped text. Links are shown as text, not followed: the
    report references nothing outside itself."""
    out, last = [], 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[last:m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{escape(m.group(1))}</code>")
        elif m.group(2) is not None:
            out.append(f"<strong>{escape(m.group(2))}</strong>")
        else:
            out.append(f'{escape(m.group(3))} <span class="url">({escape(m.group(4))})</span>')
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)


_LIST_ITEM = re.compile(r"^(\s*)([-*]|\d+[.)])\s+(.*)$")


def markdown_to_html(text: str, heading_level: int = 4) -> str:
    """The markdown subset rule docstrings use: # headings, ``` fences, - and 1. lists (with indented
    continuation lines), paragraphs, and inline code/bold/links. Everything is escaped."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    paragraph: list[str] = []

    def flush():
        if paragraph:
            out.append(f"<p>{inline_html(' '.join(s.strip() for s in paragraph))}</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            lang = stripped[3:].strip()
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1   # the closing fence (or the end)
            cls = f' class="language-{escape(lang)}"' if lang else ""
            out.append(f'<pre class="code"><code{cls}>{escape(_dedent(body))}</code></pre>')
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            flush()
            level = min(heading_level + len(heading.group(1)) - 2, 6)
            out.append(f"<h{level}>{inline_html(heading.group(2))}</h{level}>")
            i += 1
            continue
        item = _LIST_ITEM.match(line)
        if item:
            flush()
            ordered = item.group(2)[0].isdigit()
            items: list[str] = []
            while i < len(lines):
                m = _LIST_ITEM.match(lines[i])
                if m and m.group(2)[0].isdigit() == ordered:
                    items.append(m.group(3).strip())
                elif lines[i].startswith((" ", "\t")) and lines[i].strip() and items:
                    items[-1] += " " + lines[i].strip()   # continuation of the item above
                else:
                    break
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{inline_html(t)}</li>" for t in items) + f"</{tag}>")
            continue
        if not stripped:
            flush()
        else:
            paragraph.append(stripped)
        i += 1
    flush()
    return "".join(out)


def _dedent(lines: list[str]) -> str:
    indents = [len(s) - len(s.lstrip()) for s in lines if s.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(s[cut:] for s in lines)
