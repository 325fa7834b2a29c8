"""The bilan as a self-contained HTML page with SVG funnel charts."""

from __future__ import annotations

import html

from corridor.reports.figures import (
    QUESTION,
    currencies_of,
    firm_cells,
    firm_headers,
    numeric_columns,
    scope_text,
    summary_items,
)
from corridor.reports.funnel import firm_funnel, funnel_svg, meeting_funnel
from domain.bilan import Bilan


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2933;
  margin: 2rem auto; max-width: 72rem; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } .scope { color: #52606d; font-style: italic; margin-top: 0; }
.notice { color: #7b8794; font-size: .9rem; }
.top { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #e4e7eb; text-align: left; }
th { background: #f5f7fa; } td.num, th.num { text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.money td { font-weight: 600; color: #0b6e4f; }
.funnel text { font-size: 13px; fill: #323f4b; } .funnel .count { font-weight: 600; }
h3 { margin: .8rem 0 .2rem; font-size: 1rem; color: #52606d; }
"""


def _html_table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i in right else ""

    head = "".join(f"<th{cls(i)}>{_esc(h)}</th>" for i, h in enumerate(headers))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_esc(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def render_html(bilan: Bilan, *, notice: str | None = None) -> str:
    """Render the bilan as a self-contained HTML page with SVG funnel charts.

    No JavaScript and no external assets; every string from the data is escaped.

    Args:
        bilan: The bilan.
        notice: An optional remark shown under the title.

    Returns:
        The HTML document.
    """
    money = ' class="money"'
    summary_rows = "\n".join(
        f"<tr{money if label.startswith('Contract value,') else ''}>"
        f'<th scope="row">{_esc(label)}</th><td class="num">{_esc(value)}</td></tr>'
        for label, value in summary_items(bilan)
    )
    currencies = currencies_of(bilan)
    firms = _html_table(
        firm_headers(currencies),
        [firm_cells(row, currencies) for row in bilan.rows],
        numeric_columns(currencies),
    )
    notice_html = f'<p class="notice">{_esc(notice)}</p>\n' if notice else ""
    name = _esc(bilan.programme_name)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bilan — {name}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Bilan — {name}</h1>
<p class="scope">{_esc(scope_text(bilan))} · {_esc(QUESTION)}</p>
{notice_html}<div class="top">
<section>
<h2>Summary</h2>
<table class="summary">
{summary_rows}
</table>
</section>
<section>
<h2>Funnel</h2>
<h3>Meetings</h3>
{funnel_svg("Meetings: requested, arranged, held, promising", meeting_funnel(bilan), "#3e7cb1")}
<h3>Firms</h3>
{funnel_svg("Firms: enrolled, with a contract", firm_funnel(bilan), "#2f9e73")}
</section>
</div>
<section>
<h2>Firms</h2>
{firms}
</section>
</body>
</html>
"""
