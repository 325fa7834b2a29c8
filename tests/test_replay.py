"""Determinism: today's journey code must replay the journeys that ran before it.

Journeys last years, so a worker deployed today picks up histories written by older
code. ``tests/histories/`` holds histories of full journeys exported from the seed's demo
(``python -m tests.histories.export``, see its docstring and docs/versioning.md). This
file replays each one against ``FirmJourney`` with no server: a change that would break
a running journey fails here, before it ships.

The last tests show what that protection looks like: a modified journey that schedules
one more timer, or one fewer, is caught as a ``NondeterminismError``; the same change
guarded by ``workflow.patched`` replays fine, and is caught again once the patch is
deprecated (its old path removed) while old journeys remain.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from domain.deadlines import Deadline
from workflows.journey import FirmJourney, JourneyInput, JourneySummary

HISTORIES = Path(__file__).resolve().parent / "histories"
MANIFEST: list[dict[str, str]] = json.loads((HISTORIES / "manifest.json").read_text())


def _history(entry: dict[str, str]) -> WorkflowHistory:
    return WorkflowHistory.from_json(entry["workflow_id"], (HISTORIES / entry["file"]).read_text())


def _named(name: str) -> WorkflowHistory:
    (entry,) = [e for e in MANIFEST if e["file"] == f"{name}.json"]
    return _history(entry)


def _replayer(journey: type[FirmJourney]) -> Replayer:
    return Replayer(workflows=[journey], data_converter=pydantic_data_converter)


async def _all_histories() -> AsyncIterator[WorkflowHistory]:
    for entry in MANIFEST:
        yield _history(entry)


def _event_counts(history: WorkflowHistory) -> Counter[str]:
    return Counter(EventType.Name(event.event_type) for event in history.events)


def _stored_event_types(history: WorkflowHistory) -> set[str]:
    """Types of the domain events the journey sent to the event store."""
    types: set[str] = set()
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            (payload,) = event.activity_task_scheduled_event_attributes.input.payloads
            stored = json.loads(payload.data)
            types |= {envelope["event"]["type"] for envelope in stored["events"]}
    return types


# ---------------------------------------------------------------- the committed histories


def test_manifest_lists_every_committed_history() -> None:
    on_disk = {p.name for p in HISTORIES.glob("*.json")} - {"manifest.json"}
    assert on_disk == {e["file"] for e in MANIFEST}
    assert len(on_disk) >= 4


def test_histories_cover_the_journeys_shapes() -> None:
    """The files hold what they claim: ends, continue-as-new, signals."""
    for name in ("nordik-closed", "laurentide-withdrawn", "saintroch-overdue"):
        counts = _event_counts(_named(name))
        assert counts["EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"] == 1, name
        assert counts["EVENT_TYPE_ACTIVITY_TASK_COMPLETED"] >= 3, name
        assert counts["EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED"] >= 1, name
    assert _event_counts(_named("nordik-closed"))["EVENT_TYPE_TIMER_FIRED"] >= 1
    assert "FirmWithdrew" in _stored_event_types(_named("laurentide-withdrawn"))
    saintroch = _stored_event_types(_named("saintroch-overdue"))
    assert {"MeetingResultOverdue", "EvaluationDecided"} <= saintroch
    first, continued = _named("trifide-cycle-1"), _named("trifide-cycle-2")
    assert _event_counts(first)["EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"] == 1
    started = continued.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id == first.run_id
    assert _event_counts(continued)["EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"] == 3


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"].removesuffix(".json") for e in MANIFEST])
async def test_committed_history_replays_on_todays_code(entry: dict[str, str]) -> None:
    history = _history(entry)
    assert history.run_id == entry["run_id"]
    await _replayer(FirmJourney).replay_workflow(history)  # raises on nondeterminism


# ------------------------------------------------- what an incompatible change looks like


@workflow.defn(name="FirmJourney", sandboxed=False)
class PauseBeforeStoring(FirmJourney):
    """INCOMPATIBLE: a new timer (a pause) before each batch of events is stored."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneySummary:
        return await super().run(input)

    async def _store_pending(self) -> None:
        if self._unstored:
            await workflow.sleep(timedelta(seconds=1), summary="pause before storing")
        await super()._store_pending()


@workflow.defn(name="FirmJourney", sandboxed=False)
class NoDeadlineTimers(FirmJourney):
    """INCOMPATIBLE: a timer fewer, the journey no longer sleeps until its deadlines."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneySummary:
        return await super().run(input)

    async def _sleep_until(self, deadline: Deadline | None) -> None:
        self._woken = False
        await workflow.wait_condition(lambda: bool(self._unstored) or self._woken)


@workflow.defn(name="FirmJourney", sandboxed=False)
class PatchedPauseBeforeStoring(FirmJourney):
    """COMPATIBLE: the same pause, for new journeys only, behind ``workflow.patched``."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneySummary:
        return await super().run(input)

    async def _store_pending(self) -> None:
        if self._unstored and workflow.patched("pause-before-storing"):
            await workflow.sleep(timedelta(seconds=1), summary="pause before storing")
        await super()._store_pending()


@workflow.defn(name="FirmJourney", sandboxed=False)
class DeprecatedPauseBeforeStoring(FirmJourney):
    """The patch above deprecated too early: the old path (no pause) is gone."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneySummary:
        return await super().run(input)

    async def _store_pending(self) -> None:
        if self._unstored:
            workflow.deprecate_patch("pause-before-storing")
            await workflow.sleep(timedelta(seconds=1), summary="pause before storing")
        await super()._store_pending()


@pytest.mark.parametrize("changed", [PauseBeforeStoring, NoDeadlineTimers])
async def test_incompatible_change_is_caught_before_it_ships(changed: type[FirmJourney]) -> None:
    results = await _replayer(changed).replay_workflows(
        _all_histories(), raise_on_replay_failure=False
    )
    failures: dict[str, Any] = dict(results.replay_failures)
    assert set(failures) == {e["run_id"] for e in MANIFEST}, (
        f"{changed.__name__} replayed some histories: does it still override the methods "
        "FirmJourney uses (_store_pending, _sleep_until)?"
    )
    for failure in failures.values():
        assert isinstance(failure, workflow.NondeterminismError), repr(failure)


async def test_incompatible_change_fails_replay_workflow() -> None:
    with pytest.raises(workflow.NondeterminismError, match=r"TMPRL1100"):
        await _replayer(PauseBeforeStoring).replay_workflow(_named("nordik-closed"))


async def test_patched_change_replays_old_histories() -> None:
    results = await _replayer(PatchedPauseBeforeStoring).replay_workflows(
        _all_histories(), raise_on_replay_failure=False
    )
    assert dict(results.replay_failures) == {}


async def test_deprecating_a_patch_too_early_is_caught() -> None:
    """``deprecate_patch`` drops the old path: histories that took it no longer replay."""
    with pytest.raises(workflow.NondeterminismError, match=r"TMPRL1100"):
        await _replayer(DeprecatedPauseBeforeStoring).replay_workflow(_named("nordik-closed"))
