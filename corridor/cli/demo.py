"""The demo command: the seed's mission on the embedded stack, then the bilan."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import Client

from corridor.cli.app import err, out, print_error, run
from corridor.demo import EXAMPLES, ClockMode, Scenario, run_scenario
from corridor.logs import configure_logging
from corridor.runtime import run_worker
from corridor.settings import load_settings
from corridor.stack import StackInfo, embedded_stack, read_stack_file
from corridor.temporal import connect, open_keyring
from workflows import search


def demo(
    clock: Annotated[
        ClockMode | None,
        typer.Option(
            help="skip: Temporal time skipping; compressed: a fast business clock; "
            "held: each journey's clock moved on to each record's day (any server)."
        ),
    ] = None,
    month_seconds: Annotated[
        float, typer.Option(help="Compressed clock: real seconds per business month.")
    ] = 1.0,
    fresh: Annotated[bool, typer.Option(help="Delete the data directory first.")] = False,
    examples: Annotated[Path, typer.Option(help="Folder with the three files.")] = EXAMPLES,
) -> None:
    """Play the seed's mission (2013-2016) on the embedded stack and print the bilan."""
    configure_logging("WARNING")
    settings = load_settings()
    if fresh:
        if read_stack_file(settings.data_dir) is not None:
            print_error("a `corridor dev` is running on this data directory")
            raise typer.Exit(2)
        shutil.rmtree(settings.data_dir, ignore_errors=True)

    async def main() -> None:
        scenario = Scenario.load(examples)

        async def play_on(client: Client, stack: StackInfo) -> None:
            await run_scenario(
                client,
                stack,
                scenario,
                task_queue=settings.task_queue,
                clock=clock,
                month_seconds=month_seconds,
                out=out,
                err=err,
            )

        running = read_stack_file(settings.data_dir)
        if running is not None:
            err.print(f"Using the running `corridor dev` stack ({running.temporal_address}).")
            keyring = open_keyring(settings, running.dsn)
            try:
                client = await connect(running.temporal_address, keyring=keyring)
                await play_on(client, running)
            finally:
                await keyring.aclose()
            return
        async with embedded_stack(settings, search_attributes=search.ALL) as stack:
            keyring = open_keyring(settings, stack.dsn, create=True)
            client = await connect(stack.temporal_address, keyring=keyring)
            stop = asyncio.Event()
            worker = asyncio.create_task(
                run_worker(client, stack.dsn, settings.task_queue, stop, smtp_url=stack.smtp_url)
            )
            try:
                await play_on(client, stack)
            finally:
                stop.set()
                await worker
                await keyring.aclose()

    run(main())
