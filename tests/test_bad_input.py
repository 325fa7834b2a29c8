"""The bad-input corpus (issue 4): every case with the exact error it gets.

``tests/bad_input/`` holds the files (one small CSV per file-level case) and
``cases.toml`` lists every case with exactly what comes out of it:

- ``[[file]]``: a roster, journal or programme file read with ``load_roster``,
  ``load_journal`` or ``load_programme``; either ``errors`` (each problem as
  ``corridor`` prints it after ``error:``) or ``parsed`` (what an accepted file, e.g. a
  French spreadsheet export, parses to). Cases marked ``cli`` are also run through the
  real ``corridor`` command (a programme file as the ``--programme`` of ``corridor
  enroll`` with the French roster): exit 2, those lines on stderr, and nothing written
  or started.
- ``[[command]]``: a ``corridor`` command sent to the journeys of the module's
  programme (enrolled from the French roster, fed the French journal): a rule refusal
  exits 1, a bad option exits 2; the exact output, and nothing written.
- ``[[signal]]``: a raw signal sent with the real ``temporal workflow signal``: the
  journey keeps it in its ``state`` query's refusals, writes nothing, and its history
  has no WorkflowTaskFailed event (an unknown signal name included).

A case with a ``defect`` checks today's exact output, then is reported as xfail with
the defect (to be fixed outside corridor/imports/).
Raw signals the ``--input`` of a case cannot express (none, two, a NUL character), which
once broke a journey, are tests of their own at the end. Placeholders in expected lines:
``{programme}`` (the programme id in use) and ``{today}`` (the real today: UTC for a
roster, the programme's time zone for a journey).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.store import EventStore
from corridor import service
from corridor.imports import InputError, load_journal, load_programme, load_roster
from corridor.stack import TemporalDevServer
from domain.programme import Programme
from tests.conftest import MASTER_KEY
from tests.support import Run, run_program
from workflows.journey import JourneyView, journey_workflow_id

CORPUS = Path(__file__).resolve().parent / "bad_input"
CASES: dict[str, list[dict[str, Any]]] = tomllib.loads(
    (CORPUS / "cases.toml").read_text(encoding="utf-8")
)
CORRIDOR = Path(sys.executable).with_name("corridor")
TEMPORAL = Path(sys.executable).with_name("temporal")
PROGRAMME = load_programme(CORPUS / "programme.toml")
FIRMS = ("trifide", "doculibre", "nordik", "exmachina", "boreal")
"""The firms of roster/french-export.csv: the module's journeys."""
SIGNAL_FIRM = "exmachina"
TIMEZONE = ZoneInfo(PROGRAMME.timezone)
T = TypeVar("T")


# -------------------------------------------------------------------------- helpers


def case_ids(table: str) -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in CASES[table]]


def expand(lines: list[str], programme_id: str, today: date) -> list[str]:
    """Expected lines with their placeholders filled (not str.format: regexes have braces)."""
    return [
        line.replace("{programme}", programme_id).replace("{today}", today.isoformat())
        for line in lines
    ]


def known_defect(case: dict[str, Any]) -> None:
    """Report a case whose output (checked above) is known to be wrong as xfail."""
    if "defect" in case:
        pytest.xfail(case["defect"])


def today_utc() -> date:
    return datetime.now(UTC).date()


def today_local() -> date:
    return datetime.now(TIMEZONE).date()


def corpus_file(case: dict[str, Any], folder: Path) -> Path:
    """The case's file; a copy with ``<FILL>`` made ``fill`` characters long if asked."""
    path: Path = CORPUS / case["file"]
    if "fill" not in case:
        return path
    copy: Path = folder / path.name
    copy.write_bytes(path.read_bytes().replace(b"<FILL>", b"x" * case["fill"]))
    return copy


def flattened(data: Any, prefix: str = "") -> list[str]:
    """``key=value`` pairs of a command's fields, nested keys dotted, empty ones left out."""
    if isinstance(data, dict):
        return [pair for key, value in data.items() for pair in flattened(value, f"{prefix}{key}.")]
    if data in (None, "", []):
        return []
    shown = "|".join(str(v) for v in data) if isinstance(data, list) else str(data)
    return [f"{prefix.removesuffix('.')}={shown}"]


def summary(command: BaseModel) -> str:
    """One line per parsed command, as ``parsed`` lists them in cases.toml."""
    data = command.model_dump(mode="json", exclude={"command_id", "kind", "programme"})
    return "; ".join(flattened(data))


def read(case: dict[str, Any], folder: Path, programme: Programme) -> list[str]:
    """What a file case parses to (``parsed`` lines), or its problems (``errors`` lines)."""
    path = corpus_file(case, folder)
    try:
        if case["file"].startswith("programme/"):
            return [summary(load_programme(path))]
        if case["file"].startswith("roster/"):
            today = date.fromisoformat(case["today"]) if "today" in case else today_utc()
            return [summary(c) for c in load_roster(path, programme, today=today)]
        records = load_journal(path, programme, known_firms=set(FIRMS))
        return [f"row {r.row}, {r.firm_id}, {r.action}: {summary(r.command)}" for r in records]
    except InputError as error:
        return [str(problem) for problem in error.errors]


async def run(program: Path, *args: str | Path, env: dict[str, str] | None = None) -> Run:
    return await run_program(program, *args, env=env, seconds=60)


@dataclass
class Corpus:
    """The module's programme, its journeys, and how to run commands against them."""

    programme_id: str
    programme_toml: Path
    env: dict[str, str]
    address: str
    client: Client
    store: EventStore
    enrolled: Run
    recorded: Run
    folder: Path

    async def corridor(self, *args: str | Path) -> Run:
        return await run(CORRIDOR, *args, env=self.env)

    async def signal(self, firm: str, *args: str) -> Run:
        workflow_id = journey_workflow_id(self.programme_id, firm)
        return await run(
            TEMPORAL, "workflow", "signal", "--address", self.address, "-w", workflow_id, *args
        )

    async def written(self, programme_id: str | None = None) -> dict[str, int]:
        """Each stream of the programme and its version in the event store."""
        rows = await self.store.pool.fetch(
            "SELECT stream_id, max(stream_version) AS version FROM events "
            "WHERE stream_id LIKE $1 GROUP BY stream_id",
            f"journey/{programme_id or self.programme_id}/%",
        )
        return {row["stream_id"]: row["version"] for row in rows}

    async def view(self, firm: str) -> JourneyView:
        return await service.view(self.client, self.programme_id, firm)


def programme_copy(folder: Path, programme_id: str) -> Path:
    """The corpus programme under another id, for `corridor --programme`."""
    text = (CORPUS / "programme.toml").read_text(encoding="utf-8")
    path = folder / f"{programme_id}.toml"
    path.write_text(text.replace('id = "bad-input"', f'id = "{programme_id}"', 1), "utf-8")
    return path


async def task_failures(client: Client, workflow_id: str) -> list[str]:
    """The WorkflowTaskFailed events of every run of a workflow, with their causes."""
    failures = []
    handle = client.get_workflow_handle(workflow_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attributes = event.workflow_task_failed_event_attributes
            failures.append(f"event {event.event_id}: {attributes.failure.message}")
    return failures


async def journey_exists(client: Client, programme_id: str, firm_id: str) -> bool:
    try:
        await client.get_workflow_handle(journey_workflow_id(programme_id, firm_id)).describe()
    except RPCError as error:
        assert error.status == RPCStatusCode.NOT_FOUND, error
        return False
    return True


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
async def corpus(
    temporal_server: TemporalDevServer,
    dsn: str,
    task_queue: str,
    worker: None,
    client: Client,
    store: EventStore,
    folder: Path,
) -> AsyncIterator[Corpus]:
    """Journeys of a fresh programme: the French roster enrolled, the French journal
    recorded, both through the real `corridor` command."""
    programme_id = f"bad-{uuid.uuid4().hex[:10]}"
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
        "CORRIDOR_DATA_DIR": str(folder / "data"),
    }
    toml = programme_copy(folder, programme_id)
    enrolled = await run(
        CORRIDOR, "enroll", CORPUS / "roster/french-export.csv", "-p", toml, env=env
    )
    recorded = await run(
        CORRIDOR, "record", CORPUS / "journal/french-export.csv", "-p", toml, env=env
    )
    assert (enrolled.code, recorded.code) == (0, 0), (enrolled, recorded)
    for firm in FIRMS:
        await service.sync(client, programme_id, firm)
    yield Corpus(
        programme_id,
        toml,
        env,
        temporal_server.address,
        client,
        store,
        enrolled,
        recorded,
        folder,
    )


# ----------------------------------------------------------------- file-level cases


@pytest.mark.parametrize("case", case_ids("file"))
def test_file(case: dict[str, Any], folder: Path) -> None:
    """Each file reads to exactly its expected commands, or its expected problems."""
    expected = expand(case.get("errors") or case["parsed"], PROGRAMME.id, today_utc())
    assert read(case, folder, PROGRAMME) == expected


@pytest.mark.parametrize("case", [c for c in case_ids("file") if c.values[0].get("cli")])
async def test_file_through_cli(case: dict[str, Any], corpus: Corpus) -> None:
    """The real command prints each problem, exits 2, and writes or starts nothing."""
    path = corpus_file(case, corpus.folder)
    roster = case["file"].startswith(("roster/", "programme/"))
    if case["file"].startswith("programme/"):
        # The French roster under this programme: nothing may exist in its id afterwards.
        programme_id = "bad-input"
        roster_csv = CORPUS / "roster/french-export.csv"
        result = await corpus.corridor("enroll", roster_csv, "--programme", path)
        today = today_utc()
    elif roster:
        # A programme of its own: nothing may exist in it afterwards.
        programme_id = f"bad-{uuid.uuid4().hex[:10]}"
        toml = programme_copy(corpus.folder, programme_id)
        result = await corpus.corridor("enroll", path, "--programme", toml)
        today = today_utc()
    else:
        programme_id, toml = corpus.programme_id, corpus.programme_toml
        before = await corpus.written()
        result = await corpus.corridor("record", path, "--programme", toml)
        today = today_local()
    errors = expand(case["errors"], programme_id, today)
    assert result.code == 2, result
    assert result.err_lines == [
        *(f"error: {line}" for line in errors),
        f"{len(errors)} problem(s); nothing was sent.",
    ], result
    assert result.out == "", result
    if roster:
        assert await corpus.written(programme_id) == {}
        for firm in FIRMS:
            assert not await journey_exists(corpus.client, programme_id, firm), firm
    else:
        assert await corpus.written() == before


async def test_french_roster_enrolled_through_cli(corpus: Corpus) -> None:
    """roster/french-export.csv: accepted by `corridor enroll`, names stored as parsed."""
    assert corpus.enrolled.code == 0, corpus.enrolled
    assert corpus.enrolled.out_lines == [
        *(f"journey/{corpus.programme_id}/{firm}: started" for firm in FIRMS),
        "5 journey(s) started, 0 already enrolled.",
    ], corpus.enrolled
    names = {firm: (await corpus.view(firm)).state.firm.name for firm in FIRMS}
    assert names == {
        "trifide": "Groupe Trifide",
        "doculibre": "DocuLibre",
        "nordik": "Nordik Robotique; division Lévis (fictive)",
        "exmachina": "Ex Machina",
        "boreal": "Boréal Numérique (fictive)",
    }


async def test_french_journal_recorded_through_cli(corpus: Corpus) -> None:
    """journal/french-export.csv: accepted by `corridor record`, amounts stored exactly."""
    assert corpus.recorded.code == 0, corpus.recorded
    assert corpus.recorded.out_lines == [
        "11 accepted, 0 already recorded, 0 refused (of 11 rows)."
    ], corpus.recorded
    contracts = {
        firm: [
            (str(c.value.amount), c.value.currency, c.counterpart)
            for c in (await corpus.view(firm)).state.contracts
        ]
        for firm in ("trifide", "exmachina")
    }
    assert contracts == {
        "trifide": [("180000.50", "USD", "Apple")],
        "exmachina": [
            ("1250000.00", "CAD", "Pacific Stage Works"),
            ("2500.75", "CAD", "Sunset Studios (fictive)"),
        ],
    }
    stored = await corpus.store.read_stream(journey_workflow_id(corpus.programme_id, "exmachina"))
    amounts = [
        json.loads(e.event.model_dump_json())["value"]["amount"]
        for e in stored
        if type(e.event).__name__ == "ContractSigned"
    ]
    assert amounts == ["1250000.00", "2500.75"]


# ------------------------------------------------------------ commands to journeys


@pytest.mark.parametrize("case", case_ids("command"))
async def test_command(case: dict[str, Any], corpus: Corpus) -> None:
    """A rule refusal exits 1, a bad option 2; the exact output; nothing written."""
    args = [
        CORPUS / arg if arg.endswith(".csv") else arg.replace("<FILL>", "x" * case.get("fill", 0))
        for arg in case["run"]
    ]
    before = await corpus.written()
    result = await corpus.corridor(*args, "--programme", corpus.programme_toml)
    today = today_local()
    assert (result.code, result.err_lines, result.out_lines) == (
        case["exit"],
        expand(case["stderr"], corpus.programme_id, today),
        expand(case["stdout"], corpus.programme_id, today),
    ), result
    assert await corpus.written() == before
    assert not await journey_exists(corpus.client, corpus.programme_id, "ghost")
    known_defect(case)


async def test_same_command_twice_is_already_recorded(corpus: Corpus) -> None:
    """The same command id sent twice: recorded once, then "already recorded", exit 0."""
    command = (
        "meeting",
        "request",
        "boreal",
        "mb-1",
        "LinkedIn",
        "--on",
        "2014-11-20",
        "--command-id",
        "bad-input-dup-1",
        "--programme",
        corpus.programme_id,
    )
    first = await corpus.corridor(*command)
    assert (first.code, first.out_lines) == (
        0,
        ["recorded: meeting mb-1 with LinkedIn requested"],
    ), first
    after_first = await corpus.written()
    again = await corpus.corridor(*command)
    assert (again.code, again.out_lines, again.err) == (
        0,
        ["already recorded: nothing new was written"],
        "",
    ), again
    assert await corpus.written() == after_first


async def test_same_signal_twice_is_applied_once(corpus: Corpus) -> None:
    """A signal repeated with its command_id: the second changes nothing, refuses nothing."""
    payload = json.dumps(
        {
            "meeting_id": "mb-2",
            "counterpart": "Apple",
            "occurred_on": "2014-11-21",
            "command_id": "bad-input-dup-2",
        }
    )
    before = await corpus.view("boreal")
    for _ in range(2):
        sent = await corpus.signal("boreal", "--name", "request_meeting", "--input", payload)
        assert sent.code == 0, sent
        await asyncio.wait_for(service.sync(corpus.client, corpus.programme_id, "boreal"), 20)
    after = await corpus.view("boreal")
    assert after.state.stream_version == before.state.stream_version + 1
    assert after.state.meetings["mb-2"].counterpart == "Apple"
    assert after.refusals == before.refusals


# ------------------------------------------------------------------- raw signals


async def signalled(corpus: Corpus, firm: str, *args: str) -> JourneyView:
    """Send a signal with the Temporal CLI; the journey's view once it is handled."""
    sent = await corpus.signal(firm, *args)
    assert (sent.code, sent.err) == (0, ""), sent
    # An update sent after the signal is handled after it.
    await asyncio.wait_for(service.sync(corpus.client, corpus.programme_id, firm), 20)
    return await corpus.view(firm)


def added(before: list[T], after: list[T]) -> list[T]:
    """The items appended to a list the journey keeps only the last N of."""
    for dropped in range(len(before) + 1):
        kept = before[dropped:]
        if after[: len(kept)] == kept:
            return after[len(kept) :]
    return after


@pytest.mark.parametrize("case", case_ids("signal"))
async def test_signal(case: dict[str, Any], corpus: Corpus) -> None:
    """A raw signal of the wrong shape or breaking a rule: kept in the refusals only."""
    firm = SIGNAL_FIRM
    before_written = await corpus.written()
    before = await corpus.view(firm)
    args = ["--name", case["name"]]
    if "fill" in case:
        payload = corpus.folder / f"{case['name']}.json"
        payload.write_text(case["input"].replace("<FILL>", "x" * case["fill"]), "utf-8")
        args += ["--input-file", str(payload)]
    else:
        args += ["--input", case["input"]]
    after = await signalled(corpus, firm, *args)
    refused = [(r.command, r.rule, r.message) for r in added(before.refusals, after.refusals)]
    message = expand([case["message"]], corpus.programme_id, today_local())[0]
    assert refused == [(case["command"], case["rule"], message)]
    assert after.state.stream_version == before.state.stream_version
    assert await corpus.written() == before_written
    workflow_id = journey_workflow_id(corpus.programme_id, firm)
    assert await task_failures(corpus.client, workflow_id) == []
    known_defect(case)


async def test_signal_that_is_not_json_is_refused_by_the_temporal_cli(corpus: Corpus) -> None:
    firm = SIGNAL_FIRM
    workflow_id = journey_workflow_id(corpus.programme_id, firm)
    handle = corpus.client.get_workflow_handle(workflow_id)
    history = [e async for e in handle.fetch_history_events()]
    sent = await corpus.signal(firm, "--name", "request_meeting", "--input", '{"meeting_id": ')
    assert sent.code == 1, sent
    assert "Error: input #1 is not valid JSON" in sent.err, sent
    later = [e async for e in handle.fetch_history_events()]
    assert later == history


async def test_status_shows_the_refused_signals(corpus: Corpus) -> None:
    """`corridor status FIRM` lists the journey's last five refusals."""
    view = await signalled(corpus, SIGNAL_FIRM, "--name", "withdraw", "--input", '{"why": 1}')
    assert view.refusals[-1].message == "why: is not a field of this command"
    status = await corpus.corridor("status", SIGNAL_FIRM, "--programme", corpus.programme_toml)
    assert status.code == 0, status
    # One line per refusal, whole, also when piped (`out` is 160 columns wide then, and
    # the unknown-signal refusal, with its list of known names, is longer).
    shown = [line for line in status.out_lines if line.startswith("refused signal (")]
    assert [line.split("): ", 1)[1] for line in shown] == [
        f"{r.command}: {r.message}" for r in view.refusals[-5:]
    ]
    assert shown[-1].endswith("): withdraw: why: is not a field of this command")


async def test_no_journey_had_a_workflow_task_failure(corpus: Corpus) -> None:
    for firm in FIRMS:
        workflow_id = journey_workflow_id(corpus.programme_id, firm)
        assert await task_failures(corpus.client, workflow_id) == [], firm


# ---------------------------------------------- raw signals that once broke a journey
# Signals whose handler once raised (no input, two inputs) or whose event the store
# refused for ever (a NUL character). Each goes to a journey of its own (in a programme
# of its own), terminated afterwards, so that a regression cannot stick the shared
# journeys, and a failing task stops retrying.


@pytest.fixture
async def lone(corpus: Corpus, task_queue: str) -> AsyncIterator[tuple[Corpus, str]]:
    """A journey (trifide, from the French roster) in a programme of its own."""
    programme = PROGRAMME.model_copy(update={"id": f"bad-{uuid.uuid4().hex[:10]}"})
    enrolment = load_roster(CORPUS / "roster/french-export.csv", programme, today=today_utc())[0]
    await service.enroll(corpus.client, enrolment, task_queue=task_queue)
    await service.sync(corpus.client, programme.id, enrolment.firm.id)
    try:
        yield dataclasses.replace(corpus, programme_id=programme.id), enrolment.firm.id
    finally:
        handle = corpus.client.get_workflow_handle(
            journey_workflow_id(programme.id, enrolment.firm.id)
        )
        with contextlib.suppress(RPCError):
            await handle.terminate(reason="bad-input test: done")


async def settled_or_failed(corpus: Corpus, firm: str) -> list[str]:
    """Wait until the journey has handled what it was sent, or a workflow task failed."""
    workflow_id = journey_workflow_id(corpus.programme_id, firm)
    sync = asyncio.ensure_future(service.sync(corpus.client, corpus.programme_id, firm))
    try:
        for _ in range(100):
            if sync.done() or await task_failures(corpus.client, workflow_id):
                break
            await asyncio.sleep(0.1)
    finally:
        sync.cancel()
        with contextlib.suppress(BaseException):
            await sync
    return await task_failures(corpus.client, workflow_id)


async def test_signal_without_input_is_refused(lone: tuple[Corpus, str]) -> None:
    """No --input: the handler gets no argument; refused, the journey keeps running."""
    corpus, firm = lone
    before = await corpus.view(firm)
    sent = await corpus.signal(firm, "--name", "withdraw")
    assert sent.code == 0, sent
    assert await settled_or_failed(corpus, firm) == []
    after = await corpus.view(firm)
    refused = [(r.command, r.rule, r.message) for r in after.refusals[len(before.refusals) :]]
    assert refused == [
        (
            "withdraw",
            "InvalidPayload",
            "expects one JSON object (optional: command_id, occurred_on, by, reason); got 0 inputs",
        )
    ]
    assert after.state.stream_version == before.state.stream_version


async def test_signal_with_two_inputs_is_refused(lone: tuple[Corpus, str]) -> None:
    """Two --input values: the handler gets two arguments; refused, nothing applied."""
    corpus, firm = lone
    before = await corpus.view(firm)
    request = '{"meeting_id": "mt-9", "counterpart": "Apple"}'
    sent = await corpus.signal(
        firm, "--name", "request_meeting", "--input", request, "--input", "{}"
    )
    assert sent.code == 0, sent
    assert await settled_or_failed(corpus, firm) == []
    after = await corpus.view(firm)
    refused = [(r.command, r.rule, r.message) for r in after.refusals[len(before.refusals) :]]
    assert refused == [
        (
            "request_meeting",
            "InvalidPayload",
            "expects one JSON object with meeting_id, counterpart "
            "(optional: command_id, occurred_on, by); got 2 inputs",
        )
    ]
    assert after.state.stream_version == before.state.stream_version


async def test_signal_with_a_nul_character_is_refused(lone: tuple[Corpus, str]) -> None:
    """A NUL (PostgreSQL cannot store it) is refused by the domain, not stored for ever."""
    corpus, firm = lone
    before = await corpus.view(firm)
    request = '{"meeting_id": "mt-9", "counterpart": "Ap\\u0000ple", "occurred_on": "2014-01-10"}'
    sent = await corpus.signal(firm, "--name", "request_meeting", "--input", request)
    assert sent.code == 0, sent
    after = before
    for _ in range(50):
        after = await corpus.view(firm)
        if after.refusals or after.state.stream_version != before.state.stream_version:
            break
        await asyncio.sleep(0.1)
    refused = [(r.command, r.rule, r.message) for r in after.refusals[len(before.refusals) :]]
    assert refused == [
        ("request_meeting", "InvalidPayload", "counterpart: contains a control character (U+0000)")
    ]
    assert after.state.stream_version == before.state.stream_version
    workflow_id = journey_workflow_id(corpus.programme_id, firm)
    assert await task_failures(corpus.client, workflow_id) == []
