"""The ``corridor`` command, run as a user runs it, against the test servers.

Each test starts the real console script in a subprocess, pointed at the session's
Temporal dev server, PostgreSQL and worker through the environment, and checks what a
user sees: the exit code and the messages.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.store import EventStore
from corridor import service
from corridor.runtime import build_worker
from corridor.stack import TemporalDevServer, free_port
from tests.conftest import MASTER_KEY
from tests.support import Run, run_program
from workflows import search
from workflows.journey import journey_workflow_id

CORRIDOR = Path(sys.executable).with_name("corridor")
FIRMS = ("trifide", "doculibre", "nordik")
ROSTER_HEADER = (
    "firm_id,firm_name,sector,city,contact_name,contact_email,mission_id,introduced_on,"
    "wants_to_meet"
)
JOURNAL_HEADER = (
    "occurred_on,firm_id,action,meeting_id,counterpart,partner_id,scheduled_at,outcome,"
    "amount,currency,mission_id,decision,notes"
)

STAFF_EVENTS = {
    "MeetingRequested", "MeetingArranged", "MeetingHeld", "MeetingNotHeld", "ContractSigned",
    "ReturnVisitAttended", "ReturnVisitSkipped", "EvaluationDecided", "FirmWithdrew",
}


@dataclass(frozen=True)
class Cli:
    """Runs ``corridor`` in a working directory with the test servers' environment."""

    env: dict[str, str]
    cwd: Path

    async def __call__(self, *args: str | Path) -> Run:
        return await run_program(CORRIDOR, *args, env=self.env, cwd=self.cwd)


@pytest.fixture
def cli(
    temporal_server: TemporalDevServer, dsn: str, task_queue: str, worker: None, tmp_path: Path
) -> Cli:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "CORRIDOR_")) and k not in ("COLUMNS", "LINES")
    }
    env |= {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "CORRIDOR_DSN": dsn,
        "CORRIDOR_MASTER_KEY": MASTER_KEY,
        "CORRIDOR_TASK_QUEUE": task_queue,
        "CORRIDOR_DATA_DIR": str(tmp_path / "data"),
    }
    return Cli(env, tmp_path)


@pytest.fixture
def programme(tmp_path: Path, examples: Path, programme_id: str) -> Path:
    """The example's programme.toml under a fresh programme id."""
    text = (examples / "programme.toml").read_text(encoding="utf-8")
    assert 'id = "qc-california"' in text
    path = tmp_path / "programme.toml"
    path.write_text(text.replace('id = "qc-california"', f'id = "{programme_id}"', 1), "utf-8")
    return path


@pytest.fixture
def roster(tmp_path: Path, examples: Path) -> Path:
    """The example's roster cut down to three firms of the first mission."""
    lines = (examples / "roster.csv").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines[1:] if line.split(",")[0] in FIRMS]
    assert len(kept) == len(FIRMS)
    path = tmp_path / "roster.csv"
    path.write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
    return path


def write(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def journey_exists(client: Client, programme_id: str, firm_id: str) -> bool:
    try:
        await client.get_workflow_handle(journey_workflow_id(programme_id, firm_id)).describe()
    except RPCError as error:
        assert error.status == RPCStatusCode.NOT_FOUND, error
        return False
    return True


async def settled_versions(
    client: Client, store: EventStore, programme_id: str, firms: tuple[str, ...] = FIRMS
) -> dict[str, int]:
    """Each journey's stream version once every event it has decided is stored."""
    versions = {}
    for firm in firms:
        await service.sync(client, programme_id, firm)
        versions[firm] = await store.stream_version(journey_workflow_id(programme_id, firm))
    return versions


async def recorded(store: EventStore, programme_id: str, firm: str, after: int) -> list[str]:
    """The kinds of the events that staff records caused in a journey after a version.

    Events of the journey's own deadlines are left out: a record dated in 2013 arrives
    in a journey whose today is the real today, so its deadlines fire at once.
    """
    stream = await store.read_stream(journey_workflow_id(programme_id, firm), after)
    kinds = [type(e.event).__name__ for e in stream]
    return [kind for kind in kinds if kind in STAFF_EVENTS]


async def enrolled(cli: Cli, roster: Path, programme: Path) -> None:
    run = await cli("enroll", roster, "--programme", programme)
    assert run.code == 0, run
    assert f"{len(FIRMS)} journey(s) started, 0 already enrolled." in run.out, run


def flat(text: str) -> str:
    """Text with its line breaks and runs of spaces made single spaces."""
    return " ".join(text.split())


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of a rich table by their first cell, wrapped cells joined again."""
    rows: dict[str, list[str]] = {}
    last: list[str] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        first, *cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if first:
            last = rows[first] = cells
        else:
            last[:] = [f"{a} {b}".strip() for a, b in zip(last, cells, strict=True)]
    return rows


BAD_ROSTER_ROWS = (
    # row 2: a mission the programme does not have
    "trifide,Groupe Trifide,IT,Québec,C,contact@trifide.example,m9-2099-01,2013-09-17,Apple",
    # row 3: 2014 is not a leap year
    "doculibre,DocuLibre,IT,Québec,C,contact@doculibre.example,m2-2014-03,2014-02-29,Xerox",
    # row 4: trifide again
    "trifide,Groupe Trifide bis,IT,Québec,C,bis@trifide.example,m1-2013-09,2013-09-17,",
    # row 5: not an e-mail address
    "nordik,Nordik,Robotics,Lévis,C,elise.tremblay.nordik.example,m1-2013-09,2013-09-17,",
)
BAD_ROSTER_PROBLEMS = (
    "roster.csv, row 2, column mission_id: unknown mission",
    "(value 'm9-2099-01')",
    "roster.csv, row 3, column introduced_on: is not a date",
    "(value '2014-02-29')",
    "roster.csv, row 4, column firm_id: firm already listed on row 2 (value 'trifide')",
    "roster.csv, row 5, column contact_email:",
    "(value 'elise.tremblay.nordik.example')",
    "4 problem(s); nothing was sent.",
)

BAD_JOURNAL_ROWS = (
    "2013-09-17,trifide,meeting_requested,mt-1,Apple,,,,,,,,",  # row 2: fine
    "2013-09-17,trifide,meeting_asked,mt-2,Apple,,,,,,,,",
    "2013-09-18,trifide,meeting_arranged,mt-1,,dqla,2013-09-19T10:00:00,,,,,,",
    "2013-09-20,nordik,contract_signed,,Bay Robotics,,,,12k,USD,,,",
    "2013-09-20,nordik,contract_signed,,Bay Robotics,,,,1000.00,XYZ,,,",
    "2013-09-18,doculibre,meeting_arranged,md-1,,acme,2013-09-19T10:00:00-07:00,,,,,,",
)

GOOD_ROWS = (
    "2013-09-17,trifide,meeting_requested,mt-1,Apple,,,,,,,,",
    "2013-09-18,trifide,meeting_arranged,mt-1,,dqla,2013-09-19T10:00:00-07:00,,,,,,",
    "2013-09-19,trifide,meeting_held,mt-1,,,,promising,,,,,Went well",
)
NEVER_ARRANGED = "2013-09-20,nordik,meeting_held,mn-1,,,,neutral,,,,,"


# ------------------------------------------------------------------------------ help


async def test_help_exits_zero(cli: Cli) -> None:
    run = await cli("--help")
    assert run.code == 0, run
    for command in ("enroll", "record", "meeting", "status", "report"):
        assert command in run.out, run
    run = await cli("meeting", "--help")
    assert run.code == 0, run
    assert "request" in run.out and "arrange" in run.out, run


async def test_unreachable_temporal_exits_3(cli: Cli, programme_id: str) -> None:
    env = cli.env | {"TEMPORAL_ADDRESS": "127.0.0.1:9"}
    run = await Cli(env, cli.cwd)("status", "--programme", programme_id)
    assert run.code == 3, run
    assert "cannot reach Temporal at 127.0.0.1:9" in flat(run.err), run


async def test_a_refused_environment_variable_is_named_with_its_value_exit_2(
    cli: Cli, roster: Path, programme: Path, programme_id: str
) -> None:
    """A typo in the environment: the CLI and the worker say which variable, and stop."""
    bad = cli.env | {"CORRIDOR_WORKFLOW_CACHE_SIZE": "-1", "CORRIDOR_TEMPORAL_PORT": "72 33"}
    run = await Cli(bad, cli.cwd)("enroll", roster, "--programme", programme)
    assert run.code == 2, run
    assert "Traceback" not in run.err, run
    message = flat(run.err)
    assert "CORRIDOR_TEMPORAL_PORT='72 33': Input should be a valid integer" in message, run
    assert "CORRIDOR_WORKFLOW_CACHE_SIZE='-1': Input should be greater than or equal to 0" in (
        message
    ), run
    repository = Path(__file__).parent.parent
    run = await run_program(sys.executable, "worker.py", env=bad, cwd=repository)
    assert run.code == 2, run
    assert "Traceback" not in run.err, run
    assert "worker not started: " in run.err and "CORRIDOR_WORKFLOW_CACHE_SIZE='-1'" in run.err
    run = await cli("status", "--programme", programme_id)
    assert "no journey" in flat(run.out + run.err), run  # nothing was enrolled


async def test_a_command_no_worker_can_answer_exits_3_naming_what_to_start(
    cli: Cli, roster: Path, programme: Path, programme_id: str
) -> None:
    """Journeys on a task queue that no worker polls: the command does not hang."""
    queue = f"nobody-{programme_id}"
    orphan = Cli(cli.env | {"CORRIDOR_TASK_QUEUE": queue}, cli.cwd)
    run = await orphan("enroll", roster, "--programme", programme)
    assert run.code == 0, run
    run = await orphan(
        "meeting", "request", "trifide", "mt-1", "Apple", "--programme", programme_id
    )
    assert run.code == 3, run
    assert f"no worker is running for task queue '{queue}'" in flat(run.err), run
    assert "start `corridor dev`" in flat(run.err), run


async def test_a_server_without_corridors_search_attributes_names_corridor_setup(
    cli: Cli, dsn: str, tmp_path: Path
) -> None:
    """Commands and the worker say what to run; `corridor setup` fixes it."""
    bare = TemporalDevServer(port=free_port(), headless=True, log_file=tmp_path / "bare.log")
    async with bare:
        on_bare = Cli(cli.env | {"TEMPORAL_ADDRESS": bare.address}, cli.cwd)
        run = await on_bare("status", "--programme", "nowhere")
        assert run.code == 3, run
        assert "lacks Corridor's search attributes" in flat(run.err), run
        assert "run `corridor setup` once" in flat(run.err), run
        worker = await run_program(
            sys.executable, "worker.py", env=on_bare.env, cwd=Path(__file__).parent.parent
        )
        assert worker.code != 0, worker
        assert "worker not started" in worker.err and "corridor setup" in worker.err, worker

        run = await on_bare("setup")
        assert run.code == 0, run
        assert f"search attributes: {len(search.ALL)} added" in run.out, run
        run = await on_bare("status", "--programme", "nowhere")
        assert "search attributes" not in run.err, run


def _second_programme(
    programme: Path, roster: Path, programme_id: str, folder: Path
) -> tuple[Path, Path, Path, str]:
    """Two programmes, firms of their own (other tests share the server).

    Returns the programme under the id ``PROGRAMME-b``, the roster with its firm ids
    made unique by a suffix, a roster of its first firm alone, and the suffix.
    """
    other = folder / "other.toml"
    text = programme.read_text("utf-8")
    other.write_text(
        text.replace(f'id = "{programme_id}"', f'id = "{programme_id}-b"', 1), "utf-8"
    )
    suffix = programme_id.rsplit("-", 1)[1][:6]
    header, *rows = roster.read_text("utf-8").splitlines()
    rows = [row.replace(",", f"-{suffix},", 1) for row in rows]
    return (
        other,
        write(folder / "both.csv", header, *rows),
        write(folder / "first.csv", header, rows[0]),
        suffix,
    )


async def test_commands_find_the_programme_of_a_firm_in_only_one(
    cli: Cli, client: Client, roster: Path, programme: Path, programme_id: str, tmp_path: Path
) -> None:
    """Without --programme: the firm's only programme, or the list when it has several."""
    other_id = f"{programme_id}-b"
    other, both, first, suffix = _second_programme(programme, roster, programme_id, tmp_path)
    trifide, nordik = f"trifide-{suffix}", f"nordik-{suffix}"
    assert (await cli("enroll", both, "--programme", programme)).code == 0
    assert (await cli("enroll", first, "--programme", other)).code == 0
    for firm, programmes in ((nordik, 1), (trifide, 2)):
        query = f"CorridorFirm = '{firm}' AND CorridorProgramme STARTS_WITH '{programme_id}'"
        for _ in range(100):  # visibility follows the start a moment later
            if (await client.count_workflows(query)).count == programmes:
                break
            await asyncio.sleep(0.1)

    run = await cli("meeting", "request", nordik, "mt-1", "Apple")
    assert run.code == 0, run
    assert "recorded: meeting mt-1 with Apple requested" in run.out, run
    run = await cli("status", nordik)
    assert run.code == 0, run
    assert f"Journeys of {programme_id}" in flat(run.out), run

    run = await cli("status", trifide)
    assert run.code == 2, run
    assert f"{trifide} has journeys in several programmes ({programme_id}, {other_id})" in flat(
        run.err
    ), run
    assert "--programme" in run.err, run


# ---------------------------------------------------------------------------- enroll


async def test_enroll_bad_roster_lists_every_problem_and_starts_nothing(
    cli: Cli, client: Client, programme: Path, programme_id: str, tmp_path: Path
) -> None:
    missing = write(
        tmp_path / "missing.csv",
        ROSTER_HEADER.replace(",introduced_on", ""),
        "trifide,Groupe Trifide,IT,Québec,C,contact@trifide.example,m1-2013-09,Apple",
    )
    run = await cli("enroll", missing, "--programme", programme)
    assert run.code == 2, run
    assert "missing.csv, row 1, column introduced_on: required column is missing" in flat(run.err)
    assert "nothing was sent" in run.err, run
    assert run.out == "", run

    bad = write(tmp_path / "roster.csv", ROSTER_HEADER, *BAD_ROSTER_ROWS)
    run = await cli("enroll", bad, "--programme", programme)
    assert run.code == 2, run
    for problem in BAD_ROSTER_PROBLEMS:
        assert problem in flat(run.err), f"{problem!r} not in\n{run}"
    assert "started" not in run.out, run
    for firm in FIRMS:
        assert not await journey_exists(client, programme_id, firm), firm


async def test_enroll_good_roster_then_again_starts_nothing_new(
    cli: Cli, client: Client, roster: Path, programme: Path, programme_id: str
) -> None:
    run = await cli("enroll", roster, "--programme", programme)
    assert run.code == 0, run
    for firm in FIRMS:
        assert f"journey/{programme_id}/{firm}: started" in run.out, run
        assert await journey_exists(client, programme_id, firm), firm
    assert "3 journey(s) started, 0 already enrolled." in run.out, run

    run = await cli("enroll", roster, "-p", programme)
    assert run.code == 0, run
    for firm in FIRMS:
        assert f"journey/{programme_id}/{firm}: already enrolled" in run.out, run
    assert "0 journey(s) started, 3 already enrolled." in run.out, run
    assert "differs" not in run.err, run

    # The same roster re-exported with the firm renamed and a new contact: not applied,
    # and said.
    for firm in FIRMS:
        await service.sync(client, programme_id, firm)
    text = await asyncio.to_thread(roster.read_text, "utf-8")
    edited = text.replace(
        "Groupe Trifide,", "Groupe Trifide inc.,"
    ).replace("contact@trifide.example", "new.contact@trifide.example")
    run = await cli("enroll", write(roster.with_name("edited.csv"), edited.rstrip("\n")), "-p",
                    programme)
    assert run.code == 1, run
    assert (
        "differs: trifide is already enrolled with firm_name 'Groupe Trifide' (this row: "
        "'Groupe Trifide inc.'); contact_email 'contact@trifide.example' (this row: "
        "'new.contact@trifide.example'): a roster does not change an enrolment"
    ) in flat(run.err), run
    assert "1 firm(s) already enrolled with other values: not changed" in flat(run.err), run
    view = await service.view(client, programme_id, "trifide")
    assert view.state.firm.contact_email == "contact@trifide.example"
    assert view.state.firm.name == "Groupe Trifide"


async def test_enroll_with_a_past_journal_imports_it_in_business_time_order(
    cli: Cli, store: EventStore, programme: Path, programme_id: str, examples: Path
) -> None:
    """No spurious "result overdue" before results recorded within the week."""
    run = await cli(
        "enroll", examples / "roster.csv", "-p", programme,
        "--journal", examples / "journal.csv",
    )
    assert run.code == 0, run
    assert (
        "10 journey(s) started, 0 already enrolled; 76 record(s) accepted, 0 already "
        "recorded, 0 refused (of 76 rows)." in flat(run.out)
    ), run
    overdue = await store.pool.fetch(
        "SELECT stream_id, data->>'meeting_id' AS meeting FROM events "
        "WHERE stream_id LIKE $1 AND event_type = 'MeetingResultOverdue'",
        f"journey/{programme_id}/%",
    )
    # saintroch's ms-2 is the seed's only result never recorded in time.
    assert [(r["stream_id"].rsplit("/", 1)[1], r["meeting"]) for r in overdue] == [
        ("saintroch", "ms-2")
    ]
    run = await cli(
        "enroll", examples / "roster.csv", "-p", programme,
        "--journal", examples / "journal.csv",
    )
    assert run.code == 0, run
    assert "0 journey(s) started, 10 already enrolled; 0 record(s) accepted, 76 already" in flat(
        run.out
    ), run


# ---------------------------------------------------------------------------- record


async def test_record_bad_journal_lists_every_problem_and_sends_nothing(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    await enrolled(cli, roster, programme)
    before = await settled_versions(client, store, programme_id)

    bad = write(tmp_path / "journal.csv", JOURNAL_HEADER, *BAD_JOURNAL_ROWS)
    run = await cli("record", bad, "--programme", programme)
    assert run.code == 2, run
    err = flat(run.err)
    for problem in (
        "journal.csv, row 3, column action: unknown action",
        "(value 'meeting_asked')",
        "journal.csv, row 4, column scheduled_at: is not a timestamp: no UTC offset",
        "(value '2013-09-19T10:00:00')",
        "journal.csv, row 5, column amount: is not an amount",
        "(value '12k')",
        "journal.csv, row 6, column",
        "unknown currency 'XYZ'",
        "journal.csv, row 7, column partner_id: unknown partner (known: dqla, labizfed)",
        "(value 'acme')",
        "5 problem(s); nothing was sent.",
    ):
        assert problem in err, f"{problem!r} not in\n{run}"
    assert "row 2" not in err, run

    ghost = write(
        tmp_path / "ghost.csv",
        JOURNAL_HEADER,
        "2013-09-17,trifide,meeting_requested,mt-1,Apple,,,,,,,,",
        "2013-09-17,ghost,meeting_requested,mg-1,Apple,,,,,,,,",
    )
    run = await cli("record", ghost, "--programme", programme)
    assert run.code == 2, run
    assert (
        f"ghost.csv, row 3, column firm_id: firm has no journey in programme {programme_id} "
        "(value 'ghost')"
    ) in flat(run.err), run
    assert "1 problem(s); nothing was sent." in run.err, run

    assert await settled_versions(client, store, programme_id) == before


async def test_record_reports_a_refused_row_and_records_the_others_once(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    await enrolled(cli, roster, programme)
    before = await settled_versions(client, store, programme_id)
    journal = write(tmp_path / "journal.csv", JOURNAL_HEADER, *GOOD_ROWS, NEVER_ARRANGED)

    run = await cli("record", journal, "--programme", programme)
    assert run.code == 1, run
    assert (
        "refused: journal.csv, row 5 (nordik, meeting_held): meeting mn-1 was never requested"
    ) in flat(run.err), run
    assert "3 accepted, 0 already recorded, 1 refused (of 4 rows)." in run.out, run
    after = await settled_versions(client, store, programme_id)
    assert after == before | {"trifide": after["trifide"]}, (before, after)
    assert await recorded(store, programme_id, "trifide", before["trifide"]) == [
        "MeetingRequested", "MeetingArranged", "MeetingHeld",
    ]

    run = await cli("record", journal, "--programme", programme)
    assert run.code == 1, run
    assert "row 5 (nordik, meeting_held): meeting mn-1 was never requested" in flat(run.err)
    assert "1 refused (of 4 rows)." in run.out, run
    assert await settled_versions(client, store, programme_id) == after


async def test_record_again_says_already_recorded(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    await enrolled(cli, roster, programme)
    journal = write(tmp_path / "journal.csv", JOURNAL_HEADER, *GOOD_ROWS)
    run = await cli("record", journal, "--programme", programme)
    assert run.code == 0, run
    assert "3 accepted, 0 already recorded, 0 refused (of 3 rows)." in run.out, run
    after = await settled_versions(client, store, programme_id)

    run = await cli("record", journal, "--programme", programme)
    assert await settled_versions(client, store, programme_id) == after
    assert run.code == 0, run
    assert "0 accepted, 3 already recorded, 0 refused (of 3 rows)." in run.out, run


# ----------------------------------------------------------- single-record commands


async def test_single_record_commands(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str,
) -> None:
    await enrolled(cli, roster, programme)
    before = await settled_versions(client, store, programme_id)
    p = ("--programme", programme_id)

    run = await cli("meeting", "request", "trifide", "mt-9", "LinkedIn", *p, "--on", "2014-11-10")
    assert run.code == 0, run
    assert lines_of(run.out) == ["recorded: meeting mt-9 with LinkedIn requested"], run

    run = await cli("meeting", "request", "trifide", "mt-9", "LinkedIn", *p, "--on", "2014-11-11")
    assert run.code == 0, run
    assert lines_of(run.out) == ["already recorded: nothing new was written"], run

    run = await cli("meeting", "request", "trifide", "mt-9", "Apple", *p, "--on", "2014-11-11")
    assert run.code == 1, run
    assert flat(run.err) == (
        "error: refused (RecordDiffers): meeting mt-9 (requested on 2014-11-10) is recorded "
        "with counterpart LinkedIn, this says counterpart Apple: a meeting's counterpart is "
        "not corrected: request the other meeting under a meeting id of its own"
    ), run
    assert run.out == "", run

    run = await cli("meeting", "request", "trifide", "mt-10", "Apple", *p, "--on", "2014-02-30")
    assert run.code == 2, run
    assert flat(run.err) == (
        "error: --on '2014-02-30' is not a date: day is out of range for month"
    ), run

    run = await cli(
        "meeting", "arrange", "trifide", "mt-9", "--partner", "labizfed",
        "--at", "2014-11-18T09:30", *p, "--on", "2014-11-12",
    )
    assert run.code == 2, run
    assert "--at '2014-11-18T09:30': no UTC offset" in flat(run.err), run

    run = await cli(
        "meeting", "arrange", "trifide", "mt-9", "--partner", "labizfed",
        "--at", "2014-11-18T09:30-08:00", *p, "--on", "2014-11-12",
    )
    assert run.code == 0, run
    assert run.out.startswith("recorded: meeting mt-9"), run

    run = await cli(
        "meeting", "result", "trifide", "mt-9", "promising", "--notes", "Proposal requested",
        *p, "--on", "2014-11-18",
    )
    assert run.code == 0, run
    assert run.out.startswith("recorded: "), run

    run = await cli(
        "contract", "trifide", "--counterpart", "LinkedIn", "--amount", "180000.00",
        "--currency", "USD", "--meeting", "mt-9", *p, "--on", "2014-12-01",
    )
    assert run.code == 0, run
    assert run.out.startswith("recorded: "), run

    run = await cli("withdraw", "nordik", "--reason", "Refocusing on Europe", *p, "--on",
                    "2014-02-10")
    assert run.code == 0, run
    assert run.out.startswith("recorded: "), run

    run = await cli("meeting", "request", "nordik", "mn-9", "Apple", *p, "--on", "2014-03-01")
    assert run.code == 1, run
    assert "refused (JourneyOver)" in flat(run.err) and "nordik" in run.err, run

    run = await cli("meeting", "request", "ghost", "mg-1", "Apple", *p, "--on", "2014-03-01")
    assert run.code == 1, run
    assert f"firm ghost has no journey in programme {programme_id}" in flat(run.err), run

    after = await settled_versions(client, store, programme_id)
    assert after["doculibre"] == before["doculibre"], (before, after)
    assert await recorded(store, programme_id, "trifide", before["trifide"]) == [
        "MeetingRequested", "MeetingArranged", "MeetingHeld", "ContractSigned",
    ]
    assert await recorded(store, programme_id, "nordik", before["nordik"]) == ["FirmWithdrew"]


# ------------------------------------------------ records recognised by their meaning

CONTRACT_2001 = "2014-07-15,trifide,contract_signed,mt-1,Apple,,,,2001.00,USD,,,Pilot"


def french_export(path: Path, amount: str, note: str) -> Path:
    """GOOD_ROWS and the 2001.00 contract as a French spreadsheet exports them again.

    UTF-8 with a byte-order mark, ';' between cells, CRLF line ends, a decimal comma
    (a narrow no-break space between thousands), the currency in lower case.
    """
    rows = [JOURNAL_HEADER, *GOOD_ROWS]
    french = [row.replace(",", ";") for row in rows]
    french.append(f"2014-07-15;trifide;contract_signed;mt-1;Apple;;;;{amount};usd;;;{note}")
    path.write_bytes(("\ufeff" + "\r\n".join(french) + "\r\n").encode("utf-8"))
    return path


async def bilan_of(cli: Cli, programme_id: str) -> dict[str, object]:
    run = await cli("report", programme_id, "--format", "json")
    assert run.code == 0, run
    bilan: dict[str, object] = json.loads(run.out)
    return bilan


async def test_a_journal_sent_again_in_another_form_records_nothing_new(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    """2001.00 sent, then re-exported as 2001,00: already recorded, the bilan unchanged;
    as 2 002,00: refused naming amount and the correcting command; a note edited:
    already recorded."""
    await enrolled(cli, roster, programme)
    journal = write(tmp_path / "journal.csv", JOURNAL_HEADER, *GOOD_ROWS, CONTRACT_2001)
    run = await cli("record", journal, "--programme", programme)
    assert run.code == 0, run
    assert "4 accepted, 0 already recorded, 0 refused (of 4 rows)." in run.out, run
    versions = await settled_versions(client, store, programme_id)
    bilan = await bilan_of(cli, programme_id)
    assert (bilan["contracts"], bilan["value_by_currency"]) == (1, {"USD": "2001.00"})

    again = french_export(tmp_path / "journal-fr.csv", "2001,00", "Pilot")
    run = await cli("record", again, "--programme", programme)
    assert (run.code, run.err) == (0, ""), run
    assert lines_of(run.out)[-1] == "0 accepted, 4 already recorded, 0 refused (of 4 rows).", run
    assert await settled_versions(client, store, programme_id) == versions
    assert await bilan_of(cli, programme_id) == bilan

    changed = french_export(tmp_path / "journal-fr.csv", "2\u202f002,00", "Pilot")
    run = await cli("record", changed, "--programme", programme)
    assert run.code == 1, run
    assert flat(run.err) == (
        "refused: journal-fr.csv, row 5 (trifide, contract_signed): contract c1 (Apple, "
        "2014-07-15) is recorded with amount USD 2,001.00, this says amount USD 2,002.00: to "
        "change it, `corridor correct contract trifide c1 --amount 2002.00 --currency USD "
        "--reason ...`; if it is another contract signed that day, give each its own "
        "contract id (--contract-id, or the journal's contract_id column)"
    ), run
    assert lines_of(run.out)[-1] == "0 accepted, 3 already recorded, 1 refused (of 4 rows).", run
    assert await settled_versions(client, store, programme_id) == versions
    assert await bilan_of(cli, programme_id) == bilan

    edited = french_export(tmp_path / "journal-fr.csv", "2001,00", "Pilot, signed in Cupertino")
    run = await cli("record", edited, "--programme", programme)
    assert (run.code, run.err) == (0, ""), run
    assert lines_of(run.out)[-1] == "0 accepted, 4 already recorded, 0 refused (of 4 rows).", run
    assert await settled_versions(client, store, programme_id) == versions
    assert await bilan_of(cli, programme_id) == bilan

    # Once the journey has ended, the same re-export is still recognised by meaning.
    run = await cli("withdraw", "trifide", "--reason", "Refocusing", "-p", programme_id)
    assert run.code == 0, run
    edited = french_export(tmp_path / "journal-fr.csv", "2001,00", "Pilot, final wording")
    run = await cli("record", edited, "--programme", programme)
    assert (run.code, run.err) == (0, ""), run
    assert lines_of(run.out)[-1] == "0 accepted, 4 already recorded, 0 refused (of 4 rows).", run


async def test_amounts_and_currencies_follow_the_same_rules_in_the_cli_and_in_files(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    """180.000, XXX and a 23-digit amount refused (exit 2, nothing sent) by the CLI and
    in a file; usd accepted by both, as USD."""
    await enrolled(cli, roster, programme)
    versions = await settled_versions(client, store, programme_id)
    p = ("--programme", programme_id, "--on", "2014-01-10")
    refused = {
        ("180.000", "USD"): (
            "error: --amount '180.000': ambiguous (thousands or decimals?): write 180000 or "
            "180000.00 for 180 thousand, 180.00 for 180"
        ),
        ("1000.00", "XXX"): (
            "error: --currency 'XXX': XXX (The codes assigned for transactions where no "
            "currency is involved) is not a currency contracts are signed in (expected an "
            "active ISO 4217 currency such as USD, EUR or CAD)"
        ),
        ("99999999999999999999999", "USD"): (
            "error: --amount '99999999999999999999999' --currency 'USD': amount "
            "99999999999999999999999 is above the maximum of 1,000,000,000,000,000 USD any "
            "contract may have"
        ),
    }
    for (amount, currency), message in refused.items():
        run = await cli(
            "contract", "doculibre", "--counterpart", "Xerox", "--amount", amount,
            "--currency", currency, *p,
        )
        assert (run.code, flat(run.err), run.out) == (2, message, ""), run
    bad = write(
        tmp_path / "journal.csv",
        JOURNAL_HEADER,
        "2014-01-10,doculibre,contract_signed,,Xerox,,,,180.000,USD,,,",
        "2014-01-10,doculibre,contract_signed,,Xerox,,,,1000.00,XXX,,,",
        "2014-01-10,doculibre,contract_signed,,Xerox,,,,99999999999999999999999,USD,,,",
    )
    run = await cli("record", bad, "--programme", programme)
    assert run.code == 2, run
    err = flat(run.err)
    for problem in (
        "journal.csv, row 2, column amount: is not an amount: ambiguous (thousands or "
        "decimals?): write 180000 or 180000.00 for 180 thousand, 180.00 for 180 (value "
        "'180.000')",
        "journal.csv, row 3, column currency: XXX (The codes assigned for transactions "
        "where no currency is involved) is not a currency contracts are signed in",
        "journal.csv, row 4, column amount: amount 99999999999999999999999 is above the "
        "maximum of 1,000,000,000,000,000 USD any contract may have",
        "3 problem(s); nothing was sent.",
    ):
        assert problem in err, f"{problem!r} not in\n{run}"
    assert await settled_versions(client, store, programme_id) == versions

    run = await cli(
        "contract", "doculibre", "--counterpart", "Xerox", "--amount", "1 500,00",
        "--currency", "usd", *p,
    )
    assert run.code == 0, run
    assert lines_of(run.out) == ["recorded: contract c1 signed with Xerox: USD 1,500.00"], run
    run = await cli(
        "contract", "doculibre", "--counterpart", "Xerox", "--amount", "1500.00",
        "--currency", "USD", *p,
    )
    assert (run.code, lines_of(run.out)) == (0, ["already recorded: nothing new was written"])
    in_file = write(
        tmp_path / "usd.csv",
        JOURNAL_HEADER,
        "2014-01-11,doculibre,contract_signed,,Xerox,,,,2500.00,usd,,,",
    )
    run = await cli("record", in_file, "--programme", programme)
    assert run.code == 0, run
    assert "1 accepted, 0 already recorded, 0 refused (of 1 rows)." in run.out, run
    bilan = await bilan_of(cli, programme_id)
    assert (bilan["contracts"], bilan["value_by_currency"]) == (2, {"USD": "4000.00"})


# ------------------------------------------------------------------- status, report


async def test_status_and_report(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    await enrolled(cli, roster, programme)
    journal = write(
        tmp_path / "journal.csv",
        JOURNAL_HEADER,
        *GOOD_ROWS,
        "2013-10-01,trifide,contract_signed,mt-1,Apple,,,,180000.00,USD,,,",
        "2014-02-10,nordik,withdrew,,,,,,,,,,Refocusing on Europe",
    )
    run = await cli("record", journal, "--programme", programme)
    assert run.code == 0, run
    await settled_versions(client, store, programme_id)

    run = await cli("status", "--programme", programme_id)
    assert run.code == 0, run
    assert "next deadline" in run.out, run
    rows = table_rows(run.out)
    assert set(rows) == set(FIRMS), run
    stage, _cycle, _last, deadline = rows["nordik"]
    assert (stage, deadline) == ("withdrawn", "—"), run
    for firm in ("trifide", "doculibre"):
        stage, _cycle, _last, deadline = rows[firm]
        assert stage == "awaiting decision", run
        assert re.search(r"\d{4}-\d{2}-\d{2}", deadline), run

    run = await cli("status", "trifide", "--programme", programme_id)
    assert run.code == 0, run
    assert "trifide" in run.out and "doculibre" not in run.out, run
    assert "business date: " in run.out, run

    run = await cli("report", programme_id, "--format", "json")
    assert run.code == 0, run
    bilan = json.loads(run.out)
    assert bilan["programme_id"] == programme_id
    assert bilan["firms"] == len(FIRMS) == len(bilan["rows"])
    assert bilan["contracts"] == 1
    assert bilan["value_by_currency"] == {"USD": "180000.00"}
    assert bilan["withdrawn"] == 1

    run = await cli("report", programme_id, "--format", "csv")
    assert run.code == 0, run
    table = list(csv.DictReader(io.StringIO(run.out)))
    assert sorted(row["firm_id"] for row in table) == sorted(FIRMS), run
    assert {row["firm_id"]: row["contracts"] for row in table}["trifide"] == "1", run

    output = tmp_path / "bilan.html"
    run = await cli("report", programme_id, "--format", "html", "-o", output)
    assert run.code == 0, run
    assert f"wrote {output}" in flat(run.err), run
    page = output.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html"), page[:200]
    assert "Groupe Trifide" in page and "</html>" in page

    run = await cli("report", "no-such-programme")
    assert run.code != 0, run
    assert lines_of(run.err) == ["error: no journey in programme 'no-such-programme'"], run
    assert run.out == "", run


# ------------------------------------------------------------- known defects (xfail)


async def test_file_problems_start_with_a_plain_error_prefix(
    cli: Cli, programme: Path, tmp_path: Path
) -> None:
    bad = write(tmp_path / "roster.csv", ROSTER_HEADER, *BAD_ROSTER_ROWS)
    run = await cli("enroll", bad, "--programme", programme)
    assert run.code == 2, run
    assert "[red]" not in run.err, run
    assert flat(run.err).count("error: roster.csv, row ") == 4, run


async def test_each_message_is_one_line(
    cli: Cli, programme: Path, programme_id: str, tmp_path: Path
) -> None:
    run = await cli("meeting", "request", "ghost", "mg-1", "Apple", "-p", programme_id)
    assert run.code == 1, run
    assert len(lines_of(run.err)) == 1, run
    bad = write(tmp_path / "roster.csv", ROSTER_HEADER, *BAD_ROSTER_ROWS)
    run = await cli("enroll", bad, "--programme", programme)
    assert run.code == 2, run
    assert len(lines_of(run.err)) == 4 + 1, run


async def test_user_text_is_printed_verbatim(
    cli: Cli, roster: Path, programme: Path, programme_id: str
) -> None:
    await enrolled(cli, roster, programme)
    p = ("--programme", programme_id, "--on", "2014-11-10")
    run = await cli("meeting", "request", "trifide", "mt-1", "Acme [/x]", *p)
    assert run.code == 0, run
    assert "recorded: meeting mt-1 with Acme [/x] requested" in run.out, run
    run = await cli("meeting", "request", "trifide", "mt-2", "Sunset [fictional]", *p)
    assert run.code == 0, run
    assert "recorded: meeting mt-2 with Sunset [fictional] requested" in run.out, run


async def test_unknown_currency_is_reported_in_the_currency_column(
    cli: Cli, programme: Path, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "journal.csv",
        JOURNAL_HEADER,
        "2013-09-20,nordik,contract_signed,,Bay Robotics,,,,1000.00,XYZ,,,",
    )
    run = await cli("record", bad, "--programme", programme)
    assert run.code == 2, run
    assert "journal.csv, row 2, column currency: unknown currency 'XYZ'" in flat(run.err), run
    assert "(value 'XYZ')" in run.err, run


async def test_bad_amount_is_explained(
    cli: Cli, programme: Path, programme_id: str, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "journal.csv",
        JOURNAL_HEADER,
        "2013-09-20,nordik,contract_signed,,Bay Robotics,,,,12k,USD,,,",
    )
    run = await cli("record", bad, "--programme", programme)
    assert run.code == 2, run
    assert "journal.csv, row 2, column amount: is not an amount" in flat(run.err), run
    assert "ConversionSyntax" not in run.err, run
    run = await cli(
        "contract", "nordik", "--counterpart", "X", "--amount", "12k", "--currency", "USD",
        "--programme", programme_id,
    )
    assert run.code == 2, run
    assert "ConversionSyntax" not in run.err, run


async def test_unknown_firm_is_listed_with_the_other_problems(
    cli: Cli, programme: Path, programme_id: str, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "journal.csv",
        JOURNAL_HEADER,
        "2013-09-17,ghost,meeting_requested,mg-1,Apple,,,,,,,,",
        "2013-09-17,ghost,meeting_asked,mg-2,Apple,,,,,,,,",
    )
    run = await cli("record", bad, "--programme", programme)
    assert run.code == 2, run
    err = flat(run.err)
    assert "journal.csv, row 3, column action: unknown action" in err, run
    assert f"journal.csv, row 2, column firm_id: firm has no journey in programme {programme_id}" \
        in err, run


# ------------------------------------------------------ corrections, authors, timeline


async def test_corrections_by_journal_and_command_show_in_the_report_and_the_timeline(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    await enrolled(cli, roster, programme)
    p = ("--programme", programme_id)
    journal = write(
        tmp_path / "journal.csv",
        JOURNAL_HEADER + ",contract_id,reason,recorded_by",
        "2013-10-01,trifide,contract_signed,,Apple,,,,2001.00,USD,,,,,,alice",
        "2013-10-02,trifide,contract_corrected,,,,,,2002.00,usd,,,,c1,typo in the amount,bob",
        "2013-10-03,doculibre,contract_signed,,Xerox,,,,500.00,CAD,,,,,,",
        "2013-10-04,doculibre,contract_voided,,,,,,,,,,,c1,entered twice,",
    )
    run = await cli("record", journal, "--programme", programme, "--by", "carol")
    assert run.code == 0, run
    assert "4 accepted, 0 already recorded, 0 refused (of 4 rows)." in run.out, run

    # The bilan counts the corrected amount, and not the voided contract.
    await settled_versions(client, store, programme_id)
    run = await cli("report", programme_id, "--format", "json")
    assert run.code == 0, run
    bilan = json.loads(run.out)
    assert (bilan["contracts"], bilan["value_by_currency"]) == (1, {"USD": "2002.00"}), bilan

    # The timeline lists the whole stream: authors, stages, values before and after.
    run = await cli("timeline", "trifide", *p, "--format", "json")
    assert run.code == 0, run
    timeline = json.loads(run.out)
    events = timeline["events"]
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    stream_id = journey_workflow_id(programme_id, "trifide")
    assert len(events) == await store.stream_version(stream_id)
    [signed] = [e for e in events if e["type"] == "ContractSigned"]
    [corrected] = [e for e in events if e["type"] == "ContractCorrected"]
    assert (signed["recorded_by"], signed["occurred_at"]) == (
        "alice", "2013-10-01T00:00:00-07:00"
    )
    # Stages chain: each event starts from the stage the one before it left.
    assert (events[0]["stage_before"], events[0]["stage_after"]) == (None, "introduced")
    assert all(
        e["stage_before"] == before["stage_after"] for before, e in itertools.pairwise(events)
    )
    assert corrected["recorded_by"] == "bob"
    assert corrected["occurred_at"] == "2013-10-02T00:00:00-07:00"
    assert corrected["changes"] == [
        {"subject": "contract c1", "field": "value", "before": "USD 2,001.00",
         "after": "USD 2,002.00"}
    ]
    timers = [e for e in events if e["type"] in ("ReturnVisitDue", "ReturnVisitMissed")]
    assert timers and {e["recorded_by"] for e in timers} == {"corridor"}
    run = await cli("timeline", "doculibre", *p, "--format", "json")
    [voided] = [e for e in json.loads(run.out)["events"] if e["type"] == "ContractVoided"]
    assert voided["recorded_by"] == "carol"  # the row says nobody: --by
    assert voided["changes"][0]["after"] == "voided"

    # Staff commands: --by, else CORRIDOR_ACTOR; refusals name the broken rule.
    run = await cli(
        "correct", "contract", "trifide", "c1", "--counterpart", "Apple Inc.",
        "--reason", "legal name", *p, "--by", "dan",
    )
    assert run.code == 0, run
    assert lines_of(run.out) == ["recorded: contract c1 corrected (counterpart): legal name"], run
    as_erin = Cli(cli.env | {"CORRIDOR_ACTOR": "erin"}, cli.cwd)
    run = await as_erin("void", "contract", "trifide", "c1", "--reason", "cancelled deal", *p)
    assert run.code == 0, run
    run = await as_erin("void", "contract", "trifide", "c1", "--reason", "again", *p)
    assert run.code == 1, run
    assert flat(run.err).startswith(
        "error: refused (CorrectionRuleBroken): contract c1 was voided on "
    ), run
    run = await cli("correct", "contract", "trifide", "c1", "--reason", "nothing", *p)
    assert run.code == 2, run
    assert "nothing to correct" in flat(run.err), run
    run = await cli("correct", "meeting", "trifide", "mt-404", "neutral", "--reason", "r", *p)
    assert run.code == 1, run
    assert "refused (UnknownReference): meeting mt-404 was never requested" in flat(run.err)

    run = await cli("timeline", "trifide", *p, "--format", "json")
    last_two = json.loads(run.out)["events"][-2:]
    assert [(e["type"], e["recorded_by"]) for e in last_two] == [
        ("ContractCorrected", "dan"), ("ContractVoided", "erin"),
    ]
    assert last_two[0]["changes"][0]["before"] == "Apple"
    run = await cli("timeline", "trifide", *p)
    assert run.code == 0, run
    assert "legal name" in run.out and "dan" in run.out and "erin" in run.out, run
    run = await cli("report", programme_id, "--format", "json")
    assert json.loads(run.out)["contracts"] == 0


# --------------------------------------------------------------------- completeness


def _late_roster(roster: Path, folder: Path) -> Path:
    """Two more firms for the roster's programme, introduced at its first mission."""
    header, first, *_ = roster.read_text("utf-8").splitlines()
    rows = [first.replace("trifide", name, 1) for name in ("late-one", "late-two")]
    return write(folder / "late.csv", header, *rows)


async def test_a_report_while_journeys_catch_up_says_it_is_incomplete_and_can_wait(
    cli: Cli, client: Client, store: EventStore, roster: Path, programme: Path,
    programme_id: str, tmp_path: Path,
) -> None:
    """Two journeys wait for a worker: every format says so; --wait waits for them."""
    await enrolled(cli, roster, programme)
    queue = f"later-{programme_id}"
    run = await Cli(cli.env | {"CORRIDOR_TASK_QUEUE": queue}, cli.cwd)(
        "enroll", _late_roster(roster, tmp_path), "-p", programme
    )
    assert run.code == 0, run
    for _ in range(100):  # visibility follows the starts a moment later
        if (await service.journeys_catching_up(client, programme_id))[1] == 5:
            break
        await asyncio.sleep(0.1)

    run = await cli("report", programme_id)
    assert run.code == 0, run
    assert "INCOMPLETE: 2 journey(s) are still catching up" in flat(run.out), run
    assert "warning: INCOMPLETE: 2 journey(s)" in flat(run.err), run
    report = json.loads((await cli("report", programme_id, "-f", "json")).out)
    assert (report["complete"], report["journeys_behind"], report["firms"]) == (False, 2, 3)
    rows = list(csv.DictReader(io.StringIO((await cli("report", programme_id, "-f", "csv")).out)))
    assert {row["complete"] for row in rows} == {"false"}

    late_worker = build_worker(client, store, queue)
    running = asyncio.create_task(late_worker.run())
    try:
        run = await cli("report", programme_id, "--wait", "-f", "json")
        assert run.code == 0, run
        report = json.loads(run.out)
        assert (report["complete"], report["journeys_behind"], report["firms"]) == (True, 0, 5)
        run = await cli("report", programme_id)
        assert "complete (every journey's events are stored)" in flat(run.out), run
    finally:
        await late_worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)
