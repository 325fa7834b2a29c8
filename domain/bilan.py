"""The bilan: contracts came out of the mission; "la question, c'est combien?".

Computed from journey states (the journeys read model), per programme or per mission of
introduction (BRIEF, "The reports"). Amounts are summed per currency, never across
currencies.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field, computed_field

from domain.calendar import local_date
from domain.commands import Outcome
from domain.journey import JourneyState, Stage


class FirmRow(BaseModel):
    """One firm's line of the bilan."""

    firm_id: str
    firm_name: str
    mission_id: str
    introduced_on: date
    stage: Stage
    cycle: int
    meetings_requested: int
    meetings_arranged: int
    meetings_held: int
    results_overdue: int
    contracts: int
    value_by_currency: dict[str, Decimal]
    days_to_first_contract: int | None
    visits_attended: int
    visits_skipped: int
    visits_missed: int


class Bilan(BaseModel):
    """The bilan of a programme, or of the firms introduced at one of its missions.

    Attributes:
        scope: "programme" or the mission id.
        as_of: The latest business date among the journeys' last events.
        outcomes: Meetings per recorded outcome (every outcome listed, zeros included).
        value_by_currency: Total contract value per ISO 4217 currency.
        share_with_contract: Firms with at least one contract / firms enrolled.
        median_days_to_first_contract: Median, over firms with a contract, of the days
            from introduction to first contract.
        journeys_behind: Journeys whose events up to their today are not all stored
            yet (catching up after enrolment, or not started by a worker yet): while
            it is above 0 the figures are incomplete.
    """

    programme_id: str
    programme_name: str
    scope: str
    as_of: date | None = None
    firms: int
    meetings_requested: int
    meetings_arranged: int
    meetings_held: int
    outcomes: dict[str, int]
    results_overdue: int
    contracts: int
    value_by_currency: dict[str, Decimal]
    firms_with_contract: int
    share_with_contract: float | None
    median_days_to_first_contract: float | None
    visits_attended: int
    visits_skipped: int
    visits_missed: int
    withdrawn: int
    closed: int
    active: int
    rows: list[FirmRow] = Field(default_factory=list)
    journeys_behind: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def complete(self) -> bool:
        """True when every journey's events up to its today are stored."""
        return self.journeys_behind == 0

    def completeness(self) -> str:
        """One line saying the date the figures hold for and whether they are complete."""
        when = f"as of {self.as_of}" if self.as_of else "as recorded"
        if self.complete:
            return f"Figures {when}: complete (every journey's events are stored)."
        return (
            f"INCOMPLETE: {self.journeys_behind} journey(s) are still catching up; the "
            f"figures {when} leave out what they have not stored yet (`--wait` waits)."
        )


def firm_row(state: JourneyState) -> FirmRow:
    """Summarise one journey as a line of the bilan."""
    assessment = state.assessment()
    meetings = state.meetings.values()
    return FirmRow(
        firm_id=state.firm.id,
        firm_name=state.firm_label,
        mission_id=state.mission_id,
        introduced_on=state.introduced_on,
        stage=state.stage,
        cycle=state.cycle,
        meetings_requested=assessment.meetings_requested,
        meetings_arranged=sum(1 for m in meetings if m.scheduled_at is not None),
        meetings_held=assessment.meetings_held,
        results_overdue=sum(1 for m in meetings if m.overdue and m.outcome is None),
        contracts=assessment.contracts,
        value_by_currency=assessment.value_by_currency,
        days_to_first_contract=assessment.days_to_first_contract,
        visits_attended=assessment.visits_attended,
        visits_skipped=assessment.visits_skipped,
        visits_missed=assessment.visits_missed,
    )


def compute_bilan(
    programme_id: str,
    programme_name: str,
    states: list[JourneyState],
    mission_id: str | None = None,
) -> Bilan:
    """Compute the bilan over the journeys of one programme.

    Args:
        programme_id: The programme's id.
        programme_name: Its display name.
        states: The journeys of that programme (any order).
        mission_id: Keep only the firms introduced at this mission; None for all.

    Returns:
        The bilan, with one row per firm sorted by introduction date then firm id.
    """
    chosen = [s for s in states if mission_id is None or s.mission_id == mission_id]
    rows = sorted((firm_row(s) for s in chosen), key=lambda r: (r.introduced_on, r.firm_id))
    outcomes: Counter[str] = Counter({o.value: 0 for o in Outcome})
    for state in chosen:
        outcomes.update(m.outcome.value for m in state.meetings.values() if m.outcome)
    values: dict[str, Decimal] = {}
    for row in rows:
        for currency, amount in row.value_by_currency.items():
            values[currency] = values.get(currency, Decimal(0)) + amount
    with_contract = [r for r in rows if r.contracts]
    days = [r.days_to_first_contract for r in rows if r.days_to_first_contract is not None]
    stages = Counter(r.stage for r in rows)
    last_dates = [local_date(s.last_event_at, s.tz) for s in chosen if s.last_event_at is not None]
    return Bilan(
        as_of=max(last_dates, default=None),
        programme_id=programme_id,
        programme_name=programme_name,
        scope=mission_id or "programme",
        firms=len(rows),
        meetings_requested=sum(r.meetings_requested for r in rows),
        meetings_arranged=sum(r.meetings_arranged for r in rows),
        meetings_held=sum(r.meetings_held for r in rows),
        outcomes=dict(outcomes),
        results_overdue=sum(r.results_overdue for r in rows),
        contracts=sum(r.contracts for r in rows),
        value_by_currency=dict(sorted(values.items())),
        firms_with_contract=len(with_contract),
        share_with_contract=len(with_contract) / len(rows) if rows else None,
        median_days_to_first_contract=float(statistics.median(days)) if days else None,
        visits_attended=sum(r.visits_attended for r in rows),
        visits_skipped=sum(r.visits_skipped for r in rows),
        visits_missed=sum(r.visits_missed for r in rows),
        withdrawn=stages[Stage.WITHDRAWN],
        closed=stages[Stage.CLOSED],
        active=len(rows) - stages[Stage.WITHDRAWN] - stages[Stage.CLOSED],
        rows=rows,
    )


__all__ = ["Bilan", "FirmRow", "compute_bilan", "firm_row"]
