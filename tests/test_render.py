"""Rendering a real bilan, computed from the Québec–California example files."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from corridor.imports import load_journal, load_programme, load_roster
from corridor.reports import (
    render_csv,
    render_html,
    render_json,
    render_markdown,
    render_terminal,
)
from domain.bilan import Bilan, FirmRow, compute_bilan
from domain.journey import JourneyState, decide, due_events, evolve

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "quebec-california"
EVIL = "Evil <script>alert(1)</script> & | Co"


def example_bilan() -> Bilan:
    """Replay the example roster and journal through the domain, then compute the bilan."""
    programme = load_programme(EXAMPLE / "programme.toml")
    roster = load_roster(EXAMPLE / "roster.csv", programme)
    journal = load_journal(EXAMPLE / "journal.csv", programme)
    tz = ZoneInfo(programme.timezone)
    items: list[tuple[Any, int, str, Any]] = [(c.occurred_on, 0, c.firm.id, c) for c in roster] + [
        (r.occurred_on, 1, r.firm_id, r.command) for r in journal
    ]
    items.sort(key=lambda item: (item[0], item[1]))
    states: dict[str, JourneyState | None] = {}
    for day, _, firm, command in items:
        now = datetime.combine(day, time(12), tzinfo=tz)
        state = states.get(firm)
        if state is not None:
            state, _events = due_events(state, now)
        for event in decide(state, command, now):
            state = evolve(state, event)
        states[firm] = state
    end = datetime.combine(date(2016, 11, 29), time(23, 59), tzinfo=tz)
    final = [due_events(s, end)[0] for s in states.values() if s is not None]
    return compute_bilan(programme.id, programme.name, final)


@pytest.fixture(scope="module")
def bilan() -> Bilan:
    return example_bilan()


@pytest.fixture
def evil_bilan(bilan: Bilan) -> Bilan:
    rows = [bilan.rows[0].model_copy(update={"firm_name": EVIL}), *bilan.rows[1:]]
    return bilan.model_copy(update={"rows": rows, "programme_name": "<b>Prog</b>"})


def terminal_text(bilan: Bilan, notice: str | None = None) -> str:
    console = Console(record=True, width=200, color_system=None)
    render_terminal(bilan, console, notice=notice)
    return console.export_text()


def test_terminal_shows_the_figures(bilan: Bilan) -> None:
    text = terminal_text(bilan, notice="Figures as of 2016-11-29")
    assert "Corridor Québec–Californie" in text
    assert "combien?" in text
    assert "Figures as of 2016-11-29" in text
    assert "USD 525,000.00" in text
    assert "CAD 1,325,500.50" in text
    assert "4 of 10 (40%)" in text
    assert "307.5 days" in text
    assert "18 / 18 / 15" in text  # meetings requested / arranged / held
    assert "6 / 2 / 21" in text  # visits attended / skipped / missed
    assert "2 / 3 / 5" in text  # withdrawn / closed / active
    assert "no-show 1" in text
    assert "█" in text
    # Never a sum across currencies.
    assert "1,850,500.50" not in text
    # One line per firm in the firms table.
    for row in bilan.rows:
        assert sum(row.firm_name in line for line in text.splitlines()) == 1


def test_terminal_does_not_interpret_markup_in_data(bilan: Bilan) -> None:
    rows = [bilan.rows[0].model_copy(update={"firm_name": "[bold]Acme[/bold]"}), *bilan.rows[1:]]
    text = terminal_text(bilan.model_copy(update={"rows": rows}))
    assert "[bold]Acme[/bold]" in text


def test_terminal_without_contracts_shows_a_dash(bilan: Bilan) -> None:
    empty = bilan.model_copy(
        update={"value_by_currency": {}, "median_days_to_first_contract": None, "rows": []}
    )
    text = terminal_text(empty)
    assert "Median days, introduction to first contract" in text
    assert "—" in text


def test_csv_has_one_row_per_firm(bilan: Bilan) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(bilan))))
    assert len(rows) == 10
    assert list(rows[0]) == [
        "firm_id",
        "firm_name",
        "mission_id",
        "introduced_on",
        "stage",
        "cycle",
        "meetings_requested",
        "meetings_arranged",
        "meetings_held",
        "results_overdue",
        "contracts",
        "contract_values",
        "days_to_first_contract",
        "visits_attended",
        "visits_skipped",
        "visits_missed",
        "as_of",
        "complete",
    ]
    by_id = {row["firm_id"]: row for row in rows}
    assert by_id["nordik"]["contract_values"] == "USD 180000.00"
    values = [
        value.split(" ")
        for row in rows
        if row["contract_values"]
        for value in row["contract_values"].split("; ")
    ]
    assert sum(float(a) for c, a in values if c == "CAD") == pytest.approx(1325500.50)
    assert sum(float(a) for c, a in values if c == "USD") == pytest.approx(525000.00)
    assert {r["complete"] for r in rows} == {"true"}


def test_csv_keeps_its_columns_whatever_the_currencies(bilan: Bilan) -> None:
    """A programme whose contracts are all in one currency has the same header."""
    def cad_only(row: FirmRow) -> FirmRow:
        cad = {k: v for k, v in row.value_by_currency.items() if k == "CAD"}
        return row.model_copy(update={"value_by_currency": cad})

    only_cad = bilan.model_copy(update={"rows": [cad_only(r) for r in bilan.rows]})
    header = render_csv(bilan).splitlines()[0]
    assert render_csv(only_cad).splitlines()[0] == header
    behind = bilan.model_copy(update={"journeys_behind": 3})
    rows = list(csv.DictReader(io.StringIO(render_csv(behind))))
    assert {r["complete"] for r in rows} == {"false"}


def test_csv_quotes_awkward_names(evil_bilan: Bilan) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(evil_bilan))))
    assert rows[0]["firm_name"] == EVIL


def test_json_keeps_decimals_exact(bilan: Bilan) -> None:
    data = json.loads(render_json(bilan))
    assert data["value_by_currency"] == {"CAD": "1325500.50", "USD": "525000.00"}
    assert data["firms_with_contract"] == 4
    assert len(data["rows"]) == 10
    assert Bilan.model_validate_json(render_json(bilan)) == bilan


def test_html_has_summary_funnel_and_firms(bilan: Bilan) -> None:
    page = render_html(bilan, notice="Figures as of 2016-11-29")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2
    assert "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "USD 525,000.00" in page
    assert "CAD 1,325,500.50" in page
    assert "4 of 10 (40%)" in page
    assert "307.5 days" in page
    assert "Figures as of 2016-11-29" in page
    # Funnel bars labelled with their counts.
    assert ">18<" in page and ">15 (83%)<" in page and ">4 (40%)<" in page
    for row in bilan.rows:
        assert html_escaped(row.firm_name) in page


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_html_escapes_data(evil_bilan: Bilan) -> None:
    page = render_html(evil_bilan, notice="<i>notice</i>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; | Co" in page
    assert "<b>Prog</b>" not in page and "&lt;b&gt;Prog&lt;/b&gt;" in page
    assert "<i>notice</i>" not in page


def test_markdown_page(bilan: Bilan, evil_bilan: Bilan) -> None:
    page = render_markdown(bilan, notice="Figures as of 2016-11-29")
    assert page.startswith("# Bilan — Corridor Québec–Californie")
    assert "| Contract value, USD | USD 525,000.00 |" in page
    assert "| Firms with a contract | 4 of 10 (40%) |" in page
    assert "```text" in page and "█" in page
    assert "> Figures as of 2016-11-29" in page
    table = [line for line in page.splitlines() if line.startswith("| ") and "—" in line]
    assert table  # firms without a contract show a dash
    evil = render_markdown(evil_bilan)
    evil_line = next(line for line in evil.splitlines() if "Evil" in line)
    assert "<script>" not in evil
    assert "\\|" in evil_line
    # The escaped pipe does not split the cell: same column count as the header.
    header = next(line for line in evil.splitlines() if line.startswith("| Firm |"))
    assert evil_line.replace("\\|", "").count("|") == header.count("|")
