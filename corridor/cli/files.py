"""Commands that send operators' files: enroll (a roster), record (a journal)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from corridor import service
from corridor.cli.app import ByOption, author, err, out, progress_bar, run
from corridor.cli.connections import Connections, connected, open_store
from corridor.demo.player import ClockMode, play
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
from domain.commands import EnrollFirm
from domain.journey import enrolment_differences
from domain.programme import Programme
from domain.wording import explain


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
) -> None:
    """Enrol the firms of a roster: one journey per firm.

    Every row is checked first; if any is bad, every problem is listed and nothing is
    started. Firms already enrolled are left as they are.

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
                await _import_past(connections.client, loaded, commands, records, settings)
            return
        async with connected(settings) as connections:
            started = 0
            already: list[EnrollFirm] = []
            for command in commands:
                result = await service.enroll(
                    connections.client, command, task_queue=settings.task_queue
                )
                started += result.started
                if not result.started:
                    already.append(command)
                state = "started" if result.started else "already enrolled"
                out.print(f"{result.workflow_id}: {state}")
            differing = await _differing_enrolments(connections, already) if already else 0
        out.print(f"{started} journey(s) started, {len(already)} already enrolled.")
        if differing:
            raise Failure(
                f"{differing} firm(s) already enrolled with other values: not changed", 1
            )

    run(main())


async def _import_past(
    client: Client,
    programme: Programme,
    commands: list[EnrollFirm],
    records: list[JournalRecord],
    settings: Settings,
) -> None:
    """Enrol the firms on held clocks and play their journal in business-time order."""
    with progress_bar() as progress:
        task = progress.add_task("importing", total=len(commands) + len(records))

        def advance(day: date, text: str) -> None:
            progress.update(task, description=f"{day} {text}")
            progress.advance(task)

        outcome = await play(
            client,
            programme,
            commands,
            records,
            task_queue=settings.task_queue,
            until=None,
            mode=ClockMode.HELD,
            progress=advance,
        )
    for row, firm, message in outcome.refused:
        err.print(f"refused: row {row} ({firm}): {message}")
    for firm, why in outcome.failed:
        err.print(f"failed: {firm}: {why}")
    out.print(
        f"{outcome.enrolled} journey(s) started, {outcome.already_enrolled} already enrolled; "
        f"{outcome.accepted} record(s) accepted, {outcome.duplicates} already recorded, "
        f"{len(outcome.refused)} refused (of {len(records)} rows)."
    )
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
    Exits 1 if a journey refused a row.
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
            with progress_bar() as progress:
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

    raise typer.Exit(run(main()))
