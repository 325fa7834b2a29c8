"""What a Corridor worker process is made of: its client, its event store, its worker.

``worker.py`` (the deployed entry point), ``corridor dev``, ``corridor demo`` and the
tests build their workers here. The worker runs the ``FirmJourney`` workflow and the
``JourneyActivities.store_events`` activity on one task queue, and the messages' side
(issue 9): the ``send_message`` and ``send_digests`` activities and the
``AdviserDigests`` workflow of the daily schedule.
"""


from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.journey import JourneyActivities
from activities.keys import KeyringError
from activities.mail import MailActivities, Mailer, SmtpServer
from activities.migrations import migrate_database
from activities.store import EventStore
from corridor import deployment, observability
from corridor.codec import keyring_of
from corridor.logs import configure_logging
from corridor.service import catch_up_task_queue
from corridor.settings import Settings, SettingsError, load_settings
from corridor.stack import StackInfo, read_stack_file
from corridor.temporal import (
    SearchAttributesMissing,
    connect,
    open_keyring,
    require_search_attributes,
)
from workflows.digest import AdviserDigests
from workflows.journey import FirmJourney

log = structlog.get_logger(__name__)


def temporal_address(settings: Settings, stack: StackInfo | None) -> str:
    """The Temporal frontend a process talks to when ``TEMPORAL_ADDRESS`` names none.

    One answer for the worker (``worker.py``) and the CLI, so that both reach the same
    server: the running ``corridor dev``'s, else the embedded server's port
    (``CORRIDOR_TEMPORAL_PORT``) on localhost. ``TEMPORAL_ADDRESS`` (Temporal's
    environment configuration, read by ``corridor.temporal.connect``) wins over both.

    Args:
        settings: Corridor's settings.
        stack: The running ``corridor dev`` stack, if any.
    """
    return stack.temporal_address if stack else f"localhost:{settings.temporal_port}"


def activities_of(store: EventStore, mailer: Mailer | None = None) -> list[Callable[..., Any]]:
    """Every activity the journeys call, wired to the event store (and the mailer).

    Args:
        store: The event store.
        mailer: The SMTP client; None keeps messages in the outbox, unsent.
    """
    journey = JourneyActivities(store)
    mail = MailActivities(store, mailer)
    return [journey.store_events, journey.find_command, mail.send_message, mail.send_digests]


class Workers:
    """The two workers of one process: staff first, catching up on the side.

    ``interactive`` polls the task queue journeys serve staff on; ``catch_up`` polls
    its catch-up task queue (``service.catch_up_task_queue``), where journeys enrolled
    after the fact start, with at most ``CORRIDOR_CATCH_UP_CONCURRENCY`` workflow tasks
    (and twice as many activities) at a time (docs/architecture.md, "Staff first").
    Used as a Temporal ``Worker`` is: ``run()``, ``shutdown()``, ``async with``.

    Args:
        interactive: The worker of the journeys' own task queue.
        catch_up: The worker of the catch-up task queue.
    """

    def __init__(self, interactive: Worker, catch_up: Worker) -> None:
        self.interactive = interactive
        self.catch_up = catch_up

    async def run(self) -> None:
        """Run both until shut down (or one fails, which stops the other)."""
        runs = [asyncio.create_task(w.run()) for w in (self.interactive, self.catch_up)]
        try:
            done, _ = await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            await asyncio.gather(*runs)
        finally:
            for task in runs:
                if not task.done():
                    await self._shutdown_quietly()
                    break
            await asyncio.gather(*runs, return_exceptions=True)

    async def _shutdown_quietly(self) -> None:
        for worker in (self.interactive, self.catch_up):
            with contextlib.suppress(Exception):
                await worker.shutdown()

    async def shutdown(self) -> None:
        """Shut both down gracefully (running activities finish)."""
        await asyncio.gather(self.interactive.shutdown(), self.catch_up.shutdown())

    async def __aenter__(self) -> Workers:
        await self.interactive.__aenter__()
        try:
            await self.catch_up.__aenter__()
        except BaseException as error:
            await self.interactive.__aexit__(type(error), error, error.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Shut both down at once; a worker's own fatal error is raised, as ``Worker`` does."""
        outcomes = await asyncio.gather(
            self.catch_up.__aexit__(exc_type, exc, tb),
            self.interactive.__aexit__(exc_type, exc, tb),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


def build_worker(
    client: Client, store: EventStore, task_queue: str, mailer: Mailer | None = None
) -> Workers:
    """Wire the journey's workflow and activities on ``task_queue`` and its catch-up queue.

    Args:
        client: A client connected with the pydantic data converter.
        store: The event store the activities append to.
        task_queue: The task queue to poll (and ``<task_queue>-catch-up``).
        mailer: The SMTP client messages go through; None: messages are kept in the
            outbox, unsent, and nothing is recorded as sent.
    """
    settings = load_settings()

    def worker(queue: str, tasks: int | None = None, polls: int | None = None) -> Worker:
        return Worker(
            client,
            task_queue=queue,
            workflows=[FirmJourney, AdviserDigests],
            activities=activities_of(store, mailer),
            graceful_shutdown_timeout=timedelta(seconds=10),
            deployment_config=deployment.deployment_config(),  # CORRIDOR_DEPLOYMENT_NAME, ...
            max_cached_workflows=settings.workflow_cache_size,  # CORRIDOR_WORKFLOW_CACHE_SIZE
            max_concurrent_workflow_tasks=tasks,
            max_concurrent_activities=2 * tasks if tasks is not None else None,
            max_concurrent_workflow_task_polls=polls,
            max_concurrent_activity_task_polls=polls,
        )

    concurrency = settings.catch_up_concurrency  # CORRIDOR_CATCH_UP_CONCURRENCY
    return Workers(
        worker(task_queue),
        worker(catch_up_task_queue(task_queue), tasks=concurrency, polls=2),
    )


async def run_worker(
    client: Client,
    dsn: str,
    task_queue: str,
    stop: asyncio.Event,
    *,
    admin_dsn: str | None = None,
    smtp_url: str | None = None,
) -> None:
    """Run a worker until ``stop`` is set, then shut it down gracefully.

    Args:
        client: The Temporal client (with ``corridor.codec``'s converter, whose keyring
            also seals the event store's personal fields).
        dsn: PostgreSQL DSN of the event store, the worker's role (the schema is
            checked first, and migrated with it when not current and no ``admin_dsn``).
        task_queue: The task queue to poll.
        stop: Set it to stop the worker.
        admin_dsn: DSN of the schema's owner, used only to migrate the schema first.
        smtp_url: The SMTP server messages go through (``CORRIDOR_SMTP_URL``'s form);
            None: messages are kept in the outbox, unsent.

    Raises:
        SearchAttributesMissing: The namespace lacks Corridor's search attributes.
    """
    await require_search_attributes(client)
    if admin_dsn is not None:
        applied = await migrate_database(admin_dsn)
        if applied:
            log.info("worker.schema_migrated", migrations=applied)
    keyring = keyring_of(client.data_converter)  # the client's codec seals the store too
    async with EventStore.connect(dsn, keyring=keyring) as store, observability.observed(
        client,
        task_queue,
        check_database=lambda: store.pool.fetchval("SELECT 1"),
        fetch=store.pool.fetch,
    ) as observed:  # CORRIDOR_METRICS_ADDRESS: /metrics, /livez, /readyz
        mailer = (
            Mailer(SmtpServer.from_url(smtp_url), load_settings().mail_from) if smtp_url else None
        )
        if mailer is None:
            log.warning("worker.no_smtp", reason="no SMTP server: messages stay in the outbox")
        worker = build_worker(observed.client, store, task_queue, mailer)
        observed.watch(worker.interactive, stop)
        log.info(
            "worker.started",
            task_queue=task_queue,
            namespace=client.namespace,
            database_user=urllib.parse.urlsplit(dsn).username,
            smtp=mailer.server.url if mailer else None,
        )
        async with worker:
            await stop.wait()
        log.info("worker.stopped", task_queue=task_queue)


async def main() -> None:
    """Run the worker against the configured (or the running embedded) stack."""
    configure_logging()
    settings = load_settings()
    stack = read_stack_file(settings.data_dir)
    dsn = settings.dsn or (stack.dsn if stack else None)
    if dsn is None:
        raise SystemExit("no PostgreSQL: set CORRIDOR_DSN or start `corridor dev`")
    try:
        keyring = open_keyring(settings, dsn)
    except KeyringError as error:
        raise SystemExit(f"worker not started: {error}") from None
    client = await connect(temporal_address(settings, stack), keyring=keyring)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_worker(
            client,
            dsn,
            settings.task_queue,
            stop,
            admin_dsn=settings.admin_dsn,
            smtp_url=settings.smtp_url or (stack.smtp_url if stack else None),
        )
    except SearchAttributesMissing as error:
        raise SystemExit(f"worker not started: {error}") from None


def serve() -> None:
    """Run :func:`main` until SIGINT or SIGTERM (the ``python worker.py`` process).

    Raises:
        SystemExit: Code 2 when a ``CORRIDOR_*`` variable is refused (named, with its
            value), 1 when the worker cannot start.
    """
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except SettingsError as error:
        print(f"worker not started: {error}", file=sys.stderr)
        raise SystemExit(2) from None
