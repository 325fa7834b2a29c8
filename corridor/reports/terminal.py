"""The bilan on a terminal (rich): title, summary, funnels, one row per firm."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

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


def render_terminal(bilan: Bilan, console: Console, *, notice: str | None = None) -> None:
    """Print the bilan to a rich console: title, summary, funnel and one row per firm.

    Args:
        bilan: The bilan to show.
        console: Where to print it.
        notice: An optional remark printed dimmed under the title (e.g. data freshness).
    """
    console.print(Text(f"Bilan — {bilan.programme_name}", style="bold"))
    console.print(Text(f"{scope_text(bilan)} · {QUESTION}", style="italic"))
    if notice:
        console.print(Text(notice, style="dim"))
    console.print()

    summary = Table(title="Summary", title_justify="left", show_header=False)
    summary.add_column("Measure")
    summary.add_column("Value", justify="right")
    for label, value in summary_items(bilan):
        style = "bold green" if label.startswith("Contract value,") else ""
        summary.add_row(Text(label), Text(value, style=style))
    console.print(summary)
    console.print()

    for line in text_funnels(bilan):
        console.print(Text(line, style="cyan" if line.startswith(" ") else "bold"))
    console.print()

    currencies = currencies_of(bilan)
    numeric = numeric_columns(currencies)
    firms = Table(title="Firms", title_justify="left")
    for index, header in enumerate(firm_headers(currencies, compact=True)):
        firms.add_column(header, justify="right" if index in numeric else "left")
    for row in bilan.rows:
        firms.add_row(*(Text(cell) for cell in firm_cells(row, currencies)))
    console.print(firms)




def terminal_text(bilan: Bilan, notice: str | None = None) -> str:
    """The terminal rendering as plain text, 160 columns wide (for ``--output``).

    Args:
        bilan: The bilan.
        notice: An optional remark printed under the title.
    """
    console = Console(record=True, width=160, file=io.StringIO())
    render_terminal(bilan, console, notice=notice)
    return console.export_text()
