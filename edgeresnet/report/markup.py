"""The HTML both report pages share: a self-contained document (no network), readable on a phone and on paper."""

from __future__ import annotations

import html
import json
from typing import Any, Iterable

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 10px;color:#222;line-height:1.4}
h1{font-size:1.5em;overflow-wrap:anywhere}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{font-size:1.15em;font-weight:600;padding:.6em .8em;border-radius:4px}
.pass{background:#e6f4ea;color:#0b5d1e}.warn{background:#fff4d6;color:#6b4a00}.fail{background:#fde7e7;color:#a10000}
ul.warnings{margin:.4em 0 1em;padding-left:1.2em;color:#6b4a00}.estimate{color:#555;font-style:italic}
figure{margin:1.2em 0}img{max-width:100%;height:auto}figcaption{font-size:.9em;color:#444}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8em}code{overflow-wrap:anywhere}
@media print{body{max-width:none;margin:0}.scroll{overflow:visible}figure{break-inside:avoid}details.raw{display:none}}
"""

esc = html.escape


def cell(value: Any) -> str:
    """A table cell: numbers right-aligned, None as an en dash."""
    if value is None:
        return "<td>&ndash;</td>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num">{esc(str(value))}</td>'
    return f"<td>{esc(str(value))}</td>"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], element_id: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    head = f"<tr>{head}</tr>" if head else ""
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    ident = f' id="{esc(element_id)}"' if element_id else ""
    return f'<div class="scroll"><table{ident}>{head}{body}</table></div>'


def figures(drawn: dict[str, tuple[str, str]]) -> str:
    return "".join(f'<figure id="plot-{esc(name)}"><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{esc(caption)}</figcaption></figure>" for name, (caption, data) in drawn.items())


def raw_json(document: Any, title: str) -> str:
    return (f'<details class="raw" id="raw"><summary>{esc(title)} (raw)</summary>'
            f"<pre>{esc(json.dumps(document, indent=2))}</pre></details>")


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def pct(share: float | None, digits: int = 2) -> str | None:
    return None if share is None else f"{share * 100:.{digits}f}%"
