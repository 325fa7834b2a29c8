"""Worker Versioning on the dev server: journeys started on build A continue on build B.

Build A is today's ``FirmJourney``; build B carries a change behind ``workflow.patched``
(it notes the release in the journey's memo before storing events: a new command in
history, which unpatched would break every journey started on A). The release goes
through ``deploy.release`` as an operator's would: replay the committed histories on B,
wait for B's workers, make B current, watch A drain. The workload is
``reliability/workload.py``'s, checked against the pure domain.

The dev server reports drainage on a 1-second cycle here (dynamic config
``matching.wv.VersionDrainageStatus*``; minutes by default).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from datetime import time as time_of_day
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkipper, TimeSkippingConfig
from temporalio.worker import Worker

from activities.store import EventStore
from corridor import service
from corridor.deployment import DeploymentSettings, deployment_config
from corridor.runtime import activities_of
from corridor.stack import TemporalDevServer, free_port
from deploy import release
from domain.calendar import ProgrammeClock, zone
from domain.commands import Command, DecideEvaluation
from domain.programme import Programme
from reliability import workload
from reliability.scenarios import Outcome, check_streams
from workflows import search
from workflows.journey import CommandResult, FirmJourney, JourneyInput, JourneySummary

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
PATCH = "note-release-b"


@workflow.defn(name="FirmJourney", sandboxed=False)
class FirmJourneyB(FirmJourney):
    """Build B: notes the release in the memo when staff decide an evaluation.

    The patch sits on a path the journeys reach only after the switch (the evaluation
    decision). A ``workflow.patched`` call first reached while replaying A's part of a
    run answers False for the rest of that run (Temporal memoizes it), so a change on
    a path every wake-up passes would wait for the journey's next run.
    """

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneySummary:
        return await super().run(input)

    async def _execute(self, command: Command) -> CommandResult:
        if isinstance(command, DecideEvaluation) and workflow.patched(PATCH):
            workflow.upsert_memo({"release": "B"})
        return await super()._execute(command)


@pytest.fixture(scope="module")
async def server(tmp_session: Path) -> AsyncIterator[TemporalDevServer]:
    started = TemporalDevServer(  # reports a version's drainage every second
        dynamic_config={
            "matching.wv.VersionDrainageStatusRefreshInterval": '"1s"',
            "matching.wv.VersionDrainageStatusVisibilityGracePeriod": '"1s"',
        },
        port=free_port(),
        headless=True,
        log_file=tmp_session / "versioning-temporal.log",
        search_attributes=search.registrations(),
    )
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


@dataclass
class Figures:
    """What the versioning run measured."""

    journeys: int = 0
    outcome: dict[str, object] = field(default_factory=dict)
    journeys_on_a_then_b: int = 0
    patch_markers: int = 0
    replayed_histories: int = 0
    switch_at_seconds: float = 0.0
    drainage: str | None = None
    drain_seconds: float | None = None
    seconds: float = 0.0


def _worker(client: Client, store: EventStore, queue: str, version: WorkerDeploymentVersion,
            journey: type[FirmJourney]) -> Worker:
    settings = DeploymentSettings(deployment_name=version.deployment_name,
                                  build_id=version.build_id)
    return Worker(
        client,
        task_queue=queue,
        workflows=[journey],
        activities=activities_of(store),
        deployment_config=deployment_config(settings),
    )


async def test_journeys_started_on_build_a_continue_on_build_b_after_a_release(
    server: TemporalDevServer, store: EventStore
) -> None:
    figures = Figures(journeys=8)
    started = time.monotonic()
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    queue = f"versioning-{uuid.uuid4()}"
    name = f"corridor-{uuid.uuid4().hex[:6]}"
    a, b = WorkerDeploymentVersion(name, "A"), WorkerDeploymentVersion(name, "B")
    lines: list[str] = []

    worker_a = _worker(client, store, queue, a, FirmJourney)
    running_a = asyncio.create_task(worker_a.run())
    worker_b = _worker(client, store, queue, b, FirmJourneyB)
    running_b: asyncio.Task[None] | None = None
    try:
        first = await release.release(
            client, a, task_queue=queue, workflows=[FirmJourney], progress=lines.append,
            pollers_timeout=30,
        )
        assert first.previous is None  # the task queue was unversioned

        prog = workload.programme(f"ver-{uuid.uuid4().hex[:6]}")
        counters = workload.Counters()
        released = asyncio.Event()
        playing = asyncio.gather(
            *(
                _play_firm(client, prog, n, queue, counters, pause_after=2, resume=released)
                for n in range(figures.journeys)
            )
        )
        await _until_every_journey_stored(store, prog.id, figures.journeys, events=3)
        figures.switch_at_seconds = time.monotonic() - started

        running_b = asyncio.create_task(worker_b.run())
        report = await release.release(
            client, b, task_queue=queue, workflows=[FirmJourneyB], progress=lines.append,
            pollers_timeout=30,
        )
        figures.replayed_histories = len(report.replayed)
        assert report.previous == a.to_canonical_string()
        released.set()

        await asyncio.wait_for(playing, 150)
        status, seconds = await release.watch_drain(client, a, 60, lines.append)
        figures.drainage, figures.drain_seconds = status, seconds

        outcome = Outcome("journeys moved from build A to build B", faults=1,
                          journeys=figures.journeys, retries=counters.retries)
        await check_streams(store, prog.id, range(figures.journeys), outcome)
        for number in range(figures.journeys):
            builds, markers, memos = await _journey_builds(client, prog.id, number)
            assert builds[0] == "A" and builds[-1] == "B", (number, builds)
            assert builds == sorted(builds), (number, builds)  # never back to A
            assert "B" in memos, (number, memos, markers)  # B's patched change ran
            figures.journeys_on_a_then_b += 1
            figures.patch_markers += markers
        figures.seconds = outcome.seconds = time.monotonic() - started
        figures.outcome = {k: v for k, v in asdict(outcome).items() if k != "notes"}
        out = ROOT / "artifacts"
        out.mkdir(exist_ok=True)
        (out / "ops-versioning.json").write_text(
            json.dumps({**asdict(figures), "release_log": lines}, indent=2) + "\n"
        )
    finally:
        await worker_a.shutdown()
        await worker_b.shutdown() if running_b else None
        await asyncio.gather(running_a, *([running_b] if running_b else []),
                             return_exceptions=True)

    assert outcome.passed, (outcome, figures)
    assert figures.journeys_on_a_then_b == figures.journeys
    assert figures.patch_markers >= figures.journeys
    assert figures.drainage == "drained", (figures, lines)


async def _play_firm(
    client: Client,
    prog: Programme,
    number: int,
    queue: str,
    counters: workload.Counters,
    *,
    pause_after: int,
    resume: asyncio.Event,
) -> None:
    """``workload.play_firm``, waiting for ``resume`` after ``pause_after`` commands."""
    skipper = TimeSkipper(client, config=TimeSkippingConfig(max_session_skip_count=100_000))
    enrol = workload.enrolment(prog, number)
    firm = enrol.firm.id
    origin = datetime.combine(workload.INTRODUCED_ON, time_of_day(12), tzinfo=zone(workload.TZ))
    await workload.patiently(
        lambda: service.enroll(client, enrol, task_queue=queue,
                               clock=ProgrammeClock(business_origin=origin)),
        counters,
    )
    handle = service.journey_handle(client, prog.id, firm)
    anchored = (await service.view(client, prog.id, firm)).clock

    async def skip_to(day: date) -> None:
        target = datetime.combine(day, time_of_day(12), tzinfo=zone(workload.TZ))
        now = anchored.business_time(await skipper.get_current_time(handle))
        if target > now and not await skipper.fast_forward(handle, target - now):
            raise RuntimeError(f"fast-forward of {firm} did not complete")

    async def when_due(command: Command) -> None:
        assert command.occurred_on is not None
        await skip_to(command.occurred_on)
        await service.send(client, prog.id, firm, command)

    for step, command in enumerate(workload.script(number)):
        if step == pause_after:
            await resume.wait()
        await workload.patiently(lambda command=command: when_due(command), counters)  # type: ignore[misc]
    if not (await service.view(client, prog.id, firm)).state.is_over:
        await workload.patiently(lambda: skip_to(workload.END_ON), counters)
    await workload.patiently(lambda: workload._synced(client, prog.id, firm), counters)


async def _until_every_journey_stored(
    store: EventStore, programme_id: str, journeys: int, events: int
) -> None:
    """Wait until each journey has stored ``events`` events (all of them run on A)."""
    for _ in range(600):
        rows = await store.pool.fetch(
            "SELECT stream_id, max(stream_version) AS v FROM events WHERE stream_id LIKE $1 "
            "GROUP BY stream_id",
            f"journey/{programme_id}/%",
        )
        if len(rows) == journeys and all(r["v"] >= events for r in rows):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the journeys did not start on build A")


async def _journey_builds(
    client: Client, programme_id: str, number: int
) -> tuple[list[str], int, list[object]]:
    """Build ids of the journey's completed workflow tasks (all runs, oldest first),
    its patch markers and each run's memo ``release``."""
    workflow_id = f"journey/{programme_id}/{workload.firm_id(number)}"
    handle = client.get_workflow_handle(workflow_id)
    runs: list[str] = []
    run_id: str | None = (await handle.describe()).run_id
    while run_id:  # walk back through continue-as-new
        runs.insert(0, run_id)
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        attributes = history.events[0].workflow_execution_started_event_attributes
        run_id = attributes.continued_execution_run_id or None
    builds: list[str] = []
    markers = 0
    memos = []
    for run in runs:
        run_handle = client.get_workflow_handle(workflow_id, run_id=run)
        memos.append(await (await run_handle.describe()).memo_value("release", None))
        history = await run_handle.fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                build = event.workflow_task_completed_event_attributes.deployment_version.build_id
                if build and (not builds or builds[-1] != build):
                    builds.append(build)
            if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                markers += PATCH.encode() in event.SerializeToString()
    return builds, markers, memos


@workflow.defn(name="FirmJourney", sandboxed=False)
class UnpatchedB(FirmJourney):
    """The same kind of change without ``workflow.patched``: old histories break."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneySummary:
        return await super().run(input)

    async def _store_pending(self) -> None:
        if self._unstored:
            workflow.upsert_memo({"release": "B"})
        await super()._store_pending()


async def test_release_stops_at_replay_when_the_new_build_breaks_old_histories(
    server: TemporalDevServer,
) -> None:
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    name = f"corridor-{uuid.uuid4().hex[:6]}"
    lines: list[str] = []
    with pytest.raises(release.ReleaseError, match=r"replay: \S+\.json does not replay"):
        await release.release(
            client, WorkerDeploymentVersion(name, "B"), task_queue="nobody",
            workflows=[UnpatchedB], progress=lines.append, pollers_timeout=1,
        )
    assert lines == []  # nothing after the replay was done
    assert await release.current_version(client, name) is None
