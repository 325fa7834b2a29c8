"""Commands that send operators' files: enroll (a roster), record (a journal)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from corridor import service
from corridor.cli.app import ByOption, Interrupted, Interruption, Tally, author, err, out, run
from corridor.cli.connections import Connections, connected, open_store
from corridor.demo.player import DemoOutcome, play_firm_held
from corridor.errors import Failure
from corridor.imports import (
    InputError,
    JournalRecord,
    RowError,
    journal_firm_ids,
    load_journal,
    load_programme,
    load_roster,
)
from corridor.logs import configure_logging
from corridor.settings import Settings, load_settings
from corridor.temporal import TRANSIENT
from domain.commands import EnrollFirm
from domain.journey import enrolment_differences
from domain.programme import Programme
from domain.wording import explain
from workflows.journey import journey_workflow_id

CONCURRENCY = 16
"""Journeys ``corridor enroll`` starts at a time (``--concurrency``)."""

START_PATIENCE = 10.0
"""Seconds a journey's start is tried again while Temporal answers that it is busy or
away, before the firm is counted as failed."""

ConcurrencyOption = Annotated[
    int,
    typer.Option(
        "--concurrency",
        min=1,
        max=256,
        envvar="CORRIDOR_ENROLL_CONCURRENCY",
        help="Journeys started at a time (or CORRIDOR_ENROLL_CONCURRENCY).",
    ),
]


def enroll(
    roster: Annotated[Path, typer.Argument(help="Roster CSV: one row per firm.")],
    programme: Annotated[Path, typer.Option("--programme", "-p", help="Programme TOML.")],
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            "-j",
            help="Journal CSV of the firms' past records, played in business-time order.",
        ),
    ] = None,
    by: ByOption = None,
    concurrency: ConcurrencyOption = CONCURRENCY,
) -> None:
    """Enrol the firms of a roster: one journey per firm.

    Every row is checked first; if any is bad, every problem is listed and nothing is
    started. Firms already enrolled are left as they are. Journeys are started
    --concurrency at a time, with a progress bar (rate and time left) on a terminal;
    the summary says how many were started, already enrolled, enrolled with other
    values, and failed. Interrupted (Ctrl-C), it says what was done: running it again
    starts only the journeys still missing.

    With --journal, a past journal is imported as if each row had been recorded on its
    day: each new journey's clock stands at its introduction, moves on to each record's
    day before the record is sent (the deadlines between fall due in order), then runs
    on the real clock and catches up to today.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        loaded = load_programme(programme)
        commands = load_roster(roster, loaded, today=datetime.now(UTC).date())
        try:
            commands = [
                type(c).model_validate({**c.model_dump(), "by": author(by)}) for c in commands
            ]
        except ValidationError as error:
            raise Failure(f"--by {author(by)!r}: {explain(error)}", 2) from None
        problems = []
        for number, command in enumerate(commands, start=2):
            try:
                service.check_enrollment(command)
            except service.Refused as refusal:
                problems.append(RowError(roster.name, number, None, None, refusal.message))
        if problems:
            raise InputError(problems)
        if journal is not None:
            firms = {command.firm.id for command in commands}
            records = load_journal(journal, loaded, known_firms=firms, by=author(by))
            async with connected(settings) as connections:
                await _import_past(
                    connections.client, loaded, commands, records, settings, concurrency
                )
            return
        async with connected(settings) as connections:
            starts = await _start_journeys(
                connections.client, commands, settings.task_queue, concurrency
            )
            already = [c for c, r in zip(commands, starts.results, strict=True) if r is False]
            differing = (
                await _differing_enrolments(connections, already)
                if already and starts.stopped is None
                else 0
            )
        summary = f"{starts.started} journey(s) started, {len(already)} already enrolled"
        if differing:
            summary += f", {differing} differing"
        if starts.failed:
            summary += f", {len(starts.failed)} failed"
        if starts.stopped is not None:
            summary += f", {starts.not_sent} not sent (of {len(commands)} firms)"
        out.print(f"{summary}.")
        if isinstance(starts.stopped, Interrupted):
            err.print(
                f"interrupted: {starts.not_sent} of {len(commands)} firm(s) not sent. Running "
                "the same command again is safe: it starts only the journeys still missing "
                "and enrols no firm twice.",
                soft_wrap=True,
            )
            raise typer.Exit(130)
        if starts.stopped is not None:
            raise Failure(
                f"{starts.stopped}; {starts.not_sent} firm(s) not sent: run the same command "
                "again once it answers (it starts only the journeys still missing)",
                3,
            )
        if differing:
            raise Failure(
                f"{differing} firm(s) already enrolled with other values: not changed", 1
            )
        if starts.failed:
            raise Failure(f"{len(starts.failed)} firm(s) could not be enrolled", 3)

    run(main())


@dataclass
class _Starts:
    """What ``_start_journeys`` did, firm by firm.

    Attributes:
        results: Per roster row: True started now, False already enrolled, a string why
            it failed, None not sent (or sent as the command stopped: not known).
        stopped: Why it stopped before the end (:class:`Interrupted`, or Temporal
            unreachable), None if it went through the roster.
    """

    results: list[bool | str | None]
    stopped: BaseException | None = None

    @property
    def started(self) -> int:
        """Journeys started now."""
        return sum(1 for r in self.results if r is True)

    @property
    def failed(self) -> list[str]:
        """Why each failed firm failed."""
        return [r for r in self.results if isinstance(r, str)]

    @property
    def not_sent(self) -> int:
        """Rows not sent (or whose start is not known)."""
        return sum(1 for r in self.results if r is None)


class _Away(Exception):
    """Temporal did not answer a start for ``START_PATIENCE`` seconds."""


async def _start_one(client: Client, command: EnrollFirm, task_queue: str) -> bool | str:
    """Start one journey: True started, False already enrolled, a string why it failed.

    Raises:
        _Away: Temporal stayed unreachable or busy for ``START_PATIENCE`` seconds.
    """
    deadline = time.monotonic() + START_PATIENCE
    pause = 0.2
    while True:
        try:
            result = await service.enroll(client, command, task_queue=task_queue)
        except RPCError as error:
            if error.status not in TRANSIENT:
                return error.message or error.status.name
            if time.monotonic() + pause > deadline:
                raise _Away(f"Temporal does not answer ({error.message})") from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
            continue
        return result.started


async def _start_journeys(
    client: Client, commands: list[EnrollFirm], task_queue: str, concurrency: int
) -> _Starts:
    """Start the roster's journeys, ``concurrency`` at a time, until done or stopped.

    Each firm's line is printed in roster order as soon as it and those before it are
    known; a failed start is said on stderr. Ctrl-C stops sending (the starts in flight
    are given a moment to finish).
    """
    starts = _Starts([None] * len(commands))
    printed = 0
    pending = iter(range(len(commands)))

    def say() -> None:
        nonlocal printed
        while printed < len(commands) and starts.results[printed] is not None:
            _say_start(commands[printed], starts.results[printed])
            printed += 1

    with Interruption() as interruption, Tally("enrolling", len(commands), "firms") as tally:

        async def starter() -> None:
            for index in pending:
                if interruption.requested.is_set() or starts.stopped is not None:
                    return
                command = commands[index]
                try:
                    starts.results[index] = await interruption.finish(
                        _start_one(client, command, task_queue)
                    )
                except Interrupted as stop:
                    starts.stopped = starts.stopped or stop
                    return
                except _Away as away:
                    starts.stopped = starts.stopped or away
                    return
                tally.advance(command.firm.id)
                say()

        try:
            await asyncio.gather(*(starter() for _ in range(min(concurrency, len(commands)))))
        except asyncio.CancelledError:
            Interruption.absorb()  # Ctrl-C twice: what was in flight is not known
        if interruption.requested.is_set() and starts.stopped is None and starts.not_sent:
            starts.stopped = Interrupted()
    for index in range(printed, len(commands)):
        if starts.results[index] is not None:
            _say_start(commands[index], starts.results[index])
    return starts


def _say_start(command: EnrollFirm, result: bool | str | None) -> None:
    """One firm's line: ``journey/P/F: started`` or ``already enrolled`` (failed: stderr)."""
    workflow_id = journey_workflow_id(command.programme.id, command.firm.id)
    if isinstance(result, str):
        err.print(f"failed: {workflow_id}: {result}", soft_wrap=True)
    elif result is not None:
        out.print(f"{workflow_id}: {'started' if result else 'already enrolled'}")


async def _import_past(
    client: Client,
    programme: Programme,
    commands: list[EnrollFirm],
    records: list[JournalRecord],
    settings: Settings,
    concurrency: int,
) -> None:
    """Enrol the firms on held clocks and play their journal in business-time order.

    Firms play ``concurrency`` at a time; Ctrl-C stops them where they are (a journey
    left with its clock held is moved on again when the same command is run again).
    """
    outcome = DemoOutcome()
    imported_at = datetime.now(UTC)
    slots = asyncio.Semaphore(concurrency)
    interrupted = False
    with (
        Interruption() as interruption,
        Tally("importing", len(commands) + len(records), "items") as tally,
    ):

        def advance(day: date, text: str) -> None:
            tally.advance(f"{day} {text}")

        async def one_firm(enrolment: EnrollFirm) -> None:
            firm_records = [r for r in records if r.firm_id == enrolment.firm.id]
            async with slots:
                if interruption.requested.is_set():
                    return
                try:
                    await play_firm_held(
                        client,
                        programme,
                        enrolment,
                        firm_records,
                        task_queue=settings.task_queue,
                        until=None,
                        outcome=outcome,
                        report=advance,
                        quiet_until=imported_at,  # an import tells nobody of the past
                    )
                except (service.Unreachable, RPCError, service.Refused) as error:
                    outcome.failed.append((enrolment.firm.id, str(error)))

        firms = asyncio.ensure_future(
            asyncio.gather(*(one_firm(enrolment) for enrolment in commands))
        )
        try:
            await interruption.finish(firms, grace=0.0)
        except Interrupted:
            interrupted = True
        except asyncio.CancelledError:
            Interruption.absorb()
            interrupted = True
    for row, firm, message in outcome.refused:
        err.print(f"refused: row {row} ({firm}): {message}")
    for firm, why in outcome.failed:
        err.print(f"failed: {firm}: {why}")
    sent = outcome.accepted + outcome.duplicates + len(outcome.refused)
    out.print(
        f"{outcome.enrolled} journey(s) started, {outcome.already_enrolled} already enrolled; "
        f"{outcome.accepted} record(s) accepted, {outcome.duplicates} already recorded, "
        f"{len(outcome.refused)} refused"
        + (f", {len(records) - sent} not sent" if interrupted else "")
        + f" (of {len(records)} rows)."
    )
    if interrupted:
        err.print(
            f"interrupted: {len(commands) - outcome.enrolled - outcome.already_enrolled} "
            f"firm(s) not enrolled, {len(records) - sent} record(s) not sent (one in flight "
            "per firm may have been recorded). Running the same command again is safe: "
            "it enrols no firm twice, records nothing twice, and goes on where it stopped.",
            soft_wrap=True,
        )
        raise typer.Exit(130)
    if outcome.failed:
        raise Failure(f"{len(outcome.failed)} firm(s) could not be imported", 3)
    if outcome.refused:
        raise Failure(f"{len(outcome.refused)} journal record(s) refused", 1)


async def _differing_enrolments(connections: Connections, commands: list[EnrollFirm]) -> int:
    """Report the roster rows of firms already enrolled whose values differ; count them.

    Read from the journeys read model (a journey that stored nothing yet is not
    compared). Each is printed with its fields, the recorded value and the row's.
    """
    differing = 0
    async with open_store(connections) as store:  # one programme per roster: one query
        states = await store.journey_states(commands[0].programme.id)
    enrolled = {state.firm.id: state for state in states.values()}
    for command in commands:
        state = enrolled.get(command.firm.id)
        differences = enrolment_differences(state, command) if state is not None else []
        if not differences:
            continue
        differing += 1
        fields = "; ".join(f"{name} {old!r} (this row: {new!r})" for name, old, new in differences)
        advice = (
            f" (another adviser: `corridor reassign {command.firm.id} ADVISER`)"
            if any(name == "adviser" for name, _, _ in differences)
            else ""
        )
        err.print(
            f"differs: {command.firm.id} is already enrolled with {fields}: a roster does not "
            f"change an enrolment{advice}"
        )
    return differing


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


def record(
    journal: Annotated[Path, typer.Argument(help="Journal CSV: one row per record.")],
    programme: Annotated[Path, typer.Option("--programme", "-p", help="Programme TOML.")],
    by: ByOption = None,
) -> None:
    """Record a journal of meetings, contracts, visits, decisions and withdrawals.

    Every row is checked first (nothing is sent if any is bad); then the rows are sent
    in date order. Rows already recorded are recognised and not recorded twice. Rows
    may also correct or void earlier records (with a reason). Each record is stored
    with its author: the row's recorded_by, else --by.
    Exits 1 if a journey refused a row. Interrupted (Ctrl-C, exit 130), or stopped by a
    server, it says how many rows were recorded, already recorded, refused and not
    sent: sending the same file again is safe.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> int:
        loaded = load_programme(programme)
        async with connected(settings) as connections:
            known = await _firms_with_journey(
                connections.client, loaded.id, journal_firm_ids(journal)
            )
            records = load_journal(journal, loaded, known_firms=known, by=author(by))
            accepted = duplicates = 0
            refused: list[tuple[JournalRecord, service.Refused]] = []
            in_flight: JournalRecord | None = None
            stopped: BaseException | None = None
            with (
                Interruption() as interruption,
                Tally("recording", len(records), "rows") as tally,
            ):
                try:
                    for item in records:
                        if interruption.requested.is_set():
                            raise Interrupted
                        in_flight = item
                        try:
                            result = await interruption.finish(
                                service.send(
                                    connections.client, loaded.id, item.firm_id, item.command
                                )
                            )
                            duplicates += result.duplicate
                            accepted += not result.duplicate
                        except service.Refused as refusal:
                            refused.append((item, refusal))
                        in_flight = None
                        tally.advance(f"{item.occurred_on} {item.firm_id}")
                except (Interrupted, service.Unreachable) as error:
                    stopped = error
                except asyncio.CancelledError:
                    Interruption.absorb()  # Ctrl-C twice
                    stopped = Interrupted()
        for item, why in refused:
            err.print(
                f"refused: {journal.name}, row {item.row} ({item.firm_id}, {item.action}): "
                f"{why.message}",
            )
        if stopped is None:
            out.print(
                f"{accepted} accepted, {duplicates} already recorded, {len(refused)} refused "
                f"(of {len(records)} rows)."
            )
            return 1 if refused else 0
        not_sent = len(records) - accepted - duplicates - len(refused)
        how = "interrupted" if isinstance(stopped, Interrupted) else "stopped"
        err.print(
            f"{how}: {accepted} row(s) recorded, {duplicates} already recorded, "
            f"{len(refused)} refused, {not_sent} not sent (of {len(records)} rows)"
            + (
                f"; row {in_flight.row} was being sent and may have been recorded"
                if in_flight is not None
                else ""
            )
            + f". Sending {journal.name} again is safe: what is recorded is recognised "
            "and never recorded twice.",
            soft_wrap=True,
        )
        if isinstance(stopped, Interrupted):
            return 130
        raise stopped

    raise typer.Exit(run(main()))
