"""Printing a programme's bilan from the read model, in the format asked for."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from rich.console import Console

from activities.store import EventStore
from corridor.errors import Failure
from corridor.reports.csv import render_csv
from corridor.reports.html import render_html
from corridor.reports.json import render_json
from corridor.reports.markdown import render_markdown
from corridor.reports.terminal import render_terminal, terminal_text


class ReportFormat(StrEnum):
    """Output formats of the bilan."""

    TERMINAL = "terminal"
    CSV = "csv"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"


async def print_bilan(
    store: EventStore,
    programme_id: str,
    *,
    behind: int = 0,
    out: Console,
    err: Console,
    mission: str | None = None,
    format: ReportFormat = ReportFormat.TERMINAL,
    output: Path | None = None,
    matching: set[str] | None = None,
    query: str | None = None,
) -> None:
    """Compute a programme's bilan from the journeys read model and print or write it.

    Args:
        store: The event store (its ``journeys`` read model).
        programme_id: The programme.
        behind: Journeys still catching up (the figures leave out what they have not
            stored yet): said in every format.
        out: Console of the terminal format.
        err: Console for the "wrote FILE" line.
        mission: Only the firms introduced at this mission.
        format: The output format.
        output: Write to this file instead of standard output.
        matching: Only these journeys (stream ids), e.g. found by a visibility query.
        query: The visibility query that found ``matching`` (shown as the scope).

    Raises:
        Failure: No journey (exit 1), an unknown mission or an unwritable file (exit 2).
    """
    programme = await store.programme(programme_id)
    if programme is None:
        raise Failure(f"no journey in programme {programme_id!r}", 1)
    if mission is not None and mission not in {m.id for m in programme.missions}:
        known = ", ".join(m.id for m in programme.missions)
        raise Failure(f"unknown mission {mission!r} (known: {known})", 2)
    stream_ids = sorted(matching) if matching is not None else None
    bilan = await store.bilan(programme_id, mission, stream_ids=stream_ids)
    if bilan is None or (matching is not None and not bilan.rows):
        if query is not None:
            raise Failure(f"no journey of {programme_id} matches --query {query!r}", 1)
        raise Failure(f"no journey in programme {programme_id!r}", 1)
    bilan = bilan.model_copy(update={"journeys_behind": behind})
    if query is not None:
        bilan = bilan.model_copy(update={"scope": f"query: {query}"})
    if not bilan.complete:
        err.print(f"warning: {bilan.completeness()}")
    notice = " ".join(filter(None, [bilan.completeness(), programme.notice]))
    if format is ReportFormat.TERMINAL and output is None:
        render_terminal(bilan, out, notice=notice)
        return
    renderers: dict[ReportFormat, Callable[[], str]] = {
        ReportFormat.TERMINAL: lambda: terminal_text(bilan, notice),
        ReportFormat.CSV: lambda: render_csv(bilan),
        ReportFormat.JSON: lambda: render_json(bilan),
        ReportFormat.MARKDOWN: lambda: render_markdown(bilan, notice=notice),
        ReportFormat.HTML: lambda: render_html(bilan, notice=notice),
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
