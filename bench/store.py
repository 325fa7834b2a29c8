"""The event store's measures, each side by side with its baseline in the same run.

Every measure runs its contenders in turn (the order rotates), ``repeat`` times, and
keeps the median: the machine is shared, so the ratios are what hold.

- append: ``streams`` streams of ten events, one append per ``batch`` events, by 1 and
  by 8 concurrent writers; baselines: eventsourcing's ``PostgresApplicationRecorder``
  (its exclusive table lock, its own table) and raw asyncpg ``executemany`` into a
  table like ``events`` (no check, no read model).
- rebuild: every read model rebuilt from ``rebuild_events`` events; baseline: the same
  events' rows copied into a table like ``events`` with ``copy_records_to_table``.
- bilan: the bilan of ``journeys`` journeys computed in SQL from the read models;
  baseline: today's ``compute_bilan`` over the journeys' states.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from activities.store import EventStore
from bench import data
from domain.bilan import compute_bilan
from domain.events import EventEnvelope

Progress = Callable[[str], None]


@dataclass
class Figure:
    """One contender's runs of one measure.

    Attributes:
        name: The contender.
        unit: What ``values`` count ("ev/s", "s").
        values: One figure per run.
    """

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median of the runs."""
        return statistics.median(self.values)


@dataclass
class Measure:
    """A measure: Corridor's figure and its baselines', with the target it must meet.

    Attributes:
        title: What is measured.
        corridor: Corridor's runs.
        baselines: The baselines' runs.
        higher_is_better: True for rates, False for durations.
        targets: ``(baseline name or "", minimum ratio or maximum seconds, wording)``.
    """

    title: str
    corridor: Figure
    baselines: list[Figure]
    higher_is_better: bool = True
    targets: list[tuple[str, float, str]] = field(default_factory=list)

    def ratio(self, baseline: Figure) -> float:
        """The median, over the rounds, of Corridor's figure over the baseline's.

        Each round runs every contender once, one after the other, so a round's two
        figures met the same load on the machine; >1: Corridor does better.
        """
        pairs = zip(self.corridor.values, baseline.values, strict=True)
        if self.higher_is_better:
            return statistics.median(c / b for c, b in pairs)
        return statistics.median(b / c for c, b in pairs)


async def _interleaved(
    repeat: int, contenders: Sequence[tuple[Figure, Callable[[int], Awaitable[float]]]]
) -> None:
    """Run each contender ``repeat`` times, rotating the order; record the figures."""
    for run in range(repeat):
        turn = run % len(contenders)
        for figure, measure in [*contenders[turn:], *contenders[:turn]]:
            figure.values.append(await measure(run))


def _scratch_dsn(dsn: str, database: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path=f"/{database}"))


@asynccontextmanager
async def scratch_database(dsn: str, name: str) -> AsyncIterator[str]:
    """A database created for one measure (on ``dsn``'s server), dropped afterwards."""
    database = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        yield _scratch_dsn(dsn, database)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def _writers(
    writers: int, jobs: Iterable[Any], work: Callable[[Any], Awaitable[Any]]
) -> float:
    """Run ``work`` on every job with ``writers`` concurrent tasks; the seconds taken."""
    queue = iter(jobs)

    async def writer() -> None:
        for job in queue:
            await work(job)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.perf_counter() - started


def _batches(streams: list[list[EventEnvelope]], batch: int) -> list[list[EventEnvelope]]:
    """Each stream's appends in order; streams interleaved so a writer never waits on itself."""
    per_stream = [[s[i : i + batch] for i in range(0, len(s), batch)] for s in streams]
    return [appends[k] for k in range(max(map(len, per_stream))) for appends in per_stream
            if k < len(appends)]


RAW_INSERT = (
    "INSERT INTO raw_events (stream_id, stream_version, event_id, event_type, schema_version,"
    " data, metadata, occurred_at, recorded_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb,"
    " $7::jsonb, $8, $9)"
)
_DATA_EXCLUDE = {"type", "occurred_at", "recorded_at"}


def _raw_row(envelope: EventEnvelope) -> tuple[Any, ...]:
    event = envelope.event
    return (
        envelope.stream_id, envelope.stream_version, envelope.event_id, event.type,
        event.schema_version, event.model_dump_json(exclude=_DATA_EXCLUDE),
        json.dumps({"command_id": envelope.command_id}), event.occurred_at, event.recorded_at,
    )


def _eventsourcing_recorder(dsn: str, pool_size: int) -> Any:
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    parts = urllib.parse.urlsplit(dsn)
    query = dict(urllib.parse.parse_qsl(parts.query))
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=query.get("host") or parts.hostname or "127.0.0.1",
        port=query.get("port") or parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        pool_size=pool_size,
    )
    recorder = PostgresApplicationRecorder(datastore, events_table_name="es_stored_events")
    recorder.create_table()
    return recorder


async def append(
    dsn: str, *, streams: int, batch: int, writers: int, repeat: int, progress: Progress
) -> Measure:
    """Appends by ``writers`` concurrent writers, against eventsourcing and raw asyncpg."""
    from eventsourcing.persistence import StoredEvent

    corridor = Figure("Corridor", "ev/s")
    recorder_figure = Figure("eventsourcing PostgresApplicationRecorder", "ev/s")
    raw_figure = Figure("raw asyncpg executemany", "ev/s")
    async with scratch_database(dsn, "append") as db, EventStore.connect(
        db, pool_size=writers
    ) as store:
        raw = await asyncpg.create_pool(db, min_size=writers, max_size=writers)
        recorder = await asyncio.to_thread(_eventsourcing_recorder, db, writers)
        try:
            await raw.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
            await raw.execute(
                "ALTER TABLE raw_events ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY"
            )

            def events(run: int, who: str) -> list[list[EventEnvelope]]:
                prog = data.programme(f"{who}-{run}")
                return _batches(data.streams(prog, streams, who), batch)

            async def run_corridor(run: int) -> float:
                jobs = events(run, "corridor")
                seconds = await _writers(
                    writers, jobs, _appender(store)
                )
                count = await store.pool.fetchval(
                    "SELECT count(*) FROM journeys WHERE programme_id = $1", f"corridor-{run}"
                )
                assert count == streams, count
                return _rate(jobs, seconds, progress, corridor.name)

            async def run_raw(run: int) -> float:
                jobs = events(run, "raw")

                async def insert(b: list[EventEnvelope]) -> None:
                    await raw.executemany(RAW_INSERT, [_raw_row(e) for e in b])

                return _rate(jobs, await _writers(writers, jobs, insert), progress, raw_figure.name)

            async def run_recorder(run: int) -> float:
                jobs = events(run, "es")
                ids = {s: uuid.uuid5(uuid.NAMESPACE_URL, s) for s in {b[0].stream_id for b in jobs}}

                def insert(b: list[EventEnvelope]) -> None:
                    recorder.insert_events(
                        [
                            StoredEvent(
                                originator_id=ids[e.stream_id],
                                originator_version=e.stream_version,
                                topic=e.event.type,
                                state=e.event.model_dump_json().encode(),
                            )
                            for e in b
                        ]
                    )

                def threads() -> float:
                    started = time.perf_counter()
                    with ThreadPoolExecutor(writers) as pool:
                        list(pool.map(insert, jobs))
                    return time.perf_counter() - started

                seconds = await asyncio.to_thread(threads)
                return _rate(jobs, seconds, progress, recorder_figure.name)

            await _interleaved(
                repeat,
                [(corridor, run_corridor), (recorder_figure, run_recorder), (raw_figure, run_raw)],
            )
        finally:
            await raw.close()
            await asyncio.to_thread(recorder.datastore.close)
    plural = "s" if writers > 1 else ""
    return Measure(
        f"append, {streams:,} streams × 10 events in appends of {batch}, "
        f"{writers} writer{plural}",
        corridor,
        [recorder_figure, raw_figure],
    )


def _appender(store: EventStore) -> Callable[[list[EventEnvelope]], Awaitable[Any]]:
    def append(batch: list[EventEnvelope]) -> Awaitable[Any]:
        first = batch[0]
        return store.append(first.stream_id, first.stream_version - 1, batch)

    return append


def _rate(jobs: list[list[EventEnvelope]], seconds: float, progress: Progress, who: str) -> float:
    events = sum(len(b) for b in jobs)
    progress(f"{who}: {events} events in {seconds:.2f} s")
    return events / seconds


async def rebuild(dsn: str, *, events: int, repeat: int, progress: Progress) -> Measure:
    """Rebuilding every read model from ``events`` events, against COPY of their rows."""
    corridor = Figure("Corridor", "ev/s")
    copy = Figure("asyncpg copy_records_to_table", "ev/s")
    async with scratch_database(dsn, "rebuild") as db, EventStore.connect(db) as store:
        prog = data.programme("rebuild")
        batches = _batches(data.streams(prog, max(1, events // 10), "firm"), 10)
        await _writers(8, batches, _appender(store))
        raw = await asyncpg.connect(db)
        try:
            await raw.execute("CREATE TABLE copied_events (LIKE events INCLUDING ALL)")
            records = [tuple(r) for r in await raw.fetch("SELECT * FROM events")]
            columns = [a.name for a in (await raw.prepare("SELECT * FROM events")).get_attributes()]

            async def run_corridor(_run: int) -> float:
                started = time.perf_counter()
                replayed = await store.rebuild_read_models()
                seconds = time.perf_counter() - started
                assert replayed == len(records)
                progress(f"rebuild: {replayed} events in {seconds:.2f} s")
                return replayed / seconds

            async def run_copy(_run: int) -> float:
                await raw.execute("TRUNCATE copied_events")
                started = time.perf_counter()
                async with raw.transaction():
                    await raw.copy_records_to_table(
                        "copied_events", records=records, columns=columns
                    )
                seconds = time.perf_counter() - started
                progress(f"COPY: {len(records)} rows in {seconds:.2f} s")
                return len(records) / seconds

            await _interleaved(repeat, [(corridor, run_corridor), (copy, run_copy)])
        finally:
            await raw.close()
    return Measure(f"read-model rebuild, {len(records):,} events", corridor, [copy])


async def bilan(dsn: str, *, journeys: int, repeat: int, progress: Progress) -> Measure:
    """The bilan of ``journeys`` journeys in SQL, against compute_bilan over the states."""
    corridor = Figure("Corridor (SQL over the read models)", "s")
    folded = Figure("compute_bilan over the journeys' states (today)", "s")
    async with scratch_database(dsn, "bilan") as db, EventStore.connect(db) as store:
        prog = data.programme("bilan")
        started = time.perf_counter()
        batches = _batches(data.streams(prog, journeys, "firm"), 10)
        await _writers(8, batches, _appender(store))
        progress(f"bilan: {journeys} journeys stored in {time.perf_counter() - started:.1f} s")
        await store.pool.execute("ANALYZE")
        expected = compute_bilan(
            prog.id, prog.name, list((await store.journey_states(prog.id)).values())
        )
        assert await store.bilan(prog.id) == expected, "the SQL bilan differs from compute_bilan"

        async def run_sql(_run: int) -> float:
            started = time.perf_counter()
            result = await store.bilan(prog.id)
            seconds = time.perf_counter() - started
            assert result is not None and result.firms == journeys
            progress(f"SQL bilan of {journeys} journeys: {seconds:.3f} s")
            return seconds

        async def run_folded(_run: int) -> float:
            started = time.perf_counter()
            states = await store.journey_states(prog.id)
            result = compute_bilan(prog.id, prog.name, list(states.values()))
            seconds = time.perf_counter() - started
            assert result.firms == journeys
            progress(f"compute_bilan of {journeys} journeys: {seconds:.3f} s")
            return seconds

        await _interleaved(repeat, [(corridor, run_sql), (folded, run_folded)])
    return Measure(
        f"bilan of {journeys:,} journeys", corridor, [folded], higher_is_better=False
    )
