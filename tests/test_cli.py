"""The ``corridor`` command, run as a user runs it, against the test servers.

Each test starts the real console script in a subprocess, pointed at the session's
Temporal dev server, PostgreSQL and worker through the environment, and checks what a
user sees: the exit code and the messages.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.store import EventStore
from corridor import service
from corridor.stack import TemporalDevServer
from workflows.journey import journey_workflow_id

CORRIDOR = Path(sys.executable).with_name("corridor")
FIRMS = ("trifide", "doculibre", "nordik")
ROSTER_HEADER = (
    "firm_id,firm_name,sector,city,contact_name,contact_email,mission_id,introduced_on,"
    "wants_to_meet"
)
JOURNAL_HEADER = (
    "occurred_on,firm_id,action,meeting_id,counterpart,partner_id,scheduled_at,outcome,"
    "amount,currency,mission_id,decision,notes"
)


@dataclass(frozen=True)
class Run:
    """What a user sees of one command: its exit code and its two outputs."""

    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


@dataclass(frozen=True)
class Cli:
    """Runs ``corridor`` in a working directory with the test servers' environment."""

    env: dict[str, str]
    cwd: Path

    async def __call__(self, *args: str | Path) -> Run:
        process = await asyncio.create_subprocess_exec(
            CORRIDOR,
            *(str(a) for a in args),
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(
    temporal_server: TemporalDevServer, dsn: str, task_queue: str, worker: None, tmp_path: Path
) -> Cli:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "CORRIDOR_")) and k not in ("COLUMNS", "LINES")
    }
    env |= {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "CORRIDOR_DSN": dsn,
        "CORRIDOR_TASK_QUEUE": task_queue,
        "CORRIDOR_DATA_DIR": str(tmp_path / "data"),
    }
    return Cli(env, tmp_path)


@pytest.fixture
def programme(tmp_path: Path, examples: Path, programme_id: str) -> Path:
    """The example's programme.toml under a fresh programme id."""
    text = (examples / "programme.toml").read_text(encoding="utf-8")
    assert 'id = "qc-california"' in text
    path = tmp_path / "programme.toml"
    path.write_text(text.replace('id = "qc-california"', f'id = "{programme_id}"', 1), "utf-8")
    return path


@pytest.fixture
def roster(tmp_path: Path, examples: Path) -> Path:
    """The example's roster cut down to three firms of the first mission."""
    lines = (examples / "roster.csv").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines[1:] if line.split(",")[0] in FIRMS]
    assert len(kept) == len(FIRMS)
    path = tmp_path / "roster.csv"
    path.write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
    return path


def write(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def journey_exists(client: Client, programme_id: str, firm_id: str) -> bool:
    try:
        await client.get_workflow_handle(journey_workflow_id(programme_id, firm_id)).describe()
    except RPCError as error:
        assert error.status == RPCStatusCode.NOT_FOUND, error
        return False
    return True


async def settled_versions(
    client: Client, store: EventStore, programme_id: str, firms: tuple[str, ...] = FIRMS
) -> dict[str, int]:
    """Each journey's stream version once every event it has decided is stored."""
    versions = {}
    for firm in firms:
        await service.sync(client, programme_id, firm)
        versions[firm] = await store.stream_version(journey_workflow_id(programme_id, firm))
    return versions


async def enrolled(cli: Cli, roster: Path, programme: Path) -> None:
    run = await cli("enroll", roster, "--programme", programme)
    assert run.code == 0, run
    assert f"{len(FIRMS)} journey(s) started, 0 already enrolled." in run.out, run
