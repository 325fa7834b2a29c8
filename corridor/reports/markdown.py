"""The bilan as a Markdown page."""

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
from corridor.reports.funnel import text_funnels
from domain.bilan import Bilan


def _md(text: str) -> str:
    """Escape text for a Markdown paragraph or table cell."""
    text = html.escape(text, quote=False)
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return " ".join(text.splitlines())


def _md_table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(_md(cell) for cell in cells) + " |"

    rule = "| " + " | ".join("---:" if i in right else "---" for i in range(len(headers))) + " |"
    return [line(headers), rule, *(line(row) for row in rows)]


def render_markdown(bilan: Bilan, *, notice: str | None = None) -> str:
    """Render the bilan as a Markdown page: summary, text funnel, one row per firm.

    Args:
        bilan: The bilan.
        notice: An optional remark shown as a quote under the title.

    Returns:
        The Markdown text.
    """
    title = f"# Bilan — {_md(bilan.programme_name)}"
    lines = [title, "", f"*{_md(scope_text(bilan))} · {QUESTION}*"]
    if notice:
        lines += ["", f"> {_md(notice)}"]
    lines += ["", "## Summary", ""]
    lines += _md_table(["Measure", "Value"], [list(item) for item in summary_items(bilan)], {1})
    lines += ["", "## Funnel", "", "```text", *text_funnels(bilan), "```", "", "## Firms", ""]
    currencies = currencies_of(bilan)
    lines += _md_table(
        firm_headers(currencies),
        [firm_cells(row, currencies) for row in bilan.rows],
        numeric_columns(currencies),
    )
    return "\n".join(lines) + "\n"
