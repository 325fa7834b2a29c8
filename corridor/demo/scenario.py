"""The demo's scenario: the seed's files, played on a stack, ending with the bilan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client

from activities.store import EventStore
from corridor import service
from corridor.codec import keyring_of
from corridor.demo.player import ClockMode, play
from corridor.errors import Failure
from corridor.imports import JournalRecord, load_journal, load_programme, load_roster
from corridor.reports import print_bilan
from corridor.stack import StackInfo
from domain.commands import EnrollFirm
from domain.programme import Programme

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples" / "quebec-california"
"""The seed: Québec City's missions to California, 2013-2016."""
DEMO_AUTHOR = "corridor demo"
"""The author the demo records with the example's records."""


@dataclass(frozen=True)
class Scenario:
    """What the demo plays: a programme, its roster, its journal, and its last day."""

    programme: Programme
    roster: list[EnrollFirm]
    journal: list[JournalRecord]
    until: date

    @classmethod
    def load(cls, folder: Path = EXAMPLES) -> Scenario:
        """Read ``programme.toml``, ``roster.csv`` and ``journal.csv`` from ``folder``.

        The last day is the journal's last record's.

        Raises:
            InputError: A file has problems.
        """
        programme = load_programme(folder / "programme.toml")
        roster = [
            c.model_copy(update={"by": DEMO_AUTHOR})
            for c in load_roster(folder / "roster.csv", programme)
        ]
        journal = load_journal(folder / "journal.csv", programme, by=DEMO_AUTHOR)
        return cls(programme, roster, journal, max(r.occurred_on for r in journal))


async def run_scenario(
    client: Client,
    stack: StackInfo,
    scenario: Scenario,
    *,
    task_queue: str,
    clock: ClockMode | None,
    month_seconds: float,
    out: Console,
    err: Console,
) -> None:
    """Play the scenario and print what happened, then the bilan.

    Args:
        client: Temporal client of the stack.
        stack: The stack (its DSN for the bilan, its Web UI for the closing line).
        scenario: What to play.
        task_queue: The workers' task queue.
        clock: How years pass (default: time skipping).
        month_seconds: Compressed clock: real seconds per business month.
        out: Console for the summary and the bilan.
        err: Console for progress, refusals and clocks left compressed.

    Raises:
        Failure: Records were refused, or journeys were left on a compressed clock
            (exit 1).
        Unreachable: Temporal stopped answering.
    """
    mode = clock or ClockMode.SKIP
    programme, roster, journal = scenario.programme, scenario.roster, scenario.journal
    first = min(e.occurred_on for e in roster if e.occurred_on is not None)
    out.print(
        f"{programme.name}: {len(roster)} firms, {len(journal)} journal records, "
        f"{first} to {scenario.until} (clock: {mode.value}).",
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task("starting", total=len(roster) + len(journal))

        done = 0

        def tick(day: date, text: str) -> None:
            nonlocal done
            bar.update(task, description=f"{day} {text}")
            bar.advance(task)
            done += 1
            if not err.is_terminal and done % 10 == 0:  # a log, not a bar
                err.print(f"{done} of {len(roster) + len(journal)}: {day} {text}")

        outcome = await play(
            client,
            programme,
            roster,
            journal,
            task_queue=task_queue,
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
    for firm, why in outcome.clocks_not_reset:
        err.print(f"clock not set back to real time: {firm}: {why}")
    for enrolment in roster:  # the last messages go out before they are counted
        await service.messages_settled(client, programme.id, enrolment.firm.id)
    async with EventStore.connect(stack.dsn, keyring=keyring_of(client.data_converter)) as store:
        await print_bilan(store, programme.id, out=out, err=err)
        await print_messages(store, programme, first, scenario.until, out=out)
    if stack.ui_url:
        out.print(
            "Every journey is kept: run `corridor dev` and open the Temporal Web UI at "
            f"{stack.ui_url}/namespaces/default/workflows to audit them.",
            highlight=False,
        )
    if outcome.refused:
        raise Failure(f"{len(outcome.refused)} journal record(s) refused", 1)
    if outcome.clocks_not_reset:
        raise Failure(
            f"{len(outcome.clocks_not_reset)} journey(s) left on the compressed clock", 1
        )


async def print_messages(
    store: EventStore, programme: Programme, first: date, until: date, *, out: Console
) -> None:
    """Say how many messages went to whom over the demo's years (from the outbox).

    Args:
        store: The event store (its pool reads the outbox).
        programme: The programme.
        first: The first business date played.
        until: The last one.
        out: Where to print.
    """
    rows = await store.pool.fetch(
        "SELECT recipient, firm_id, kind, count(*) AS n FROM outbox "
        "WHERE programme_id = $1 AND state = 'sent' AND business_date BETWEEN $2 AND $3 "
        "GROUP BY recipient, firm_id, kind",
        programme.id,
        first,
        until,
    )
    names = {f"staff:{s.id}": s.name for s in programme.staff}
    by_whom: dict[str, dict[str, int]] = {}
    for row in rows:
        who = (
            f"the contact of {row['firm_id']}"
            if row["recipient"] == "contact"
            else names.get(row["recipient"], row["recipient"])
        )
        kinds = by_whom.setdefault(who, {})
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + row["n"]
    total = sum(sum(k.values()) for k in by_whom.values())
    out.print(
        f"Messages sent from {first} to {until} (business dates): {total}"
        + (" (`corridor mail` lists them)" if total else "")
    )
    for who, kinds in sorted(by_whom.items(), key=lambda item: (-sum(item[1].values()), item[0])):
        detail = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(kinds.items()))
        out.print(f"  {who}: {sum(kinds.values())} ({detail})")
