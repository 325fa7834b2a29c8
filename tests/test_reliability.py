"""The CI subset of the fault scenarios (the full set: ``python -m reliability``).

Each scenario starts its own servers, injects its fault, and compares the event store
with the events the domain says each stream must hold.
"""

from __future__ import annotations

import pytest

from reliability.scenarios import (
    Outcome,
    appends_out_of_order,
    backfill,
    burst_during_continue_as_new,
    journeys_reset,
    many_commands,
    postgres_stopped,
    temporal_restarted,
    unsendable,
    worker_killed,
)

pytestmark = pytest.mark.timeout(420)


def _quiet(_text: str) -> None:
    return None


def _assert_nothing_lost(outcome: Outcome) -> None:
    assert outcome.faults > 0, outcome
    assert outcome.events_found == outcome.events_expected > 0, outcome
    assert (outcome.duplicates, outcome.losses, outcome.gaps) == (0, 0, 0), outcome
    assert outcome.journeys_completed == outcome.journeys, outcome


async def test_worker_killed_with_sigkill_loses_and_duplicates_nothing() -> None:
    _assert_nothing_lost(await worker_killed(5, _quiet))


async def test_postgres_outage_is_ridden_out_and_read_models_catch_up() -> None:
    _assert_nothing_lost(await postgres_stopped(4, _quiet, outage=6.0))


async def test_temporal_restart_resumes_every_journey() -> None:
    _assert_nothing_lost(await temporal_restarted(4, _quiet))


async def test_a_burst_during_continue_as_new_loses_no_command() -> None:
    _assert_nothing_lost(await burst_during_continue_as_new(30, _quiet, bursts=1))


async def test_a_catch_up_reader_never_skips_an_event_of_concurrent_appends() -> None:
    outcome = await appends_out_of_order(10, _quiet)
    _assert_nothing_lost(outcome)
    # The control shows the hazard the store's lock prevents.
    assert "skipped 1 event" in outcome.notes[0]


async def test_journeys_reset_mid_run_complete_with_every_event_stored_once() -> None:
    _assert_nothing_lost(await journeys_reset(5, _quiet))


async def test_many_commands_keep_what_continue_as_new_carries_bounded() -> None:
    outcome = await many_commands(600, _quiet, repeats=40, continue_as_new_after=200)
    _assert_nothing_lost(outcome)  # faults: the runs continued as new
    assert "all 'already recorded'" in outcome.notes[0], outcome


async def test_a_backfill_tells_nobody_of_the_past_and_staff_commands_are_all_answered() -> None:
    outcome = await backfill(30, _quiet, baseline_seconds=4.0)
    _assert_nothing_lost(outcome)  # every closed window skipped, recorded; each open one sent
    assert "0 not answered" in outcome.notes[1], outcome


async def test_an_unsendable_message_fails_once_and_every_other_message_goes_out() -> None:
    _assert_nothing_lost(await unsendable(3, _quiet))
