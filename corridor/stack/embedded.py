"""The embedded stack: PostgreSQL and the Temporal dev server, run by ``corridor dev``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
import structlog

from activities.migrations import MigrationError, migrate_database, role_dsn
from corridor.settings import Settings
from corridor.stack.postgres import EmbeddedPostgres, lock_file
from corridor.stack.processes import Guardian, StackError
from corridor.stack.smtp import LocalSmtpServer
from corridor.stack.stack_file import StackInfo, reap_stale_stack, write_stack_file
from corridor.stack.temporal import SearchAttributes, TemporalDevServer

log = structlog.get_logger(__name__)


async def _migrate(admin_dsn: str) -> None:
    """Migrate the schema (and create the worker's role) as the administrator."""
    try:
        applied = await migrate_database(admin_dsn)
    except (OSError, asyncpg.PostgresError, MigrationError) as err:
        raise StackError(f"Could not migrate the Corridor schema: {err}") from err
    if applied:
        log.info("postgres.migrated", migrations=applied)


@contextlib.asynccontextmanager
async def embedded_stack(
    settings: Settings,
    *,
    headless: bool = False,
    search_attributes: SearchAttributes | None = None,
    ui_codec_endpoint: str | None = None,
) -> AsyncIterator[StackInfo]:
    """Run PostgreSQL, the Temporal dev server and an SMTP server while the context is open.

    PostgreSQL keeps its data in ``<data_dir>/postgres`` (skipped when
    ``settings.dsn`` is set, which is then used as is) and Temporal in
    ``<data_dir>/temporal.db`` (its log goes to ``<data_dir>/temporal.log``). The
    schema is migrated with an administrator's DSN (the embedded server's superuser,
    or ``settings.admin_dsn``; without one the worker checks or migrates it itself), and
    the stack's DSN is the worker's: role ``corridor_worker`` on the embedded server.
    Unless ``settings.smtp_url`` names a real one, an SMTP server on loopback keeps each
    message as a file under ``<data_dir>/mail/`` (``corridor mail`` reads them).
    While the context is open, ``<data_dir>/stack.json`` describes the stack for
    ``read_stack_file``. Both servers are stopped, and the file removed, on exit,
    including on exceptions and cancellation; if this process dies without stopping
    them (SIGKILL), a :class:`~corridor.stack.processes.Guardian` does (it says so in
    ``<data_dir>/guardian.log``).

    Args:
        settings: Data directory, DSN and Temporal ports.
        headless: Do not serve the Temporal web UI.
        search_attributes: Custom search attributes to register with Temporal.
        ui_codec_endpoint: The codec server the Web UI decodes payloads with.

    Yields:
        How to reach the stack.

    Raises:
        StackError: If a server cannot start or a stack already runs from the same
            data directory.
    """
    data_dir = settings.data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    db_file = data_dir / "temporal.db"
    await reap_stale_stack(data_dir, db_file)
    async with contextlib.AsyncExitStack() as stack:
        guardian = Guardian.start(data_dir / "guardian.log")
        stack.callback(guardian.release)  # last: once every server is stopped
        admin_dsn: str | None
        if settings.dsn is None:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            guardian.watch_postgres(postgres.pgdata, lock_file())
            stack.push_async_callback(postgres.stop)
            admin_dsn = await postgres.start()
            dsn = role_dsn(admin_dsn)  # trust authentication on the local socket
        else:
            admin_dsn, dsn = settings.admin_dsn, settings.dsn
        if admin_dsn is not None:
            await _migrate(admin_dsn)
        temporal = TemporalDevServer(
            db_file=db_file,
            port=settings.temporal_port,
            ui_port=settings.temporal_ui_port,
            headless=headless,
            search_attributes=search_attributes,
            log_file=data_dir / "temporal.log",
            ui_codec_endpoint=ui_codec_endpoint,
        )
        stack.push_async_callback(temporal.stop)
        await temporal.start()
        guardian.watch_temporal(temporal.pid, marker=os.fspath(db_file))
        smtp_url = settings.smtp_url
        if smtp_url is None:  # the embedded SMTP server keeps each message under mail/
            smtp = LocalSmtpServer(data_dir / "mail", settings.smtp_port)
            smtp.start()
            stack.callback(smtp.stop)
            smtp_url = smtp.url
        info = StackInfo(
            temporal_address=temporal.address, ui_url=temporal.ui_url, dsn=dsn, smtp_url=smtp_url
        )
        stack_file = write_stack_file(data_dir, info, temporal_pid=temporal.pid)
        stack.callback(stack_file.unlink, missing_ok=True)
        log.info(
            "stack.ready",
            temporal_address=info.temporal_address,
            ui_url=info.ui_url,
            data_dir=str(data_dir),
        )
        yield info
