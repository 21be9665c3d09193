"""The HTML report's stylesheet: light, dark (prefers-color-scheme) and print."""

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
