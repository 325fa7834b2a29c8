"""What every command shares: the consoles, the exit-code mapping, common options."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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
    sent); 3 when a server cannot be started or reached.

    Raises:
        typer.Exit: On a known failure, after printing it.
    """
    try:
        return asyncio.run(coroutine)
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
