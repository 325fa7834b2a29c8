"""Run every fault scenario and write its figures to RELIABILITY.md.

.venv/bin/python -m reliability            # the full set (a few minutes)
.venv/bin/python -m reliability --quick    # the CI subset
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from corridor.logs import configure_logging
from reliability.scenarios import (
    Outcome,
    appends_out_of_order,
    backfill,
    burst_during_continue_as_new,
    journeys_reset,
    many_commands,
    postgres_stopped,
    smtp_stopped,
    temporal_restarted,
    unsendable,
    worker_killed,
)

REPORT = Path(__file__).resolve().parent.parent / "RELIABILITY.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
console = Console(stderr=True, markup=False, highlight=False)

Scenario = Callable[[Callable[[str], None]], Coroutine[Any, Any, Outcome]]


def plan(quick: bool) -> list[tuple[str, Scenario]]:
    """The scenarios, full size or the CI subset."""
    if quick:
        return [
            ("worker", lambda p: worker_killed(8, p)),
            ("postgres", lambda p: postgres_stopped(6, p, outage=8.0)),
            ("temporal", lambda p: temporal_restarted(6, p)),
            ("burst", lambda p: burst_during_continue_as_new(40, p, bursts=2)),
            ("appends", lambda p: appends_out_of_order(20, p)),
            ("reset", lambda p: journeys_reset(8, p)),
            ("commands", lambda p: many_commands(600, p, continue_as_new_after=200)),
            ("smtp", lambda p: smtp_stopped(6, p, outage=10.0)),
            ("backfill", lambda p: backfill(40, p, baseline_seconds=5.0)),
            ("unsendable", lambda p: unsendable(6, p)),
        ]
    return [
        ("worker", lambda p: worker_killed(50, p)),
        ("postgres", lambda p: postgres_stopped(20, p, outage=30.0)),
        ("temporal", lambda p: temporal_restarted(20, p)),
        ("burst", lambda p: burst_during_continue_as_new(80, p, bursts=3)),
        ("appends", lambda p: appends_out_of_order(50, p)),
        ("reset", lambda p: journeys_reset(20, p)),
        ("commands", lambda p: many_commands(10_000, p, continue_as_new_after=2_000)),
        ("smtp", lambda p: smtp_stopped(20, p, outage=30.0)),
        ("backfill", lambda p: backfill(1_000, p, baseline_seconds=60.0)),
        ("unsendable", lambda p: unsendable(20, p)),
    ]


def table(outcomes: list[Outcome]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| scenario | faults injected | journeys completed | events expected | events found "
        "| duplicates | losses | version gaps | driver retries | seconds | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.scenario} | {o.faults} | {o.journeys_completed} of {o.journeys} "
            f"| {o.events_expected} | {o.events_found} | {o.duplicates} | {o.losses} "
            f"| {o.gaps} | {o.retries} | {o.seconds:.0f} | {'pass' if o.passed else 'FAIL'} |"
        )
    notes = [f"- {o.scenario}: {note}" for o in outcomes for note in o.notes]
    return "\n".join(lines + (["", *notes] if notes else []))


def bad_input() -> tuple[int, int, int, str]:
    """Run the bad-input corpus; (cases, passed, failed, pytest's closing line)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_bad_input.py", "-q", "-p", "no:cacheprovider"],
        cwd=REPORT.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    closing = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "no output"
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|xfailed|error)", closing)}
    passed = counts.get("passed", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0)
    return passed + failed + counts.get("xfailed", 0), passed, failed, closing


def _replace(text: str, begin: str, end: str, block: str) -> str:
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    return pattern.sub(lambda _m: f"{begin}\n{block}\n{end}", text)


def merge_rows(outcomes: list[Outcome], only: list[str]) -> None:
    """Put the rows and notes of scenarios run alone (``--only``) into RELIABILITY.md.

    Each replaces the row of the same scenario (or is added), and the heading says when
    and with which command it was measured again.
    """
    text = REPORT.read_text(encoding="utf-8")
    block = re.search(re.escape(BEGIN) + "\n(.*?)\n" + re.escape(END), text, re.DOTALL)
    if block is None:
        return
    lines = block.group(1).split("\n")
    fresh = table(outcomes).split("\n")
    for outcome in outcomes:
        row = next(r for r in fresh if r.startswith(f"| {outcome.scenario} |"))
        at = next((i for i, r in enumerate(lines) if r.startswith(f"| {outcome.scenario} |")), None)
        if at is None:
            last = max(i for i, r in enumerate(lines) if r.startswith("| "))
            lines.insert(last + 1, row)
        else:
            lines[at] = row
        lines = [r for r in lines if not r.startswith(f"- {outcome.scenario}: ")]
        lines += [r for r in fresh if r.startswith(f"- {outcome.scenario}: ")]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines[0] += (
        f" Measured again {stamp} with `python -m reliability "
        + " ".join(f"--only {name}" for name in only)
        + "`: "
        + ", ".join(o.scenario for o in outcomes)
        + "."
    )
    REPORT.write_text(
        _replace(text, BEGIN, END, "\n".join(lines)), encoding="utf-8"
    )


def write_report(
    outcomes: list[Outcome], quick: bool, corpus: tuple[int, int, int, str]
) -> None:
    """Replace the figures between the markers of RELIABILITY.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"python -m reliability{' --quick' if quick else ''}"
    text = REPORT.read_text(encoding="utf-8")
    if outcomes:
        text = _replace(
            text,
            BEGIN,
            END,
            f"Measured {stamp} with `{command}` on this machine.\n\n{table(outcomes)}",
        )
    cases, passed, _failed, closing = corpus
    text = _replace(
        text,
        "<!-- bad-input:begin -->",
        "<!-- bad-input:end -->",
        "| cases tried | answered exactly as expected | not yet | pytest |\n"
        "| ---: | ---: | ---: | --- |\n"
        f"| {cases} | {passed} | {cases - passed} | {closing} |",
    )
    REPORT.write_text(text, encoding="utf-8")


def main(
    quick: Annotated[bool, typer.Option(help="The shorter CI subset.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these: worker, postgres, temporal, burst, appends, reset, commands, "
            "smtp, backfill, unsendable, bad-input."
        ),
    ] = None,
    write: Annotated[bool, typer.Option(help="Write the figures to RELIABILITY.md.")] = True,
) -> None:
    """Inject faults on real servers and count what was lost or written twice."""
    configure_logging("ERROR", json=False)
    outcomes: list[Outcome] = []
    for name, scenario in plan(quick):
        if only and name not in only:
            continue
        console.print(f"== {name}")
        outcome = asyncio.run(scenario(lambda text: console.print(f"   {text}")))
        for note in outcome.notes:
            console.print(f"   note: {note}")
        console.print(f"   {'pass' if outcome.passed else 'FAIL'} in {outcome.seconds:.0f} s")
        outcomes.append(outcome)
    result = Table(title="Fault scenarios")
    for column in ("scenario", "faults", "completed", "expected", "found", "dup", "lost", "ok"):
        result.add_column(column)
    for o in outcomes:
        result.add_row(
            o.scenario,
            str(o.faults),
            f"{o.journeys_completed}/{o.journeys}",
            str(o.events_expected),
            str(o.events_found),
            str(o.duplicates),
            str(o.losses),
            "pass" if o.passed else "FAIL",
        )
    Console().print(result)
    if write and only and "bad-input" not in only and not quick:
        merge_rows(outcomes, only)
    if write and (not only or only == ["bad-input"]):
        console.print("== bad-input corpus")
        corpus = bad_input()
        console.print(f"   {corpus[3]}")
        write_report(outcomes, quick, corpus)
    if not all(o.passed for o in outcomes):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
