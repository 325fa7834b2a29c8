"""The bilan, in every format: terminal, CSV, JSON, Markdown and HTML.

Pure functions of a ``domain.bilan.Bilan`` (``figures``, ``funnel`` and one module per
format), plus ``printing``, which computes a programme's bilan from the read model and
prints or writes it. Amounts are formatted in one place, ``figures.format_money``.
"""

from corridor.reports.csv import render_csv
from corridor.reports.figures import format_money, summary_items
from corridor.reports.funnel import firm_funnel, funnel_svg, meeting_funnel, text_funnel
from corridor.reports.html import render_html
from corridor.reports.json import render_json
from corridor.reports.markdown import render_markdown
from corridor.reports.printing import ReportFormat, print_bilan
from corridor.reports.terminal import render_terminal, terminal_text

__all__ = [
    "ReportFormat",
    "firm_funnel",
    "format_money",
    "funnel_svg",
    "meeting_funnel",
    "print_bilan",
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "render_terminal",
    "summary_items",
    "terminal_text",
    "text_funnel",
]
