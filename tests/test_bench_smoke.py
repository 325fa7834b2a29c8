"""A smoke run of ``python -m bench`` with tiny sizes: every measure runs end to end.

The figures themselves are not checked here (timing goals live in BENCHMARKS.md, as
ratios measured in one run); what is checked is what a reader of the report sees: a row
per measure with Corridor's figure, its baselines' and the ratios, and the machine.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.support import run_program

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)


async def test_bench_writes_a_report_with_every_measure(dsn: str, tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    run = await run_program(
        sys.executable, "-m", "bench", "--streams", "12", "--writers", "3",
        "--rebuild-events", "60", "--journeys", "9", "--repeat", "1", "--enrolments", "3",
        "--command-rate", "10", "--command-seconds", "1", "--command-journeys", "2",
        "--in-flight", "4", "--sustained-seconds", "1", "--history-commands", "2",
        "--replays", "1", "--temporal-repeat", "1", "--output", report,
        env={**os.environ, "CORRIDOR_BENCH_DSN": dsn}, cwd=ROOT, seconds=100,
    )
    assert run.code == 0, run
    text = report.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:-1]] == [
        "append, 12 streams × 10 events in appends of 10, 1 writer",
        "append, 12 streams × 10 events in appends of 10, 3 writers",
        "read-model rebuild, 60 events",
        "bilan of 9 journeys",
        "enrolment of 3 firms, one at a time as `corridor enroll` does",
        "staff commands offered at 10/s for 1 s over 2 journeys: p50 latency",
        "staff commands offered at 10/s for 1 s over 2 journeys: p99 latency",
        "staff commands offered at 10/s for 1 s over 2 journeys: answered",
        "staff commands sustained, 4 in flight over 2 journeys for 1 s, one worker",
        "staff commands sustained, 4 in flight over 2 journeys for 1 s, two workers",
        "history events per staff command (2 commands in turn)",
    ]
    assert re.fullmatch(
        r"replay of a two-year journey's history \(\d+ events, \d+ commands\)",
        rows[-1].split("|")[1].strip(),
    ), rows[-1]
    for row in rows[1:]:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert re.fullmatch(r"[\d,.]+ (ev/s|s|journeys/s|ms|cmd/s|events)", cells[1]), row
        assert re.search(r"\d", cells[2]) and re.fullmatch(r"[\d.; ]+", cells[3]), row
        assert set(cells[5].split("; ")) <= {"met", "**missed**", "-"}, row
    assert "eventsourcing PostgresApplicationRecorder" in rows[1]
    assert "raw asyncpg executemany" in rows[1]
    assert "copy_records_to_table" in rows[3]
    assert "trivial workflow starts" in rows[5] and "trivial update" in rows[7]
    # Scale is its own command (python -m bench scale): its section says it has not run.
    assert "## Scale" in text and "Not run yet." in text
    assert re.search(r"CPUs: \d+", text) and re.search(r"PostgreSQL \d+", text)


async def test_bench_scale_plays_journeys_and_writes_its_row(dsn: str, tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    run = await run_program(
        sys.executable, "-m", "bench", "scale", "--journeys", "4", "--concurrency", "2",
        "--output", report,
        env={**os.environ, "CORRIDOR_BENCH_DSN": dsn}, cwd=ROOT, seconds=150,
    )
    assert run.code == 0, run
    assert "4 completed as the domain says, 0 failed" in " ".join(run.err.split()), run
    (row,) = [line for line in report.read_text().splitlines() if line.startswith("| 4 |")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    journeys, at_once, _, _, completed, failed, expected, found, lost, duplicated, gaps = cells[:11]
    assert (journeys, at_once, completed, failed) == ("4", "2", "4", "0"), row
    assert expected == found and int(expected) > 4 * 10, row
    assert (lost, duplicated, gaps) == ("0", "0", "0"), row
    assert cells[11].endswith("; 0"), row  # no worker restart


async def test_scale_restarts_a_worker_the_server_does_not_see_polling(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scale run's stand-in for an orchestrator: a wedged worker is restarted.

    The watchdog is pointed at a task queue its worker does not poll, which is what
    the server sees of a wedged worker; it must kill that process and start another,
    which then polls the real task queue.
    """
    import asyncio
    import dataclasses
    import io

    from rich.console import Console

    from bench import scale
    from bench.temporal import stack
    from corridor.observability import polling_status

    monkeypatch.setattr(scale, "WEDGED_AFTER", 0.5)
    async with stack(dsn, "watchdog", tmp_path) as s:
        first = s.worker_pid
        unpolled = dataclasses.replace(s, task_queue=f"{s.task_queue}-unpolled")
        said = io.StringIO()
        watchdog = asyncio.create_task(
            scale.watch_worker(unpolled, Console(file=said, width=200), every=0.5)
        )
        try:
            async with asyncio.timeout(90):
                while True:
                    if s.worker.restarts:
                        break
                    await asyncio.sleep(0.2)
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        assert s.worker_pid != first
        assert s.worker.restarts[0].startswith(f"not seen polling {s.task_queue}-unpolled")
        assert "worker wedged (not seen polling" in said.getvalue()
        async with asyncio.timeout(30):  # the new process polls the real task queue
            while True:
                if await polling_status(s.client, s.task_queue, s.worker.identity) == "ok":
                    break
                await asyncio.sleep(0.5)


async def test_a_bench_process_that_writes_after_ready_is_never_blocked(tmp_path: Path) -> None:
    """What wedged the scale runs' worker: its output, unread after "ready", filled the pipe.

    The SDK core writes its own log lines (e.g. "There were leftover buffered tasks when
    evicting run") to standard output; once 64 KiB of them were unread, the thread that
    wrote them (the one that feeds workflow tasks to the worker) blocked for good. A
    process that writes a megabyte after "ready" must be able to finish, every byte of
    it in the log.
    """
    import asyncio

    from bench.temporal import start_until_ready

    log = tmp_path / "writer.log"
    writes = "import sys; print('ready', flush=True); sys.stdout.write('x' * 1_000_000)"
    process, output = await start_until_ready(
        "the writer", [sys.executable, "-c", writes], log, within=30
    )
    async with asyncio.timeout(60):
        assert await process.wait() == 0
        await output
    assert log.read_text().count("x") == 1_000_000


async def test_a_bench_process_that_never_says_ready_is_reported_with_its_log(
    tmp_path: Path,
) -> None:
    from bench.temporal import start_until_ready

    log = tmp_path / "silent.log"
    says = "import sys; sys.stderr.write('no database here'); sys.exit(3)"
    with pytest.raises(RuntimeError, match="the silent one did not start:\nno database here"):
        await start_until_ready("the silent one", [sys.executable, "-c", says], log, within=30)
