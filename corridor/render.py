"""Rendering the bilan: terminal (rich), CSV, JSON, Markdown and HTML.

Pure functions of a :class:`~domain.bilan.Bilan`: nothing here reads or writes files;
the terminal renderer writes to the console it is given, the others return strings.
Amounts are shown per currency with that currency's decimals and are never summed
across currencies (BRIEF, "The reports").
"""

from __future__ import annotations

import csv
import html
import io
from decimal import Decimal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from domain.bilan import Bilan, FirmRow
from domain.money import currency_exponent

QUESTION = "La question, c'est combien?"
DASH = "—"
FUNNEL_WIDTH = 36

__all__ = [
    "firm_funnel",
    "format_money",
    "funnel_svg",
    "meeting_funnel",
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "render_terminal",
    "summary_items",
    "text_funnel",
]


# --- figures shared by every format -------------------------------------------------


def _exponent(currency: str) -> int:
    try:
        return currency_exponent(currency)
    except ValueError:
        return 2


def format_money(amount: Decimal, currency: str) -> str:
    """Format an amount with thousands separators and its currency's decimals.

    Args:
        amount: The amount.
        currency: Its ISO 4217 code.

    Returns:
        For example ``"CAD 1,325,500.50"`` or ``"JPY 1,200"``.
    """
    return f"{currency} {amount:,.{_exponent(currency)}f}"


def _plain_amount(amount: Decimal, currency: str) -> str:
    return f"{amount:.{_exponent(currency)}f}"


def _days(days: float | None) -> str:
    if days is None:
        return DASH
    return f"{days:.0f} days" if float(days).is_integer() else f"{days:.1f} days"


def _scope(bilan: Bilan) -> str:
    if bilan.scope == "programme":
        scope = "whole programme"
    elif bilan.scope.startswith("query:"):
        scope = f"journeys matching {bilan.scope.removeprefix('query:').strip()}"
    else:
        scope = f"mission {bilan.scope}"
    return f"{scope}, as of {bilan.as_of}" if bilan.as_of else scope


def _outcome_label(outcome: str) -> str:
    return "no-show" if outcome == "no_show" else outcome.replace("_", " ")


def _share(part: int, whole: int) -> str:
    return f"{part} of {whole} ({part / whole:.0%})" if whole else f"{part} of {whole}"


def _currencies(bilan: Bilan) -> list[str]:
    found = set(bilan.value_by_currency)
    for row in bilan.rows:
        found.update(row.value_by_currency)
    return sorted(found)


def summary_items(bilan: Bilan) -> list[tuple[str, str]]:
    """List the bilan's headline figures as (label, formatted value) pairs.

    Contract value gets one line per currency.

    Args:
        bilan: The bilan to summarise.

    Returns:
        The pairs, in display order.
    """
    outcomes = " · ".join(f"{_outcome_label(k)} {v}" for k, v in bilan.outcomes.items())
    items = [
        ("Firms enrolled", str(bilan.firms)),
        (
            "Meetings requested / arranged / held",
            f"{bilan.meetings_requested} / {bilan.meetings_arranged} / {bilan.meetings_held}",
        ),
        ("Meeting outcomes", outcomes or DASH),
        ("Results overdue", str(bilan.results_overdue)),
        ("Contracts", str(bilan.contracts)),
    ]
    if bilan.value_by_currency:
        items += [
            (f"Contract value, {currency}", format_money(amount, currency))
            for currency, amount in sorted(bilan.value_by_currency.items())
        ]
    else:
        items.append(("Contract value", DASH))
    items += [
        ("Firms with a contract", _share(bilan.firms_with_contract, bilan.firms)),
        ("Median days, introduction to first contract", _days(bilan.median_days_to_first_contract)),
        (
            "Return visits attended / skipped / not recorded",
            f"{bilan.visits_attended} / {bilan.visits_skipped} / {bilan.visits_missed}",
        ),
        (
            "Journeys withdrawn / closed / active",
            f"{bilan.withdrawn} / {bilan.closed} / {bilan.active}",
        ),
    ]
    return items


def meeting_funnel(bilan: Bilan) -> list[tuple[str, int]]:
    """Return the meetings funnel: requested, arranged, held, promising.

    Args:
        bilan: The bilan.

    Returns:
        (stage label, number of meetings) pairs.
    """
    return [
        ("requested", bilan.meetings_requested),
        ("arranged", bilan.meetings_arranged),
        ("held", bilan.meetings_held),
        ("promising", bilan.outcomes.get("promising", 0)),
    ]


def firm_funnel(bilan: Bilan) -> list[tuple[str, int]]:
    """Return the firms funnel: enrolled, with a contract.

    Args:
        bilan: The bilan.

    Returns:
        (stage label, number of firms) pairs.
    """
    return [("enrolled", bilan.firms), ("with a contract", bilan.firms_with_contract)]


def _bar_length(value: int, top: int, width: int) -> int:
    if value <= 0 or top <= 0:
        return 0
    return max(1, round(width * value / top))


def text_funnel(
    stages: list[tuple[str, int]], width: int = FUNNEL_WIDTH, label_width: int = 0
) -> list[str]:
    """Draw a funnel as centred bars of block characters, one line per stage.

    Args:
        stages: (label, count) pairs, widest stage first.
        width: Width of the widest bar, in characters.
        label_width: Minimum width of the label column (to align several funnels).

    Returns:
        The lines, e.g. ``"held        ██████████    15"``.
    """
    top = max((count for _, count in stages), default=0)
    label_width = max([label_width, *(len(label) for label, _ in stages)])
    lines = []
    for label, count in stages:
        length = _bar_length(count, top, width)
        left = (width - length) // 2
        bar = " " * left + "█" * length + " " * (width - length - left)
        lines.append(f"{label:<{label_width}}  {bar}  {count}")
    return lines


def _text_funnels(bilan: Bilan) -> list[str]:
    funnels = (("Meetings", meeting_funnel(bilan)), ("Firms", firm_funnel(bilan)))
    widest = max(len(label) for _, stages in funnels for label, _ in stages)
    lines = []
    for title, stages in funnels:
        lines.append(title)
        lines += ["  " + line for line in text_funnel(stages, label_width=widest)]
    return lines


def _stage(row: FirmRow) -> str:
    return row.stage.value.replace("_", " ")


def _firm_cells(row: FirmRow, currencies: list[str]) -> list[str]:
    values = [
        format_money(row.value_by_currency[c], c) if c in row.value_by_currency else DASH
        for c in currencies
    ]
    return [
        row.firm_name,
        row.mission_id,
        row.introduced_on.isoformat(),
        _stage(row),
        f"{row.meetings_requested} / {row.meetings_arranged} / {row.meetings_held}",
        str(row.contracts),
        *values,
        DASH if row.days_to_first_contract is None else str(row.days_to_first_contract),
        f"{row.visits_attended} / {row.visits_skipped} / {row.visits_missed}",
    ]


def _firm_headers(currencies: list[str], *, compact: bool = False) -> list[str]:
    if compact:  # two-line headers keep the terminal table narrow
        return [
            "Firm",
            "Mission",
            "Introduced\non",
            "Stage",
            "Meetings\nreq/arr/held",
            "Contracts",
            *(f"Value\n{c}" for c in currencies),
            "Days to first\ncontract",
            "Visits\natt/skip/none",
        ]
    return [
        "Firm",
        "Mission",
        "Introduced on",
        "Stage",
        "Meetings req / arr / held",
        "Contracts",
        *(f"Value {c}" for c in currencies),
        "Days to first contract",
        "Visits att / skip / not recorded",
    ]


def _numeric_columns(currencies: list[str]) -> set[int]:
    """Indices of the right-aligned columns of the per-firm table."""
    return {4, 5, *range(6, 6 + len(currencies)), 6 + len(currencies), 7 + len(currencies)}


# --- terminal -----------------------------------------------------------------------


def render_terminal(bilan: Bilan, console: Console, *, notice: str | None = None) -> None:
    """Print the bilan to a rich console: title, summary, funnel and one row per firm.

    Args:
        bilan: The bilan to show.
        console: Where to print it.
        notice: An optional remark printed dimmed under the title (e.g. data freshness).
    """
    console.print(Text(f"Bilan — {bilan.programme_name}", style="bold"))
    console.print(Text(f"{_scope(bilan)} · {QUESTION}", style="italic"))
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

    for line in _text_funnels(bilan):
        console.print(Text(line, style="cyan" if line.startswith(" ") else "bold"))
    console.print()

    currencies = _currencies(bilan)
    numeric = _numeric_columns(currencies)
    firms = Table(title="Firms", title_justify="left")
    for index, header in enumerate(_firm_headers(currencies, compact=True)):
        firms.add_column(header, justify="right" if index in numeric else "left")
    for row in bilan.rows:
        firms.add_row(*(Text(cell) for cell in _firm_cells(row, currencies)))
    console.print(firms)


# --- CSV and JSON -------------------------------------------------------------------


def render_csv(bilan: Bilan) -> str:
    """Render one CSV row per firm, with a header row.

    Contract value gets one column per currency present (``value_USD``, ``value_CAD``);
    amounts are plain decimals with a dot and the currency's decimals.

    Args:
        bilan: The bilan.

    Returns:
        The CSV text, with Unix line endings.
    """
    currencies = _currencies(bilan)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "firm_id",
            "firm_name",
            "mission_id",
            "introduced_on",
            "stage",
            "cycle",
            "meetings_requested",
            "meetings_arranged",
            "meetings_held",
            "results_overdue",
            "contracts",
            *(f"value_{c}" for c in currencies),
            "days_to_first_contract",
            "visits_attended",
            "visits_skipped",
            "visits_missed",
        ]
    )
    for row in bilan.rows:
        writer.writerow(
            [
                row.firm_id,
                row.firm_name,
                row.mission_id,
                row.introduced_on.isoformat(),
                row.stage.value,
                row.cycle,
                row.meetings_requested,
                row.meetings_arranged,
                row.meetings_held,
                row.results_overdue,
                row.contracts,
                *(_plain_amount(row.value_by_currency.get(c, Decimal(0)), c) for c in currencies),
                "" if row.days_to_first_contract is None else row.days_to_first_contract,
                row.visits_attended,
                row.visits_skipped,
                row.visits_missed,
            ]
        )
    return out.getvalue()


def render_json(bilan: Bilan) -> str:
    """Render the whole bilan, rows included, as JSON; decimals stay exact strings.

    Args:
        bilan: The bilan.

    Returns:
        The JSON text, indented by 2.
    """
    return bilan.model_dump_json(indent=2)


# --- Markdown -----------------------------------------------------------------------


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
    lines = [f"# Bilan — {_md(bilan.programme_name)}", "", f"*{_md(_scope(bilan))} · {QUESTION}*"]
    if notice:
        lines += ["", f"> {_md(notice)}"]
    lines += ["", "## Summary", ""]
    lines += _md_table(["Measure", "Value"], [list(item) for item in summary_items(bilan)], {1})
    lines += ["", "## Funnel", "", "```text", *_text_funnels(bilan), "```", "", "## Firms", ""]
    currencies = _currencies(bilan)
    lines += _md_table(
        _firm_headers(currencies),
        [_firm_cells(row, currencies) for row in bilan.rows],
        _numeric_columns(currencies),
    )
    return "\n".join(lines) + "\n"


# --- HTML ---------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def funnel_svg(title: str, stages: list[tuple[str, int]], colour: str) -> str:
    """Draw a funnel as an inline SVG of centred horizontal bars labelled with counts.

    Args:
        title: Accessible title of the chart.
        stages: (label, count) pairs, widest stage first.
        colour: Bar fill colour (CSS colour).

    Returns:
        The ``<svg>`` element.
    """
    label_w, bar_w, count_w, row_h, bar_h, pad = 130, 320, 90, 34, 24, 6
    width = label_w + bar_w + count_w
    height = pad * 2 + row_h * len(stages)
    top = max((count for _, count in stages), default=0)
    first = stages[0][1] if stages else 0
    centre = label_w + bar_w / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="funnel" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{_esc(title)}</title>",
    ]
    for index, (label, count) in enumerate(stages):
        y = pad + index * row_h
        text_y = y + bar_h / 2 + 5
        length = _bar_length(count, top, bar_w)
        share = f" ({count / first:.0%})" if first and index else ""
        parts += [
            f'<text x="{label_w - 10}" y="{text_y:g}" text-anchor="end" class="label">'
            f"{_esc(label)}</text>",
            f'<rect x="{centre - length / 2:g}" y="{y}" width="{length}" height="{bar_h}" '
            f'rx="3" fill="{_esc(colour)}"/>',
            f'<text x="{label_w + bar_w + 10}" y="{text_y:g}" class="count">'
            f"{count}{_esc(share)}</text>",
        ]
    parts.append("</svg>")
    return "\n".join(parts)


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
    currencies = _currencies(bilan)
    firms = _html_table(
        _firm_headers(currencies),
        [_firm_cells(row, currencies) for row in bilan.rows],
        _numeric_columns(currencies),
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
<p class="scope">{_esc(_scope(bilan))} · {_esc(QUESTION)}</p>
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
