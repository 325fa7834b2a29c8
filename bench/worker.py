"""The benchmarks' worker process: Corridor's worker, and the baselines' beside it.

``python -m bench.worker ADDRESS DSN TASK_QUEUE`` runs, in one process, the worker that
``corridor.runtime.build_worker`` wires (``FirmJourney`` and its activities, on
``TASK_QUEUE``) and a worker for the ``Trivial`` baseline (on ``TASK_QUEUE-trivial``),
until SIGTERM or SIGINT. Being its own process, its CPU and memory are its own: the
driver measures them from outside (``/proc``, py-spy).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.store import EventStore
from bench.trivial import Trivial
from corridor.logs import configure_logging
from corridor.runtime import build_worker
from corridor.temporal import runtime


def trivial_queue(task_queue: str) -> str:
    """The baselines' task queue beside Corridor's ``task_queue``."""
    return f"{task_queue}-trivial"


async def serve(address: str, dsn: str, task_queue: str) -> None:
    """Run both workers until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(
        address, data_converter=pydantic_data_converter, runtime=runtime()
    )
    async with EventStore.connect(dsn) as store:
        journeys = build_worker(client, store, task_queue)
        trivial = Worker(client, task_queue=trivial_queue(task_queue), workflows=[Trivial])
        async with journeys, trivial:
            print("ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    configure_logging("WARNING", json=False)  # to its log file (stderr)
    asyncio.run(serve(*sys.argv[1:4]))
