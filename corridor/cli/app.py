"""What every command shares: the consoles, the exit-code mapping, common options."""

from __future__ import annotations

import asyncio
import getpass
import signal
import time
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Annotated, Any, Self, TypeVar

import structlog
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from corridor import service
from corridor.errors import Failure
from corridor.imports import InputError
from corridor.settings import load_settings
from corridor.stack import StackError

# Markup off: names, notes and counterparts come from users and are printed as typed.
_tty = Console().is_terminal
out = Console(markup=False, highlight=False, width=None if _tty else 160)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=not _tty)

log = structlog.get_logger(__name__)

T = TypeVar("T")

ProgrammeOption = Annotated[
    str | None,
    typer.Option("--programme", "-p", help="Programme id (default: the only one)."),
]
OnOption = Annotated[
    str | None, typer.Option("--on", help="Business date YYYY-MM-DD (default: today).")
]
CommandIdOption = Annotated[
    str | None,
    typer.Option("--command-id", help="Idempotency key: the same id is recorded once."),
]
ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Who records this (stored with its events; default: CORRIDOR_ACTOR, "
        "else your user name).",
    ),
]

QueryOption = Annotated[
    str | None,
    typer.Option(
        "--query",
        "-q",
        help="Temporal visibility filter, e.g. \"CorridorStage = 'awaiting_decision'\".",
    ),
]


def author(by: str | None) -> str:
    """Who sends a command: ``--by``, else ``CORRIDOR_ACTOR``, else the OS user."""
    if by is not None:
        return by
    actor = load_settings().actor
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the passwd file
        return "unknown user"


def print_error(message: str) -> None:
    """Print one error line on stderr."""
    err.print(Text.assemble(("error: ", "bold red"), message))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning known failures into a message and an exit code.

    Exit codes: :class:`Failure`'s own; 2 for bad input (every problem listed, nothing
    sent); 3 when a server cannot be started or reached; 130 when interrupted (Ctrl-C)
    where the command does not say more itself. Tasks the command left behind are
    cancelled without a traceback: what the user reads is the command's own answer.

    Raises:
        typer.Exit: On a known failure, after printing it.
    """
    try:
        with asyncio.Runner() as runner:
            runner.get_loop().set_exception_handler(_quietly)
            return runner.run(coroutine)
    except Failure as failure:
        print_error(failure.message)
        raise typer.Exit(failure.code) from None
    except InputError as error:
        for problem in error.errors:
            print_error(str(problem))
        err.print(f"{len(error.errors)} problem(s); nothing was sent.")
        raise typer.Exit(2) from None
    except (StackError, service.Unreachable) as error:
        print_error(str(error))
        raise typer.Exit(3) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("interrupted")
        raise typer.Exit(130) from None


def _quietly(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's handler for errors of tasks nobody awaits any more: no traceback.

    Such tasks are calls a command gave up (Ctrl-C, a worker gone): their end says
    nothing the command has not said.
    """
    error = context.get("exception")
    log.debug("cli.task_abandoned", message=context.get("message"), error=repr(error))


class Interrupted(Exception):
    """The user asked a command to stop (Ctrl-C, SIGTERM): it stopped sending."""


GRACE = 3.0
"""Seconds a call in flight is given to finish after Ctrl-C, so that its outcome is known."""


class Interruption:
    """Ctrl-C (or SIGTERM) asks a command sending many rows to stop between two rows.

    Enter it inside the command's coroutine. The first signal sets :attr:`requested`:
    the command sends nothing more, and the call in flight (see :meth:`finish`) is given
    ``GRACE`` seconds to finish. A second signal cancels the command's task at once.

    Attributes:
        requested: Set once the user asked to stop.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self._installed: list[signal.Signals] = []
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or no signals here: Ctrl-C stays as it is
            self._installed.append(sig)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def _on_signal(self) -> None:
        if self.requested.is_set() and self._task is not None:
            self._task.cancel()  # asked twice: stop waiting for what is in flight
        self.requested.set()

    @staticmethod
    def absorb() -> None:
        """Forget a cancellation that a second Ctrl-C made, once it has been handled."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()

    async def finish(self, call: Awaitable[T], grace: float = GRACE) -> T:
        """Await ``call``; once a stop is requested, give it ``grace`` seconds more.

        Raises:
            Interrupted: A stop was requested and the call did not finish in time (it
                was cancelled: its outcome is not known).
        """
        task = asyncio.ensure_future(call)
        stop = asyncio.ensure_future(self.requested.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait({task}, timeout=grace)
            if task.done():
                return task.result()
            raise Interrupted
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


PLAIN_EVERY = 5.0
"""Seconds between two progress lines when standard error is not a terminal."""


class _Rate(ProgressColumn):
    """Items per second, e.g. ``48.2 firms/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} {self._unit}/s")


def _duration(seconds: float) -> str:
    """``under a second``, ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    whole = max(0, round(seconds))
    if whole < 1:
        return "under a second"
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class Tally:
    """Progress of a command that sends many items, on standard error.

    On a terminal, a rich progress bar with the count, the rate and the time left; else
    one plain line every ``PLAIN_EVERY`` seconds (``enrolling: 500 of 2000 firms, 48.2
    firms/s, about 31 s left``), none for a command that ends sooner.
    """

    def __init__(self, what: str, total: int, unit: str) -> None:
        """Count ``total`` items of ``unit`` (plural: ``firms``, ``rows``) for ``what``."""
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self._started = time.monotonic()
        self._said = self._started
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> Self:
        self._started = self._said = time.monotonic()
        if err.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(self.unit),
                TimeRemainingColumn(),
                TextColumn("left,"),
                TimeElapsedColumn(),
                TextColumn("elapsed"),
                console=err,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, description: str | None = None) -> None:
        """One more item done; ``description`` says which (on a terminal)."""
        self.done += 1
        if self._bar is not None:
            shown = f"{self.what} {description}" if description else self.what
            self._bar.update(self._task, advance=1, description=shown)
            return
        now = time.monotonic()
        if now - self._said >= PLAIN_EVERY and self.done < self.total:
            self._said = now
            err.print(self.line(), soft_wrap=True)

    def line(self) -> str:
        """``enrolling: 500 of 2000 firms, 48.2 firms/s, about 31 s left``."""
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.what}: {self.done} of {self.total} {self.unit}, {rate:.1f} {self.unit}/s"
        if rate > 0:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        return text


def progress_bar() -> Progress:
    """A progress bar on stderr, shown only on a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
