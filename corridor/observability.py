"""Metrics and health of a worker: one HTTP endpoint, ``CORRIDOR_METRICS_ADDRESS``.

A worker started with ``CORRIDOR_METRICS_ADDRESS=host:port`` serves:

- ``/metrics``: the Temporal SDK's own metrics (``temporal_*``: polls, task latencies,
  slots, workflow completions; exported by the SDK's runtime telemetry) followed by
  Corridor's (``corridor_*``), in Prometheus' text format:

  * ``corridor_events_appended_total{event_type}``: events newly stored by
    ``store_events`` (a retried append of stored events counts nothing);
  * ``corridor_append_seconds``: latency of one ``store_events`` append (histogram);
  * ``corridor_commands_total{command,outcome,rule}``: staff commands accepted or
    refused, by the rule that refused them. Counted inside the workflow through the
    SDK's replay-safe metric meter, so a journey replayed on another worker never
    counts twice;
  * ``corridor_journeys{stage}``: journeys by stage, read from the ``journeys`` read
    model every 15 seconds (the same figure on every worker: aggregate with ``max``);
  * ``corridor_worker_ready``: 1 while ``/readyz`` answers 200;
  * the process' CPU, memory and file descriptors (``process_*``).
- ``/livez``: 200 while the worker's event loop turns (it stops answering 200 when the
  loop is blocked for more than 30 seconds): restart the process when it fails.
- ``/readyz``: 200 when the worker reaches Temporal and PostgreSQL and the server has
  seen it poll its task queue in the last 70 seconds; 503 with the failing checks
  otherwise, and from the moment it is asked to stop (it is draining).

Without ``CORRIDOR_METRICS_ADDRESS`` nothing is served and nothing changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    Gauge,
    generate_latest,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import ServiceClient
from temporalio.worker import Worker

from activities.metrics import REGISTRY
from corridor import service
from corridor.logs import core_logging

__all__ = [
    "REGISTRY",
    "Health",
    "ObservabilitySettings",
    "Observed",
    "observed",
    "parse_address",
    "polling_status",
]

log = structlog.get_logger(__name__)

JOURNEYS = Gauge(
    "corridor_journeys",
    "Journeys by stage, from the journeys read model",
    ["stage"],
    registry=REGISTRY,
)
READY = Gauge("corridor_worker_ready", "1 while the worker is ready", registry=REGISTRY)

POLL_SEEN_WITHIN = timedelta(seconds=70)  # long polls last up to 60 s
CHECK_EVERY = 2.0
STAGES_EVERY = 15.0
LOOP_STALL = 30.0
WEDGED_AFTER = 180.0
"""Seconds a running worker may go unseen polling a reachable Temporal before ``/livez``
fails: an SDK worker can stop polling workflow tasks with its event loop turning and
nothing to do (seen in BENCHMARKS.md's scale runs); only a restart brings it back."""


class ObservabilitySettings(BaseSettings):
    """Where a worker serves its metrics and health (``CORRIDOR_*`` variables).

    Attributes:
        metrics_address: ``host:port`` of ``/metrics``, ``/livez`` and ``/readyz``
            (e.g. ``0.0.0.0:9464`` in a container, ``127.0.0.1:9464`` on a host);
            ``None`` serves nothing.
    """

    model_config = SettingsConfigDict(env_prefix="CORRIDOR_", extra="ignore")

    metrics_address: str | None = None


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9464`` for IPv6).

    Raises:
        ValueError: No port, or a port that is not a number from 0 to 65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"CORRIDOR_METRICS_ADDRESS: expected host:port, e.g. 127.0.0.1:9464; got {address!r}"
        )
    return host.strip("[]") or "0.0.0.0", int(port)


# ------------------------------------------------------------ Corridor's metrics


# ------------------------------------------------------------------------ health


@dataclasses.dataclass
class Health:
    """What ``/livez`` and ``/readyz`` answer, refreshed by the worker's event loop."""

    checks: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"temporal": "not checked", "postgres": "not checked",
                                 "polling": "not checked"}
    )
    stopping: asyncio.Event | None = None
    stopped: bool = False
    catching_up: dict[str, Any] = dataclasses.field(default_factory=dict)
    heartbeat: float = dataclasses.field(default_factory=time.monotonic)
    not_polling_since: float | None = None

    @property
    def draining(self) -> bool:
        """The worker was asked to stop (it finishes what it runs, takes nothing new)."""
        return self.stopped or (self.stopping is not None and self.stopping.is_set())

    @property
    def ready(self) -> bool:
        """Every check passed and the worker is not draining."""
        return not self.draining and all(v == "ok" for v in self.checks.values())

    @property
    def wedged(self) -> bool:
        """Temporal answers, the worker runs, yet it was not seen polling for a while.

        ``WEDGED_AFTER`` seconds: three times what a healthy worker's long polls take.
        """
        since = self.not_polling_since
        return since is not None and time.monotonic() - since > WEDGED_AFTER

    @property
    def live(self) -> bool:
        """The event loop turned in the last ``LOOP_STALL`` seconds; the worker polls."""
        return time.monotonic() - self.heartbeat < LOOP_STALL and not self.wedged


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # Prometheus scrapes every few seconds: no access log


def _app(health: Health, sdk_metrics: str | None) -> Callable[..., Iterable[bytes]]:
    """The WSGI application behind ``CORRIDOR_METRICS_ADDRESS``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = b""
            if sdk_metrics is not None:
                try:
                    with urllib.request.urlopen(sdk_metrics, timeout=5) as response:
                        body = response.read()
                except OSError as error:
                    log.warning("metrics.sdk_unavailable", error=str(error))
            body += generate_latest(REGISTRY)
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [body]
        if path in ("/livez", "/readyz"):
            ok = health.live if path == "/livez" else health.ready and health.live
            answer = {
                "status": "ok" if ok else "failing",
                "checks": health.checks,
                "draining": health.draining,
                "wedged": health.wedged,
                # Journeys enrolled after the fact: what waits on the catch-up task queue.
                "catching_up": health.catching_up,
            }
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [json.dumps(answer).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /livez or /readyz\n"]

    return app


# ---------------------------------------------------------------- the worker side


@dataclasses.dataclass
class Observed:
    """A worker's observability while it runs (see :func:`observed`).

    Attributes:
        client: The client the worker must use: with an address set, a client on a
            runtime that exports the SDK's metrics; else the client given.
        health: What the health endpoints answer.
        address: ``host:port`` actually bound (port 0 resolved), or ``None``.
    """

    client: Client
    health: Health
    address: str | None = None
    worker: Worker | None = None

    def watch(self, worker: Worker, stopping: asyncio.Event | None = None) -> None:
        """Follow ``worker``: ready once the server sees it poll, draining once stopped.

        Args:
            worker: The worker to follow.
            stopping: Set when the worker is asked to stop: ``/readyz`` fails from then.
        """
        self.worker = worker
        self.health.stopping = stopping


async def _instrumented(client: Client, sdk_address: str) -> Client:
    """The same connection settings as ``client``, on a runtime exporting metrics."""
    runtime = Runtime(
        telemetry=TelemetryConfig(
            logging=core_logging(), metrics=PrometheusConfig(bind_address=sdk_address)
        )
    )
    config = dataclasses.replace(client.service_client.config, runtime=runtime)
    service_client = await ServiceClient.connect(config)
    settings = client.config()
    settings["service_client"] = service_client
    return Client(**settings)


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _check(
    observed: Observed, task_queue: str, check_database: Callable[[], Awaitable[object]]
) -> None:
    """Refresh the readiness checks once."""
    checks = observed.health.checks
    client = observed.client
    try:
        await asyncio.wait_for(
            client.workflow_service.get_system_info(GetSystemInfoRequest()), 5
        )
        checks["temporal"] = "ok"
    except Exception as error:
        checks["temporal"] = f"unreachable: {error}"
    try:
        await asyncio.wait_for(check_database(), 5)
        checks["postgres"] = "ok"
    except Exception as error:
        checks["postgres"] = f"unreachable: {error}"
    worker = observed.worker
    if worker is None or not worker.is_running or worker.is_shutdown:
        checks["polling"] = "worker not running"
    elif checks["temporal"] == "ok":
        checks["polling"] = await polling_status(client, task_queue, client.identity)
    health = observed.health
    if checks["temporal"] == "ok":
        try:
            backlog = await asyncio.wait_for(service.catch_up_backlog(client, task_queue), 5)
            health.catching_up = {
                "task_queue": backlog.task_queue,
                "backlog": backlog.tasks,
                "oldest_seconds": round(backlog.oldest_seconds, 1),
            }
        except Exception as error:
            health.catching_up = {"unknown": type(error).__name__}
    health.stopped = worker is not None and worker.is_shutdown
    unseen = checks["temporal"] == "ok" and checks["polling"].startswith("not seen polling")
    if not unseen or health.draining:
        health.not_polling_since = None
    elif health.not_polling_since is None:
        health.not_polling_since = time.monotonic()
    READY.set(1 if observed.health.ready else 0)


async def polling_status(client: Client, task_queue: str, identity: str) -> str:
    """Whether the server saw a worker poll ``task_queue`` in the last 70 s.

    Args:
        client: A client of the worker's Temporal server.
        task_queue: The task queue the worker polls.
        identity: The worker's identity (its client's, ``pid@host`` by default).

    Returns:
        ``"ok"`` when both workflow and activity polls were seen, else what was not
        (``"not seen polling corridor (workflow) as 12@host"``) or why the server
        could not say (``"cannot describe task queue: ..."``).
    """
    now = datetime.now(UTC)
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        try:
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=kind,
                )
            )
        except Exception as error:
            return f"cannot describe task queue: {error}"
        seen = [
            p.last_access_time.ToDatetime(tzinfo=UTC)
            for p in described.pollers
            if p.identity == identity
        ]
        if not seen or now - max(seen) > POLL_SEEN_WITHIN:
            name = TaskQueueType.Name(kind).removeprefix("TASK_QUEUE_TYPE_").lower()
            return f"not seen polling {task_queue} ({name}) as {identity}"
    return "ok"


async def _count_stages(query: Callable[[str], Awaitable[list[Any]]]) -> None:
    rows = await query("SELECT stage, count(*) AS journeys FROM journeys GROUP BY stage")
    JOURNEYS.clear()
    for row in rows:
        JOURNEYS.labels(stage=row["stage"]).set(row["journeys"])


@asynccontextmanager
async def observed(
    client: Client,
    task_queue: str,
    *,
    check_database: Callable[[], Awaitable[object]],
    fetch: Callable[[str], Awaitable[list[Any]]] | None = None,
    settings: ObservabilitySettings | None = None,
) -> AsyncIterator[Observed]:
    """Serve ``/metrics``, ``/livez`` and ``/readyz`` while a worker runs.

    Use the yielded ``client`` for the worker and hand it the worker with ``watch``::

        async with observed(client, queue, check_database=ping) as obs:
            worker = build_worker(obs.client, store, queue)
            obs.watch(worker.interactive)
            async with worker: ...

    Args:
        client: The worker's Temporal client.
        task_queue: The task queue the worker polls (checked by ``/readyz``).
        check_database: Coroutine function that raises when PostgreSQL cannot be used
            (e.g. ``lambda: pool.fetchval("SELECT 1")``).
        fetch: Coroutine function running a query and returning rows (mappings), used
            to count journeys by stage; ``None`` leaves ``corridor_journeys`` out.
        settings: Where to serve; read from the environment when ``None``.

    Raises:
        ValueError: ``CORRIDOR_METRICS_ADDRESS`` is not ``host:port``.
        OSError: The address cannot be bound.
    """
    settings = settings or ObservabilitySettings()
    health = Health()
    if settings.metrics_address is None:
        yield Observed(client=client, health=health)
        return
    host, port = parse_address(settings.metrics_address)
    sdk_address = f"127.0.0.1:{_free_loopback_port()}"
    instrumented = await _instrumented(client, sdk_address)
    server = make_server(
        host,
        port,
        _app(health, f"http://{sdk_address}/metrics"),
        server_class=_Server,
        handler_class=_QuietHandler,
    )
    bound = f"{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="corridor-metrics", daemon=True)
    thread.start()
    result = Observed(client=instrumented, health=health, address=bound)
    log.info("metrics.serving", address=bound, paths=["/metrics", "/livez", "/readyz"])

    async def refresh() -> None:
        last_stages = 0.0
        while True:
            health.heartbeat = time.monotonic()
            await _check(result, task_queue, check_database)
            if fetch is not None and time.monotonic() - last_stages > STAGES_EVERY:
                try:
                    await _count_stages(fetch)
                    last_stages = time.monotonic()
                except Exception as error:
                    log.warning("metrics.stages_unavailable", error=str(error))
            await asyncio.sleep(CHECK_EVERY)

    refreshing = asyncio.create_task(refresh())
    try:
        yield result
    finally:
        health.stopped = True
        READY.set(0)
        refreshing.cancel()
        await asyncio.gather(refreshing, return_exceptions=True)
        server.shutdown()
        server.server_close()
