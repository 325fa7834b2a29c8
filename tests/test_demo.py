"""The seed's mission, played on the real servers, answers "combien?" as the data says.

Every expected figure below was counted by hand from examples/quebec-california/
(journal.csv and roster.csv), not computed by the code under test.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client

from activities.store import EventStore
from corridor.demo import ClockMode, DemoOutcome, play
from corridor.imports import load_journal, load_programme, load_roster
from domain.bilan import Bilan, compute_bilan
from domain.events import EventEnvelope, MessageNotSent, MessageSent


async def _play_seed(
    client: Client, store: EventStore, task_queue: str, examples: Path, programme_id: str,
    mode: ClockMode, *, month_seconds: float,
) -> tuple[DemoOutcome, Bilan]:
    programme = load_programme(examples / "programme.toml").model_copy(update={"id": programme_id})
    roster = load_roster(examples / "roster.csv", programme)
    journal = load_journal(examples / "journal.csv", programme)
    outcome = await play(
        client, programme, roster, journal, task_queue=task_queue, until=date(2016, 11, 29),
        mode=mode, month_seconds=month_seconds,
    )
    states = await store.journey_states(programme_id)
    return outcome, compute_bilan(programme.id, programme.name, list(states.values()))


async def test_demo_bilan_answers_combien(
    client: Client, store: EventStore, worker: None, task_queue: str, examples: Path,
    programme_id: str,
) -> None:
    # Time skipping: every timer fires in order between the records, whatever the load.
    outcome, bilan = await _play_seed(
        client, store, task_queue, examples, programme_id, ClockMode.SKIP, month_seconds=1.0
    )
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


async def test_demo_on_a_compressed_clock_counts_the_same_contracts(
    client: Client, store: EventStore, worker: None, task_queue: str, examples: Path,
    programme_id: str,
) -> None:
    """The compressed clock (any server) gives the bilan's "combien?" figures.

    Which timer fires before which record depends on how busy the machine is (a
    business day is 1/15 s here), so only what the records alone decide is asserted:
    the meetings, the contracts and their values, the firms with one, the days to the
    first contract; and every journey is back on real time at the end.
    """
    outcome, bilan = await _play_seed(
        client, store, task_queue, examples, programme_id, ClockMode.COMPRESSED,
        month_seconds=2.0,
    )
    assert outcome.clocks_not_reset == []
    assert outcome.enrolled == 10
    assert (bilan.meetings_requested, bilan.meetings_arranged, bilan.meetings_held) == (18, 18, 15)
    assert bilan.contracts == 5
    assert bilan.value_by_currency == {"USD": Decimal("525000.00"), "CAD": Decimal("1325500.50")}
    assert bilan.firms_with_contract == 4
    assert bilan.median_days_to_first_contract == 307.5
    assert bilan.withdrawn == 2


def _comparable(events: list[EventEnvelope]) -> list[tuple[str, str, dict[str, object]]]:
    """What a stream says happened, without ids, recording times or the programme id.

    Nor the messages: whether a message still meant something depends on when the
    journey learnt of its occasion (live, on the day; imported, the next record's day).
    """
    kept: list[tuple[str, str, dict[str, object]]] = []
    for envelope in events:
        if isinstance(envelope.event, MessageNotSent | MessageSent):
            continue  # who was told differs: an import after the fact tells nobody
        data = envelope.event.model_dump(mode="json", exclude={"recorded_at", "recorded_by"})
        data.pop("programme", None)
        kept.append((envelope.event.type, envelope.event.occurred_at.isoformat(), data))
    return kept


async def test_a_past_journal_imported_on_held_clocks_records_what_live_recording_would(
    client: Client, store: EventStore, worker: None, task_queue: str, examples: Path,
    programme_id: str,
) -> None:
    """Importing the seed's journal after the fact gives the events of recording it live.

    Live: each journey's clock is skipped to each record's day (the demo). Imported: each
    clock stands still and is moved on to each record's day (``enroll --journal``).
    """
    live_id, imported_id = f"{programme_id}-live", f"{programme_id}-held"
    live, _ = await _play_seed(
        client, store, task_queue, examples, live_id, ClockMode.SKIP, month_seconds=1.0
    )
    imported, bilan = await _play_seed(
        client, store, task_queue, examples, imported_id, ClockMode.HELD, month_seconds=1.0
    )
    assert (imported.refused, imported.failed) == ([], [])
    assert imported.accepted == live.accepted == 76
    firms = sorted(await store.journey_states(live_id))
    assert len(firms) == 10
    for stream in firms:
        firm = stream.rsplit("/", 1)[1]
        live_events = _comparable(await store.read_stream(stream))
        held_events = _comparable(await store.read_stream(f"journey/{imported_id}/{firm}"))
        assert held_events == live_events, firm
    assert bilan.contracts == 5
    assert bilan.results_overdue == 1
