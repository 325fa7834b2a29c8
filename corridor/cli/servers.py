"""Commands that run or set up the servers: dev, setup, migrate, rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer

from activities.migrations import MigrationError, migrate_database
from corridor.cli import privacy
from corridor.cli.app import err, out, run
from corridor.cli.connections import connected, open_store
from corridor.codec_server import CodecServer, codec_app
from corridor.digest import digest_time, ensure_digest_schedule
from corridor.errors import Failure
from corridor.imports import load_programme
from corridor.logs import configure_logging
from corridor.runtime import run_worker
from corridor.settings import load_settings
from corridor.stack import embedded_stack
from corridor.stack.processes import HOST
from corridor.temporal import connect, open_keyring, register_search_attributes
from workflows import search


def dev(
    headless: Annotated[bool, typer.Option(help="Do not serve the Temporal Web UI.")] = False,
) -> None:
    """Run the embedded stack: Temporal, PostgreSQL, a worker and a codec server.

    State is kept under CORRIDOR_DATA_DIR (default .corridor/); starting again resumes
    every journey where it was. The Web UI decodes the journeys' payloads through the
    codec server (its URL and token are in <data dir>/codec.json). Ctrl-C stops it.
    """
    configure_logging()
    settings = load_settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        token = privacy.dev_codec_token()
        codec_url = f"http://{HOST}:{settings.codec_port}"
        async with contextlib.AsyncExitStack() as exits:
            stack = await exits.enter_async_context(
                embedded_stack(
                    settings,
                    headless=headless,
                    search_attributes=search.ALL,
                    ui_codec_endpoint=f"{codec_url}/{token}",  # the UI sends no header
                )
            )
            keyring = open_keyring(settings, stack.dsn, create=True)
            exits.push_async_callback(keyring.aclose)
            app = codec_app(keyring, {token: "web-ui"}, stack.ui_url)
            await exits.enter_async_context(CodecServer(app, HOST, settings.codec_port))
            codec_file = privacy.write_codec_file(settings.data_dir, codec_url, token)
            exits.callback(codec_file.unlink, missing_ok=True)
            client = await connect(stack.temporal_address, keyring=keyring)
            await ensure_digest_schedule(
                client,
                settings.task_queue,
                settings.office_timezone,
                digest_time(settings.digest_time),
            )
            err.print(
                f"Corridor is running. Temporal Web UI: {stack.ui_url or '(headless)'}"
                f"  Temporal: {stack.temporal_address}  Codec server: {codec_url} "
                f"(token in {codec_file})  Data: {settings.data_dir}\n"
                f"Mail: {stack.smtp_url} (`corridor mail` lists what was sent); daily digest "
                f"at {settings.digest_time} {settings.office_timezone} on working days.\n"
                "Press Ctrl-C to stop.",
                highlight=False,
            )
            await run_worker(
                client, stack.dsn, settings.task_queue, stop, smtp_url=stack.smtp_url
            )

    run(main())


def setup(
    programme: Annotated[
        Path | None,
        typer.Option(
            "--programme",
            help="Programme file whose office_timezone the daily digest follows "
            "(default: CORRIDOR_OFFICE_TIMEZONE).",
        ),
    ] = None,
) -> None:
    """Register Corridor's search attributes and the daily digest's schedule (idempotent).

    The digest runs at CORRIDOR_DIGEST_TIME (default 07:00) in the office's time zone,
    Monday to Friday, overlaps skipped.
    """
    configure_logging("WARNING")
    settings = load_settings()
    timezone = settings.office_timezone

    async def main() -> None:
        zone_name = load_programme(programme).office_timezone if programme else timezone
        async with connected(settings, search_attributes=False, encrypted=False) as connections:
            added = await register_search_attributes(connections.client)
            schedule = await ensure_digest_schedule(
                connections.client,
                settings.task_queue,
                zone_name,
                digest_time(settings.digest_time),
            )
        out.print(
            f"search attributes: {len(added)} added ({', '.join(added) or 'none'}), "
            f"{len(search.ALL) - len(added)} already registered"
        )
        out.print(
            f"daily digest schedule {schedule}: {settings.digest_time} {zone_name}, "
            "Monday to Friday"
        )

    run(main())


def rebuild() -> None:
    """Rebuild every read model from the event store's events."""
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with connected(settings) as connections, open_store(connections) as store:
            count = await store.rebuild_read_models()
        out.print(f"read models rebuilt from {count} events")

    run(main())


def migrate() -> None:
    """Migrate the PostgreSQL schema and create the worker's role (idempotent).

    Connects with CORRIDOR_ADMIN_DSN (the schema owner's DSN), else with CORRIDOR_DSN.
    Workers given CORRIDOR_ADMIN_DSN do this themselves when they start.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        dsn = settings.admin_dsn or settings.dsn
        if dsn is None:
            raise Failure("set CORRIDOR_ADMIN_DSN to the DSN of the schema's owner", 2)
        try:
            applied = await migrate_database(dsn)
        except OSError as error:
            raise Failure(f"cannot reach PostgreSQL ({error})", 3) from None
        except MigrationError as error:
            raise Failure(str(error), 1) from None
        done = ", ".join(str(number) for number in applied)
        out.print(f"migrations applied: {done}" if applied else "the schema is current")

    run(main())
