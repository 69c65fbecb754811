"""The report's ``index.html``: plain HTML + CSS, relative links, no JavaScript or network."""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #222; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 1.6em; }
.note { background: #f4f7fb; border-left: 4px solid #4a7bd0; padding: 8px 12px; }
.warn { background: #fff4f0; border-left: 4px solid #d0584a; padding: 8px 12px; }
table { border-collapse: collapse; margin: 8px 0 4px 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
th.paper, td.paper { background: #f3f3f3; color: #666; font-style: italic; }
tr.avg td { font-weight: bold; border-top: 2px solid #888; }
figure { margin: 12px 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
.links a { margin-right: 12px; }
.ok { color: #1a7f37; } .failed { color: #c62828; font-weight: bold; }
"""


@dataclass
class Section:
    """One titled section: optional intro text, an HTML table, figures and file links."""

    title: str
    anchor: str
    intro: str = ""
    table_html: str = ""
    notes: Sequence[str] = ()
    figures: list[tuple[str, str]] = field(default_factory=list)  # (relative src, caption)
    links: list[str] = field(default_factory=list)  # relative file names


def render(title: str, header_notes: Sequence[str], warnings: Sequence[str],
           sections: Sequence[Section]) -> str:
    """Renders the whole page. Texts are escaped; ``table_html`` is inserted as given."""
    esc = html.escape
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(title)}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>{esc(title)}</h1>", f"<p>Generated {esc(now)}.</p>"]
    if header_notes:
        out.append('<div class="note">' + "<br>".join(esc(n) for n in header_notes) + "</div>")
    if warnings:
        out.append('<div class="warn">' + "<br>".join(esc(w) for w in warnings) + "</div>")
    out.append("<p>Contents: " + " · ".join(
        f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections) + "</p>")
    for s in sections:
        out.append(f'<h2 id="{esc(s.anchor)}">{esc(s.title)}</h2>')
        if s.intro:
            out.append(f"<p>{esc(s.intro)}</p>")
        if s.table_html:
            out.append(s.table_html)
        for n in s.notes:
            out.append(f'<p class="small">{esc(n)}</p>')
        for src, cap in s.figures:
            out.append(f'<figure><img src="{esc(src)}" alt="{esc(cap)}">'
                       f"<figcaption>{esc(cap)}</figcaption></figure>")
        if s.links:
            out.append('<p class="links">Files: ' + "".join(
                f'<a href="{esc(x)}">{esc(x)}</a>' for x in s.links) + "</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
