"""The bilan as CSV: one row per firm."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from corridor.reports.figures import currencies_of, format_money
from domain.bilan import Bilan


def render_csv(bilan: Bilan) -> str:
    """Render one CSV row per firm, with a header row.

    Contract value gets one column per currency present (``value_USD``, ``value_CAD``);
    amounts are plain decimals with a dot and the currency's decimals.

    Args:
        bilan: The bilan.

    Returns:
        The CSV text, with Unix line endings.
    """
    currencies = currencies_of(bilan)
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
                *(
                    format_money(row.value_by_currency.get(c, Decimal(0)), c, plain=True)
                    for c in currencies
                ),
                "" if row.days_to_first_contract is None else row.days_to_first_contract,
                row.visits_attended,
                row.visits_skipped,
                row.visits_missed,
            ]
        )
    return out.getvalue()
