"""Real operations harm nobody (issue 17), through the ``corridor`` command as users run it.

Ctrl-C during ``record`` and ``enroll``, a worker killed under a command configured
through the environment, ``corridor dev`` killed, two programmes, bulk enrolment. Each
test runs the real console script in a subprocess against the session's servers (or
its own ``corridor dev``), sends it the signals a user would, and checks what the user
sees: exit codes, summaries, no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.store import EventStore
from corridor import service
from corridor.stack import TemporalDevServer, free_port
from corridor.stack.processes import pid_alive
from tests.conftest import MASTER_KEY
from tests.support import Run
from tests.test_cli import CORRIDOR, Cli, _second_programme, flat, write
from workflows.journey import journey_workflow_id

REPOSITORY = Path(__file__).resolve().parent.parent


def environment(
    temporal_server: TemporalDevServer, dsn: str, task_queue: str, folder: Path
) -> dict[str, str]:
    """The CLI's environment: the session's servers named by the environment only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "CORRIDOR_")) and k not in ("COLUMNS", "LINES")
    }
    return env | {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "CORRIDOR_DSN": dsn,
        "CORRIDOR_MASTER_KEY": MASTER_KEY,
        "CORRIDOR_TASK_QUEUE": task_queue,
        "CORRIDOR_DATA_DIR": str(folder / "data"),  # no stack.json there
    }


@pytest.fixture
def cli(
    temporal_server: TemporalDevServer, dsn: str, task_queue: str, worker: None, tmp_path: Path
) -> Cli:
    return Cli(environment(temporal_server, dsn, task_queue, tmp_path), tmp_path)


@pytest.fixture
def programme(tmp_path: Path, examples: Path, programme_id: str) -> Path:
    text = (examples / "programme.toml").read_text(encoding="utf-8")
    path = tmp_path / "programme.toml"
    path.write_text(text.replace('id = "qc-california"', f'id = "{programme_id}"', 1), "utf-8")
    return path


def roster_of(path: Path, examples: Path, firms: list[str]) -> Path:
    """A roster of ``firms``, each like the example's first firm (trifide)."""
    header, first = (examples / "roster.csv").read_text(encoding="utf-8").splitlines()[:2]
    _, _, *rest = first.split(",")
    rows = []
    for firm in firms:
        row = [firm, f"Firm {firm}", *rest]
        row[5] = f"contact@{firm}.example"
        rows.append(",".join(row))
    return write(path, header, *rows)


class Running:
    """A ``corridor`` process still running: its output read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(process.stdout, self.out)),
            asyncio.create_task(self._read(process.stderr, self.err)),
        ]

    @staticmethod
    async def _read(stream: asyncio.StreamReader, lines: list[str]) -> None:
        while line := await stream.readline():
            lines.append(line.decode())

    async def until(self, predicate: object, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():  # type: ignore[operator]
            assert self.process.returncode is None, self.ended_run()
            assert time.monotonic() < deadline, f"still waiting after {seconds} s"
            await asyncio.sleep(0.02)

    async def ended(self, seconds: float = 60) -> Run:
        await asyncio.wait_for(self.process.wait(), seconds)
        await asyncio.gather(*self._readers)
        return self.ended_run()

    def ended_run(self) -> Run:
        return Run(self.process.returncode or 0, "".join(self.out), "".join(self.err))


@contextlib.asynccontextmanager
async def running(cli: Cli, *args: str | Path) -> AsyncIterator[Running]:
    process = await asyncio.create_subprocess_exec(
        CORRIDOR,
        *(str(a) for a in args),
        env=cli.env,
        cwd=cli.cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Running(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def count_events(store: EventStore, stream_id: str, kind: str) -> list[str]:
    rows = await store.pool.fetch(
        "SELECT data->>'meeting_id' AS meeting FROM events "
        "WHERE stream_id = $1 AND event_type = $2 ORDER BY stream_version",
        stream_id,
        kind,
    )
    return [r["meeting"] for r in rows]


# ------------------------------------------------------------------ Ctrl-C: record


async def test_ctrl_c_during_record_says_what_was_sent_and_sending_again_is_safe(
    cli: Cli, client: Client, store: EventStore, programme: Path, programme_id: str,
    examples: Path, tmp_path: Path,
) -> None:
    """Exit 130, plain counts, no traceback; the file sent again records nothing twice."""
    firm = "trifide"
    run = await cli("enroll", roster_of(tmp_path / "roster.csv", examples, [firm]), "-p",
                    programme)
    assert run.code == 0, run
    rows = [f"2013-09-17,{firm},meeting_requested,mt-{n},Counterpart {n},,,,,,,," for n in
            range(1, 81)]
    header = "occurred_on,firm_id,action,meeting_id,counterpart,partner_id,scheduled_at," \
             "outcome,amount,currency,mission_id,decision,notes"
    journal = write(tmp_path / "journal.csv", header, *rows)
    stream = journey_workflow_id(programme_id, firm)

    async def stored() -> int:
        return len(await count_events(store, stream, "MeetingRequested"))

    async with running(cli, "record", journal, "-p", programme) as recording:
        deadline = time.monotonic() + 60
        while await stored() < 3:
            assert recording.process.returncode is None, recording.ended_run()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        recording.process.send_signal(signal.SIGINT)
        run = await recording.ended()

    assert run.code == 130, run
    assert "Traceback" not in run.out + run.err, run
    summary = next(line for line in run.err_lines if line.startswith("interrupted: "))
    words = summary.split()
    recorded, already, refused, not_sent = (int(words[i]) for i in (1, 4, 7, 9))
    assert summary.startswith(
        f"interrupted: {recorded} row(s) recorded, 0 already recorded, 0 refused, "
        f"{not_sent} not sent (of 80 rows)"
    ), run
    assert (already, refused) == (0, 0)
    assert recorded >= 3 and not_sent > 0 and recorded + not_sent == 80, run
    assert "Sending journal.csv again is safe" in flat(run.err), run

    await service.sync(client, programme_id, firm)
    in_store = await stored()
    may_be_recorded = "was being sent and may have been recorded" in summary
    assert in_store == recorded or (may_be_recorded and in_store == recorded + 1), run

    run = await cli("record", journal, "-p", programme)
    assert run.code == 0, run
    assert f"{80 - in_store} accepted, {in_store} already recorded, 0 refused (of 80 rows)." in (
        run.out
    ), run
    await service.sync(client, programme_id, firm)
    meetings = await count_events(store, stream, "MeetingRequested")
    assert sorted(meetings) == sorted(f"mt-{n}" for n in range(1, 81)), meetings


# ------------------------------------------------------- no worker, same answer everywhere


async def test_a_command_whose_worker_was_killed_exits_3_within_seconds_through_env_vars(
    cli: Cli, client: Client, store: EventStore, programme: Path, programme_id: str,
    examples: Path, tmp_path: Path,
) -> None:
    """TEMPORAL_ADDRESS and CORRIDOR_DSN, no stack.json: a dead worker is found in seconds.

    The server lists a killed worker's poller for five minutes: a command waited that
    long (4 min 51 s) before saying "no worker is running".
    """
    queue = f"killed-{programme_id}"
    env = cli.env | {"CORRIDOR_TASK_QUEUE": queue}
    orphan = Cli(env, cli.cwd)
    firm = "trifide"
    run = await orphan("enroll", roster_of(tmp_path / "roster.csv", examples, [firm]), "-p",
                       programme)
    assert run.code == 0, run
    log = (tmp_path / "worker.log").open("wb")
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", env=env, cwd=REPOSITORY,
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )
    try:
        for _ in range(60):  # the worker takes a few seconds to start polling
            try:
                await service.sync(client, programme_id, firm)
                break
            except service.NoWorker:
                await asyncio.sleep(0.5)
        for _ in range(600):  # the journey catches up to today, then waits
            if (await service.journeys_catching_up(client, programme_id))[0] == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.kill()
        await worker.wait()
        log.close()

    started = time.monotonic()
    run = await orphan("meeting", "request", firm, "mt-1", "Apple", "--programme", programme_id)
    took = time.monotonic() - started
    assert run.code == 3, run
    assert f"no worker is running for task queue '{queue}'" in flat(run.err), run
    assert "Traceback" not in run.err, run
    assert took < 15, f"{took:.1f} s\n{run}"

    started = time.monotonic()  # a query (status of one firm) too
    run = await orphan("status", firm, "--programme", programme_id)
    took = time.monotonic() - started
    assert run.code == 3, run
    assert f"no worker is running for task queue '{queue}'" in flat(run.err), run
    assert took < 20, f"{took:.1f} s\n{run}"


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """Outside pytest's basetemp: the embedded PostgreSQL's user must reach it (root)."""
    path = Path(tempfile.mkdtemp(prefix="corridor-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _port_open(url: str) -> bool:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


async def test_corridor_dev_killed_takes_its_servers_down(private_dir: Path) -> None:
    """SIGKILL or SIGTERM: no Temporal, PostgreSQL or SMTP server of it is left running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CORRIDOR_"))}
    env |= {
        "CORRIDOR_DATA_DIR": str(private_dir),
        "CORRIDOR_TEMPORAL_PORT": str(free_port()),
        "CORRIDOR_CODEC_PORT": str(free_port()),
        "CORRIDOR_MASTER_KEY": MASTER_KEY,
    }
    for sig in (signal.SIGKILL, signal.SIGTERM):  # the second start finds a stale stack
        dev = await asyncio.create_subprocess_exec(
            CORRIDOR, "dev", "--headless", env=env, cwd=private_dir,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=(private_dir / f"dev-{sig.name}.log").open("wb"),
        )
        try:
            stack: dict[str, object] = {}
            for _ in range(900):
                with contextlib.suppress(OSError, ValueError):
                    stack = json.loads((private_dir / "stack.json").read_text())
                if stack.get("pid") == dev.pid:
                    break
                assert dev.returncode is None, (private_dir / f"dev-{sig.name}.log").read_text()
                await asyncio.sleep(0.1)
            assert stack.get("pid") == dev.pid, stack
            temporal_pid = stack["temporal_pid"]
            postgres_pid = int(
                (private_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0]
            )
            smtp = str(stack["smtp_url"])
            assert isinstance(temporal_pid, int)
            assert pid_alive(temporal_pid) and pid_alive(postgres_pid) and _port_open(smtp)

            dev.send_signal(sig)
            code = await asyncio.wait_for(dev.wait(), 60)
            assert code == (-signal.SIGKILL if sig is signal.SIGKILL else 0), code
            for _ in range(300):
                if not pid_alive(temporal_pid) and not pid_alive(postgres_pid):
                    break
                await asyncio.sleep(0.1)
            assert not pid_alive(temporal_pid), f"Temporal {temporal_pid} left running"
            assert not pid_alive(postgres_pid), f"PostgreSQL {postgres_pid} left running"
            assert not _port_open(smtp), f"SMTP server {smtp} left running"
        finally:
            if dev.returncode is None:
                dev.kill()
                await dev.wait()
    log = (private_dir / "dev-SIGTERM.log").read_text()
    assert "Traceback" not in log, log


# --------------------------------------------------------- programmes found, not demanded


async def test_commands_find_a_firms_programme_among_several_and_list_them_without_a_firm(
    cli: Cli, client: Client, programme: Path, examples: Path, programme_id: str,
    tmp_path: Path,
) -> None:
    """Two programmes: a firm in one is found; an unknown firm names where it was looked for."""
    base_roster = roster_of(tmp_path / "base.csv", examples, ["trifide", "nordik"])
    other, both, first, suffix = _second_programme(programme, base_roster, programme_id, tmp_path)
    other_id = f"{programme_id}-b"
    trifide, nordik, ghost = f"trifide-{suffix}", f"nordik-{suffix}", f"ghost-{suffix}"
    assert (await cli("enroll", both, "--programme", programme)).code == 0
    assert (await cli("enroll", first, "--programme", other)).code == 0
    for programme_of, firm in ((programme_id, trifide), (programme_id, nordik),
                               (other_id, trifide)):
        await service.sync(client, programme_of, firm)

    run = await cli("timeline", nordik)
    assert run.code == 0, run
    assert f"Timeline of {nordik} in {programme_id}" in flat(run.out), run
    run = await cli("meeting", "request", nordik, "mt-1", "Apple")
    assert run.code == 0, run
    run = await cli("status", nordik)
    assert run.code == 0, run
    assert f"Journeys of {programme_id}" in run.out and other_id not in run.out, run

    for command in (("timeline", ghost), ("status", ghost),
                    ("meeting", "request", ghost, "mt-1", "Apple")):
        run = await cli(*command)
        assert run.code == 1, run
        message = flat(run.err)
        assert f"error: no journey for {ghost} (looked in " in message, run
        looked = re.search(r"looked in (\d+) programme\(s\)", message)
        assert looked is not None and int(looked.group(1)) >= 2, run  # both, and others'
        assert "several programmes" not in message and "Traceback" not in message, run

    run = await cli("timeline", trifide)
    assert run.code == 2, run
    assert f"{trifide} has journeys in several programmes ({programme_id}, {other_id})" in flat(
        run.err
    ), run

    run = await cli("status")
    assert run.code == 0, run
    assert f"Journeys of {programme_id}" in run.out and f"Journeys of {other_id}" in run.out
    assert "several programmes" not in run.err, run

    run = await cli("status", "--query", f"CorridorFirm = '{trifide}'")
    assert run.code == 0, run
    assert f"Journeys of {programme_id}" in run.out and f"Journeys of {other_id}" in run.out
    assert trifide in run.out and nordik not in run.out, run

    run = await cli("status", "--query", f"CorridorFirm = '{ghost}'")
    assert run.code == 1, run
    assert "matches --query" in flat(run.err), run


# ------------------------------------------------------------------- bulk enrolment


async def test_bulk_enrolment_interrupted_then_resumed_starts_only_what_is_missing(
    cli: Cli, client: Client, programme: Path, programme_id: str, examples: Path,
    tmp_path: Path,
) -> None:
    """Ctrl-C: exit 130 with counts; a re-run starts the rest; a third run starts nothing."""
    total = 1000
    firms = [f"f{n:04d}" for n in range(total)]
    roster = roster_of(tmp_path / "roster.csv", examples, firms)
    # No worker on this queue: the journeys are started, not run (enrolment needs none).
    idle = Cli(cli.env | {"CORRIDOR_TASK_QUEUE": f"idle-{programme_id}"}, cli.cwd)

    async with running(idle, "enroll", roster, "-p", programme, "--concurrency", "2") as enrol:
        await enrol.until(lambda: sum(": started" in line for line in enrol.out) >= 20)
        enrol.process.send_signal(signal.SIGINT)
        run = await enrol.ended()
    assert run.code == 130, run
    assert "Traceback" not in run.out + run.err, run
    started = [line for line in run.out_lines if line.endswith(": started")]
    assert started == [f"journey/{programme_id}/{firm}: started" for firm in
                       firms[: len(started)]], run
    left = total - len(started)
    assert left > 0, run
    assert run.out_lines[-1] == (
        f"{len(started)} journey(s) started, 0 already enrolled, {left} not sent "
        f"(of {total} firms)."
    ), run
    assert (
        f"interrupted: {left} of {total} firm(s) not sent. Running the same command again is "
        "safe: it starts only the journeys still missing and enrols no firm twice."
    ) in flat(run.err), run

    run = await idle("enroll", roster, "-p", programme)
    assert run.code == 0, run
    assert run.out_lines[-1] == (
        f"{left} journey(s) started, {len(started)} already enrolled."
    ), run
    assert sum(line.endswith(": already enrolled") for line in run.out_lines) == len(started)

    query = f"CorridorProgramme = '{programme_id}'"
    for _ in range(200):  # visibility follows the starts a moment later
        if (await client.count_workflows(query)).count >= total:
            break
        await asyncio.sleep(0.1)
    assert (await client.count_workflows(query)).count == total  # one journey per firm

    # On a terminal: a progress bar with the count, the rate and the time left.
    shown = await on_a_terminal(idle, "enroll", roster, "-p", programme)
    assert shown.code == 0, shown
    assert f"0 journey(s) started, {total} already enrolled." in shown.out, shown
    assert f"{total}/{total}" in shown.err and "firms/s" in shown.err, shown


async def on_a_terminal(cli: Cli, *args: str | Path) -> Run:
    """Run ``corridor`` with its standard error on a pseudo-terminal (stdout a pipe)."""
    leader, follower = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        CORRIDOR, *(str(a) for a in args), env=cli.env | {"COLUMNS": "160"}, cwd=cli.cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                return
            if not chunk:
                return
            chunks.append(chunk)

    reading = asyncio.get_running_loop().run_in_executor(None, drain)
    assert process.stdout is not None
    out = await asyncio.wait_for(process.stdout.read(), 120)
    await process.wait()
    await reading
    os.close(leader)
    return Run(process.returncode or 0, out.decode(), b"".join(chunks).decode(errors="replace"))


async def test_ctrl_c_during_enroll_with_a_journal_then_again_goes_on_where_it_stopped(
    cli: Cli, store: EventStore, programme: Path, programme_id: str, examples: Path,
) -> None:
    """The held clocks stay held: sent again, the import ends as one uninterrupted run."""
    args = ("enroll", examples / "roster.csv", "-p", programme,
            "--journal", examples / "journal.csv")

    async def staff_events() -> int:
        count = await store.pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_id LIKE $1 AND event_type = ANY($2)",
            f"journey/{programme_id}/%",
            ["MeetingRequested", "MeetingArranged", "MeetingHeld", "ContractSigned"],
        )
        return int(count)

    async with running(cli, *args) as importing:
        deadline = time.monotonic() + 120
        while await staff_events() < 10:
            assert importing.process.returncode is None, importing.ended_run()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        importing.process.send_signal(signal.SIGINT)
        run = await importing.ended()
    assert run.code == 130, run
    assert "Traceback" not in run.out + run.err, run
    assert "not sent (of 76 rows)." in run.out, run
    assert "interrupted: " in run.err and "Running the same command again is safe" in flat(
        run.err
    ), run

    run = await cli(*args)
    assert run.code == 0, run
    summary = flat(run.out)
    assert "0 refused (of 76 rows)." in summary, run
    accepted = int(summary.split(" record(s) accepted")[0].split()[-1])
    duplicates = int(summary.split(" already recorded")[0].split()[-1])
    assert accepted + duplicates == 76 and duplicates >= 10, run
    overdue = await store.pool.fetch(
        "SELECT stream_id, data->>'meeting_id' AS meeting FROM events "
        "WHERE stream_id LIKE $1 AND event_type = 'MeetingResultOverdue'",
        f"journey/{programme_id}/%",
    )
    # As in one uninterrupted import: saintroch's ms-2 is the only result never recorded.
    assert [(r["stream_id"].rsplit("/", 1)[1], r["meeting"]) for r in overdue] == [
        ("saintroch", "ms-2")
    ]
