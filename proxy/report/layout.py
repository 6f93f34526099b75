"""The HTML document around every report page: head, stylesheet and content security policy."""

from __future__ import annotations

from datetime import datetime

from proxy.report.data import as_utc
from proxy.report.svg import esc

# Forbids every fetch: no script, font, image or stylesheet from anywhere, including the
# gateway itself. Forms may post only to the page's own origin (the /ui login and logout).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# A <meta> policy cannot set frame-ancestors, so the page's own copy leaves it out.
_META_POLICY = CONTENT_SECURITY_POLICY.removesuffix("; frame-ancestors 'none'")

STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #52606d; --line: #d9e2ec;
  --soft: #f5f7fa; --accent: #2563eb; --good: #15803d; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--ink); background: #fff; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
p { margin: 8px 0; }
a { color: var(--accent); }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--soft);
  padding: 1px 4px; border-radius: 3px; }
.summary { color: var(--muted); margin: 0; }
.reason { font-size: 16px; border-left: 4px solid var(--accent); background: var(--soft);
  margin: 10px 0; padding: 10px 14px; }
.empty { border: 1px dashed var(--line); background: var(--soft); padding: 18px;
  color: var(--muted); }
.problems { border-left: 4px solid var(--bad); background: #fef2f2; padding: 8px 14px; }
.method { color: var(--muted); font-size: 13px; }
figure { margin: 12px 0; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
svg.chart { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin: 8px 0; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; background: var(--soft); }
tbody th { background: none; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.number { text-align: right; }
.tag { display: inline-block; font-size: 12px; padding: 0 6px; border-radius: 9px;
  margin-left: 6px; border: 1px solid currentColor; }
.tag.chosen { color: var(--good); }
.tag.current { color: var(--ink); }
.yes { color: var(--good); }
.no { color: var(--bad); }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; }
nav.live { display: flex; gap: 16px; align-items: center; justify-content: flex-end;
  font-size: 14px; }
nav.live form { margin: 0; }
button { font: inherit; padding: 4px 12px; border: 1px solid var(--line); border-radius: 4px;
  background: #fff; cursor: pointer; }
input[type=password] { font: inherit; padding: 6px 8px; width: 100%; max-width: 420px;
  border: 1px solid var(--line); border-radius: 4px; }
ul.policies li { margin: 6px 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
details summary { cursor: pointer; color: var(--muted); }
@media print {
  nav.live { display: none; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  figure, tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def document(title: str, body: str) -> str:
    """Wrap `body` (HTML already escaped) in a whole HTML document titled `title` (plain text)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_META_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def format_time(moment: datetime) -> str:
    """Format a timestamp as UTC to the second, such as "2025-03-01 14:05:09 UTC"."""
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")
