"""Export the committed journey histories that ``tests/test_replay.py`` replays.

Run from the repository root::

    .venv/bin/python -m tests.histories.export

It starts its own stack on free ports (a Temporal dev server with the journey's search
attributes and time skipping, an embedded PostgreSQL, one worker), plays the seed
(``examples/quebec-california``) with ``corridor.demo.play`` in time-skipping mode up
to 2016-11-29, then sends raw signals to Trifide's renewed journey: one good, one
malformed (refused: invalid payload) and one breaking a rule (refused: the meeting
was never requested). Each history is then exported with the real Temporal CLI,
``temporal workflow show --output json``, into ``tests/histories/<name>.json`` (the
CLI's JSON as it is, reformatted to one event per line), and
``tests/histories/manifest.json`` lists them with their workflow and run ids and what
each covers. Everything it started is stopped at the end.

The histories exported:

- ``nordik-closed``: meetings, a return visit attended then one skipped, a contract,
  reminders, the evaluation closing the journey (the workflow completes);
- ``laurentide-withdrawn``: a no-show, then the firm withdraws (the workflow completes);
- ``trifide-cycle-1``: the FIRST run of a journey renewed for cycle 2, ending with its
  continue-as-new;
- ``trifide-cycle-2``: the continued run (still open), with the raw signals above;
- ``saintroch-overdue``: a meeting result that falls overdue, then the journey closes.

Refresh them only when no journey of the old code's shape is running anywhere (see
``docs/versioning.md``): a committed history is the promise that the code still replays
what ran before. The files above are overwritten; to keep an older history as well,
rename it first (e.g. ``nordik-closed.v1.json``, and its ``file`` in the manifest):
manifest entries of other file names are kept.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.store import EventStore
from corridor.demo import ClockMode, play
from corridor.imports import load_journal, load_programme, load_roster
from corridor.runtime import build_worker
from corridor.stack import EmbeddedPostgres, TemporalDevServer, find_temporal_binary, free_port
from domain.journey import JourneyState, Stage
from workflows import search
from workflows.journey import FirmJourney, journey_workflow_id

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLES = ROOT / "examples" / "quebec-california"
MANIFEST = HERE / "manifest.json"
UNTIL = date(2016, 11, 29)
SIGNALLED = "trifide"
"""The firm whose renewed journey receives the raw signals."""

GOOD_SIGNAL: dict[str, Any] = {
    "command_id": "history-export-good-signal",
    "meeting_id": "mt-4",
    "counterpart": "Apple",
}
MALFORMED_SIGNAL: dict[str, Any] = {"meeting": 3}
RULE_BREAKING_SIGNAL: dict[str, Any] = {
    "meeting_id": "mt-99",
    "partner_id": "dqla",
    "scheduled_at": "2016-12-05T10:00:00-08:00",
}


@dataclass(frozen=True)
class Wanted:
    """A history to export: run ``run`` of ``runs`` of the firm's journey."""

    name: str
    firm: str
    status: WorkflowExecutionStatus
    covers: str
    run: int = 0
    runs: int = 1


WANTED = [
    Wanted(
        "nordik-closed", "nordik", WorkflowExecutionStatus.COMPLETED,
        "meetings, visits, a contract, reminders, evaluation closing it",
    ),
    Wanted(
        "laurentide-withdrawn", "laurentide", WorkflowExecutionStatus.COMPLETED,
        "a no-show, then the firm withdraws",
    ),
    Wanted(
        "trifide-cycle-1", "trifide", WorkflowExecutionStatus.CONTINUED_AS_NEW,
        "first run of a renewed journey, ending in continue-as-new", run=0, runs=2,
    ),
    Wanted(
        "trifide-cycle-2", "trifide", WorkflowExecutionStatus.RUNNING,
        "the continued run (open), with a good, a malformed and a rule-breaking raw signal",
        run=1, runs=2,
    ),
    Wanted(
        "saintroch-overdue", "saintroch", WorkflowExecutionStatus.COMPLETED,
        "a meeting result falls overdue, then the journey closes",
    ),
]


@dataclass(frozen=True)
class Exported:
    """One exported history: the file's name, its workflow and run, what it covers."""

    name: str
    workflow_id: str
    run_id: str
    covers: str


async def _runs(client: Client, workflow_id: str) -> list[str]:
    """Run ids of a workflow, first run first (following continue-as-new backwards)."""
    latest = await client.get_workflow_handle(workflow_id).describe()
    runs = [latest.run_id]
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=runs[0]).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return runs
        runs.insert(0, started.continued_execution_run_id)


async def _status(client: Client, workflow_id: str, run_id: str) -> WorkflowExecutionStatus:
    description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    assert description.status is not None
    return description.status


async def _send_signals(client: Client, programme_id: str) -> None:
    """Send the raw signals and wait until the journey has taken and stored them."""
    handle = client.get_workflow_handle(journey_workflow_id(programme_id, SIGNALLED))
    await handle.signal("request_meeting", GOOD_SIGNAL)
    await handle.signal("request_meeting", MALFORMED_SIGNAL)
    await handle.signal("arrange_meeting", RULE_BREAKING_SIGNAL)
    for _ in range(100):
        view = await handle.query(FirmJourney.state)
        if len(view.refusals) >= 2 and "mt-4" in view.state.meetings:
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError(f"{SIGNALLED}: the signals were not taken: {view.refusals}")
    await handle.execute_update(FirmJourney.sync)


def _check(states: dict[str, JourneyState], programme_id: str) -> None:
    """Fail loudly if the seed no longer produces the situations the files claim."""

    def state(firm: str) -> JourneyState:
        return states[journey_workflow_id(programme_id, firm)]

    assert state("nordik").stage is Stage.CLOSED, state("nordik").stage
    assert state("laurentide").stage is Stage.WITHDRAWN, state("laurentide").stage
    assert state("trifide").cycle == 2, state("trifide").cycle
    assert "mt-4" in state("trifide").meetings
    assert any(m.overdue for m in state("saintroch").meetings.values())
    assert state("saintroch").stage is Stage.CLOSED, state("saintroch").stage


async def _export(address: str, exported: Exported) -> int:
    """Write one history with the Temporal CLI; return the file's size in bytes."""
    process = await asyncio.create_subprocess_exec(
        str(find_temporal_binary()),
        "workflow",
        "show",
        "--address",
        address,
        "--workflow-id",
        exported.workflow_id,
        "--run-id",
        exported.run_id,
        "--output",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"temporal workflow show failed: {err.decode(errors='replace')}")
    text = _one_event_per_line(json.loads(out))
    (HERE / f"{exported.name}.json").write_text(text)
    return len(text.encode())


def _one_event_per_line(history: dict[str, Any]) -> str:
    """The CLI's JSON, unchanged but for whitespace: one event per line.

    Half the size of the CLI's indented output, and a refreshed history diffs by event.
    """
    if set(history) != {"events"}:
        raise RuntimeError(f"unexpected keys in the CLI's output: {sorted(history)}")
    lines = ",\n".join(
        json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        for event in history["events"]
    )
    return '{"events":[\n' + lines + "\n]}\n"


async def _play(client: Client, store: EventStore, task_queue: str) -> str:
    """Play the seed, send the signals, check the situations; return the programme id."""
    programme = load_programme(EXAMPLES / "programme.toml")
    roster = load_roster(EXAMPLES / "roster.csv", programme)
    journal = load_journal(EXAMPLES / "journal.csv", programme)
    outcome = await play(
        client, programme, roster, journal, task_queue=task_queue, until=UNTIL,
        mode=ClockMode.SKIP,
    )
    if outcome.refused:
        raise RuntimeError(f"the seed was refused: {outcome.refused}")
    await _send_signals(client, programme.id)
    _check(await store.journey_states(programme.id), programme.id)
    return programme.id


async def _locate(client: Client, programme_id: str, wanted: Wanted) -> Exported:
    """Find the run to export and check that it ended (or not) as expected."""
    workflow_id = journey_workflow_id(programme_id, wanted.firm)
    runs = await _runs(client, workflow_id)
    if len(runs) != wanted.runs:
        raise RuntimeError(f"{wanted.name}: expected {wanted.runs} run(s), got {runs}")
    run_id = runs[wanted.run]
    status = await _status(client, workflow_id, run_id)
    if status != wanted.status:
        raise RuntimeError(f"{wanted.name}: expected {wanted.status.name}, got {status.name}")
    return Exported(wanted.name, workflow_id, run_id, wanted.covers)


def _write_manifest(exported: list[Exported]) -> None:
    """List the new histories, keeping the entries of archived ones (other file names)."""
    written = {f"{e.name}.json" for e in exported}
    kept: list[dict[str, str]] = []
    if MANIFEST.exists():
        kept = [e for e in json.loads(MANIFEST.read_text()) if e["file"] not in written]
    entries = kept + [
        {"file": f"{e.name}.json", "workflow_id": e.workflow_id, "run_id": e.run_id,
         "covers": e.covers}
        for e in exported
    ]
    MANIFEST.write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n")


async def export() -> list[Exported]:
    """Start the stack, play the seed, send the signals, export the histories."""
    task_queue = f"corridor-histories-{uuid.uuid4().hex[:8]}"
    server = TemporalDevServer(
        port=free_port(), headless=True, search_attributes=search.registrations()
    )
    async with server, EmbeddedPostgres() as postgres:
        assert postgres.dsn is not None
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        async with (
            EventStore.connect(postgres.dsn) as store,
            build_worker(client, store, task_queue),
        ):
            programme_id = await _play(client, store, task_queue)
            exported = [await _locate(client, programme_id, wanted) for wanted in WANTED]
            for history in exported:
                size = await _export(server.address, history)
                print(f"{history.name}.json: {size / 1024:.0f} KB ({history.covers})")
    _write_manifest(exported)
    return exported


def main() -> None:
    """Entry point of ``python -m tests.histories.export``."""
    exported = asyncio.run(export())
    print(f"{len(exported)} histories and {MANIFEST.name} written to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
