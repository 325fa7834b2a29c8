"""The seed's mission, played on the real servers, answers "combien?" as the data says.

Every expected figure below was counted by hand from examples/quebec-california/
(journal.csv and roster.csv), not computed by the code under test.
"""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.store import EventStore
from corridor.demo import ClockMode, DemoOutcome, play
from corridor.imports import load_journal, load_programme, load_roster
from domain.bilan import Bilan, compute_bilan


async def _play_seed(
    client: Client, store: EventStore, task_queue: str, examples: Path, programme_id: str,
    mode: ClockMode,
) -> tuple[DemoOutcome, Bilan]:
    programme = load_programme(examples / "programme.toml").model_copy(update={"id": programme_id})
    roster = load_roster(examples / "roster.csv", programme)
    journal = load_journal(examples / "journal.csv", programme)
    outcome = await play(
        client, programme, roster, journal, task_queue=task_queue, until=date(2016, 11, 29),
        mode=mode, month_seconds=1.0,
    )
    states = await store.journey_states(programme_id)
    return outcome, compute_bilan(programme.id, programme.name, list(states.values()))


@pytest.mark.parametrize("mode", [ClockMode.SKIP, ClockMode.COMPRESSED])
async def test_demo_bilan_answers_combien(
    client: Client, store: EventStore, worker: None, task_queue: str, examples: Path,
    programme_id: str, mode: ClockMode,
) -> None:
    started = time.monotonic()
    outcome, bilan = await _play_seed(client, store, task_queue, examples, programme_id, mode)
    print(f"demo ({mode}) played in {time.monotonic() - started:.1f}s: {outcome}")
    assert outcome.refused == []
    assert outcome.accepted == 76
    assert bilan.firms == 10
    assert (bilan.meetings_requested, bilan.meetings_arranged, bilan.meetings_held) == (18, 18, 15)
    assert bilan.outcomes == {
        "promising": 10, "neutral": 3, "not_interested": 2, "no_show": 1, "cancelled": 1,
    }
    assert bilan.results_overdue == 1
    assert bilan.contracts == 5
    assert bilan.value_by_currency == {"USD": Decimal("525000.00"), "CAD": Decimal("1325500.50")}
    assert bilan.firms_with_contract == 4
    assert bilan.median_days_to_first_contract == 307.5
    assert (bilan.visits_attended, bilan.visits_skipped) == (6, 2)
    assert (bilan.withdrawn, bilan.closed, bilan.active) == (2, 3, 5)
