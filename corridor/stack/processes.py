"""What the embedded servers share: the error they raise, ports, processes, logs, guardian."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
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


class Guardian:
    """Stops the embedded servers if this process dies without stopping them.

    :meth:`start` runs ``corridor/stack/guardian.py`` in a session of its own (Ctrl-C in
    the terminal and a signal to this process group do not reach it), holding the read
    end of a pipe whose write end only this process has. Tell it what to stop with
    :meth:`watch_temporal` and :meth:`watch_postgres`; :meth:`release` once the servers
    are stopped. When this process dies (SIGKILL included) the kernel closes the pipe,
    and the guardian stops what still runs (see its module), then exits.

    Example:
        >>> guardian = Guardian.start(data_dir / "guardian.log")
        >>> guardian.watch_postgres(pgdata, lock_file)
        >>> ...
        >>> guardian.release()
    """

    def __init__(self, process: subprocess.Popen[bytes], pipe: int) -> None:
        self._process = process
        self._pipe: int | None = pipe

    @property
    def pid(self) -> int:
        """The guardian's pid."""
        return self._process.pid

    @classmethod
    def start(cls, log_file: Path | None = None) -> Guardian:
        """Start a guardian for this process.

        Args:
            log_file: Where it says what it stopped (appended to).

        Raises:
            StackError: It could not be started.
        """
        read, write = os.pipe()  # not inherited by other children (PEP 446)
        argv = [sys.executable, "-I", str(Path(__file__).with_name("guardian.py")), str(read)]
        try:
            process = subprocess.Popen(
                [*argv, *([str(log_file)] if log_file else [])],
                pass_fds=(read,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as error:
            os.close(write)
            raise StackError(f"Could not start the stack's guardian: {error}") from error
        finally:
            os.close(read)
        return cls(process, write)

    def _tell(self, order: dict[str, object]) -> None:
        if self._pipe is None:
            return
        with contextlib.suppress(OSError):  # a guardian gone cannot be told: nothing to do
            os.write(self._pipe, json.dumps(order).encode() + b"\n")

    def watch_temporal(self, pid: int | None, marker: str) -> None:
        """Stop the Temporal dev server ``pid`` (its argv holds ``marker``) if we die."""
        if pid is not None:
            self._tell({"temporal_pid": pid, "marker": marker})

    def watch_postgres(self, pgdata: Path, lock_file: Path | None) -> None:
        """Stop PostgreSQL on ``pgdata`` if we die (unless another process still uses it)."""
        self._tell({"pgdata": str(pgdata), "lock": str(lock_file) if lock_file else None})

    def release(self) -> None:
        """The servers are stopped: let the guardian go without stopping anything."""
        self._tell({"done": True})
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
