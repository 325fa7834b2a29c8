"""The bilan's figures as every format shows them: money, days, shares, table cells.

Amounts are shown per currency with that currency's decimals and are never summed
across currencies (BRIEF, "The reports").
"""

from __future__ import annotations

from decimal import Decimal

from domain.bilan import Bilan, FirmRow
from domain.money import currency_exponent

QUESTION = "La question, c'est combien?"
DASH = "—"


def format_money(amount: Decimal, currency: str, *, plain: bool = False) -> str:
    """Format an amount with its currency's decimals (``Money``'s own format).

    The number of decimals is ``domain.money.currency_exponent``'s; a code it does not
    know (a stored event is never re-validated) gets two.

    Args:
        amount: The amount.
        currency: Its ISO 4217 code.
        plain: Just the number, no code and no thousands separators (for CSV).

    Returns:
        For example ``"CAD 1,325,500.50"`` or ``"JPY 1,200"``; plain: ``"1325500.50"``.
    """
    try:
        exponent = currency_exponent(currency)
    except ValueError:
        exponent = 2
    if plain:
        return f"{amount:.{exponent}f}"
    return f"{currency} {amount:,.{exponent}f}"


def days_text(days: float | None) -> str:
    """Days as ``"307.5 days"`` (whole days without decimals); a dash for none."""
    if days is None:
        return DASH
    return f"{days:.0f} days" if float(days).is_integer() else f"{days:.1f} days"


def scope_text(bilan: Bilan) -> str:
    """What the bilan covers, in words (programme, mission or query; its date)."""
    if bilan.scope == "programme":
        scope = "whole programme"
    elif bilan.scope.startswith("query:"):
        scope = f"journeys matching {bilan.scope.removeprefix('query:').strip()}"
    else:
        scope = f"mission {bilan.scope}"
    return f"{scope}, as of {bilan.as_of}" if bilan.as_of else scope


def outcome_label(outcome: str) -> str:
    """A meeting outcome in words (``no_show``: ``no-show``)."""
    return "no-show" if outcome == "no_show" else outcome.replace("_", " ")


def share_text(part: int, whole: int) -> str:
    """``"4 of 10 (40%)"``."""
    return f"{part} of {whole} ({part / whole:.0%})" if whole else f"{part} of {whole}"


def currencies_of(bilan: Bilan) -> list[str]:
    """Every currency of the bilan and its rows, sorted (one column each)."""
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
    outcomes = " · ".join(f"{outcome_label(k)} {v}" for k, v in bilan.outcomes.items())
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
        ("Firms with a contract", share_text(bilan.firms_with_contract, bilan.firms)),
        (
            "Median days, introduction to first contract",
            days_text(bilan.median_days_to_first_contract),
        ),
        (
            "Return visits attended / skipped / missed (window closed, none recorded)",
            f"{bilan.visits_attended} / {bilan.visits_skipped} / {bilan.visits_missed}",
        ),
        (
            "Journeys withdrawn / closed / active",
            f"{bilan.withdrawn} / {bilan.closed} / {bilan.active}",
        ),
    ]
    return items


def stage_text(row: FirmRow) -> str:
    """A firm's stage in words."""
    return row.stage.value.replace("_", " ")


def firm_cells(row: FirmRow, currencies: list[str]) -> list[str]:
    """The cells of a firm's row in the per-firm table (one value per currency)."""
    values = [
        format_money(row.value_by_currency[c], c) if c in row.value_by_currency else DASH
        for c in currencies
    ]
    return [
        row.firm_name,
        row.mission_id,
        row.introduced_on.isoformat(),
        stage_text(row),
        f"{row.meetings_requested} / {row.meetings_arranged} / {row.meetings_held}",
        str(row.contracts),
        *values,
        DASH if row.days_to_first_contract is None else str(row.days_to_first_contract),
        f"{row.visits_attended} / {row.visits_skipped} / {row.visits_missed}",
    ]


def firm_headers(currencies: list[str], *, compact: bool = False) -> list[str]:
    """Headers of the per-firm table; ``compact``: on two lines (terminal)."""
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
            "Visits\natt/skip/missed",
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
        "Visits att / skip / missed",
    ]


def numeric_columns(currencies: list[str]) -> set[int]:
    """Indices of the right-aligned columns of the per-firm table."""
    return {4, 5, *range(6, 6 + len(currencies)), 6 + len(currencies), 7 + len(currencies)}


