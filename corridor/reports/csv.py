"""The bilan as CSV: one row per firm."""

from __future__ import annotations

import csv
import io

from corridor.reports.figures import format_money
from domain.bilan import Bilan


def render_csv(bilan: Bilan) -> str:
    """Render one CSV row per firm, with a header row.

    The columns are the same whatever currencies appear: a firm's contract value is one
    column, ``contract_values``, listing "CUR amount" per currency, sorted by currency
    and separated by "; " (amounts are plain decimals with a dot and the currency's
    decimals; never added across currencies). Every row also carries ``as_of`` and
    ``complete`` (false while journeys are still catching up).

    Args:
        bilan: The bilan.

    Returns:
        The CSV text, with Unix line endings.
    """
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
            "contract_values",
            "days_to_first_contract",
            "visits_attended",
            "visits_skipped",
            "visits_missed",
            "as_of",
            "complete",
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
                "; ".join(
                    f"{currency} {format_money(amount, currency, plain=True)}"
                    for currency, amount in sorted(row.value_by_currency.items())
                ),
                "" if row.days_to_first_contract is None else row.days_to_first_contract,
                row.visits_attended,
                row.visits_skipped,
                row.visits_missed,
                bilan.as_of.isoformat() if bilan.as_of else "",
                "true" if bilan.complete else "false",
            ]
        )
    return out.getvalue()
