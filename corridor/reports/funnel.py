"""The bilan's funnels (meetings, firms), as text bars and as an SVG chart."""

from __future__ import annotations

import html

from domain.bilan import Bilan

FUNNEL_WIDTH = 36


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


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


def bar_length(value: int, top: int, width: int) -> int:
    """Length of a funnel bar: proportional to ``top``, at least 1 for a non-zero value."""
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
        length = bar_length(count, top, width)
        left = (width - length) // 2
        bar = " " * left + "█" * length + " " * (width - length - left)
        lines.append(f"{label:<{label_width}}  {bar}  {count}")
    return lines


def text_funnels(bilan: Bilan) -> list[str]:
    """Both funnels (meetings, firms) as text lines, labels aligned."""
    funnels = (("Meetings", meeting_funnel(bilan)), ("Firms", firm_funnel(bilan)))
    widest = max(len(label) for _, stages in funnels for label, _ in stages)
    lines = []
    for title, stages in funnels:
        lines.append(title)
        lines += ["  " + line for line in text_funnel(stages, label_width=widest)]
    return lines



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
        length = bar_length(count, top, bar_w)
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


