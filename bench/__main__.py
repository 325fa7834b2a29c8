"""Measure the event store against its baselines and write BENCHMARKS.md.

.venv/bin/python -m bench                 # full sizes (make bench), a few minutes
.venv/bin/python -m bench --streams 20 --rebuild-events 200 --journeys 30 --repeat 1

PostgreSQL is a fresh embedded server unless ``CORRIDOR_BENCH_DSN`` names one (its user
must create databases: each measure runs in its own, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console

from bench import store
from bench.store import Measure

REPORT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
console = Console(stderr=True, markup=False, highlight=False)


@asynccontextmanager
async def postgres(dsn: str | None) -> AsyncIterator[str]:
    """The given server, or a fresh embedded one stopped afterwards."""
    if dsn:
        yield dsn
        return
    from corridor.stack import EmbeddedPostgres

    server = EmbeddedPostgres()
    try:
        yield await server.start()
    finally:
        await server.stop()


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def machine(dsn: str) -> list[str]:
    """Lines describing the machine and the software measured."""
    connection = await asyncpg.connect(dsn)
    try:
        version = await connection.fetchval("SHOW server_version")
        settings = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')"
            " ORDER BY name"
        )
    finally:
        await connection.close()
    packages = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("asyncpg", "eventsourcing", "psycopg", "pydantic")
    )
    return [
        f"- CPUs: {os.cpu_count()} (`nproc`), {cpu_model()}; shared with other users",
        f"- PostgreSQL {version} (embedded, same machine, Unix socket): "
        + ", ".join(f"{r['name']}={r['setting']}" for r in settings),
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}; "
        + packages,
    ]


def _figure(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit == "ev/s" else f"{value:.3f} {unit}"


def table(measures: list[tuple[Measure, list[tuple[str, bool]]]]) -> list[str]:
    """The Markdown table: Corridor, baselines, ratios and targets, one row per measure."""
    lines = [
        "| measure | Corridor | baseline, same run | ratio | target | met |",
        "|---|---:|---|---:|---|---|",
    ]
    for measure, targets in measures:
        baselines = "; ".join(
            f"{b.name} {_figure(b.median, b.unit)}" for b in measure.baselines
        )
        ratios = "; ".join(f"{measure.ratio(b):.2f}" for b in measure.baselines)
        lines.append(
            f"| {measure.title} | {_figure(measure.corridor.median, measure.corridor.unit)} "
            f"| {baselines} | {ratios} | {'; '.join(t for t, _ in targets)} "
            f"| {'; '.join('met' if ok else '**missed**' for _, ok in targets)} |"
        )
    return lines


def main(
    streams: Annotated[int, typer.Option(help="Streams of ten events per append run.")] = 2000,
    batch: Annotated[int, typer.Option(help="Events per append.")] = 10,
    writers: Annotated[int, typer.Option(help="Concurrent writers of the second run.")] = 8,
    rebuild_events: Annotated[int, typer.Option(help="Events replayed by the rebuild.")] = 20000,
    journeys: Annotated[int, typer.Option(help="Journeys of the bilan.")] = 10000,
    repeat: Annotated[int, typer.Option(help="Rounds of runs (medians kept).")] = 5,
    output: Annotated[Path, typer.Option(help="Where to write the report.")] = REPORT,
) -> None:
    """Run the event store's measures side by side with their baselines."""
    from corridor.logs import configure_logging

    configure_logging("ERROR", json=False)

    def progress(text: str) -> None:
        console.print(f"   {text}")

    async def run() -> None:
        async with postgres(os.environ.get("CORRIDOR_BENCH_DSN")) as dsn:
            console.print("== append, 1 writer")
            one = await store.append(
                dsn, streams=streams, batch=batch, writers=1, repeat=repeat, progress=progress
            )
            console.print(f"== append, {writers} writers")
            many = await store.append(
                dsn, streams=streams, batch=batch, writers=writers, repeat=repeat,
                progress=progress,
            )
            console.print("== rebuild")
            rebuilt = await store.rebuild(
                dsn, events=rebuild_events, repeat=repeat, progress=progress
            )
            console.print("== bilan")
            bilan = await store.bilan(dsn, journeys=journeys, repeat=repeat, progress=progress)
            described = await machine(dsn)
        es, raw = one.baselines
        scaling = statistics.median(
            m / o for m, o in zip(many.corridor.values, one.corridor.values, strict=True)
        )
        measures = [
            (one, [
                (f"≥ 1.5× eventsourcing ({one.ratio(es):.2f})", one.ratio(es) >= 1.5),
                (f"≥ 0.6× raw ({one.ratio(raw):.2f})", one.ratio(raw) >= 0.6),
            ]),
            (many, [(f"≥ 2× one writer ({scaling:.2f}×)", scaling >= 2.0)]),
            (rebuilt, [
                (f"≥ 0.3× COPY ({rebuilt.ratio(rebuilt.baselines[0]):.2f})",
                 rebuilt.ratio(rebuilt.baselines[0]) >= 0.3),
            ]),
            (bilan, [(f"≤ 1 s ({bilan.corridor.median:.3f} s)", bilan.corridor.median <= 1.0)]),
        ]
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        runs = [
            f"- {m.title}: "
            + "; ".join(
                f"{f.name} " + ", ".join(_figure(v, f.unit) for v in f.values)
                for f in [m.corridor, *m.baselines]
            )
            for m, _ in measures
        ]
        text = "\n".join(
            [
                "# Benchmarks",
                "",
                f"Measured {stamp} with `make bench` (`python -m bench --streams {streams} "
                f"--batch {batch} --writers {writers} --rebuild-events {rebuild_events} "
                f"--journeys {journeys} --repeat {repeat}`). Each figure is the median of "
                f"{repeat} rounds; in each round every contender runs once, in turn, in the same "
                "process and on the same server (the order rotates between rounds), and a "
                "ratio is the median of the rounds' ratios: on a shared machine the ratios "
                "are what hold. Ratios above 1 favour Corridor; the 8-writer target compares "
                "Corridor with itself.",
                "",
                *table(measures),
                "",
                "## Machine",
                "",
                *described,
                "",
                "## What each measure does",
                "",
                "- **append**: each stream's ten events (decided by the domain: enrolment, "
                "meetings requested, arranged and held, a contract, or a withdrawal) appended "
                f"{batch} at a time. Corridor checks the expected version and retries, stores "
                "the events and updates the four read models, in one round trip "
                "(`corridor_append`). eventsourcing 9.5's `PostgresApplicationRecorder` "
                "locks its table, inserts and notifies; raw asyncpg `executemany` inserts "
                "the same rows into a table like `events` and does nothing else. The writers "
                "are asyncio tasks sharing one pool (Corridor, raw) or threads "
                "(eventsourcing, which is synchronous).",
                "- **rebuild**: `rebuild_read_models` truncates the read models, folds every "
                "stream once and copies the rows in with `COPY`; the baseline copies the "
                "events' own rows into a table like `events` with `copy_records_to_table`.",
                "- **bilan**: `EventStore.bilan` (SQL over `journeys`, `meetings`, "
                "`contracts`, `return_visits`), checked equal to `compute_bilan` first; "
                "the baseline is what the report does today: read every journey's state "
                "and fold the bilan in Python.",
                "- Not measured yet (they need Temporal): enrolment rate, staff command "
                "latency, history events per command, replay of a two-year history, scale.",
                "",
                "## Every run, in order",
                "",
                *runs,
                "",
            ]
        )
        output.write_text(text, encoding="utf-8")
        console.print("\n".join(table(measures)))
        console.print(f"wrote {output}")

    asyncio.run(run())


if __name__ == "__main__":
    typer.run(main)
