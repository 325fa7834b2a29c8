"""The bilan computed in SQL from the read models equals the one folded from states.

``EventStore.bilan`` reads ``journeys``, ``meetings``, ``contracts`` and
``return_visits``; ``domain.bilan.compute_bilan`` folds the journeys' states. On the
seed's mission, played through the real workflow, and on hand-built journeys, both
give the same figures, and the seed's figures are those counted by hand from its files.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client

from activities.store import EventStore
from corridor.demo import ClockMode, play
from corridor.imports import load_journal, load_programme, load_roster
from domain.bilan import compute_bilan
from domain.commands import Withdraw
from domain.programme import Programme
from tests.conftest import make_programme
from tests.test_event_store import Journey, append_all, rich_journey, short_journey


async def _compare(store: EventStore, programme: Programme, mission_id: str | None) -> None:
    states = list((await store.journey_states(programme.id)).values())
    expected = compute_bilan(programme.id, programme.name, states, mission_id)
    assert await store.bilan(programme.id, mission_id) == expected


async def test_sql_bilan_equals_the_folded_bilan_on_hand_built_journeys(
    store: EventStore, programme_id: str
) -> None:
    programme = make_programme(programme_id)
    withdrawn = short_journey(programme, "delta", meetings=2)
    withdrawn.do(Withdraw(reason="Refocusing"))
    journeys = [
        rich_journey(programme, "alpha"),
        rich_journey(programme, "bravo"),
        short_journey(programme, "charlie", meetings=1),
        withdrawn,
        Journey(programme, "echo").enrol(),
    ]
    for journey in journeys:
        await append_all(store, journey)

    bilan = await store.bilan(programme.id)
    assert bilan is not None
    assert (bilan.firms, bilan.contracts, bilan.firms_with_contract) == (5, 2, 2)
    assert bilan.value_by_currency == {"CAD": Decimal("500000.00")}
    assert (bilan.results_overdue, bilan.visits_attended, bilan.withdrawn) == (2, 2, 1)
    assert [r.firm_id for r in bilan.rows] == ["alpha", "bravo", "charlie", "delta", "echo"]
    await _compare(store, programme, None)
    await _compare(store, programme, "m1")
    await _compare(store, programme, "m2")  # no firm introduced there

    # Only the journeys a query matched.
    chosen = [journeys[0].stream_id, journeys[2].stream_id]
    states = [s for k, s in (await store.journey_states(programme.id)).items() if k in chosen]
    assert await store.bilan(programme.id, stream_ids=chosen) == compute_bilan(
        programme.id, programme.name, states
    )
    assert await store.bilan(f"{programme_id}-nobody") is None


async def test_sql_bilan_of_the_seed_played_through_the_workflow(
    client: Client, store: EventStore, worker: None, task_queue: str, examples: Path,
    programme_id: str,
) -> None:
    programme = load_programme(examples / "programme.toml").model_copy(update={"id": programme_id})
    roster = load_roster(examples / "roster.csv", programme)
    journal = load_journal(examples / "journal.csv", programme)
    outcome = await play(
        client, programme, roster, journal, task_queue=task_queue, until=date(2016, 11, 29),
        mode=ClockMode.SKIP,
    )
    assert outcome.refused == []

    bilan = await store.bilan(programme.id)
    assert bilan is not None
    # Counted by hand from the seed's files (as tests/test_demo.py).
    assert bilan.firms == 10
    assert (bilan.meetings_requested, bilan.meetings_arranged, bilan.meetings_held) == (18, 18, 15)
    assert bilan.outcomes == {
        "promising": 10, "neutral": 3, "not_interested": 2, "no_show": 1, "cancelled": 1,
    }
    assert bilan.contracts == 5
    assert bilan.value_by_currency == {"CAD": Decimal("1325500.50"), "USD": Decimal("525000.00")}
    assert bilan.firms_with_contract == 4
    assert bilan.median_days_to_first_contract == 307.5
    assert (bilan.visits_attended, bilan.visits_skipped) == (6, 2)
    assert (bilan.withdrawn, bilan.closed, bilan.active) == (2, 3, 5)
    # And every figure, row by row, as compute_bilan folds them, for each scope.
    await _compare(store, programme, None)
    for mission in programme.missions:
        await _compare(store, programme, mission.id)
