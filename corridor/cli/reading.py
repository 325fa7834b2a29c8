"""Commands that read: status (each journey), report (the bilan), timeline (one journey)."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from activities.store import EventStore
from corridor import service
from corridor.cli.app import ProgrammeOption, QueryOption, err, out, progress_bar, run
from corridor.cli.connections import (
    Connections,
    connected,
    matching_streams,
    open_store,
    programme_id_of,
    programme_ids,
    ui_link,
)
from corridor.errors import Failure
from corridor.logs import configure_logging
from corridor.reports import ReportFormat, print_bilan
from corridor.settings import Settings, load_settings
from domain.calendar import zone
from domain.timeline import TimelineEntry
from domain.timeline import timeline as fold_timeline
from workflows.journey import journey_workflow_id


def status(
    firm: Annotated[str | None, typer.Argument(help="One firm (default: every journey).")] = None,
    programme: ProgrammeOption = None,
    query: QueryOption = None,
) -> None:
    """Each journey's stage, last event, next deadline and Web UI link.

    Without --programme: the programme of FIRM (the only one it has a journey in);
    without a firm, every programme's journeys, one table each. With --query, only the
    journeys that Temporal's visibility finds for the filter (the same filters as the
    Web UI's search box).
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with connected(settings) as connections:
            if firm is not None or programme is not None:
                programmes = [await programme_id_of(connections, programme, firm)]
            else:
                programmes = await programme_ids(connections)
                if not programmes:
                    raise Failure("no programme has journeys yet: enrol a roster first", 1)
            scope = programmes[0] if len(programmes) == 1 else None
            matching = await matching_streams(connections.client, scope, query)
            shown = 0
            async with open_store(connections) as store:
                for programme_id in programmes:
                    rows = await store.journey_summaries(programme_id, firm)
                    rows = [r for r in rows if matching is None or r["stream_id"] in matching]
                    if rows:
                        _journey_table(settings, connections, programme_id, rows)
                        shown += 1
            for programme_id in programmes if shown else []:
                await _catching_up_line(connections, settings, programme_id)
            names = ", ".join(programmes)
            if not shown and query is not None:
                raise Failure(f"no journey of {names} matches --query {query!r}", 1)
            if not shown:
                raise Failure(f"no journey for {firm or 'any firm'} in {names}", 1)
            if firm is not None:
                await _firm_details(connections, programmes[0], firm, rows[0]["timezone"])

    run(main())


async def _catching_up_line(
    connections: Connections, settings: Settings, programme_id: str
) -> None:
    """Say how many of a programme's journeys are catching up, and the backlog's length."""
    behind, _ = await service.journeys_catching_up(connections.client, programme_id)
    if not behind:
        return
    try:
        backlog = await service.catch_up_backlog(connections.client, settings.task_queue)
        waiting = (
            f"; {backlog.tasks} task(s) waiting on {backlog.task_queue}, the oldest for "
            f"{backlog.oldest_seconds:.0f} s"
        )
    except RPCError:
        waiting = ""
    out.print(
        f"{programme_id}: {behind} journey(s) catching up (enrolled after the fact: "
        f"recording what fell due up to today){waiting}; staff commands to the others "
        "are not kept waiting.",
        soft_wrap=True,
    )


def _journey_table(
    settings: Settings, connections: Connections, programme_id: str, rows: list[dict[str, Any]]
) -> None:
    """Print one programme's journeys as a table, with their Web UI links when known."""
    links = {r["stream_id"]: ui_link(settings, connections, r["stream_id"]) for r in rows}
    with_links = any(links.values())
    table = Table(title=f"Journeys of {programme_id}")
    columns = ["firm", "stage", "cycle", "last event", "next deadline"]
    for column in [*columns, "Web UI"] if with_links else columns:
        table.add_column(column, overflow="fold")
    tz = zone(rows[0]["timezone"])
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


async def _firm_details(
    connections: Connections, programme_id: str, firm: str, timezone: str
) -> None:
    """Print what one journey says of itself: business date, adviser, messages, steps."""
    tz = zone(timezone)
    view = await service.view(connections.client, programme_id, firm)
    out.print(f"business date: {view.business_now.astimezone(tz).date()}")
    state = view.state
    out.print(
        f"adviser: {state.adviser_id or 'none'}; messages sent: "
        f"{state.messages_sent}"
        + (f", {view.messages_waiting} waiting" if view.messages_waiting else "")
        + (
            f", {state.messages_skipped} not sent because their time had passed"
            if state.messages_skipped
            else ""
        )
        + (f", {state.messages_failed} failed" if state.messages_failed else ""),
        soft_wrap=True,
    )
    if state.last_message_failure:
        out.print(
            f"last failed message: {state.last_message_failure} (corridor mail --failed "
            f"--firm {firm})",
            soft_wrap=True,
        )
    for step in state.next_steps.values():
        out.print(
            f"next step of {step.meeting_id}: {step.next_step} (due {step.due_on}, "
            f"{step.status})",
            soft_wrap=True,
        )
    for refusal in view.refusals[-5:]:
        when = refusal.at.astimezone(tz).date()
        out.print(
            f"refused signal ({when}): {refusal.command}: {refusal.message}",
            soft_wrap=True,
        )


def report(
    programme: Annotated[str, typer.Argument(help="Programme id, e.g. qc-california.")],
    mission: Annotated[str | None, typer.Option(help="Only firms introduced there.")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.TERMINAL,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
    query: QueryOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until no journey is catching up.")
    ] = False,
) -> None:
    """The bilan of a programme: how many contracts came out of it ("combien?").

    With --query, the bilan of the journeys matching a visibility filter only. The
    report says the date its figures hold for and whether they are complete: while
    journeys are still catching up (enrolled after the fact, or waiting for a worker)
    it says how many, in every format; --wait waits for them first.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with connected(settings) as connections, open_store(connections) as store:
            matching = await matching_streams(connections.client, programme, query)
            behind = await _journeys_behind(connections.client, store, programme)
            if wait and behind:
                with progress_bar() as progress:
                    task = progress.add_task("journeys catching up", total=None)
                    while behind:
                        progress.update(task, description=f"{behind} journey(s) catching up")
                        await asyncio.sleep(1.0)
                        behind = await _journeys_behind(connections.client, store, programme)
            await print_bilan(
                store,
                programme,
                behind=behind,
                out=out,
                err=err,
                mission=mission,
                format=format,
                output=output,
                matching=matching,
                query=query,
            )
            if matching and format is ReportFormat.TERMINAL and output is None:
                for stream_id in sorted(matching):
                    link = ui_link(settings, connections, stream_id)
                    out.print(f"{stream_id}  {link}".rstrip())

    run(main())


async def _journeys_behind(client: Client, store: EventStore, programme_id: str) -> int:
    """Journeys of the programme whose events up to their today are not all stored.

    Those catching up (Temporal's visibility), or known to Temporal but not yet in the
    read model, whichever is more.
    """
    catching_up, known = await service.journeys_catching_up(client, programme_id)
    stored = {p["programme_id"]: int(p["journeys"]) for p in await store.programmes()}
    return max(catching_up, known - stored.get(programme_id, 0))


class TimelineFormat(StrEnum):
    """How ``corridor timeline`` prints."""

    TERMINAL = "terminal"
    JSON = "json"


def _local(entry: TimelineEntry, timezone: str) -> dict[str, object]:
    """An entry as JSON, its times local to the programme's time zone."""
    data = entry.model_dump(mode="json")
    tz = zone(timezone)
    data["occurred_at"] = entry.occurred_at.astimezone(tz).isoformat()
    data["recorded_at"] = (
        entry.recorded_at.astimezone(tz).isoformat() if entry.recorded_at else None
    )
    return data


def timeline(
    firm: Annotated[str, typer.Argument(help="The firm, e.g. trifide.")],
    programme: ProgrammeOption = None,
    format: Annotated[TimelineFormat, typer.Option("--format", "-f")] = TimelineFormat.TERMINAL,
) -> None:
    """Every event of a firm's journey, from the event store.

    Each with its business time and recorded time (local to the programme), its author
    (corridor for the journey's own deadlines), the stage before and after, and for
    corrections the value before and after.
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with connected(settings) as connections:
            programme_id = await programme_id_of(connections, programme, firm)
            stream_id = journey_workflow_id(programme_id, firm)
            async with open_store(connections) as store:
                envelopes = await store.read_stream(stream_id)
        if not envelopes:
            raise Failure(f"no journey for {firm} in {programme_id}", 1)
        first = envelopes[0].event
        timezone = first.programme.timezone if hasattr(first, "programme") else "UTC"
        entries = fold_timeline(e.event for e in envelopes)
        if format is TimelineFormat.JSON:
            document = {
                "programme_id": programme_id,
                "firm_id": firm,
                "stream_id": stream_id,
                "timezone": timezone,
                "events": [_local(e, timezone) for e in entries],
            }
            out.print(json.dumps(document, ensure_ascii=False, indent=2), soft_wrap=True)
            return
        tz = zone(timezone)
        table = Table(title=f"Timeline of {firm} in {programme_id} ({timezone})")
        for column in ("#", "business time", "recorded", "by", "event", "stage", "changes"):
            table.add_column(column, overflow="fold")
        for entry in entries:
            before = entry.stage_before.value.replace("_", " ") if entry.stage_before else "—"
            after = entry.stage_after.value.replace("_", " ") if entry.stage_after else "—"
            recorded = (
                entry.recorded_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                if entry.recorded_at
                else ""
            )
            table.add_row(
                str(entry.version),
                entry.occurred_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                recorded,
                entry.recorded_by or "",
                entry.summary,
                after if before == after else f"{before} → {after}",
                "\n".join(str(change) for change in entry.changes),
            )
        out.print(table)
        out.print(f"{len(entries)} events (the whole stream of {stream_id}).")

    run(main())
