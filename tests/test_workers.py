"""Several ``python worker.py`` processes on one task queue; their metrics and health.

The workers are real subprocesses started with the operator's environment
(``TEMPORAL_ADDRESS``, ``CORRIDOR_DSN``, ``CORRIDOR_TASK_QUEUE``,
``CORRIDOR_METRICS_ADDRESS``) against the session's dev server and PostgreSQL. The
workload is ``reliability/workload.py``'s, checked stream by stream against the pure
domain as the fault scenarios are. Figures go to ``artifacts/ops-workers.json`` (copied
by hand to RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from datetime import time as dt_time
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.store import EventStore
from corridor import service
from corridor.stack import TemporalDevServer, free_port
from domain.calendar import ProgrammeClock, zone
from domain.commands import Outcome as MeetingOutcome
from domain.commands import RecordMeetingResult
from reliability import workload
from reliability.scenarios import Outcome, WorkerProcess, check_streams

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
GRACE = 10.0  # the worker's graceful_shutdown_timeout (worker.build_worker)


@dataclass
class Figures:
    """What the multi-worker run measured."""

    workers: int = 3
    journeys: int = 0
    outcome: dict[str, object] = field(default_factory=dict)
    sigterm_exit_seconds: list[float] = field(default_factory=list)
    ready_again_seconds: list[float] = field(default_factory=list)
    sigkill_ready_again_seconds: float = 0.0
    events_appended_by_worker: list[int] = field(default_factory=list)
    seconds: float = 0.0


class MeteredWorker(WorkerProcess):
    """A worker process serving /metrics, /livez and /readyz on its own port."""

    def __init__(self, temporal: TemporalDevServer, dsn: str, task_queue: str, log: Path):
        super().__init__(temporal, dsn, task_queue, log)
        self.port = free_port()
        self.env["CORRIDOR_METRICS_ADDRESS"] = f"127.0.0.1:{self.port}"
        self.appended = 0  # events appended by the process' earlier lives

    def get(self, path: str) -> tuple[int, str]:
        """GET a path of the worker's HTTP endpoint: (status, body); (0, error) if down."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)

    async def ready(self, within: float = 60.0) -> float:
        """Wait for /readyz to answer 200; the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            status, body = await asyncio.to_thread(self.get, "/readyz")
            if status == 200:
                return time.monotonic() - started
            assert self.process is not None and self.process.poll() is None, (
                f"worker exited: {self.log.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.3)
        raise AssertionError(f"worker not ready in {within}s: {body}")

    async def count_appended(self) -> None:
        """Add what this life of the process appended (from its metrics)."""
        status, text = await asyncio.to_thread(self.get, "/metrics")
        if status == 200:
            self.appended += int(metric_sum(text, "corridor_events_appended_total"))

    async def terminate(self) -> float:
        """SIGTERM, and the seconds until the process exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.terminate()
        await asyncio.to_thread(self.process.wait, GRACE + 20)
        return time.monotonic() - started


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def test_three_workers_share_the_load_through_a_rolling_restart_and_a_kill(
    temporal_server: TemporalDevServer,
    dsn: str,
    client: Client,
    store: EventStore,
    tmp_path: Path,
) -> None:
    figures = Figures(journeys=18)
    started = time.monotonic()
    task_queue = f"workers-{uuid.uuid4()}"
    workers = [
        MeteredWorker(temporal_server, dsn, task_queue, tmp_path / f"worker-{i}.log")
        for i in range(figures.workers)
    ]
    for worker in workers:
        worker.start()
    try:
        await asyncio.gather(*(w.ready() for w in workers))
        prog = workload.programme(f"multi-{uuid.uuid4().hex[:6]}")
        counters = workload.Counters()
        playing = asyncio.gather(
            *(
                workload.play_firm(client, prog, n, task_queue=task_queue, counters=counters)
                for n in range(figures.journeys)
            )
        )
        # Let the load spread over the three, then restart them one by one.
        await asyncio.sleep(6.0)
        for worker in workers:
            await worker.count_appended()
            figures.sigterm_exit_seconds.append(await worker.terminate())
            worker.start()
            figures.ready_again_seconds.append(await worker.ready())
        await workers[1].count_appended()
        workers[1].kill()
        workers[1].start()
        figures.sigkill_ready_again_seconds = await workers[1].ready()
        await asyncio.wait_for(playing, 150)
        for worker in workers:
            await worker.count_appended()
        figures.events_appended_by_worker = [w.appended for w in workers]
        outcome = Outcome("three workers, rolling restart and a SIGKILL", faults=4,
                          journeys=figures.journeys, retries=counters.retries)
        await check_streams(store, prog.id, range(figures.journeys), outcome)
        figures.seconds = time.monotonic() - started
        outcome.seconds = figures.seconds
        figures.outcome = {k: v for k, v in asdict(outcome).items() if k != "notes"}
        _write_figures("ops-workers.json", figures)
    finally:
        for worker in workers:
            worker.stop()

    assert outcome.passed, (outcome, figures)
    assert outcome.events_found == outcome.events_expected > 0
    # SIGTERM drains and exits within the grace period (plus the process' own teardown).
    assert all(s < GRACE + 5 for s in figures.sigterm_exit_seconds), figures
    # Every worker took part (counted from each process' corridor_events_appended_total;
    # an event appended by a process later SIGKILLed is not counted).
    assert all(n > 0 for n in figures.events_appended_by_worker), figures
    assert sum(figures.events_appended_by_worker) <= outcome.events_expected


def _write_figures(name: str, figures: object) -> None:
    out = ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(asdict(figures), indent=2) + "\n")  # type: ignore[call-overload]


async def test_metrics_endpoint_shows_temporal_and_corridor_metrics_and_health(
    temporal_server: TemporalDevServer,
    dsn: str,
    client: Client,
    tmp_path: Path,
) -> None:
    task_queue = f"metrics-{uuid.uuid4()}"
    worker = MeteredWorker(temporal_server, dsn, task_queue, tmp_path / "worker.log")
    worker.start()
    try:
        await worker.ready()
        status, body = await asyncio.to_thread(worker.get, "/livez")
        assert status == 200, body
        ready = json.loads((await asyncio.to_thread(worker.get, "/readyz"))[1])
        assert ready["checks"] == {"temporal": "ok", "postgres": "ok", "polling": "ok"}
        assert ready["catching_up"] == {
            "task_queue": f"{task_queue}-catch-up", "backlog": 0, "oldest_seconds": 0.0
        }

        prog = workload.programme(f"metrics-{uuid.uuid4().hex[:6]}")
        enrol = workload.enrolment(prog, 1)
        # On a held clock: a journey that catches up would run on the catch-up queue.
        noon = datetime.combine(workload.INTRODUCED_ON, dt_time(12), tzinfo=zone(workload.TZ))
        await service.enroll(
            client, enrol, task_queue=task_queue, clock=ProgrammeClock.held_at(noon)
        )
        with pytest.raises(service.Refused) as refused:  # no meeting m-404 was arranged
            await service.send(
                client, prog.id, enrol.firm.id,
                RecordMeetingResult(occurred_on=date(2013, 9, 17), meeting_id="m-404",
                                    outcome=MeetingOutcome.PROMISING),
            )
        await service.sync(client, prog.id, enrol.firm.id)

        status, text = await asyncio.to_thread(worker.get, "/metrics")
        assert status == 200
        # Temporal's own (SDK runtime telemetry): the worker polled and completed tasks.
        assert metric_sum(text, "temporal_workflow_task_queue_poll_succeed",
                          task_queue=task_queue) > 0
        assert metric_sum(text, "temporal_activity_execution_latency_count",
                          task_queue=task_queue) > 0
        # Corridor's: the enrolment's event stored, the command accepted, one refused.
        assert metric_sum(text, "corridor_events_appended_total",
                          event_type="FirmEnrolled") >= 1
        assert metric_sum(text, "corridor_append_seconds_count") >= 1
        assert metric_sum(text, "corridor_commands_total", command="enroll_firm",
                          outcome="accepted", task_queue=task_queue) == 1
        assert metric_sum(text, "corridor_commands_total", command="record_meeting_result",
                          outcome="refused", rule=refused.value.rule) == 1
        assert metric_sum(text, "corridor_worker_ready") == 1
        assert "process_resident_memory_bytes" in text
        # Every Temporal metric the Grafana dashboard charts is exported by this worker,
        # but those that appear only once something has failed.
        dashboard = json.loads((ROOT / "deploy/grafana/dashboards/corridor.json").read_text())
        charted = {
            m for p in dashboard["panels"] for t in p["targets"]
            for m in re.findall(r"\b(temporal_\w+)", t["expr"])
        }
        only_after_failures = {
            "temporal_workflow_task_execution_failed", "temporal_activity_execution_failed",
            "temporal_request_failure",
        }
        exported = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
        exported |= {f"{m}_bucket" for m in exported}
        assert charted - only_after_failures <= exported, charted - exported

        # Draining: from SIGTERM on, /readyz stops answering 200 until the process is gone.
        assert worker.process is not None
        worker.process.terminate()
        seen: list[int] = []
        while worker.process.poll() is None:
            seen.append((await asyncio.to_thread(worker.get, "/readyz"))[0])
            await asyncio.sleep(0.05)
        # The first poll may land before the signal is handled; after a 503 or a closed
        # port (0), never 200 again (a fast exit may leave no 503 to see).
        after = seen[next((i for i, code in enumerate(seen) if code != 200), len(seen)) :]
        assert 200 not in after, seen
    finally:
        worker.stop()


async def test_readyz_names_what_is_missing(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    # A worker whose PostgreSQL is down (nothing listens on the port): it cannot start,
    # so it is never ready; the in-process check reports the database by name.
    from corridor import observability

    port = free_port()
    client = await Client.connect(temporal_server.address)

    async def database() -> object:
        import asyncpg

        return await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{free_port()}/none")

    settings = observability.ObservabilitySettings(metrics_address=f"127.0.0.1:{port}")
    async with observability.observed(client, "nobody-polls", check_database=database,
                                      settings=settings) as observed:
        await asyncio.sleep(observability.CHECK_EVERY + 1)

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://{observed.address}{path}") as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        status, body = await asyncio.to_thread(get, "/readyz")
        answer = json.loads(body)
        assert status == 503
        assert answer["checks"]["temporal"] == "ok"
        assert answer["checks"]["postgres"].startswith("unreachable")
        assert answer["checks"]["polling"] == "worker not running"
        assert (await asyncio.to_thread(get, "/livez"))[0] == 200
        assert (await asyncio.to_thread(get, "/nothing"))[0] == 404


async def test_livez_fails_when_the_server_stops_seeing_the_worker_poll(
    temporal_server: TemporalDevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SDK worker can stop polling with its event loop turning: /livez says so.

    A worker polls one task queue; the health endpoint of one process follows that
    queue (seen polling: live), the other follows a queue nobody polls, as the server
    sees a wedged worker (not live once ``WEDGED_AFTER`` has passed), so that an
    orchestrator restarts it.
    """
    from temporalio import activity
    from temporalio.worker import Worker

    from corridor import observability
    from workflows.journey import FirmJourney

    monkeypatch.setattr(observability, "WEDGED_AFTER", 1.0)
    client = await Client.connect(temporal_server.address)
    polled = f"polled-{uuid.uuid4()}"

    async def database() -> object:
        return 1

    def get(address: str | None, path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://{address}{path}") as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    @activity.defn
    async def nothing() -> None:
        """Gives the worker an activity poller too (the health check wants both)."""

    worker = Worker(client, task_queue=polled, workflows=[FirmJourney], activities=[nothing])
    async with worker:
        answers: dict[str, tuple[int, dict[str, object]]] = {}
        for queue in (polled, f"unpolled-{uuid.uuid4()}"):
            settings = observability.ObservabilitySettings(
                metrics_address=f"127.0.0.1:{free_port()}"
            )
            async with observability.observed(
                client, queue, check_database=database, settings=settings
            ) as observed:
                observed.watch(worker)
                await asyncio.sleep(2 * observability.CHECK_EVERY + 2)
                answers[queue] = await asyncio.to_thread(get, observed.address, "/livez")

    (healthy, wedged) = answers.values()
    assert healthy[0] == 200, healthy
    assert healthy[1]["wedged"] is False
    assert wedged[0] == 503, wedged
    assert wedged[1]["wedged"] is True
    checks = wedged[1]["checks"]
    assert isinstance(checks, dict) and checks["temporal"] == "ok", wedged
    assert str(checks["polling"]).startswith("not seen polling unpolled-"), wedged
