"""Scale: N journeys played through a full two-year cycle on one dev server.

Each journey is the reliability workload's firm (``reliability.workload.play_firm``):
enrolled, its staff commands sent on their business days, its clock skipped forward
between them by the server's time skipping, until its evaluation (closed, or renewed
and still running at the end). At most ``concurrency`` journeys play at once; a journey
that fails is counted and never stops the others. Afterwards every stream is checked
against the pure domain (``workload.expected_stream``): events lost, duplicated, out of
version order, and whether the journey ended where the domain says.
"""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from activities.store import EventStore
from bench.temporal import Stack, peak_rss_mib, stack
from corridor.observability import WEDGED_AFTER, polling_status
from reliability import workload


@dataclass
class ScaleOutcome:
    """What a scale run did and found.

    Attributes:
        journeys: Journeys played.
        concurrency: Journeys played at once, at most.
        failed: Journeys whose play raised, as (firm, error), the first few kept.
        failures: How many journeys failed.
        completed: Journeys whose stream and final stage are the domain's.
        events_expected: Events the domain says the streams hold.
        events_found: Events the streams hold.
        lost: Expected events missing.
        duplicated: Events stored twice (same id twice, or more events than expected).
        gaps: Versions out of place.
        differing: Streams whose event types differ from the domain's.
        retries: Driver retries (a server busy or unreachable for a moment).
        seconds: Wall time of the play, from the first enrolment to the last sync.
        check_seconds: Wall time of the check.
        worker_restarts: Why the worker was restarted, each time: it had not been seen
            polling for ``WEDGED_AFTER`` seconds (what ``/livez`` reports in production,
            where the orchestrator restarts it).
        worker_mib: Peak resident memory of the worker process.
        driver_mib: Peak resident memory of this (driver) process.
        server_mib: Peak resident memory of the Temporal dev server.
    """

    journeys: int
    concurrency: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    failures: int = 0
    completed: int = 0
    events_expected: int = 0
    events_found: int = 0
    lost: int = 0
    duplicated: int = 0
    gaps: int = 0
    differing: int = 0
    retries: int = 0
    seconds: float = 0.0
    check_seconds: float = 0.0
    worker_restarts: list[str] = field(default_factory=list)
    worker_mib: float | None = None
    driver_mib: float | None = None
    server_mib: float | None = None

    @property
    def passed(self) -> bool:
        """Every journey completed as the domain says, nothing lost or written twice."""
        return (
            self.failures == 0
            and self.completed == self.journeys
            and self.lost == 0
            and self.duplicated == 0
            and self.gaps == 0
            and self.differing == 0
        )


async def check(store: EventStore, prog_id: str, journeys: int, outcome: ScaleOutcome) -> None:
    """Compare every stream of the programme with the pure domain's events."""
    prog = workload.programme(prog_id)
    rows = await store.pool.fetch(
        "SELECT stream_id, event_id, event_type, stream_version FROM events"
        " WHERE stream_id LIKE $1 ORDER BY stream_id, stream_version",
        f"journey/{prog_id}/%",
    )
    streams: dict[str, list[tuple[object, str, int]]] = defaultdict(list)
    for row in rows:
        streams[row["stream_id"]].append(
            (row["event_id"], row["event_type"], row["stream_version"])
        )
    states = await store.journey_states(prog_id)
    # The events a firm's stream holds depend on its number modulo 30 only (which
    # steps its script has, the decision): the domain is asked once per kind.
    kinds: dict[int, tuple[list[str], str]] = {}
    for number in range(journeys):
        if number % 30 not in kinds:
            types, final = workload.expected_stream(prog, number)
            kinds[number % 30] = (types, final.stage.value)
        expected, stage = kinds[number % 30]
        stream_id = f"journey/{prog_id}/{workload.firm_id(number)}"
        found = streams.get(stream_id, [])
        outcome.events_expected += len(expected)
        outcome.events_found += len(found)
        distinct = len({event_id for event_id, _, _ in found})
        outcome.duplicated += len(found) - distinct + max(distinct - len(expected), 0)
        outcome.lost += max(len(expected) - distinct, 0)
        outcome.gaps += sum(1 for i, (_, _, v) in enumerate(found, start=1) if v != i)
        outcome.differing += [t for _, t, _ in found] != expected
        state = states.get(stream_id)
        if state is not None and state.stage.value == stage and (
            state.stream_version == len(expected)
        ):
            outcome.completed += 1


async def watch_worker(
    s: Stack, console: Console, every: float = 15.0, wedged_after: float | None = None
) -> None:
    """Restart the worker when the server has not seen it poll for ``wedged_after`` s.

    The bench's stand-in for the orchestrator that restarts a production worker whose
    ``/livez`` fails (``corridor.observability``: the same check; ``WEDGED_AFTER``
    unless a shorter wait is given).
    """
    wedged_after = WEDGED_AFTER if wedged_after is None else wedged_after
    unseen_since: float | None = None
    while True:
        await asyncio.sleep(every)
        status = await polling_status(s.client, s.task_queue, s.worker.identity)
        if status == "ok" or status.startswith("cannot describe"):
            unseen_since = None
            continue
        now = time.monotonic()
        unseen_since = unseen_since or now
        if now - unseen_since > wedged_after:
            why = f"{status} for {now - unseen_since:.0f} s"
            console.print(f"   worker wedged ({why}): restarting it")
            await s.worker.restart(why)
            unseen_since = None


async def scale(
    dsn: str, *, journeys: int, concurrency: int, work: Path, console: Console
) -> ScaleOutcome:
    """Play ``journeys`` journeys, ``concurrency`` at a time, and check every stream.

    Args:
        dsn: A PostgreSQL server whose user may create databases.
        journeys: How many journeys.
        concurrency: Journeys played at once, at most.
        work: Directory for the server's and the worker's logs.
        console: Where the progress bar is drawn.
    """
    outcome = ScaleOutcome(journeys, concurrency)
    async with stack(dsn, "scale", work) as s:
        prog = workload.programme(f"scale-{uuid.uuid4().hex[:6]}")
        counters = workload.Counters()
        slots = asyncio.Semaphore(concurrency)
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed, {task.fields[retries]} retries"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("journeys", total=journeys, failed=0, retries=0)

            async def one(number: int) -> None:
                async with slots:
                    try:
                        await workload.play_firm(
                            s.client, prog, number, task_queue=s.task_queue,
                            counters=counters, patience=900.0,
                        )
                    except Exception as error:  # one journey's failure is counted, no more
                        outcome.failures += 1
                        if len(outcome.failed) < 20:
                            outcome.failed.append((workload.firm_id(number), repr(error)))
                    bar.update(
                        task, advance=1, failed=outcome.failures, retries=counters.retries
                    )
                    done = int(bar.tasks[0].completed)
                    if not console.is_terminal and done % max(1, journeys // 20) == 0:
                        # No live bar in a log file: a line every 5 % instead.
                        console.print(
                            f"   {done} of {journeys} journeys, {outcome.failures} failed, "
                            f"{counters.retries} retries, {time.perf_counter() - started:.0f} s"
                        )

            started = time.perf_counter()
            # Restarted after 60 s unseen (plus the 70 s a poll may take): journeys wait
            # up to 15 minutes for a step, so a restart loses none of them.
            watchdog = asyncio.create_task(watch_worker(s, console, wedged_after=60.0))
            try:
                await asyncio.gather(*(one(n) for n in range(journeys)))
            finally:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            outcome.seconds = time.perf_counter() - started
            outcome.worker_restarts = list(s.worker.restarts)
        outcome.retries = counters.retries
        outcome.worker_mib = s.worker.peak_mib
        outcome.server_mib = peak_rss_mib(s.server_pid)
        console.print(f"   played in {outcome.seconds:.0f} s; checking every stream")
        started = time.perf_counter()
        await check(s.store, prog.id, journeys, outcome)
        outcome.check_seconds = time.perf_counter() - started
    outcome.driver_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return outcome
