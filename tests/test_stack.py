"""Real-server tests for corridor.stack: no mocks, state in temporary directories."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from corridor.settings import Settings
from corridor.stack import (
    STACK_FILE,
    EmbeddedPostgres,
    StackError,
    TemporalDevServer,
    embedded_stack,
    free_port,
    read_stack_file,
)
from corridor.temporal import missing_search_attributes
from workflows import search

# Each test starts and stops real servers in a few seconds; the timeout only guards
# against hangs.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory outside pytest's basetemp.

    When run as root, the embedded PostgreSQL server runs as another user that must be
    able to traverse every parent of its data directory; a concurrent pytest session
    resets /tmp/pytest-of-<user> to 0700, which would crash it mid-test.
    """
    path = Path(tempfile.mkdtemp(prefix="corridor-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_temporal_dev_server_keeps_workflows_across_restart(tmp_path: Path) -> None:
    db_file = tmp_path / "temporal.db"
    port = free_port()
    workflow_id = f"persist-{uuid.uuid4()}"

    first = TemporalDevServer(db_file=db_file, port=port, headless=True)
    async with first:
        assert first.running
        assert first.address == f"127.0.0.1:{port}"
        assert first.ui_url is None
        client = await Client.connect(first.address)
        # No worker polls this task queue: the workflow just stays pending.
        await client.start_workflow(
            "NoSuchWorkflow", id=workflow_id, task_queue=f"nobody-{uuid.uuid4()}"
        )
    assert not first.running
    assert first.pid is None

    second = TemporalDevServer(db_file=db_file, port=port, headless=True)
    async with second:
        client = await Client.connect(second.address)
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.id == workflow_id
        assert description.workflow_type == "NoSuchWorkflow"
        assert description.status == WorkflowExecutionStatus.RUNNING
    assert not second.running


async def test_embedded_postgres_keeps_rows_across_restart(private_dir: Path) -> None:
    pgdata = private_dir / "pg"

    first = EmbeddedPostgres(pgdata)
    dsn = await first.start()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT current_database()") == "corridor"
            await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
            await conn.execute("INSERT INTO notes VALUES (1, 'still here')")
        finally:
            await conn.close()
    finally:
        await first.stop()
    await first.stop()  # idempotent
    assert first.dsn is None
    assert not (pgdata / "postmaster.pid").exists()

    async with EmbeddedPostgres(pgdata) as second:
        assert second.dsn is not None
        conn = await asyncpg.connect(second.dsn)
        try:
            assert await conn.fetchval("SELECT body FROM notes WHERE id = 1") == "still here"
        finally:
            await conn.close()
    assert not (pgdata / "postmaster.pid").exists()


async def test_embedded_postgres_without_pgdata_is_temporary() -> None:
    postgres = EmbeddedPostgres()
    root = postgres.pgdata.parent
    async with postgres:
        assert postgres.dsn is not None
        conn = await asyncpg.connect(postgres.dsn)
        try:
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()
        with pytest.raises(StackError, match="already managed"):
            await EmbeddedPostgres(postgres.pgdata).start()
    assert not root.exists()


async def test_temporal_port_in_use_names_the_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = TemporalDevServer(port=port, headless=True)
        with pytest.raises(StackError, match=rf"port {port}\b.*CORRIDOR_TEMPORAL_PORT"):
            await server.start()
        assert not server.running

        server = TemporalDevServer(port=free_port(), ui_port=port)
        with pytest.raises(StackError, match=rf"port {port}\b.*CORRIDOR_TEMPORAL_UI_PORT"):
            await server.start()
        assert not server.running


async def test_embedded_stack_writes_and_removes_stack_file(private_dir: Path) -> None:
    settings = Settings(
        data_dir=private_dir / "data",
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
    )
    stack_file = settings.data_dir / STACK_FILE

    async with embedded_stack(settings, headless=True) as info:
        assert info.temporal_address == f"127.0.0.1:{settings.temporal_port}"
        assert info.ui_url is None
        assert read_stack_file(settings.data_dir) == info
        written = json.loads(stack_file.read_text())
        assert written["pid"] == os.getpid()
        assert written["dsn"] == info.dsn

        await Client.connect(info.temporal_address)
        conn = await asyncpg.connect(info.dsn)
        try:
            assert await conn.fetchval("SELECT current_database()") == "corridor"
        finally:
            await conn.close()

        with pytest.raises(StackError, match="already running"):
            async with embedded_stack(settings, headless=True):
                pass

    assert not stack_file.exists()
    assert read_stack_file(settings.data_dir) is None
    assert (settings.data_dir / "temporal.db").exists()
    assert not (settings.data_dir / "postgres" / "postmaster.pid").exists()


def test_read_stack_file_ignores_dead_writer(tmp_path: Path) -> None:
    assert read_stack_file(tmp_path) is None
    (tmp_path / STACK_FILE).write_text(
        json.dumps(
            {
                "temporal_address": "127.0.0.1:1",
                "temporal_ui_url": None,
                "dsn": "postgresql://x",
                "pid": _dead_pid(),
            }
        )
    )
    assert read_stack_file(tmp_path) is None
    (tmp_path / STACK_FILE).write_text("not json")
    assert read_stack_file(tmp_path) is None


async def test_the_startup_check_asks_a_restarting_temporal_again(tmp_path: Path) -> None:
    """A server away for a moment is asked again (what a worker checks first), then answers."""
    port = free_port()
    async with TemporalDevServer(port=port, headless=True, log_file=tmp_path / "a.log") as first:
        client = await Client.connect(first.address)
        assert await missing_search_attributes(client) == sorted(k.name for k in search.ALL)
    asking = asyncio.create_task(missing_search_attributes(client, within=40))
    await asyncio.sleep(1.5)
    assert not asking.done(), "an absent server should be asked again, not given up on"
    async with TemporalDevServer(port=port, headless=True, log_file=tmp_path / "b.log"):
        missing = await asyncio.wait_for(asking, 40)
    assert missing == sorted(key.name for key in search.ALL)  # a bare server has none


async def test_a_server_that_stays_away_is_reported_after_the_wait(tmp_path: Path) -> None:
    """Asking again has an end: a server gone for good is reported as unavailable."""
    async with TemporalDevServer(
        port=free_port(), headless=True, log_file=tmp_path / "gone.log"
    ) as server:
        client = await Client.connect(server.address)
    with pytest.raises(RPCError) as raised:
        await missing_search_attributes(client, within=1.0)
    assert raised.value.status == RPCStatusCode.UNAVAILABLE
