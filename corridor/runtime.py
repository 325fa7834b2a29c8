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
from corridor.settings import SettingsError, load_settings
from corridor.stack import read_stack_file
from corridor.temporal import (
    SearchAttributesMissing,
    connect,
    open_keyring,
    require_search_attributes,
)
from workflows.digest import AdviserDigests
from workflows.journey import FirmJourney

log = structlog.get_logger(__name__)


def activities_of(store: EventStore, mailer: Mailer | None = None) -> list[Callable[..., Any]]:
    """Every activity the journeys call, wired to the event store (and the mailer).

    Args:
        store: The event store.
        mailer: The SMTP client; None keeps messages in the outbox, unsent.
    """
    journey = JourneyActivities(store)
    mail = MailActivities(store, mailer)
    return [journey.store_events, journey.find_command, mail.send_message, mail.send_digests]


def build_worker(
    client: Client, store: EventStore, task_queue: str, mailer: Mailer | None = None
) -> Worker:
    """Wire the journey's workflow and activities on ``task_queue``.

    Args:
        client: A client connected with the pydantic data converter.
        store: The event store the activities append to.
        task_queue: The task queue to poll.
        mailer: The SMTP client messages go through; None: messages are kept in the
            outbox, unsent, and nothing is recorded as sent.
    """
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[FirmJourney, AdviserDigests],
        activities=activities_of(store, mailer),
        graceful_shutdown_timeout=timedelta(seconds=10),
        deployment_config=deployment.deployment_config(),  # CORRIDOR_DEPLOYMENT_NAME, _BUILD_ID
        max_cached_workflows=load_settings().workflow_cache_size,  # CORRIDOR_WORKFLOW_CACHE_SIZE
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
        observed.watch(worker, stop)
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
    client = await connect(
        stack.temporal_address if stack else "localhost:7233", keyring=keyring
    )
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
