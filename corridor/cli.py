"""The ``corridor`` command line: run the stack, enrol firms, record facts, report.

Exit codes: 0 on success; 1 when a journey refused a record or nothing was found;
2 for bad input (nothing was sent); 3 when a server cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.migrations import MigrationError, migrate_database
from activities.store import EventStore
from corridor import render, service
from corridor.demo import ClockMode, play
from corridor.logs import configure_logging
from corridor.records import (
    InputError,
    JournalRecord,
    RowError,
    journal_firm_ids,
    load_journal,
    load_programme,
    load_roster,
    parse_amount,
    parse_aware_datetime,
    parse_date,
)
from corridor.settings import Settings, load_settings
from corridor.stack import StackError, StackInfo, embedded_stack, read_stack_file
from corridor.temporal import connect, register_search_attributes
from domain.bilan import Bilan, compute_bilan
from domain.calendar import zone
from domain.commands import (
    ArrangeMeeting,
    Command,
    DecideEvaluation,
    Decision,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RecordVisitAttendance,
    RequestMeeting,
    SignContract,
    Withdraw,
)
from domain.money import Money
from domain.programme import Programme
from domain.wording import explain
from worker import run_worker
from workflows import search

app = typer.Typer(
    help="Corridor: durable follow-up of economic trade missions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
meeting_app = typer.Typer(help="Record a meeting: request, arrange, result.", no_args_is_help=True)
app.add_typer(meeting_app, name="meeting")

# Markup off: names, notes and counterparts come from users and are printed as typed.
_tty = Console().is_terminal
out = Console(markup=False, highlight=False, width=None if _tty else 160)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=not _tty)


def _error(message: str) -> None:
    """Print one error line on stderr."""
    err.print(Text.assemble(("error: ", "bold red"), message))

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "quebec-california"
T = TypeVar("T")


class Failure(Exception):
    """A command failed: print ``message`` and exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning known failures into a message and an exit code."""
    try:
        return asyncio.run(coroutine)
    except Failure as failure:
        _error(failure.message)
        raise typer.Exit(failure.code) from None
    except InputError as error:
        for problem in error.errors:
            _error(str(problem))
        err.print(f"{len(error.errors)} problem(s); nothing was sent.")
        raise typer.Exit(2) from None
    except StackError as error:
        _error(str(error))
        raise typer.Exit(3) from None


# ------------------------------------------------------------------ connections


@dataclass
class Connections:
    """What a command connects to."""

    client: Client
    dsn: str | None
    stack: StackInfo | None


@contextlib.asynccontextmanager
async def _connected(settings: Settings) -> AsyncIterator[Connections]:
    stack = read_stack_file(settings.data_dir)
    address = stack.temporal_address if stack else f"localhost:{settings.temporal_port}"
    try:
        client = await connect(address)
    except RuntimeError as error:
        detail = str(error).split("\n")[0][:160]
        raise Failure(
            f"cannot reach Temporal at {os.environ.get('TEMPORAL_ADDRESS', address)}: start "
            f"`corridor dev` in another terminal, or set TEMPORAL_ADDRESS ({detail})",
            3,
        ) from None
    yield Connections(client, settings.dsn or (stack.dsn if stack else None), stack)


@contextlib.asynccontextmanager
async def _store(connections: Connections) -> AsyncIterator[EventStore]:
    if connections.dsn is None:
        where = load_settings().data_dir.resolve()
        raise Failure(
            f"no PostgreSQL: no `corridor dev` running from {where}; start it, or set "
            "CORRIDOR_DSN (and CORRIDOR_DATA_DIR when working from another folder)",
            3,
        )
    try:
        opening = EventStore.connect(connections.dsn)
        store = await opening.__aenter__()
    except OSError as error:
        raise Failure(f"cannot reach PostgreSQL ({error})", 3) from None
    try:
        yield store
    finally:
        await opening.__aexit__(None, None, None)


async def _programme_id(connections: Connections, given: str | None) -> str:
    """The programme named by id or by its TOML file, or the only one there is."""
    if given and given.endswith(".toml"):
        return load_programme(Path(given)).id
    if given:
        return given
    async with _store(connections) as store:
        programmes = await store.programmes()
    if len(programmes) == 1:
        return str(programmes[0]["programme_id"])
    if not programmes:
        raise Failure("no programme has journeys yet: enrol a roster first", 2)
    names = ", ".join(p["programme_id"] for p in programmes)
    raise Failure(f"several programmes ({names}): choose one with --programme", 2)


# ------------------------------------------------------------------------- dev


@app.command()
def dev(
    headless: Annotated[bool, typer.Option(help="Do not serve the Temporal Web UI.")] = False,
) -> None:
    """Run the embedded stack in the foreground: Temporal, PostgreSQL and a worker.

    State is kept under CORRIDOR_DATA_DIR (default .corridor/); starting again resumes
    every journey where it was. Ctrl-C stops it.
    """
    configure_logging()
    settings = load_settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with embedded_stack(
            settings, headless=headless, search_attributes=search.registrations()
        ) as stack:
            client = await connect(stack.temporal_address)
            err.print(
                f"Corridor is running. Temporal Web UI: {stack.ui_url or '(headless)'}"
                f"  Temporal: {stack.temporal_address}  Data: {settings.data_dir}\n"
                "Press Ctrl-C to stop.",
                highlight=False,
            )
            await run_worker(client, stack.dsn, settings.task_queue, stop)

    _run(main())


# ---------------------------------------------------------------------- enroll


@app.command()
def enroll(
    roster: Annotated[Path, typer.Argument(help="Roster CSV: one row per firm.")],
    programme: Annotated[Path, typer.Option("--programme", "-p", help="Programme TOML.")],
) -> None:
    """Enrol the firms of a roster: one journey per firm.

    Every row is checked first; if any is bad, every problem is listed and nothing is
    started. Firms already enrolled are left as they are.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        loaded = load_programme(programme)
        commands = load_roster(roster, loaded, today=datetime.now(UTC).date())
        problems = []
        for number, command in enumerate(commands, start=2):
            try:
                service.check_enrollment(command)
            except service.Refused as refusal:
                problems.append(RowError(roster.name, number, None, None, refusal.message))
        if problems:
            raise InputError(problems)
        async with _connected(settings) as connections:
            started = already = 0
            for command in commands:
                result = await service.enroll(
                    connections.client, command, task_queue=settings.task_queue
                )
                started += result.started
                already += not result.started
                state = "started" if result.started else "already enrolled"
                out.print(f"{result.workflow_id}: {state}")
        out.print(f"{started} journey(s) started, {already} already enrolled.")

    _run(main())


# ---------------------------------------------------------------------- record


async def _firms_with_journey(client: Client, programme_id: str, firm_ids: set[str]) -> set[str]:
    """The firms among ``firm_ids`` that have a journey (running or ended)."""
    known: set[str] = set()
    for firm_id in sorted(firm_ids):
        try:
            await service.journey_handle(client, programme_id, firm_id).describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise Failure(f"cannot reach Temporal: {error.message}", 3) from None
            continue
        known.add(firm_id)
    return known


@app.command()
def record(
    journal: Annotated[Path, typer.Argument(help="Journal CSV: one row per record.")],
    programme: Annotated[Path, typer.Option("--programme", "-p", help="Programme TOML.")],
) -> None:
    """Record a journal of meetings, contracts, visits, decisions and withdrawals.

    Every row is checked first (nothing is sent if any is bad); then the rows are sent
    in date order. Rows already recorded are recognised and not recorded twice.
    Exits 1 if a journey refused a row.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> int:
        loaded = load_programme(programme)
        async with _connected(settings) as connections:
            known = await _firms_with_journey(
                connections.client, loaded.id, journal_firm_ids(journal)
            )
            records = load_journal(journal, loaded, known_firms=known)
            accepted = duplicates = 0
            refused: list[tuple[JournalRecord, service.Refused]] = []
            with _progress() as progress:
                task = progress.add_task("recording", total=len(records))
                for item in records:
                    progress.update(task, description=f"{item.occurred_on} {item.firm_id}")
                    try:
                        result = await service.send(
                            connections.client, loaded.id, item.firm_id, item.command
                        )
                        duplicates += result.duplicate
                        accepted += not result.duplicate
                    except service.Refused as refusal:
                        refused.append((item, refusal))
                    progress.advance(task)
        for item, why in refused:
            err.print(
                f"refused: {journal.name}, row {item.row} ({item.firm_id}, {item.action}): "
                f"{why.message}",
            )
        out.print(
            f"{accepted} accepted, {duplicates} already recorded, {len(refused)} refused "
            f"(of {len(records)} rows)."
        )
        return 1 if refused else 0

    raise typer.Exit(_run(main()))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )


# --------------------------------------------------------- single-record commands

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


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError as error:
        raise Failure(f"{option} {value!r} is not a date: {error}", 2) from None


def _first(error: BaseException) -> str:
    """An error in plain words (pydantic's without its jargon)."""
    if isinstance(error, ValidationError):
        return explain(error)
    return str(error).splitlines()[0] if str(error) else type(error).__name__


E = TypeVar("E", bound=StrEnum)


def _choice(kind: type[E], value: str, name: str) -> E:
    """One of an enumeration's values, or a one-line error naming them all."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise Failure(f"{name} {value!r} is not one of {allowed}", 2) from None


def _retry_safe_id(firm: str, command: Command) -> str:
    """A command id for a command typed without one.

    The same command for the same firm on the same day gets the same id, so running it
    again after a time-out or an error records it once.
    """
    today = datetime.now(UTC).date()
    content = f"{firm}\x1f{today}\x1f{command.model_dump_json(exclude={'command_id'})}"
    return "cli-" + hashlib.sha256(content.encode()).hexdigest()[:32]


def _send_one(programme: str | None, firm: str, build: Callable[[], Command]) -> None:
    """Build a staff command from options and send it to the firm's journey."""
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        try:
            command = build()
        except ValueError as error:
            raise Failure(_first(error), 2) from None
        if command.command_id is None:
            command = command.model_copy(update={"command_id": _retry_safe_id(firm, command)})
        async with _connected(settings) as connections:
            programme_id = await _programme_id(connections, programme)
            try:
                result = await service.send(connections.client, programme_id, firm, command)
            except service.Refused as refusal:
                raise Failure(f"refused ({refusal.rule}): {refusal.message}", 1) from None
        if result.duplicate:
            out.print("already recorded: nothing new was written")
        for line in result.events:
            out.print(f"recorded: {line}")

    _run(main())


@meeting_app.command("request")
def meeting_request(
    firm: str,
    meeting_id: str,
    counterpart: str,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
) -> None:
    """The firm asks to meet COUNTERPART (e.g. Apple)."""
    _send_one(
        programme,
        firm,
        lambda: RequestMeeting(
            meeting_id=meeting_id,
            counterpart=counterpart,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
    )


@meeting_app.command("arrange")
def meeting_arrange(
    firm: str,
    meeting_id: str,
    partner: Annotated[str, typer.Option(help="Partner id, e.g. labizfed.")],
    at: Annotated[str, typer.Option(help="When, with its UTC offset: 2014-11-19T10:00-08:00.")],
    place: Annotated[str | None, typer.Option(help="Where.")] = None,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
) -> None:
    """A partner arranges a requested meeting."""

    def build() -> Command:
        try:
            scheduled = parse_aware_datetime(at)
        except ValueError as error:
            raise Failure(f"--at {at!r}: {error}", 2) from None
        return ArrangeMeeting(
            meeting_id=meeting_id,
            partner_id=partner,
            scheduled_at=scheduled,
            place=place,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        )

    _send_one(programme, firm, build)


@meeting_app.command("result")
def meeting_result(
    firm: str,
    meeting_id: str,
    outcome: Annotated[
        str, typer.Argument(help="promising, neutral, not_interested, no_show or cancelled.")
    ],
    notes: Annotated[str, typer.Option(help="Notes on the meeting.")] = "",
    next_step: Annotated[str | None, typer.Option(help="Agreed next step.")] = None,
    next_step_due: Annotated[str | None, typer.Option(help="Next step due YYYY-MM-DD.")] = None,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
) -> None:
    """Record how an arranged meeting went."""
    _send_one(
        programme,
        firm,
        lambda: RecordMeetingResult(
            meeting_id=meeting_id,
            outcome=_choice(Outcome, outcome, "outcome"),
            notes=notes,
            next_step=next_step,
            next_step_due_on=_date(next_step_due, "--next-step-due"),
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
    )


@app.command()
def contract(
    firm: str,
    counterpart: Annotated[str, typer.Option(help="Who the contract is with.")],
    amount: Annotated[str, typer.Option(help="Amount, e.g. 180000.00.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. USD.")],
    meeting: Annotated[
        list[str] | None, typer.Option(help="Meeting that led to it (repeatable).")
    ] = None,
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
) -> None:
    """Record a contract signed with a counterpart."""

    def build() -> Command:
        try:
            value = Money(amount=parse_amount(amount), currency=currency)
        except (ValueError, ArithmeticError) as error:
            message = f"--amount {amount!r} --currency {currency!r}: {_first(error)}"
            raise Failure(message, 2) from None
        return SignContract(
            counterpart=counterpart,
            value=value,
            meeting_ids=meeting or [],
            notes=notes,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        )

    _send_one(programme, firm, build)


class Attendance(StrEnum):
    """Whether the firm takes part in the open return visit."""

    ATTENDED = "attended"
    SKIPPED = "skipped"


@app.command()
def visit(
    firm: str,
    attendance: Annotated[str, typer.Argument(help="attended or skipped.")],
    mission: Annotated[str | None, typer.Option(help="Mission id of the visit.")] = None,
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
) -> None:
    """Record whether the firm takes part in the open return visit."""
    _send_one(
        programme,
        firm,
        lambda: RecordVisitAttendance(
            attended=_choice(Attendance, attendance, "attendance") is Attendance.ATTENDED,
            mission_id=mission,
            notes=notes,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
    )


@app.command()
def evaluate(
    firm: str,
    decision: Annotated[str, typer.Argument(help="renew or close.")],
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
) -> None:
    """Decide the two-year evaluation: renew for another cycle, or close."""
    _send_one(
        programme,
        firm,
        lambda: DecideEvaluation(
            decision=_choice(Decision, decision, "decision"),
            notes=notes,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
    )


@app.command()
def withdraw(
    firm: str,
    reason: Annotated[str, typer.Option(help="Why the firm withdraws.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
) -> None:
    """The firm withdraws from the programme."""
    _send_one(
        programme,
        firm,
        lambda: Withdraw(reason=reason, occurred_on=_date(on, "--on"), command_id=command_id),
    )


# ---------------------------------------------------------------------- status


QueryOption = Annotated[
    str | None,
    typer.Option(
        "--query",
        "-q",
        help="Temporal visibility filter, e.g. \"CorridorStage = 'awaiting_decision'\".",
    ),
]


_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
"""A programme id (``domain.programme.Identifier``): safe inside a quoted query string."""


async def _matching_streams(
    client: Client, programme_id: str, query: str | None
) -> set[str] | None:
    """Workflow ids of the programme's journeys matching a visibility filter."""
    if query is None:
        return None
    # Visibility queries take no parameters: only a well-formed id goes into the string.
    if not _IDENTIFIER.fullmatch(programme_id):
        raise Failure(f"invalid programme id {programme_id!r}", 2)
    full = f"{search.PROGRAMME.name} = '{programme_id}' AND ({query})"
    try:
        return {execution.id async for execution in client.list_workflows(full)}
    except RPCError as error:
        raise Failure(f"invalid --query {query!r}: {error.message}", 2) from None


def _ui_link(settings: Settings, connections: Connections, workflow_id: str) -> str:
    base = settings.ui_url or (connections.stack.ui_url if connections.stack else None)
    if base is None:
        return ""
    namespace = connections.client.namespace
    return f"{base.rstrip('/')}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


@app.command()
def status(
    firm: Annotated[str | None, typer.Argument(help="One firm (default: every journey).")] = None,
    programme: ProgrammeOption = None,
    query: QueryOption = None,
) -> None:
    """Each journey's stage, last event, next deadline and Web UI link.

    With --query, only the journeys that Temporal's visibility finds for the filter
    (the same filters as the Web UI's search box).
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with _connected(settings) as connections:
            programme_id = await _programme_id(connections, programme)
            matching = await _matching_streams(connections.client, programme_id, query)
            async with _store(connections) as store:
                rows = await store.pool.fetch(
                    "SELECT * FROM journeys WHERE programme_id = $1 "
                    "AND ($2::text IS NULL OR firm_id = $2) ORDER BY introduced_on, firm_id",
                    programme_id,
                    firm,
                )
            rows = [r for r in rows if matching is None or r["stream_id"] in matching]
            if not rows and query is not None:
                raise Failure(f"no journey of {programme_id} matches --query {query!r}", 1)
            if not rows:
                raise Failure(f"no journey for {firm or 'any firm'} in {programme_id}", 1)
            links = {r["stream_id"]: _ui_link(settings, connections, r["stream_id"]) for r in rows}
            with_links = any(links.values())
            table = Table(title=f"Journeys of {programme_id}")
            columns = ["firm", "stage", "cycle", "last event", "next deadline"]
            for column in [*columns, "Web UI"] if with_links else columns:
                table.add_column(column, overflow="fold")
            tz = zone(rows[0]["state"]["programme"]["timezone"])
            for row in rows:
                last_on = row["last_event_at"].astimezone(tz).date() if row["last_event_at"] else ""
                cells = [
                    row["firm_id"],
                    row["stage"].replace("_", " "),
                    str(row["cycle"]),
                    f"{last_on} {row['last_event_summary'] or ''}",
                    row["next_deadline"] or "—",
                ]
                table.add_row(*cells, *([links[row["stream_id"]]] if with_links else []))
            out.print(table)
            if firm is not None:
                view = await service.view(connections.client, programme_id, firm)
                out.print(f"business date: {view.business_now.astimezone(tz).date()}")
                for refusal in view.refusals[-5:]:
                    when = refusal.at.astimezone(tz).date()
                    out.print(
                        f"refused signal ({when}): {refusal.command}: {refusal.message}",
                        soft_wrap=True,
                    )

    _run(main())


@app.command()
def setup() -> None:
    """Register Corridor's search attributes on the Temporal cluster (idempotent)."""
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with _connected(settings) as connections:
            added = await register_search_attributes(connections.client)
        out.print(
            f"search attributes: {len(added)} added ({', '.join(added) or 'none'}), "
            f"{len(search.ALL) - len(added)} already registered"
        )

    _run(main())


# ---------------------------------------------------------------------- report


class ReportFormat(StrEnum):
    """Output formats of the bilan."""

    TERMINAL = "terminal"
    CSV = "csv"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"


@app.command()
def report(
    programme: Annotated[str, typer.Argument(help="Programme id, e.g. qc-california.")],
    mission: Annotated[str | None, typer.Option(help="Only firms introduced there.")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.TERMINAL,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
    query: QueryOption = None,
) -> None:
    """The bilan of a programme: how many contracts came out of it ("combien?").

    With --query, the bilan of the journeys matching a visibility filter only.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with _connected(settings) as connections, _store(connections) as store:
            matching = await _matching_streams(connections.client, programme, query)
            await _print_bilan(store, programme, mission, format, output, matching, query)
            if matching and format is ReportFormat.TERMINAL and output is None:
                for stream_id in sorted(matching):
                    link = _ui_link(settings, connections, stream_id)
                    out.print(f"{stream_id}  {link}".rstrip())

    _run(main())


async def _print_bilan(
    store: EventStore,
    programme_id: str,
    mission: str | None,
    format: ReportFormat,
    output: Path | None,
    matching: set[str] | None = None,
    query: str | None = None,
) -> None:
    states = [
        state
        for stream_id, state in (await store.journey_states(programme_id)).items()
        if matching is None or stream_id in matching
    ]
    if not states and query is not None:
        raise Failure(f"no journey of {programme_id} matches --query {query!r}", 1)
    if not states:
        raise Failure(f"no journey in programme {programme_id!r}", 1)
    programme = states[0].programme
    if mission is not None and mission not in {m.id for m in programme.missions}:
        known = ", ".join(m.id for m in programme.missions)
        raise Failure(f"unknown mission {mission!r} (known: {known})", 2)
    bilan = compute_bilan(programme.id, programme.name, states, mission)
    if query is not None:
        bilan = bilan.model_copy(update={"scope": f"query: {query}"})
    notice = programme.notice
    if format is ReportFormat.TERMINAL and output is None:
        render.render_terminal(bilan, out, notice=notice)
        return
    renderers: dict[ReportFormat, Callable[[], str]] = {
        ReportFormat.TERMINAL: lambda: _terminal_text(bilan, notice),
        ReportFormat.CSV: lambda: render.render_csv(bilan),
        ReportFormat.JSON: lambda: render.render_json(bilan),
        ReportFormat.MARKDOWN: lambda: render.render_markdown(bilan, notice=notice),
        ReportFormat.HTML: lambda: render.render_html(bilan, notice=notice),
    }
    text = renderers[format]()
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            await asyncio.to_thread(output.write_text, text, encoding="utf-8")
        except OSError as error:
            raise Failure(f"cannot write {output}: {error.strerror or error}", 2) from None
        err.print(f"wrote {output}")


def _terminal_text(bilan: Bilan, notice: str | None) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    render.render_terminal(bilan, console, notice=notice)
    return console.export_text()


@app.command()
def rebuild() -> None:
    """Rebuild every read model from the event store's events."""
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with _connected(settings) as connections, _store(connections) as store:
            count = await store.rebuild_read_models()
        out.print(f"read models rebuilt from {count} events")

    _run(main())


@app.command()
def migrate() -> None:
    """Migrate the PostgreSQL schema and create the worker's role (idempotent).

    Connects with CORRIDOR_ADMIN_DSN (the schema owner's DSN), else with CORRIDOR_DSN.
    Workers given CORRIDOR_ADMIN_DSN do this themselves when they start.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        dsn = settings.admin_dsn or settings.dsn
        if dsn is None:
            raise Failure("set CORRIDOR_ADMIN_DSN to the DSN of the schema's owner", 2)
        try:
            applied = await migrate_database(dsn)
        except OSError as error:
            raise Failure(f"cannot reach PostgreSQL ({error})", 3) from None
        except MigrationError as error:
            raise Failure(str(error), 1) from None
        done = ", ".join(str(number) for number in applied)
        out.print(f"migrations applied: {done}" if applied else "the schema is current")

    _run(main())


# ------------------------------------------------------------------------ demo


@app.command()
def demo(
    clock: Annotated[
        ClockMode | None,
        typer.Option(help="skip: Temporal time skipping; compressed: a fast business clock."),
    ] = None,
    month_seconds: Annotated[
        float, typer.Option(help="Compressed clock: real seconds per business month.")
    ] = 1.0,
    fresh: Annotated[bool, typer.Option(help="Delete the data directory first.")] = False,
    examples: Annotated[Path, typer.Option(help="Folder with the three files.")] = EXAMPLES,
) -> None:
    """Play the seed's mission (2013-2016) on the embedded stack and print the bilan."""
    configure_logging("WARNING")
    settings = load_settings()
    if fresh:
        if read_stack_file(settings.data_dir) is not None:
            _error("a `corridor dev` is running on this data directory")
            raise typer.Exit(2)
        shutil.rmtree(settings.data_dir, ignore_errors=True)

    async def main() -> None:
        programme = load_programme(examples / "programme.toml")
        roster = load_roster(examples / "roster.csv", programme)
        journal = load_journal(examples / "journal.csv", programme)
        scenario = Scenario(programme, roster, journal, max(r.occurred_on for r in journal))
        running = read_stack_file(settings.data_dir)
        if running is not None:
            err.print(f"Using the running `corridor dev` stack ({running.temporal_address}).")
            client = await connect(running.temporal_address)
            await _demo(client, running, scenario, clock, month_seconds)
            return
        async with embedded_stack(settings, search_attributes=search.registrations()) as stack:
            client = await connect(stack.temporal_address)
            stop = asyncio.Event()
            worker = asyncio.create_task(run_worker(client, stack.dsn, settings.task_queue, stop))
            try:
                await _demo(client, stack, scenario, clock, month_seconds)
            finally:
                stop.set()
                await worker

    _run(main())


@dataclass(frozen=True)
class Scenario:
    """What the demo plays: a programme, its roster, its journal, and its last day."""

    programme: Programme
    roster: list[EnrollFirm]
    journal: list[JournalRecord]
    until: date


async def _demo(
    client: Client,
    stack: StackInfo,
    scenario: Scenario,
    clock: ClockMode | None,
    month_seconds: float,
) -> None:
    settings = load_settings()
    mode = clock or ClockMode.SKIP
    programme, roster, journal = scenario.programme, scenario.roster, scenario.journal
    first = min(e.occurred_on for e in roster if e.occurred_on is not None)
    out.print(
        f"{programme.name}: {len(roster)} firms, {len(journal)} journal records, "
        f"{first} to {scenario.until} (clock: {mode.value}).",
    )
    with _progress() as progress:
        task = progress.add_task("starting", total=len(roster) + len(journal))

        done = 0

        def tick(day: date, text: str) -> None:
            nonlocal done
            progress.update(task, description=f"{day} {text}")
            progress.advance(task)
            done += 1
            if not err.is_terminal and done % 10 == 0:  # a log, not a bar
                err.print(f"{done} of {len(roster) + len(journal)}: {day} {text}")

        outcome = await play(
            client,
            programme,
            roster,
            journal,
            task_queue=settings.task_queue,
            until=scenario.until,
            mode=mode,
            month_seconds=month_seconds,
            progress=tick,
        )
    out.print(
        f"{outcome.enrolled} journeys started ({outcome.already_enrolled} already there); "
        f"{outcome.accepted} records accepted, {outcome.duplicates} already recorded, "
        f"{len(outcome.refused)} refused.",
    )
    for row, firm, message in outcome.refused:
        err.print(f"refused: journal.csv row {row} ({firm}): {message}")
    async with EventStore.connect(stack.dsn) as store:
        await _print_bilan(store, programme.id, None, ReportFormat.TERMINAL, None)
    if stack.ui_url:
        out.print(
            "Every journey is kept: run `corridor dev` and open the Temporal Web UI at "
            f"{stack.ui_url}/namespaces/default/workflows to audit them.",
            highlight=False,
        )
    if outcome.refused:
        raise Failure(f"{len(outcome.refused)} journal record(s) refused", 1)


def main() -> None:
    """Entry point of the ``corridor`` console script.

    Exits with ``os._exit`` once output is flushed: the Temporal SDK's native runtime can
    abort the interpreter at exit (sdk-python issue 300, exit 134), which must not turn
    a successful command into a failure.
    """
    code = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        err.print("aborted")
        code = 130
    except Exception as error:
        _error(f"{type(error).__name__}: {error}")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
