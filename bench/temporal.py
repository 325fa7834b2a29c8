"""The measures that need Temporal, each side by side with a trivial workflow's.

A Temporal dev server (loopback, in memory, time skipping on) and a worker process
(``bench.worker``: Corridor's worker and the ``Trivial`` baseline's, one process) are
started for the measures and stopped afterwards; the event store is a scratch database.
Every measure runs Corridor and the baseline in turn (the order rotates), ``repeat``
times, and keeps the medians: the machine is shared, so the ratios are what hold.

- enrolment: firms enrolled one at a time as ``corridor enroll`` does
  (``service.enroll``), against starts of the trivial workflow;
- staff commands: commands offered at a fixed rate (open loop, latency counted from the
  moment each was due, so a driver that falls behind is seen) over ``journeys``
  journeys, then as many as ``in_flight`` senders get through (sustained); against a
  trivial update;
- history events per command: what one more command adds to a journey's history;
- replay: a full two-year journey's history replayed by ``temporalio.worker.Replayer``,
  against a trivial workflow's history with the same number of updates.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.store import EventStore
from bench.store import Figure, Measure, Progress, scratch_database
from bench.trivial import Trivial
from bench.worker import trivial_queue
from corridor import service
from corridor.stack import TemporalDevServer, free_port
from domain.calendar import ProgrammeClock, zone
from domain.commands import RequestMeeting
from domain.programme import Programme
from reliability import workload
from workflows import search
from workflows.journey import FirmJourney

ROOT = Path(__file__).resolve().parent.parent
WORKER_READY_WITHIN = 60.0


class WorkerProcess:
    """The bench's worker process (``bench.worker``), which can be restarted.

    Attributes:
        pid: The running process's id.
        restarts: Why each restart happened, in order.
    """

    def __init__(self, address: str, db: str, task_queue: str, log: Path) -> None:
        self._args = (address, db, task_queue)
        self._log = log
        self._process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Task[None] | None = None
        self.restarts: list[str] = []
        self._stopped_peaks: list[float] = []

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def peak_mib(self) -> float | None:
        """The highest peak resident memory of every process started, in MiB."""
        running = peak_rss_mib(self._process.pid) if self._process else None
        return max([*self._stopped_peaks, *filter(None, [running])], default=None)

    @property
    def identity(self) -> str:
        """The identity the server knows the worker by (the SDK's default)."""
        return f"{self.pid}@{socket.gethostname()}"

    async def start(self) -> None:
        """Start the process and wait for its "ready" line.

        Raises:
            RuntimeError: It did not start (the end of its log is in the message).
        """
        self._process, self._output = await start_until_ready(
            "the bench worker",
            [sys.executable, "-m", "bench.worker", *self._args],
            self._log,
            WORKER_READY_WITHIN,
        )

    async def stop(self, *, kill: bool = False) -> None:
        """Stop the process (SIGTERM, SIGKILL after 20 s; at once with ``kill``)."""
        process = self._process
        if process is None:
            return
        peak = peak_rss_mib(process.pid)
        if peak is not None:
            self._stopped_peaks.append(peak)
        if process.returncode is None:
            if kill:
                process.kill()
            else:
                process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._output is not None:  # its output copied to the end: the pipe is closed
            await self._output

    def beside(self, name: str) -> WorkerProcess:
        """Another worker process on the same task queue (not started), logging to
        ``name``.log beside this one's log."""
        address, db, task_queue = self._args
        return WorkerProcess(address, db, task_queue, self._log.with_name(f"{name}.log"))

    async def restart(self, why: str) -> None:
        """Kill the process and start another on the same task queue.

        ``why`` is added to ``restarts`` once the new process is ready.
        """
        await self.stop(kill=True)
        await self.start()
        self.restarts.append(why)


async def start_until_ready(
    name: str, command: Sequence[str], log: Path, within: float
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    """Start ``command``, wait for its "ready" line, then copy its output to ``log``.

    The process's standard output stays read for as long as it runs: whatever writes
    to it after "ready" (the Temporal SDK core writes its own log lines to standard
    output) would otherwise fill the pipe and block the writer for good, which for a
    worker means its workflow tasks stop being polled.

    Args:
        name: What the process is, for the error.
        command: The program and its arguments.
        log: Where its standard error goes, and its standard output after "ready"
            (appended).
        within: Seconds to wait for "ready".

    Returns:
        The process and the task copying its output, which ends when the process does.

    Raises:
        RuntimeError: No "ready" line within ``within`` s (the end of its log is in the
            message); the process is killed.
    """
    with log.open("ab") as err:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=err
        )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), within)
    except TimeoutError:
        line = b""
    if line.strip() != b"ready":
        if process.returncode is None:
            process.kill()
        await process.communicate()
        text = await asyncio.to_thread(log.read_text, encoding="utf-8", errors="replace")
        tail = text[-2000:]
        raise RuntimeError(f"{name} did not start:\n{tail}")
    return process, asyncio.create_task(_copy(process.stdout, log))


async def _copy(output: asyncio.StreamReader, log: Path) -> None:
    """Append ``output`` to ``log`` until its end."""
    with log.open("ab") as out:
        while chunk := await output.read(1 << 16):
            out.write(chunk)
            out.flush()


@dataclass
class Stack:
    """A dev server, a worker process and their event store, for one set of measures.

    Attributes:
        client: Client of the dev server (pydantic data converter).
        task_queue: Corridor's task queue (the baseline's is ``trivial_queue`` of it).
        store: The event store the worker appends to.
        worker: The worker process.
        server_pid: The dev server's process, if known.
    """

    client: Client
    task_queue: str
    store: EventStore
    worker: WorkerProcess
    server_pid: int | None

    @property
    def worker_pid(self) -> int:
        """The worker process's id."""
        return self.worker.pid


@asynccontextmanager
async def stack(dsn: str, name: str, work: Path) -> AsyncIterator[Stack]:
    """Start a dev server and a worker process on a scratch database; stop them after.

    Args:
        dsn: A PostgreSQL server whose user may create databases.
        name: Names the scratch database.
        work: Directory for the server's and the worker's logs.

    Raises:
        RuntimeError: The worker did not start (the end of its log is in the message).
    """
    async with scratch_database(dsn, name) as db, EventStore.connect(db) as store:
        server = TemporalDevServer(
            port=free_port(),
            headless=True,
            log_file=work / "temporal.log",
            search_attributes=search.registrations(),
        )
        async with server:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            task_queue = f"bench-{uuid.uuid4().hex[:8]}"
            worker = WorkerProcess(server.address, db, task_queue, work / "worker.log")
            try:
                await worker.start()
                yield Stack(client, task_queue, store, worker, server.pid)
            finally:
                await worker.stop()


def peak_rss_mib(pid: int | None) -> float | None:
    """A process's peak resident memory (``VmHWM``) in MiB, None if unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _clock() -> ProgrammeClock:
    """A journey's clock reading noon of the workload's introduction day now."""
    return ProgrammeClock(
        business_origin=datetime.combine(
            workload.INTRODUCED_ON, dt_time(12), tzinfo=zone(workload.TZ)
        )
    )


async def _enrol(s: Stack, prog: Programme, numbers: range, *, sync: bool) -> None:
    for number in numbers:
        await service.enroll(
            s.client, workload.enrolment(prog, number), task_queue=s.task_queue, clock=_clock()
        )
    if sync:
        await asyncio.gather(
            *(service.sync(s.client, prog.id, workload.firm_id(n)) for n in numbers)
        )


async def _start_trivial(s: Stack, workflow_id: str) -> None:
    await s.client.start_workflow(
        Trivial.run, workflow_id, id=workflow_id, task_queue=trivial_queue(s.task_queue)
    )


async def _rounds(
    repeat: int, contenders: Sequence[Callable[[int], Awaitable[None]]]
) -> None:
    """Run each contender once per round, rotating the order between rounds."""
    for run in range(repeat):
        turn = run % len(contenders)
        for contender in [*contenders[turn:], *contenders[:turn]]:
            await contender(run)


# ------------------------------------------------------------------ enrolment


async def enrolment(s: Stack, *, firms: int, repeat: int, progress: Progress) -> Measure:
    """Firms enrolled one at a time, against trivial workflow starts."""
    corridor = Figure("Corridor", "journeys/s")
    trivial = Figure("trivial workflow starts", "starts/s")

    async def run_corridor(run: int) -> None:
        prog = workload.programme(f"enrol-{run}-{uuid.uuid4().hex[:6]}")
        started = time.perf_counter()
        await _enrol(s, prog, range(firms), sync=False)
        seconds = time.perf_counter() - started
        progress(f"enrolment: {firms} journeys in {seconds:.2f} s")
        corridor.values.append(firms / seconds)
        await service.sync(s.client, prog.id, workload.firm_id(firms - 1))  # let it settle

    async def run_trivial(run: int) -> None:
        tag = uuid.uuid4().hex[:6]
        started = time.perf_counter()
        for n in range(firms):
            await _start_trivial(s, f"trivial-{run}-{tag}-{n}")
        seconds = time.perf_counter() - started
        progress(f"trivial starts: {firms} in {seconds:.2f} s")
        trivial.values.append(firms / seconds)

    await _rounds(repeat, [run_corridor, run_trivial])
    return Measure(
        f"enrolment of {firms} firms, one at a time as `corridor enroll` does",
        corridor,
        [trivial],
    )


# ------------------------------------------------------------- staff commands


@dataclass
class Load:
    """What one run under load saw.

    Attributes:
        latencies: Seconds from each command's due time to its answer (answered ones).
        failures: Commands that got an error.
        seconds: From the first command's due time to the last answer.
    """

    latencies: list[float]
    failures: int
    seconds: float

    @property
    def rate(self) -> float:
        """Commands answered per second."""
        return len(self.latencies) / self.seconds

    def percentile(self, fraction: float) -> float:
        """The latency below which ``fraction`` of the answers came, in ms."""
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index] * 1000


async def offered(rate: float, seconds: float, send: Callable[[int], Awaitable[object]]) -> Load:
    """Offer ``rate`` commands per second for ``seconds`` (open loop), each as it falls due."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    latencies: list[float] = []
    failures = 0
    last = start

    async def one(number: int, due: float) -> None:
        nonlocal failures, last
        try:
            await send(number)
        except Exception:
            failures += 1
            return
        last = max(last, loop.time())
        latencies.append(loop.time() - due)

    tasks = []
    for number in range(max(1, round(rate * seconds))):
        due = start + number / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number, due)))
    await asyncio.gather(*tasks)
    return Load(latencies, failures, max(last - start, 1e-9))


async def sustained(
    in_flight: int, seconds: float, send: Callable[[int], Awaitable[object]]
) -> Load:
    """As many commands as ``in_flight`` senders get answered in ``seconds`` (closed loop)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + seconds
    latencies: list[float] = []
    failures = 0
    counter = iter(range(sys.maxsize))

    async def sender() -> None:
        nonlocal failures
        while loop.time() < stop_at:
            sent = loop.time()
            try:
                await send(next(counter))
            except Exception:
                failures += 1
                continue
            latencies.append(loop.time() - sent)

    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return Load(latencies, failures, loop.time() - start)


async def commands(
    s: Stack,
    *,
    journeys: int,
    rate: float,
    seconds: float,
    in_flight: int,
    sustained_seconds: float,
    repeat: int,
    progress: Progress,
) -> list[Measure]:
    """Staff commands at ``rate``/s, then sustained, against a trivial update.

    Then sustained again with a second worker process on the task queue, against the
    one worker's figure of the same round: the last measure returned.
    """
    names = ("p50", "p99", "rate", "sustained")
    units = {"p50": "ms", "p99": "ms", "rate": "cmd/s", "sustained": "cmd/s"}
    ours = {k: Figure("Corridor", units[k]) for k in names}
    theirs = {k: Figure("trivial update", units[k]) for k in names}
    two_workers = Figure("Corridor, two worker processes", "cmd/s")
    one_worker = Figure("one worker process, same round", "cmd/s")

    def record(figures: dict[str, Figure], at_rate: Load, flat_out: Load, who: str) -> None:
        figures["p50"].values.append(at_rate.percentile(0.50))
        figures["p99"].values.append(at_rate.percentile(0.99))
        figures["rate"].values.append(at_rate.rate)
        figures["sustained"].values.append(flat_out.rate)
        progress(
            f"{who}: at {rate:g}/s offered p50 {at_rate.percentile(0.5):.0f} ms, "
            f"p99 {at_rate.percentile(0.99):.0f} ms, {at_rate.rate:.1f}/s answered, "
            f"{at_rate.failures} failed; sustained {flat_out.rate:.1f}/s "
            f"({flat_out.failures} failed)"
        )

    async def run_corridor(run: int) -> None:
        prog = workload.programme(f"cmd-{run}-{uuid.uuid4().hex[:6]}")
        await _enrol(s, prog, range(journeys), sync=True)

        def sender(phase: str) -> Callable[[int], Awaitable[object]]:
            def send(number: int) -> Awaitable[object]:
                command = RequestMeeting(
                    meeting_id=f"{phase}-{number}",
                    counterpart="Apple",
                    command_id=f"{phase}-{number}",
                )
                return service.send(
                    s.client, prog.id, workload.firm_id(number % journeys), command
                )

            return send

        at_rate = await offered(rate, seconds, sender("r"))
        flat_out = await sustained(in_flight, sustained_seconds, sender("s"))
        record(ours, at_rate, flat_out, "Corridor")
        second = s.worker.beside(f"second-{run}")
        await second.start()
        try:
            both = await sustained(in_flight, sustained_seconds, sender("t"))
        finally:
            await second.stop()
        one_worker.values.append(flat_out.rate)
        two_workers.values.append(both.rate)
        progress(f"Corridor, two workers: sustained {both.rate:.1f}/s ({both.failures} failed)")

    async def run_trivial(run: int) -> None:
        tag = f"upd-{run}-{uuid.uuid4().hex[:6]}"
        for n in range(journeys):
            await _start_trivial(s, f"{tag}-{n}")
        handles = [s.client.get_workflow_handle(f"{tag}-{n}") for n in range(journeys)]

        def send(number: int) -> Awaitable[object]:
            return handles[number % journeys].execute_update(Trivial.touch, str(number))

        at_rate = await offered(rate, seconds, send)
        flat_out = await sustained(in_flight, sustained_seconds, send)
        record(theirs, at_rate, flat_out, "trivial update")
        await asyncio.gather(*(h.signal(Trivial.finish) for h in handles))

    await _rounds(repeat, [run_corridor, run_trivial])
    offered_title = (
        f"staff commands offered at {rate:g}/s for {seconds:g} s over {journeys} journeys"
    )
    return [
        Measure(f"{offered_title}: p50 latency", ours["p50"], [theirs["p50"]],
                higher_is_better=False),
        Measure(f"{offered_title}: p99 latency", ours["p99"], [theirs["p99"]],
                higher_is_better=False),
        Measure(f"{offered_title}: answered", ours["rate"], [theirs["rate"]]),
        Measure(
            f"staff commands sustained, {in_flight} in flight over {journeys} journeys "
            f"for {sustained_seconds:g} s, one worker",
            ours["sustained"],
            [theirs["sustained"]],
        ),
        Measure(
            f"staff commands sustained, {in_flight} in flight over {journeys} journeys "
            f"for {sustained_seconds:g} s, two workers",
            two_workers,
            [one_worker],
        ),
    ]


# ------------------------------------------------------ history events per command


async def history_per_command(
    s: Stack, *, commands: int, repeat: int, progress: Progress
) -> Measure:
    """History events one more command adds, against one more trivial update."""
    corridor = Figure("Corridor", "events")
    trivial = Figure("trivial update", "events")

    async def length(workflow_id: str) -> int:
        history = await s.client.get_workflow_handle(workflow_id).fetch_history()
        return len(history.events)

    async def run_corridor(run: int) -> None:
        prog = workload.programme(f"hist-{run}-{uuid.uuid4().hex[:6]}")
        await _enrol(s, prog, range(1), sync=True)
        firm = workload.firm_id(0)
        workflow_id = service.journey_handle(s.client, prog.id, firm).id

        async def send(n: int) -> None:
            await service.send(
                s.client, prog.id, firm,
                RequestMeeting(meeting_id=f"h-{n}", counterpart="Apple", command_id=f"h-{n}"),
            )

        await send(0)  # both counts are taken at the same point of a command's cycle
        before = await length(workflow_id)
        for n in range(1, commands + 1):
            await send(n)
        per_command = (await length(workflow_id) - before) / commands
        progress(f"history: Corridor {per_command:.1f} events per command")
        corridor.values.append(per_command)

    async def run_trivial(run: int) -> None:
        workflow_id = f"hist-trivial-{run}-{uuid.uuid4().hex[:6]}"
        await _start_trivial(s, workflow_id)
        handle = s.client.get_workflow_handle(workflow_id)
        await handle.execute_update(Trivial.touch, "0")
        before = await length(workflow_id)
        for n in range(1, commands + 1):
            await handle.execute_update(Trivial.touch, str(n))
        per_command = (await length(workflow_id) - before) / commands
        progress(f"history: trivial update {per_command:.1f} events per update")
        trivial.values.append(per_command)
        await handle.signal(Trivial.finish)

    await _rounds(repeat, [run_corridor, run_trivial])
    return Measure(
        f"history events per staff command ({commands} commands in turn)",
        corridor,
        [trivial],
        higher_is_better=False,
    )


# ------------------------------------------------------------------------ replay


async def _two_year_history(s: Stack, number: int) -> WorkflowHistory:
    """Play workload firm ``number`` through its two-year cycle; its closed history."""
    prog = workload.programme(f"replay-{uuid.uuid4().hex[:6]}")
    await workload.play_firm(
        s.client, prog, number, task_queue=s.task_queue, counters=workload.Counters()
    )
    handle = service.journey_handle(s.client, prog.id, workload.firm_id(number))
    await handle.result()  # closed at its evaluation: one run holds the whole cycle
    return await handle.fetch_history()


async def _trivial_history(s: Stack, updates: int) -> WorkflowHistory:
    workflow_id = f"replay-trivial-{uuid.uuid4().hex[:6]}"
    await _start_trivial(s, workflow_id)
    handle = s.client.get_workflow_handle(workflow_id)
    for n in range(updates):
        await handle.execute_update(Trivial.touch, str(n))
    await handle.signal(Trivial.finish)
    await handle.result()
    return await handle.fetch_history()


async def _replay_seconds(replayer: Replayer, history: WorkflowHistory, copies: int) -> float:
    """Seconds to replay one history, over ``copies`` replays in one replayer session."""

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for n in range(copies):
            yield WorkflowHistory(f"{history.workflow_id}#{n}", history.events)

    started = time.perf_counter()
    await replayer.replay_workflows(histories())
    return (time.perf_counter() - started) / copies


async def replay(s: Stack, *, copies: int, repeat: int, progress: Progress) -> Measure:
    """Replaying a two-year journey's history, against a trivial workflow's."""
    number = 1  # a result, a contract, a visit attended, closed at its evaluation
    journey = await _two_year_history(s, number)
    trivial_history = await _trivial_history(s, len(workload.script(number)))
    progress(
        f"replay: a two-year journey has {len(journey.events)} history events, "
        f"the trivial workflow {len(trivial_history.events)}"
    )
    corridor = Figure("Corridor", "ms")
    trivial = Figure(f"trivial workflow ({len(trivial_history.events)} events)", "ms")
    ours = Replayer(workflows=[FirmJourney], data_converter=pydantic_data_converter)
    theirs = Replayer(workflows=[Trivial], data_converter=pydantic_data_converter)

    async def run_corridor(_run: int) -> None:
        seconds = await _replay_seconds(ours, journey, copies)
        progress(f"replay: Corridor {seconds * 1000:.1f} ms per history")
        corridor.values.append(seconds * 1000)

    async def run_trivial(_run: int) -> None:
        seconds = await _replay_seconds(theirs, trivial_history, copies)
        progress(f"replay: trivial {seconds * 1000:.1f} ms per history")
        trivial.values.append(seconds * 1000)

    await _rounds(repeat, [run_corridor, run_trivial])
    return Measure(
        f"replay of a two-year journey's history ({len(journey.events)} events, "
        f"{len(workload.script(number))} commands)",
        corridor,
        [trivial],
        higher_is_better=False,
    )


__all__ = [
    "Load",
    "Stack",
    "commands",
    "enrolment",
    "history_per_command",
    "offered",
    "peak_rss_mib",
    "replay",
    "stack",
    "sustained",
]
