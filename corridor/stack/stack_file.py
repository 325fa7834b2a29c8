"""The stack file: how other commands find the stack a running ``corridor dev`` started.

``<data_dir>/stack.json`` is written when the stack is ready and removed when it stops;
it names the Temporal frontend, the Web UI, the worker's DSN and the pids of
``corridor dev`` and of its Temporal dev server (to stop that server if ``corridor dev``
died without stopping it).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from corridor.stack.processes import StackError, command_line, pid_alive, terminate_pid

log = structlog.get_logger(__name__)

STACK_FILE = "stack.json"
"""Name of the file, inside the data directory, that describes a running stack."""


class StackInfo(BaseModel):
    """How to reach a running embedded stack.

    Attributes:
        temporal_address: ``host:port`` of the Temporal gRPC frontend.
        ui_url: URL of the Temporal web UI, or ``None`` when the server is headless.
        dsn: PostgreSQL DSN usable by ``asyncpg.connect``: the worker's (for the
            embedded server, the role ``corridor_worker``; never the administrator's).
        smtp_url: The embedded SMTP server (``smtp://127.0.0.1:PORT``) that keeps each
            message under ``<data_dir>/mail/``, or None.
    """

    model_config = ConfigDict(frozen=True)

    temporal_address: str
    ui_url: str | None
    dsn: str
    smtp_url: str | None = None


def _read_stack_json(path: Path) -> dict[str, Any] | None:
    """Read ``stack.json``; ``None`` if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_stack_file(data_dir: Path) -> StackInfo | None:
    """Find the stack started by a running ``corridor dev``.

    Args:
        data_dir: The data directory the stack was started with.

    Returns:
        The stack's connection information if ``stack.json`` exists and the process
        that wrote it is alive, else ``None``.
    """
    data = _read_stack_json(data_dir / STACK_FILE)
    if data is None:
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    try:
        return StackInfo(
            temporal_address=data["temporal_address"],
            ui_url=data.get("temporal_ui_url"),
            dsn=data["dsn"],
            smtp_url=data.get("smtp_url"),
        )
    except (KeyError, ValidationError):
        return None


def write_stack_file(data_dir: Path, info: StackInfo, *, temporal_pid: int | None) -> Path:
    """Describe the running stack in ``<data_dir>/stack.json`` for :func:`read_stack_file`.

    Written atomically, readable by the owner only (the DSN may hold a password).

    Args:
        data_dir: The stack's data directory.
        info: How to reach the stack.
        temporal_pid: Pid of its Temporal dev server, to stop it if this process dies.

    Returns:
        The file's path.
    """
    path = data_dir / STACK_FILE
    data = {
        "temporal_address": info.temporal_address,
        "temporal_ui_url": info.ui_url,
        "dsn": info.dsn,
        "smtp_url": info.smtp_url,
        "pid": os.getpid(),
        "temporal_pid": temporal_pid,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    tmp.replace(path)
    return path


def _is_our_temporal(pid: int, db_file: Path) -> bool:
    """Tell whether ``pid`` is a ``temporal server start-dev`` using ``db_file``."""
    argv = command_line(pid)
    return b"start-dev" in argv and os.fsencode(db_file) in argv


async def reap_stale_stack(data_dir: Path, db_file: Path) -> None:
    """Handle a ``stack.json`` left by a ``corridor dev`` that did not exit cleanly.

    Its Temporal dev server, if still running on ``db_file``, is stopped; the file is
    removed.

    Args:
        data_dir: The stack's data directory.
        db_file: The Temporal dev server's database file.

    Raises:
        StackError: If the process that wrote it is still running.
    """
    path = data_dir / STACK_FILE
    data = _read_stack_json(path)
    if data is None:
        return
    pid = data.get("pid")
    if isinstance(pid, int) and pid_alive(pid):
        raise StackError(
            f"A Corridor stack is already running from {data_dir} (pid {pid}, Temporal at "
            f"{data.get('temporal_address')}); stop it or use another CORRIDOR_DATA_DIR."
        )
    orphan = data.get("temporal_pid")
    if isinstance(orphan, int) and pid_alive(orphan) and _is_our_temporal(orphan, db_file):
        log.warning("temporal.orphan_stopped", pid=orphan, db_file=str(db_file))
        await asyncio.to_thread(terminate_pid, orphan, 10.0)
    path.unlink(missing_ok=True)

