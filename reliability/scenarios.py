"""Fault scenarios: faults injected on real servers, outcomes counted.

For the SMTP scenario, "events" are messages: expected, kept by the server, given to
it twice (duplicates) or never (losses).

Each scenario starts its own servers (loopback only), plays a workload, injects its
fault, and compares what the event store holds with what the domain says it must hold.
Every scenario is bounded in time and stops by itself.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.keys import Keyring, MasterKey, MasterKeys
from activities.mail import Mailer, SmtpServer
from activities.store import EventStore
from corridor import service
from corridor.codec import data_converter
from corridor.runtime import build_worker
from corridor.stack import EmbeddedPostgres, TemporalDevServer, free_port
from corridor.stack.smtp import LocalSmtpServer
from domain.bilan import Bilan, compute_bilan
from domain.calendar import ProgrammeClock, zone
from domain.commands import Command, EnrollFirm, RequestMeeting
from domain.deadlines import due_events
from domain.events import EventEnvelope
from domain.journey import decide
from domain.messages import message_kind, recipient, skip_reason
from domain.programme import Firm, Programme
from domain.state import JourneyState, evolve
from reliability import workload
from workflows import search
from workflows.digest import AdviserDigests, DigestInput

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    """The figures of one scenario run (one row of RELIABILITY.md)."""

    scenario: str
    faults: int = 0
    journeys: int = 0
    journeys_completed: int = 0
    events_expected: int = 0
    events_found: int = 0
    duplicates: int = 0
    losses: int = 0
    gaps: int = 0
    retries: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No loss, no duplicate, no gap, every journey where it should be."""
        return (
            self.duplicates == 0
            and self.losses == 0
            and self.gaps == 0
            and self.journeys_completed == self.journeys
            and self.events_found == self.events_expected
        )


Progress = Callable[[str], None]


@asynccontextmanager
async def servers(
    work: Path, *, temporal_db: bool = False
) -> AsyncIterator[tuple[TemporalDevServer, EmbeddedPostgres, str]]:
    """A Temporal dev server (time skipping on) and an embedded PostgreSQL."""
    temporal = TemporalDevServer(
        port=free_port(),
        headless=True,
        db_file=work / "temporal.db" if temporal_db else None,
        log_file=work / "temporal.log",
        search_attributes=search.registrations(),
    )
    postgres = EmbeddedPostgres(work / "postgres")  # kept across a stop and start
    dsn = await postgres.start()
    try:
        await temporal.start()
        try:
            yield temporal, postgres, dsn
        finally:
            await temporal.stop()
    finally:
        await postgres.stop()


MASTER_KEY = os.environ.get("CORRIDOR_MASTER_KEY") or MasterKey.generate().encoded()
"""The master key of the scenarios' databases, shared by their worker processes."""


async def _connect(temporal: TemporalDevServer, dsn: str) -> Client:
    """A client encrypting as Corridor's own do (its keyring lives as long as the run)."""
    keyring = Keyring(dsn, MasterKeys.parse(MASTER_KEY, "reliability"))
    return await Client.connect(temporal.address, data_converter=data_converter(keyring, "default"))


async def check_streams(
    store: EventStore, prog_id: str, numbers: range, outcome: Outcome
) -> None:
    """Compare every stream with the domain's expected events; count the differences."""
    prog = workload.programme(prog_id)
    for number in numbers:
        expected, final = workload.expected_stream(prog, number)
        stream_id = f"journey/{prog_id}/{workload.firm_id(number)}"
        rows = await store.pool.fetch(
            "SELECT event_id, event_type, stream_version FROM events WHERE stream_id = $1 "
            "ORDER BY stream_version",
            stream_id,
        )
        found = [r["event_type"] for r in rows]
        versions = [r["stream_version"] for r in rows]
        outcome.events_expected += len(expected)
        outcome.events_found += len(found)
        outcome.duplicates += len(rows) - len({r["event_id"] for r in rows})
        outcome.gaps += sum(1 for i, v in enumerate(versions, start=1) if v != i)
        if found != expected:
            missing = len(expected) - len(found)
            outcome.losses += max(missing, 0)
            if missing <= 0:
                outcome.notes.append(f"{stream_id}: events differ from the domain's")
        states = await store.journey_states(prog_id, workload.firm_id(number))
        state = states.get(stream_id)
        if state is not None and state.stage == final.stage and (
            state.stream_version == len(expected)
        ):
            outcome.journeys_completed += 1


# --------------------------------------------------------------- worker killed


class WorkerProcess:
    """``python worker.py`` as a child process, to be killed with SIGKILL."""

    def __init__(self, temporal: TemporalDevServer, dsn: str, task_queue: str, log: Path):
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CORRIDOR_"))},
            "TEMPORAL_ADDRESS": temporal.address,
            "CORRIDOR_DSN": dsn,
            "CORRIDOR_MASTER_KEY": MASTER_KEY,
            "CORRIDOR_TASK_QUEUE": task_queue,
            "CORRIDOR_DATA_DIR": str(log.parent / "no-stack"),
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the worker process (its output goes to the log file)."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL it: no cleanup, no graceful shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM), killing it after 15 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


async def worker_killed(journeys: int, progress: Progress, seed: int = 7) -> Outcome:
    """The worker is SIGKILLed at random moments while journeys play a full cycle."""
    outcome = Outcome("worker killed with SIGKILL, restarted", journeys=journeys)
    rng = random.Random(seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corridor-faults-") as tmp:
        work = Path(tmp)
        async with servers(work) as (temporal, _postgres, dsn):
            client = await _connect(temporal, dsn)
            task_queue = f"faults-{uuid.uuid4()}"
            async with EventStore.connect(dsn) as store:  # migrates the schema
                prog = workload.programme(f"kill-{uuid.uuid4().hex[:6]}")
                worker = WorkerProcess(temporal, dsn, task_queue, work / "worker.log")
                worker.start()
                counters = workload.Counters()
                done = asyncio.Event()

                async def killer() -> None:
                    while not done.is_set():
                        await asyncio.sleep(rng.uniform(3.0, 8.0))
                        if done.is_set():
                            break
                        worker.kill()
                        outcome.faults += 1
                        progress(f"worker killed ({outcome.faults})")
                        await asyncio.sleep(rng.uniform(0.2, 1.5))
                        worker.start()

                killing = asyncio.create_task(killer())
                try:
                    await asyncio.gather(
                        *(
                            workload.play_firm(
                                client, prog, n, task_queue=task_queue, counters=counters
                            )
                            for n in range(journeys)
                        )
                    )
                finally:
                    done.set()
                    await killing
                    worker.stop()
                outcome.retries = counters.retries
                await check_streams(store, prog.id, range(journeys), outcome)
    outcome.seconds = time.monotonic() - started
    return outcome


# ---------------------------------------------------------- PostgreSQL stopped


Fault = Callable[[TemporalDevServer, EmbeddedPostgres], Awaitable[None]]
"""Injects a fault into the running servers (and undoes it)."""


async def _fault_mid_run(
    outcome: Outcome,
    prefix: str,
    fault: Fault,
    *,
    temporal_db: bool = False,
    on_start: Callable[[Client, str], object] | None = None,
) -> Outcome:
    """Play ``outcome.journeys`` firms with an in-process worker while ``fault`` runs."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corridor-faults-") as tmp:
        async with servers(Path(tmp), temporal_db=temporal_db) as (temporal, postgres, dsn):
            client = await _connect(temporal, dsn)
            task_queue = f"faults-{uuid.uuid4()}"
            async with EventStore.connect(dsn) as store:
                worker = build_worker(client, store, task_queue)
                running = asyncio.create_task(worker.run())
                prog = workload.programme(f"{prefix}-{uuid.uuid4().hex[:6]}")
                counters = workload.Counters()
                if on_start is not None:
                    on_start(client, prog.id)
                try:
                    await asyncio.gather(
                        fault(temporal, postgres),
                        *(
                            workload.play_firm(
                                client, prog, n, task_queue=task_queue, counters=counters
                            )
                            for n in range(outcome.journeys)
                        ),
                    )
                finally:
                    await worker.shutdown()
                    await asyncio.gather(running, return_exceptions=True)
                outcome.retries = counters.retries
                await check_streams(store, prog.id, range(outcome.journeys), outcome)
    outcome.seconds = time.monotonic() - started
    return outcome


async def postgres_stopped(journeys: int, progress: Progress, outage: float = 30.0) -> Outcome:
    """PostgreSQL is stopped for ``outage`` seconds mid-run, then restarted."""
    outcome = Outcome(f"PostgreSQL stopped {outage:.0f} s, restarted", journeys=journeys)

    async def stop_postgres(_temporal: TemporalDevServer, postgres: EmbeddedPostgres) -> None:
        await asyncio.sleep(2.0)
        await postgres.stop()
        outcome.faults += 1
        progress(f"PostgreSQL stopped for {outage:.0f} s")
        await asyncio.sleep(outage)
        await postgres.start()
        progress("PostgreSQL restarted")

    return await _fault_mid_run(outcome, "pg", stop_postgres)


# -------------------------------------------------------- Temporal restarted


async def temporal_restarted(journeys: int, progress: Progress) -> Outcome:
    """The Temporal dev server (file persistence) is stopped and restarted mid-run."""
    outcome = Outcome("Temporal dev server stopped, restarted", journeys=journeys)

    async def restart(temporal: TemporalDevServer, _postgres: EmbeddedPostgres) -> None:
        await asyncio.sleep(3.0)
        await temporal.stop()
        outcome.faults += 1
        progress("Temporal stopped")
        await asyncio.sleep(3.0)
        await temporal.start()
        progress("Temporal restarted")

    return await _fault_mid_run(outcome, "tmp", restart, temporal_db=True)


# ---------------------------------------------- burst during continue-as-new


async def burst_during_continue_as_new(
    commands: int, progress: Progress, bursts: int = 3
) -> Outcome:
    """Bursts of concurrent commands while the journey continues as new."""
    outcome = Outcome(
        f"{bursts} bursts of {commands} commands during continue-as-new", journeys=bursts
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corridor-faults-") as tmp:
        async with servers(Path(tmp)) as (temporal, _postgres, dsn):
            client = await _connect(temporal, dsn)
            task_queue = f"faults-{uuid.uuid4()}"
            async with EventStore.connect(dsn) as store:
                worker = build_worker(client, store, task_queue)
                running = asyncio.create_task(worker.run())
                try:
                    for burst in range(bursts):
                        prog = workload.programme(f"burst-{uuid.uuid4().hex[:6]}")
                        enrol = workload.enrolment(prog, 0)
                        await service.enroll(
                            client, enrol, task_queue=task_queue, continue_as_new_after=60
                        )
                        handle = service.journey_handle(client, prog.id, enrol.firm.id)
                        first_run = (await handle.describe()).run_id
                        sends = [
                            service.send(
                                client,
                                prog.id,
                                enrol.firm.id,
                                RequestMeeting(meeting_id=f"b-{i:03d}", counterpart="Apple"),
                            )
                            for i in range(commands)
                        ]
                        answers = await asyncio.gather(*sends, return_exceptions=True)
                        await service.sync(client, prog.id, enrol.firm.id)
                        if (await handle.describe()).run_id != first_run:
                            outcome.faults += 1
                        rows = await store.pool.fetch(
                            "SELECT stream_version, data->>'meeting_id' AS meeting FROM events "
                            "WHERE stream_id = $1 ORDER BY stream_version",
                            f"journey/{prog.id}/{enrol.firm.id}",
                        )
                        meetings = [r["meeting"] for r in rows if r["meeting"]]
                        outcome.events_expected += commands
                        outcome.events_found += len(meetings)
                        outcome.duplicates += len(meetings) - len(set(meetings))
                        outcome.losses += commands - len(set(meetings))
                        outcome.gaps += sum(
                            1 for i, r in enumerate(rows, 1) if r["stream_version"] != i
                        )
                        failed = [a for a in answers if isinstance(a, BaseException)]
                        outcome.notes += [f"burst {burst}: {a!r}" for a in failed]
                        outcome.losses += len(failed)
                        outcome.journeys_completed += not failed
                        progress(f"burst {burst + 1}: {len(set(meetings))} of {commands} stored")
                finally:
                    await worker.shutdown()
                    await asyncio.gather(running, return_exceptions=True)
    outcome.seconds = time.monotonic() - started
    return outcome


# ------------------------------------------------- commits out of sequence order


def _envelopes(prog_id: str, number: int, events: int) -> list[EventEnvelope]:
    """A stream of ``events`` domain events for firm ``number``."""
    prog = workload.programme(prog_id)
    stream_id = f"journey/{prog_id}/{workload.firm_id(number)}"
    now = datetime(2013, 9, 17, 12, tzinfo=UTC)
    state = None
    envelopes = []
    commands: list[Command] = [workload.enrolment(prog, number)]
    commands += [
        RequestMeeting(meeting_id=f"m-{i}", counterpart="Apple") for i in range(events - 1)
    ]
    for command in commands:
        for event in decide(state, command, now):
            state = evolve(state, event)
            envelopes.append(
                EventEnvelope(
                    event_id=uuid.uuid4(),
                    stream_id=stream_id,
                    stream_version=state.stream_version,
                    event=event,
                )
            )
    return envelopes


async def appends_out_of_order(streams: int, progress: Progress) -> Outcome:
    """Concurrent appends, with a catch-up reader following ``position`` all along.

    A control first shows the hazard on a plain table: a transaction that took a lower
    position commits after one with a higher position, and a reader that moved past the
    higher one never sees the lower. Then the event store's own appends, concurrent
    from many streams, are followed by the same kind of reader.
    """
    outcome = Outcome(
        f"{streams} streams appended concurrently, catch-up reader", journeys=streams
    )
    started = time.monotonic()
    async with _postgres_only() as dsn, EventStore.connect(dsn) as store:
        skipped_without_lock = await _control_without_lock(store)
        outcome.notes.append(
            f"control without the store's lock: the reader skipped {skipped_without_lock} event"
        )
        prog_id = f"ooo-{uuid.uuid4().hex[:6]}"
        batches = {n: _envelopes(prog_id, n, 8) for n in range(streams)}
        start_position = await store.pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
        seen: list[int] = []
        writing = True

        async def reader() -> None:
            last = start_position
            while writing or last < await store.pool.fetchval("SELECT max(position) FROM events"):
                for stored in await store.read_all(after_position=last, limit=7):
                    seen.append(stored.position)
                    last = stored.position
                await asyncio.sleep(0)

        async def writer(number: int) -> None:
            envelopes = batches[number]
            for first in range(0, len(envelopes), 2):
                await asyncio.sleep(random.uniform(0, 0.01))
                await store.append(envelopes[0].stream_id, first, envelopes[first : first + 2])

        reading = asyncio.create_task(reader())
        await asyncio.gather(*(writer(n) for n in range(streams)))
        writing = False
        await reading
        stored = await store.pool.fetch(
            "SELECT position, event_id FROM events WHERE stream_id LIKE $1 ORDER BY position",
            f"journey/{prog_id}/%",
        )
        positions = [r["position"] for r in stored]
        outcome.events_expected = sum(len(b) for b in batches.values())
        outcome.events_found = len(stored)
        outcome.duplicates = len(stored) - len({r["event_id"] for r in stored}) + (
            len(seen) - len(set(seen))
        )
        outcome.losses = len(set(positions) - set(seen))
        outcome.gaps = sum(1 for a, b in itertools.pairwise(seen) if b <= a)
        outcome.journeys_completed = streams if outcome.losses == 0 else 0
        outcome.faults = streams
        progress(f"reader saw {len(set(seen))} of {len(stored)} events")
    outcome.seconds = time.monotonic() - started
    return outcome


async def _control_without_lock(store: EventStore) -> int:
    """Two inserts into a scratch table commit out of order; count what a reader skips."""
    table = f"gap_demo_{uuid.uuid4().hex[:8]}"
    async with store.pool.acquire() as setup:
        await setup.execute(
            f"CREATE TABLE {table} (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"
        )
    try:
        slow_took_position = asyncio.Event()

        async def slow() -> None:
            async with store.pool.acquire() as connection, connection.transaction():
                await connection.execute(f"INSERT INTO {table} DEFAULT VALUES")
                slow_took_position.set()
                await asyncio.sleep(0.5)

        async def fast() -> None:
            await slow_took_position.wait()
            async with store.pool.acquire() as connection:
                await connection.execute(f"INSERT INTO {table} DEFAULT VALUES")

        seen: list[int] = []

        async def reader() -> None:
            last = 0
            for _ in range(20):
                rows = await store.pool.fetch(
                    f"SELECT position FROM {table} WHERE position > $1 ORDER BY position", last
                )
                for row in rows:
                    seen.append(row["position"])
                    last = row["position"]
                await asyncio.sleep(0.05)

        await asyncio.gather(slow(), fast(), reader())
        total = await store.pool.fetchval(f"SELECT count(*) FROM {table}")
        return int(total) - len(seen)
    finally:
        async with store.pool.acquire() as cleanup:
            await cleanup.execute(f"DROP TABLE {table}")


@asynccontextmanager
async def _postgres_only() -> AsyncIterator[str]:
    postgres = EmbeddedPostgres()
    dsn = await postgres.start()
    try:
        yield dsn
    finally:
        await postgres.stop()


# ------------------------------------------------------------ journeys reset


async def _reset_current_run(
    client: Client, workflow_id: str, rng: random.Random
) -> bool | None:
    """Reset a journey's current run to a random completed workflow task, mid-run.

    Signals and updates received after that point are reapplied, as
    ``temporal workflow reset`` does by default.

    Returns:
        True once reset; False when the run has no point to reset to yet; None when
        the journey is not running any more.
    """
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None
    history = await handle.fetch_history()
    points = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    if len(points) < 2:
        return False
    point = rng.choice(points[: max(1, len(points) - 1)])
    await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(
                workflow_id=workflow_id, run_id=description.run_id
            ),
            reason="reliability: reset to a random point mid-run",
            workflow_task_finish_event_id=point,
            request_id=str(uuid.uuid4()),
            # Signals and updates after the point are applied again, as the Temporal
            # CLI's `temporal workflow reset` does by default.
            reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_ALL_ELIGIBLE,
        )
    )
    return True


async def journeys_reset(journeys: int, progress: Progress, seed: int = 11) -> Outcome:
    """Each journey is reset (``temporal workflow reset``) to a random point mid-run.

    The reset journey re-decides what it had decided after that point: events decided
    the same way get the same ids and are stored once; where it decides differently,
    it adopts the event store's record. Every journey must complete with exactly the
    events the domain predicts.
    """
    outcome = Outcome(f"{journeys} journeys reset to a random point mid-run", journeys=journeys)
    rng = random.Random(seed)

    async def reset_them(_temporal: TemporalDevServer, _postgres: EmbeddedPostgres) -> None:
        client = clients[0]
        pending = list(range(journeys))
        rng.shuffle(pending)
        await asyncio.sleep(0.5)
        while pending:
            number = pending.pop()
            workflow_id = f"journey/{prog_ids[0]}/{workload.firm_id(number)}"
            try:
                reset = await _reset_current_run(client, workflow_id, rng)
            except RPCError as error:  # the journey may have ended meanwhile
                outcome.notes.append(f"{workflow_id}: not reset ({error.message})")
                continue
            if reset:
                outcome.faults += 1
                progress(f"reset {workflow_id} ({outcome.faults} of {journeys})")
            elif reset is None:
                outcome.notes.append(f"{workflow_id}: not reset (it had ended)")
            else:
                pending.insert(0, number)  # just begun: its turn comes again
            await asyncio.sleep(rng.uniform(0.02, 0.1))

    clients: list[Client] = []
    prog_ids: list[str] = []

    def remember(client: Client, programme_id: str) -> None:
        clients.append(client)
        prog_ids.append(programme_id)

    return await _fault_mid_run(outcome, "reset", reset_them, on_start=remember)


# ------------------------------------------------- 10,000 commands on one journey

CARRIED_BYTES_BOUND = 256 * 1024
"""What a journey carries across continue-as-new stays under this (Temporal refuses
payloads over 2 MiB and warns from 512 KiB)."""


async def _carried_sizes(client: Client, workflow_id: str) -> list[int]:
    """Bytes of the input each run of a workflow started with, from its first run on."""
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    run_id = history.events[0].workflow_execution_started_event_attributes.first_execution_run_id
    sizes: list[int] = []
    next_run: str | None = run_id
    while next_run:
        run = client.get_workflow_handle(workflow_id, run_id=next_run)
        events = (await run.fetch_history()).events
        started = events[0].workflow_execution_started_event_attributes
        sizes.append(sum(p.ByteSize() for p in started.input.payloads))
        last = events[-1]
        next_run = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    return sizes


async def many_commands(
    commands: int,
    progress: Progress,
    repeats: int = 100,
    continue_as_new_after: int | None = None,
) -> Outcome:
    """One journey receives ``commands`` commands, then old ones are sent again.

    Meetings are requested, arranged and their results recorded, by signal in waves,
    so that the journey continues as new many times. The first ``repeats`` commands,
    long evicted from the journey's exact memory, are then sent again as updates: each
    must be answered "already recorded" at once, writing nothing. What each run
    carried must stay under :data:`CARRIED_BYTES_BOUND`.
    """
    meetings = max(1, commands // 3)
    outcome = Outcome(f"{meetings * 3} commands on one journey", journeys=1)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corridor-faults-") as tmp:
        async with servers(Path(tmp)) as (temporal, _postgres, dsn):
            client = await _connect(temporal, dsn)
            task_queue = f"faults-{uuid.uuid4()}"
            async with EventStore.connect(dsn) as store:
                worker = build_worker(client, store, task_queue)
                running = asyncio.create_task(worker.run())
                try:
                    prog = workload.programme(f"many-{uuid.uuid4().hex[:6]}")
                    enrol = workload.enrolment(prog, 0)
                    day = enrol.occurred_on
                    assert day is not None
                    clock = ProgrammeClock(
                        business_origin=datetime.combine(day, dt_time(12), tzinfo=zone(workload.TZ))
                    )
                    await service.enroll(
                        client,
                        enrol,
                        task_queue=task_queue,
                        clock=clock,
                        continue_as_new_after=continue_as_new_after,
                    )
                    firm = enrol.firm.id
                    handle = service.journey_handle(client, prog.id, firm)
                    scheduled = datetime.combine(day, dt_time(9), tzinfo=zone(workload.TZ))

                    def wave(step: int, i: int) -> tuple[str, dict[str, object]]:
                        meeting = f"m-{i:05d}"
                        command_id = f"many-{step}-{i:05d}"
                        if step == 0:
                            return "request_meeting", {
                                "meeting_id": meeting, "counterpart": "Apple",
                                "command_id": command_id,
                            }
                        if step == 1:
                            return "arrange_meeting", {
                                "meeting_id": meeting, "partner_id": "labizfed",
                                "scheduled_at": scheduled.isoformat(), "command_id": command_id,
                            }
                        return "record_meeting_result", {
                            "meeting_id": meeting, "outcome": "neutral", "command_id": command_id,
                        }

                    chunk = 250
                    sent = 0
                    for first in range(0, meetings, chunk):
                        numbers = range(first, min(first + chunk, meetings))
                        for step in range(3):
                            await asyncio.gather(
                                *(handle.signal(*wave(step, i)) for i in numbers)
                            )
                            sent += len(numbers)
                            await service.sync(client, prog.id, firm)
                        progress(f"{sent} of {meetings * 3} commands sent")
                    before = await store.stream_version(handle.id)
                    answers = []
                    for i in range(min(repeats, meetings)):
                        _, payload = wave(0, i)
                        answers.append(
                            await service.send(
                                client, prog.id, firm, RequestMeeting.model_validate(payload)
                            )
                        )
                    after = await store.stream_version(handle.id)
                    outcome.events_expected = 1 + 3 * meetings
                    outcome.events_found = after
                    outcome.losses = max(0, outcome.events_expected - before)
                    outcome.duplicates = (after - before) + sum(
                        1 for a in answers if not a.duplicate
                    )
                    rows = await store.pool.fetch(
                        "SELECT stream_version FROM events WHERE stream_id = $1 "
                        "ORDER BY stream_version",
                        handle.id,
                    )
                    outcome.gaps = sum(
                        1 for i, r in enumerate(rows, 1) if r["stream_version"] != i
                    )
                    sizes = await _carried_sizes(client, handle.id)
                    outcome.faults = len(sizes) - 1  # runs continued as new
                    largest = max(sizes[1:], default=0)
                    outcome.notes.append(
                        f"{len(sizes)} runs; largest input carried across continue-as-new "
                        f"{largest / 1024:.0f} KiB (bound {CARRIED_BYTES_BOUND // 1024} KiB); "
                        f"{len(answers)} old commands sent again, all 'already recorded'"
                        if all(a.duplicate for a in answers)
                        else f"{sum(not a.duplicate for a in answers)} repeats recorded again"
                    )
                    if largest <= CARRIED_BYTES_BOUND and outcome.duplicates == 0:
                        outcome.journeys_completed = 1
                finally:
                    await worker.shutdown()
                    await asyncio.gather(running, return_exceptions=True)
    outcome.seconds = time.monotonic() - started
    return outcome


# ------------------------------------------------------------- SMTP stopped


async def smtp_stopped(journeys: int, progress: Progress, outage: float = 30.0) -> Outcome:
    """The SMTP server is stopped for ``outage`` seconds while reminders fall due.

    Each journey has a contact and reaches the reminders of return visits 1 and 2 (two
    messages) while the server is down: the messages wait, then go out once it is back.
    Counted on the server's side: every message expected is kept (none lost), no
    ``Message-ID`` was given twice (none twice), and each journey records two
    ``MessageSent`` events.
    """
    outcome = Outcome(f"SMTP server stopped {outage:.0f} s, restarted", journeys=journeys)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corridor-faults-") as tmp:
        work = Path(tmp)
        async with servers(work) as (temporal, _postgres, dsn):
            client = await _connect(temporal, dsn)
            smtp = LocalSmtpServer(work / "mail")  # down from the start
            task_queue = f"faults-{uuid.uuid4()}"
            prog = workload.programme(f"smtp-{uuid.uuid4().hex[:6]}")
            async with EventStore.connect(dsn) as store:
                mailer = Mailer(SmtpServer.from_url(smtp.url))
                worker = build_worker(client, store, task_queue, mailer)
                running = asyncio.create_task(worker.run())
                try:
                    outcome.faults = 1
                    progress(f"SMTP server stopped for {outage:.0f} s")

                    async def one(number: int) -> None:
                        firm = workload.firm_id(number)
                        enrolment = workload.enrolment(prog, number)
                        enrolment = enrolment.model_copy(
                            update={
                                "firm": enrolment.firm.model_copy(
                                    update={"contact_email": f"{firm}@firms.example"}
                                )
                            }
                        )
                        noon = datetime.combine(
                            workload.INTRODUCED_ON, dt_time(12), tzinfo=zone(workload.TZ)
                        )
                        await service.enroll(
                            client, enrolment, task_queue=task_queue,
                            clock=ProgrammeClock.held_at(noon),
                        )
                        for day in (date(2014, 2, 16), date(2014, 9, 1)):  # each reminder
                            until = datetime.combine(day, dt_time(12), tzinfo=zone(workload.TZ))
                            await service.advance_clock(client, prog.id, firm, until)

                    await asyncio.gather(*(one(n) for n in range(journeys)))
                    await asyncio.sleep(max(0.0, outage - (time.monotonic() - started)))
                    waiting = 0
                    for number in range(journeys):
                        journey = await service.view(client, prog.id, workload.firm_id(number))
                        waiting += journey.messages_waiting
                    smtp.start()
                    progress(f"SMTP server restarted ({waiting} messages waiting)")
                    for number in range(journeys):
                        journey = await service.messages_settled(
                            client, prog.id, workload.firm_id(number), within=180
                        )
                        if journey.state.messages_sent == 2:
                            outcome.journeys_completed += 1
                    kept = [m for m in smtp.mailbox.messages()]
                    given = Counter(
                        email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
                        for raw in smtp.deliveries
                    )
                    outcome.events_expected = 2 * journeys
                    outcome.events_found = len(kept)
                    outcome.losses = max(0, outcome.events_expected - len(kept))
                    outcome.duplicates = sum(n - 1 for n in given.values())
                    sent = await store.pool.fetchval(
                        "SELECT count(*) FROM events WHERE event_type = 'MessageSent' "
                        "AND stream_id LIKE $1",
                        f"journey/{prog.id}/%",
                    )
                    outcome.notes.append(
                        f"{waiting} messages waited while the server was down; "
                        f"{sent} MessageSent events recorded, {len(given)} Message-IDs given"
                    )
                finally:
                    smtp.stop()
                    await worker.shutdown()
                    await asyncio.gather(running, return_exceptions=True)
    outcome.seconds = time.monotonic() - started
    return outcome


# ------------------------------------------------------------------- backfill


def _backfill_programme(prog_id: str, today: date) -> Programme:
    """The workload's programme with two advisers and a mission three days ago."""
    base = workload.programme(prog_id).model_dump()
    base["missions"].append(
        {"id": "now", "name": "This week's mission",
         "starts_on": today - timedelta(days=4), "ends_on": today - timedelta(days=3)}
    )
    base["staff"] = [
        {"id": "anna", "name": "Anna Adviser", "email": "anna@agency.example", "language": "en"},
        {"id": "ben", "name": "Ben Conseiller", "email": "ben@agency.example", "language": "fr"},
    ]
    base["default_adviser"] = "anna"
    return Programme.model_validate(base)


def _late_enrolment(prog: Programme, number: int) -> EnrollFirm:
    """Firm ``number`` of the backfill: introduced in 2013, with a contact and an adviser."""
    firm = workload.firm_id(number)
    return EnrollFirm(
        command_id=f"enrol-{number}",
        occurred_on=workload.INTRODUCED_ON,
        programme=prog,
        firm=Firm(
            id=firm, name=f"Firm {number} (fictional)", contact_name=f"Contact {number}",
            contact_email=f"{firm}@firms.example", adviser="anna" if number % 2 else "ben",
        ),
        mission_id="m1",
    )


def _expected_messages(
    prog: Programme, number: int, now: datetime
) -> tuple[int, int, JourneyState]:
    """What the domain says a firm enrolled now must send and skip, and its state."""
    enrolment = _late_enrolment(prog, number)
    state: JourneyState | None = None
    for event in decide(None, enrolment, now):
        state = evolve(state, event)
    assert state is not None
    final, events = due_events(state, now)
    send = skip = 0
    for event in events:
        kind = message_kind(event)
        if kind is None or recipient(kind, final) is None:
            continue
        if skip_reason(kind, event, final, now) is None:
            send += 1
        else:
            skip += 1
    return send, skip, final


def _next_working_morning(prog: Programme) -> datetime:
    """07:00 of the office's next working day: when the schedule sends the digest."""
    office = prog.office_timezone
    day = datetime.now(zone(office)).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, dt_time(7), tzinfo=zone(office))


def _cpu_ticks() -> tuple[int, int]:
    """The machine's CPU time so far, busy and in all, in clock ticks (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return sum(fields) - idle, sum(fields)


def _busy_cores(since: tuple[int, int], until: tuple[int, int]) -> float:
    """How many of the machine's cores were busy, on average, between two readings."""
    busy, total = until[0] - since[0], until[1] - since[1]
    return (busy / total) * (os.cpu_count() or 1) if total else 0.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def _steady_commands(
    client: Client, prog_id: str, firms: list[str], rate: float, until: Callable[[], bool],
    latencies: list[float], failures: list[str],
) -> None:
    """Send ``RequestMeeting`` at ``rate`` per second to ``firms`` until ``until()``."""
    sent = 0
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def one(firm: str, number: int) -> None:
        began = time.monotonic()
        try:
            await service.send(
                client, prog_id, firm,
                RequestMeeting(meeting_id=f"staff-{number}", counterpart="Apple",
                               command_id=f"staff-{number}"),
            )
            latencies.append(time.monotonic() - began)
        except Exception as error:  # counted and named: the scenario reports it
            failures.append(f"{firm} staff-{number}: {type(error).__name__}: {error}")

    while not until():
        due = start + sent / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(firms[sent % len(firms)], sent))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    await asyncio.gather(*tasks)


async def backfill(
    journeys: int, progress: Progress, *, rate: float = 4.0, baseline_seconds: float = 30.0,
) -> Outcome:
    """``journeys`` firms introduced in 2013 enrolled today, while staff keep working.

    Counted: messages the SMTP server was given (the domain says how many windows are
    still open: none for these dates) and ``MessageSkipped`` events (one per message
    whose window had closed); the bilan of the read models against the bilan the domain
    folds; one digest per adviser with the catch-up summary. Staff commands
    (``RequestMeeting`` to ten journeys already caught up) at ``rate`` per second, first
    for ``baseline_seconds`` with nothing catching up, then for as long as the backfill
    lasts: every one answered, p50 and p99 of both in the notes.
    """
    outcome = Outcome(
        f"backfill of {journeys} firms introduced in 2013, staff working", journeys=journeys,
        faults=1,  # the backfill itself
    )
    started = time.monotonic()
    tz = zone(workload.TZ)
    today = datetime.now(tz).date()
    with tempfile.TemporaryDirectory(prefix="corridor-faults-") as tmp:
        work = Path(tmp)
        async with servers(work) as (temporal, _postgres, dsn):
            client = await _connect(temporal, dsn)
            smtp = LocalSmtpServer(work / "mail")
            smtp.start()
            task_queue = f"faults-{uuid.uuid4()}"
            prog = _backfill_programme(f"late-{uuid.uuid4().hex[:6]}", today)
            async with EventStore.connect(dsn) as store:
                mailer = Mailer(SmtpServer.from_url(smtp.url))
                worker = build_worker(client, store, task_queue, mailer)
                running = asyncio.create_task(worker.run())
                try:
                    live = [f"live{n}" for n in range(10)]
                    for firm in live:
                        await service.enroll(
                            client,
                            EnrollFirm(programme=prog, firm=Firm(id=firm, name=f"Live {firm}"),
                                       mission_id="now", occurred_on=today - timedelta(days=3)),
                            task_queue=task_queue,
                        )
                    progress(f"baseline: staff commands at {rate}/s for {baseline_seconds:.0f} s")
                    base: list[float] = []
                    failures: list[str] = []
                    stop_at = time.monotonic() + baseline_seconds
                    cpu_start = _cpu_ticks()
                    await _steady_commands(
                        client, prog.id, live, rate, lambda: time.monotonic() > stop_at,
                        base, failures,
                    )
                    cpu_baseline = _cpu_ticks()
                    progress(f"backfill: enrolling {journeys} firms introduced in 2013")
                    enrolled = 0
                    gate = asyncio.Semaphore(16)

                    async def enrol(number: int) -> None:
                        nonlocal enrolled
                        async with gate:
                            await service.enroll(
                                client, _late_enrolment(prog, number), task_queue=task_queue
                            )
                            enrolled += 1
                            if enrolled % 100 == 0:
                                progress(f"{enrolled} of {journeys} enrolled")

                    async def enrol_all() -> None:
                        await asyncio.gather(*(enrol(n) for n in range(journeys)))

                    backfilling = asyncio.create_task(enrol_all())
                    caught_up = asyncio.Event()

                    async def watch() -> None:
                        await backfilling
                        while True:
                            behind, _ = await service.journeys_catching_up(client, prog.id)
                            stored = await store.pool.fetchval(
                                "SELECT count(*) FROM journeys WHERE programme_id = $1", prog.id
                            )
                            if behind == 0 and stored >= journeys + len(live):
                                break
                            await asyncio.sleep(1.0)
                        caught_up.set()

                    watcher = asyncio.create_task(watch())
                    during: list[float] = []
                    await _steady_commands(
                        client, prog.id, live, rate, caught_up.is_set, during, failures
                    )
                    await watcher
                    cpu_backfill = _cpu_ticks()
                    backfill_seconds = time.monotonic() - stop_at
                    progress(f"caught up after {backfill_seconds:.0f} s; checking")
                    now = datetime.now(UTC)
                    expected_sent = expected_skipped = 0
                    expected_states: list[JourneyState] = []
                    for number in range(journeys):
                        firm = workload.firm_id(number)
                        await service.messages_settled(client, prog.id, firm, within=600)
                        send, skip, final = _expected_messages(prog, number, now)
                        expected_sent += send
                        expected_skipped += skip
                        expected_states.append(final)
                    kept = [
                        m.parsed() for m in smtp.mailbox.messages()
                        if m.parsed()["X-Corridor-Programme"] == prog.id
                    ]
                    given = Counter(
                        email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
                        for raw in smtp.deliveries
                    )
                    skipped = await store.pool.fetchval(
                        "SELECT count(*) FROM events WHERE event_type = 'MessageSkipped' "
                        "AND stream_id LIKE $1", f"journey/{prog.id}/f%",
                    )
                    outcome.events_expected = expected_sent + expected_skipped
                    outcome.events_found = len(kept) + skipped
                    outcome.losses = max(0, expected_skipped - skipped) + max(
                        0, expected_sent - len(kept)
                    )
                    outcome.duplicates = sum(n - 1 for n in given.values()) + max(
                        0, len(kept) - expected_sent
                    ) + max(0, skipped - expected_skipped)
                    late = {
                        k: v for k, v in (await store.journey_states(prog.id)).items()
                        if "/f" in k
                    }
                    found_bilan = compute_bilan(prog.id, prog.name, list(late.values()))
                    domain_bilan = compute_bilan(prog.id, prog.name, expected_states)
                    outcome.journeys_completed = sum(
                        1 for s in expected_states
                        if (f := late.get(f"journey/{prog.id}/{s.firm.id}")) is not None
                        and f.stage == s.stage and f.assessment() == s.assessment()
                    )
                    if _bilan_figures(found_bilan) != _bilan_figures(domain_bilan):
                        outcome.notes.append("the bilan differs from the domain's")
                        outcome.losses += 1
                    digests = await client.execute_workflow(
                        AdviserDigests.run,
                        DigestInput(at=_next_working_morning(prog), programme_id=prog.id),
                        id=f"digest-{prog.id}",
                        task_queue=task_queue,
                    )
                    summaries = [
                        m for m in smtp.mailbox.messages()
                        if m.parsed()["X-Corridor-Programme"] == prog.id
                        and m.parsed()["X-Corridor-Kind"] == "digest"
                    ]
                    outcome.retries = len(failures)
                    outcome.notes.append(
                        f"{expected_skipped} messages' windows had closed: {skipped} "
                        f"MessageSkipped recorded; {expected_sent} still open: {len(kept)} sent; "
                        f"digests {sorted(digests.sent)}, {len(summaries)} kept"
                    )
                    outcome.notes.append(
                        f"staff commands at {rate:g}/s: nothing catching up p50 "
                        f"{_percentile(base, 0.5) * 1000:.0f} ms p99 "
                        f"{_percentile(base, 0.99) * 1000:.0f} ms ({len(base)}); during the "
                        f"backfill ({backfill_seconds:.0f} s) p50 "
                        f"{_percentile(during, 0.5) * 1000:.0f} ms p99 "
                        f"{_percentile(during, 0.99) * 1000:.0f} ms ({len(during)}); "
                        f"{len(failures)} not answered; busy cores "
                        f"{_busy_cores(cpu_start, cpu_baseline):.2f} then "
                        f"{_busy_cores(cpu_baseline, cpu_backfill):.2f} of {os.cpu_count()}"
                    )
                    if failures:
                        outcome.notes.append(failures[0])
                        outcome.losses += len(failures)
                    told = [
                        m for m in summaries
                        if any(
                            opening in m.parsed().get_body(  # type: ignore[union-attr]
                                preferencelist=("plain",)
                            ).get_content()
                            for opening in (
                                "Not sent because their time had passed:",
                                "Non envoyés, leur moment étant passé :",
                            )
                        )
                    ]
                    if len(summaries) != 2 or len(told) != 2:
                        outcome.notes.append(
                            f"{len(summaries)} digests kept ({len(told)} with the catch-up "
                            "summary), expected 2"
                        )
                        outcome.losses += 1
                finally:
                    smtp.stop()
                    await worker.shutdown()
                    await asyncio.gather(running, return_exceptions=True)
    outcome.seconds = time.monotonic() - started
    return outcome


def _bilan_figures(bilan: Bilan) -> dict[str, object]:
    """The bilan's figures, without its date (the skips are recorded today)."""
    figures = bilan.model_dump(exclude={"as_of", "rows"})
    figures["rows"] = [
        row.model_dump(include={"firm_id", "stage", "meetings_held", "contracts",
                                "visits_attended", "visits_missed"})
        for row in bilan.rows
    ]
    return figures


# ----------------------------------------------------------------- unsendable


async def unsendable(journeys: int, progress: Progress) -> Outcome:
    """One firm's contact cannot be mailed, another's address is refused for good.

    ``journeys`` firms (at least 3) reach the reminders of return visits 1 and 2 and a
    missed visit 1 (told to the adviser). Firm 0's contact name holds a line break (as
    stored before such names were refused at input): its reminders cannot be built.
    The SMTP server refuses firm 1's contact with 550. Counted on the server's side:
    every other message goes out once (the adviser's about firms 0 and 1 included), and
    each of the four unsendable reminders is recorded ``MessageFailed`` once, with its
    reason, after one attempt at most: never retried.
    """
    outcome = Outcome("a contact that cannot be mailed, a recipient refused (550)",
                      journeys=journeys)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corridor-faults-") as tmp:
        work = Path(tmp)
        async with servers(work) as (temporal, _postgres, dsn):
            client = await _connect(temporal, dsn)
            smtp = LocalSmtpServer(work / "mail", refuse=["f001@firms.example"])
            smtp.start()
            task_queue = f"faults-{uuid.uuid4()}"
            base = workload.programme(f"mail-{uuid.uuid4().hex[:6]}").model_dump()
            base["staff"] = [{"id": "anna", "name": "Anna Adviser",
                              "email": "anna@agency.example", "language": "en"}]
            base["default_adviser"] = "anna"
            prog = Programme.model_validate(base)
            async with EventStore.connect(dsn) as store:
                worker = build_worker(
                    client, store, task_queue, Mailer(SmtpServer.from_url(smtp.url))
                )
                running = asyncio.create_task(worker.run())
                try:
                    outcome.faults = 2

                    async def one(number: int) -> None:
                        firm = workload.firm_id(number)
                        enrolment = workload.enrolment(prog, number)
                        name = "Line\nBreak" if number == 0 else f"Contact {number}"
                        enrolment = enrolment.model_copy(
                            update={"firm": enrolment.firm.model_copy(
                                update={"contact_email": f"{firm}@firms.example",
                                        "contact_name": name}
                            )}
                        )
                        noon = datetime.combine(
                            workload.INTRODUCED_ON, dt_time(12), tzinfo=zone(workload.TZ)
                        )
                        await service.enroll(
                            client, enrolment, task_queue=task_queue,
                            clock=ProgrammeClock.held_at(noon),
                        )
                        # Each reminder and the missed visit on its day (in its window),
                        # its message out before the clock moves on, as days pass.
                        for day in (date(2014, 2, 16), date(2014, 8, 19), date(2014, 9, 18)):
                            until = datetime.combine(day, dt_time(12), tzinfo=zone(workload.TZ))
                            await service.advance_clock(client, prog.id, firm, until)
                            await service.messages_settled(client, prog.id, firm, within=180)

                    progress(f"{journeys} journeys to their second return visit")
                    await asyncio.gather(*(one(n) for n in range(journeys)))
                    failed = sent = skipped = 0
                    for number in range(journeys):
                        journey = await service.messages_settled(
                            client, prog.id, workload.firm_id(number), within=180
                        )
                        failed += journey.state.messages_failed
                        sent += journey.state.messages_sent
                        skipped += journey.state.messages_skipped
                        if journey.state.messages_sent + journey.state.messages_failed == 3:
                            outcome.journeys_completed += 1
                    given = Counter(
                        email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
                        for raw in smtp.deliveries
                    )
                    kept = list(smtp.mailbox.messages())
                    outcome.events_expected = 3 * journeys
                    outcome.events_found = len(kept) + failed
                    outcome.losses = max(0, 3 * journeys - 4 - len(kept)) + max(0, 4 - failed)
                    outcome.duplicates = sum(n - 1 for n in given.values())
                    attempts = await store.pool.fetch(
                        "SELECT attempts, last_error FROM outbox WHERE state = 'refused' "
                        "ORDER BY firm_id"
                    )
                    retried = sum(1 for row in attempts if row["attempts"] > 1)
                    outcome.retries = retried
                    if retried or len(attempts) != 4:
                        outcome.losses += 1
                    reasons = sorted({str(row["last_error"]) for row in attempts})
                    outcome.notes.append(
                        f"{len(kept)} messages kept, {sent} MessageSent, {skipped} "
                        f"MessageSkipped; {failed} MessageFailed "
                        f"({len(attempts)} failed in the outbox, {retried} tried more than "
                        f"once; {len(smtp.refusals)} refusals at the server): "
                        + "; ".join(reasons)
                    )
                    if any("@" in reason for reason in reasons):
                        outcome.notes.append("a reason holds an address")
                        outcome.losses += 1
                finally:
                    smtp.stop()
                    await worker.shutdown()
                    await asyncio.gather(running, return_exceptions=True)
    outcome.seconds = time.monotonic() - started
    return outcome
