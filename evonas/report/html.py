"""A self-contained HTML page: inline CSS, figures embedded as base64 PNG, no scripts, no remote files."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
       margin-top: 1.8em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
code { background: #f4f4f4; padding: 0.1em 0.3em; border-radius: 3px; font-size: 0.9em; word-break: break-all; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; max-width: 900px; }
.kv th { text-align: left; width: 13em; } .kv td { text-align: left; }
.note { color: #666; font-size: 0.9em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits; NaN/None as an en dash."""
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        if math.isnan(value):
            return "&ndash;"
        if math.isinf(value):
            return "&infin;" if value > 0 else "&minus;&infin;"
        return esc(f"{value:.{digits}g}")
    return esc(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (),
          raw: Sequence[int] = ()) -> str:
    """An HTML table; columns in ``left`` are left-aligned, cells in columns ``raw`` are already HTML."""
    head = "".join(f"<th class='l'>{esc(h)}</th>" if i in left else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            text = v if i in raw else fmt(v)
            cells.append(f"<td class='l'>{text}</td>" if i in left else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(items: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f"<table class='kv'>{rows}</table>"


def figure(path: Path, caption: str, embed: bool = True) -> str:
    """An ``<figure>`` with the PNG inlined (``embed``) or linked relative to the page."""
    if embed:
        src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    else:
        src = esc(f"{path.parent.name}/{path.name}")
    return (f"<figure id='{esc(path.stem)}'><img src='{src}' alt='{esc(path.stem)}'>"
            f"<figcaption>{caption}</figcaption></figure>")


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{esc(h)}</h2>\n{content}" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n"
            f"<p class='sub'>{subtitle}</p>\n{body}\n</body></html>\n")
