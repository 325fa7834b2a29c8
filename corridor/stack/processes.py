"""What the embedded servers share: the error they raise, ports, processes and logs."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import time
from pathlib import Path

HOST = "127.0.0.1"
"""Every embedded server listens on loopback only."""

_LOG_TAIL_LINES = 40
_POLL_INTERVAL = 0.1


class StackError(RuntimeError):
    """An embedded server could not be started, or is misconfigured."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port that is free on ``host`` right now.

    The port is not reserved: another process may take it before it is used, which is
    acceptable in tests.

    Args:
        host: Interface to probe.

    Returns:
        A port number chosen by the operating system.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """Tell whether something is already bound to ``host:port``.

    ``SO_REUSEADDR`` is set so that sockets lingering in ``TIME_WAIT`` after a previous
    server on the same port are not mistaken for a live listener.

    Args:
        host: Interface to probe.
        port: TCP port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def pid_alive(pid: int) -> bool:
    """Tell whether a process with this pid exists (a zombie counts as dead).

    Args:
        pid: Process id.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes (Linux only; elsewhere assume alive)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def command_line(pid: int) -> list[bytes]:
    """The argument vector of a process (empty when it cannot be read; Linux only)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def children(parent: int) -> list[int]:
    """Pids of the live child processes of ``parent`` (Linux only; else empty)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(parent) and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def terminate_pid(pid: int, timeout: float) -> None:
    """Send SIGTERM to a process we did not spawn, then SIGKILL after ``timeout`` s.

    Args:
        pid: Process id.
        timeout: Seconds to wait for it to exit after SIGTERM.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def tail(path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a log file, or a note if it cannot be read.

    Args:
        path: The log file, if any.
        lines: How many lines to keep.
    """
    if path is None:
        return "(no log file)"
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"(could not read {path}: {err})"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "(log is empty)"
