"""Follow-ups that reach people (issue 9), against a real SMTP server on loopback.

Each test starts the embedded SMTP server (aiosmtpd, ``corridor.stack.smtp``) on
127.0.0.1 and a worker that sends through it; what it asserts is what reached the
server: the deliveries it was given and the messages its mailbox keeps.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.api import DigestResult
from activities.mail import Mailer, SmtpServer
from activities.store import EventStore
from corridor import service
from corridor.demo import ClockMode, Scenario
from corridor.demo.player import play
from corridor.imports import InputError, load_journal, load_roster
from corridor.runtime import build_worker
from corridor.stack import TemporalDevServer
from corridor.stack.smtp import LocalSmtpServer
from domain.calendar import ProgrammeClock, zone
from domain.commands import (
    ArrangeMeeting,
    CompleteNextStep,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RequestMeeting,
)
from domain.events import MessageFailed
from domain.programme import AT_INPUT, Firm, Programme
from tests.conftest import EXAMPLES, MASTER_KEY, make_programme
from workflows.digest import AdviserDigests, DigestInput

ROOT = Path(__file__).resolve().parent.parent
LA = zone("America/Los_Angeles")
TORONTO = zone("America/Toronto")


def _delivered(smtp: LocalSmtpServer, programme_id: str) -> list[email.message.EmailMessage]:
    """The messages of one programme the server kept (one per Message-ID)."""
    kept = []
    for message in smtp.mailbox.messages():
        parsed = message.parsed()
        if parsed["X-Corridor-Programme"] == programme_id:
            kept.append(parsed)
    return kept


def _deliveries(smtp: LocalSmtpServer, message_id: str) -> int:
    """How many times the server was given a message with this Message-ID."""
    return sum(
        1
        for raw in list(smtp.deliveries)
        if email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"] == message_id
    )


# ------------------------------------------------------------------- the seed


async def test_the_seed_tells_exactly_who_it_should(
    client: Client, store: EventStore, smtp: LocalSmtpServer, mail_queue: str
) -> None:
    """The seed's programme, played 2013-2016, sends the messages counted by hand.

    Counted from examples/quebec-california (roster.csv, journal.csv, programme.toml):
    advisers: dmorin follows exmachina, boreal, caprouge, limoilou (roster's adviser
    column); ifortin (default_adviser) the six others. The play ends on 2016-11-29.

    Reminders to the firm's contact, 30 days before each return visit (every 6 months
    from the introduction) while the journey is not over:
      trifide 6 (2014-02-15, 2014-08-18, 2015-02-15, 2015-08-18, 2016-02-16,
      2016-08-18), doculibre 6 (a day later each), exmachina 5 (2014-08-25 ...
      2016-08-25), nordik 4 (closed 2015-09-25), capitale 4 (closed 2016-04-04),
      boreal 4, saintroch 4, caprouge 4 (2015-04 to 2016-10), limoilou 1 (withdrew
      2015-06-30), laurentide 0 (withdrew 2014-02-10, before its first reminder
      2014-02-17): 38.
    Results overdue (arranged, no result 7 days later): saintroch ms-2 (2014-11-19,
      overdue 2014-11-26): 1, to ifortin.
    Evaluations due (24 months after the introduction, journey not over): trifide,
      doculibre, nordik, capitale, saintroch (ifortin: 5); exmachina, boreal, caprouge
      (dmorin: 3).
    Return visits missed (nothing recorded when the next falls due): trifide v3-v5,
      doculibre v3-v5, nordik v3, capitale v2-v3, saintroch v1-v3 (ifortin: 3+3+1+2+3
      = 12); exmachina v2-v4, boreal v1-v3, caprouge v1-v3 (dmorin: 9).
    Total: 38 + 1 + 8 + 21 = 68.
    """
    scenario = Scenario.load(EXAMPLES)
    programme_id = f"seed-{uuid.uuid4().hex[:8]}"
    programme = scenario.programme.model_copy(update={"id": programme_id})
    roster = load_roster(EXAMPLES / "roster.csv", programme)
    journal = load_journal(EXAMPLES / "journal.csv", programme)
    outcome = await play(
        client, programme, roster, journal, task_queue=mail_queue, until=scenario.until,
        mode=ClockMode.SKIP,
    )
    assert not outcome.refused and not outcome.failed
    sent_recorded = 0
    for enrolment in roster:
        journey = await service.messages_settled(client, programme_id, enrolment.firm.id)
        sent_recorded += journey.state.messages_sent
    kept = _delivered(smtp, programme_id)
    by_kind = Counter(m["X-Corridor-Kind"] for m in kept)
    assert by_kind == {
        "visit_reminder": 38,
        "result_overdue": 1,
        "evaluation_due": 8,
        "visit_missed": 21,
    }
    reminders = Counter(
        m["X-Corridor-Firm"] for m in kept if m["X-Corridor-Kind"] == "visit_reminder"
    )
    assert reminders == {
        "trifide": 6, "doculibre": 6, "exmachina": 5, "nordik": 4, "capitale": 4,
        "boreal": 4, "saintroch": 4, "caprouge": 4, "limoilou": 1,
    }
    advisers = Counter(
        (m["To"].addresses[0].username, m["X-Corridor-Kind"])
        for m in kept
        if m["X-Corridor-Kind"] != "visit_reminder"
    )
    assert advisers == {
        ("isabelle.fortin", "result_overdue"): 1,
        ("isabelle.fortin", "evaluation_due"): 5,
        ("isabelle.fortin", "visit_missed"): 12,
        ("david.morin", "evaluation_due"): 3,
        ("david.morin", "visit_missed"): 9,
    }
    assert len(kept) == 68 == sent_recorded  # each recorded MessageSent reached the server
    # Business dates in the text: trifide's first reminder, for the visit due 2014-03-17.
    (first,) = [
        m for m in kept
        if m["X-Corridor-Firm"] == "trifide" and m["X-Corridor-Business-Date"] == "2014-02-15"
    ]
    text = first.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Date : 2014-02-15" in text and "2014-03-17" in text
    assert "Mission Californie, mars 2014" in text  # the mission of that visit
    assert first["To"].addresses[0].addr_spec == "contact@trifide.example"
    exmachina = [m for m in kept if m["X-Corridor-Firm"] == "exmachina"]
    assert any(m["Subject"].startswith("Reminder: return visit") for m in exmachina)  # en

    # The digests of a few chosen days, at 07:00 in the office (America/Toronto):
    #  2014-11-24 (Monday): ifortin 1 item (saintroch ms-2's result due 2014-11-26);
    #    dmorin nothing (every result recorded, no visit within 7 days): no message.
    #  2015-09-18 (Friday): ifortin 10 items: trifide and nordik (evaluation awaited
    #    since 2015-09-17, visit 4 due 2015-09-17 not recorded), doculibre (both due
    #    today), capitale (visit 2 of 2015-03-25 not recorded, visit 3 due 2015-09-25),
    #    saintroch (ms-2 overdue, visit 1 of 2015-05-18 not recorded); dmorin 4 items:
    #    exmachina (visit 2 not recorded, visit 3 due 2015-09-24), boreal and caprouge
    #    (visit 1 not recorded).
    #  2015-09-19 (Saturday): not a working day: nothing.
    async def digest(day: date) -> DigestResult:
        at = datetime(day.year, day.month, day.day, 7, tzinfo=TORONTO)
        return await client.execute_workflow(
            AdviserDigests.run,
            DigestInput(at=at, programme_id=programme_id),
            id=f"digest-{programme_id}-{day}",
            task_queue=mail_queue,
        )

    assert (await digest(date(2014, 11, 24))).items == {f"{programme_id}/ifortin": 1}
    assert (await digest(date(2015, 9, 18))).items == {
        f"{programme_id}/ifortin": 10,
        f"{programme_id}/dmorin": 4,
    }
    saturday = await digest(date(2015, 9, 19))
    assert saturday.items == {} and programme_id in saturday.skipped
    again = await client.execute_workflow(  # the same day again: nothing sent twice
        AdviserDigests.run,
        DigestInput(at=datetime(2015, 9, 18, 7, tzinfo=TORONTO), programme_id=programme_id),
        id=f"digest-{programme_id}-again",
        task_queue=mail_queue,
    )
    assert len(again.sent) == 2
    digests = [m for m in _delivered(smtp, programme_id) if m["X-Corridor-Kind"] == "digest"]
    who = sorted((m["X-Corridor-Business-Date"], m["To"].addresses[0].username) for m in digests)
    assert who == [
        ("2014-11-24", "isabelle.fortin"),
        ("2015-09-18", "david.morin"),
        ("2015-09-18", "isabelle.fortin"),
    ]
    for message in digests:
        ids = [m for m in smtp.deliveries if message["Message-ID"].encode() in m]
        assert len(ids) == 1
    morin = next(m for m in digests if m["To"].addresses[0].username == "david.morin")
    body = morin.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Overdue" in body and "corridor visit boreal attended|skipped" in body


# ------------------------------------------------------------------ next steps


def _with_staff(programme_id: str) -> Programme:
    base = make_programme(programme_id)
    return Programme.model_validate(
        {
            **base.model_dump(),
            "staff": [
                {"id": "anna", "name": "Anna Adviser", "email": "anna@agency.example",
                 "language": "en"},
            ],
            "default_adviser": "anna",
        }
    )


async def test_a_next_step_never_done_is_overdue_the_day_after_and_the_adviser_is_told(
    client: Client, smtp: LocalSmtpServer, mail_queue: str, programme_id: str
) -> None:
    programme = _with_staff(programme_id)
    enrolment = EnrollFirm(
        programme=programme,
        firm=Firm(id="acme", name="Acme"),
        mission_id="m1",
        occurred_on=date(2013, 9, 17),
    )
    noon = datetime(2013, 9, 17, 12, tzinfo=LA)
    await service.enroll(
        client, enrolment, task_queue=mail_queue, clock=ProgrammeClock.held_at(noon)
    )
    for command in (
        RequestMeeting(meeting_id="m-1", counterpart="Apple"),
        RequestMeeting(meeting_id="m-2", counterpart="LinkedIn"),
        ArrangeMeeting(meeting_id="m-1", partner_id="labizfed",
                       scheduled_at=datetime(2013, 9, 17, 14, tzinfo=LA)),
        ArrangeMeeting(meeting_id="m-2", partner_id="labizfed",
                       scheduled_at=datetime(2013, 9, 17, 15, tzinfo=LA)),
    ):
        await service.send(client, programme_id, "acme", command)
    await service.advance_clock(client, programme_id, "acme", datetime(2013, 9, 18, 12, tzinfo=LA))
    # m-2's result is typed first without its next step, then again with it: added.
    await service.send(
        client, programme_id, "acme",
        RecordMeetingResult(meeting_id="m-2", outcome=Outcome.PROMISING),
    )
    for meeting_id, step in (("m-1", "Send the proposal"), ("m-2", "Call back")):
        await service.send(
            client,
            programme_id,
            "acme",
            RecordMeetingResult(
                meeting_id=meeting_id, outcome=Outcome.PROMISING, next_step=step,
                next_step_due_on=date(2013, 10, 1),
            ),
        )
    view = await service.view(client, programme_id, "acme")
    assert view.state.next_steps["m-2"].next_step == "Call back"
    assert view.next_deadline is not None
    assert view.next_deadline.kind == "next_step_overdue"
    assert view.next_deadline.description == (
        "next step of meeting m-1 (due 2013-10-01) overdue 2013-10-02"
    )
    await service.send(
        client, programme_id, "acme",
        CompleteNextStep(meeting_id="m-2", occurred_on=date(2013, 9, 18)),
    )
    # On its due date, nothing yet.
    await service.advance_clock(client, programme_id, "acme", datetime(2013, 10, 1, 23, tzinfo=LA))
    view = await service.messages_settled(client, programme_id, "acme")
    assert not view.state.next_steps["m-1"].overdue
    # The day after: m-1 overdue and the adviser told; m-2 (done) never.
    await service.advance_clock(client, programme_id, "acme", datetime(2013, 10, 2, 12, tzinfo=LA))
    view = await service.messages_settled(client, programme_id, "acme")
    assert view.state.next_steps["m-1"].overdue
    assert not view.state.next_steps["m-2"].overdue and view.state.next_steps["m-2"].done_on
    told = [
        m for m in _delivered(smtp, programme_id) if m["X-Corridor-Kind"] == "next_step_overdue"
    ]
    assert len(told) == 1
    assert told[0]["To"].addresses[0].addr_spec == "anna@agency.example"
    assert told[0]["X-Corridor-Business-Date"] == "2013-10-02"
    text = told[0].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Send the proposal" in text and "corridor next-step done acme m-1" in text
    assert "Call back" not in text


# ------------------------------------------------------- crash and outage


def _worker_env(temporal: TemporalDevServer, dsn: str, task_queue: str, smtp_url: str,
                work: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CORRIDOR_"))},
        "TEMPORAL_ADDRESS": temporal.address,
        "CORRIDOR_DSN": dsn,
        "CORRIDOR_TASK_QUEUE": task_queue,
        "CORRIDOR_SMTP_URL": smtp_url,
        "CORRIDOR_DATA_DIR": str(work / "no-stack"),
        "CORRIDOR_MASTER_KEY": MASTER_KEY,  # the session's: the journeys are encrypted
    }


async def _reminder_journey(client: Client, programme_id: str, task_queue: str) -> None:
    """A journey whose first message (visit 1's reminder, 2014-02-15) falls due now."""
    enrolment = EnrollFirm(
        programme=make_programme(programme_id),
        firm=Firm(id="acme", name="Acme", contact_name="Ana", contact_email="ana@acme.example"),
        mission_id="m1",
        occurred_on=date(2013, 9, 17),
    )
    await service.enroll(
        client, enrolment, task_queue=task_queue,
        clock=ProgrammeClock.held_at(datetime(2013, 9, 17, 12, tzinfo=LA)),
    )
    await service.advance_clock(client, programme_id, "acme", datetime(2014, 2, 15, 12, tzinfo=LA))


async def test_a_worker_killed_mid_send_delivers_no_duplicate(
    client: Client, temporal_server: TemporalDevServer, dsn: str, programme_id: str,
    tmp_path: Path,
) -> None:
    """SIGKILL after the server kept the message, before the worker recorded it."""
    task_queue = f"mail-kill-{uuid.uuid4()}"
    workers: list[subprocess.Popen[bytes]] = []

    def kill_on_first(raw: bytes) -> None:
        if b"X-Corridor-Programme: " + programme_id.encode() in raw and len(workers) == 1:
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()

    smtp = LocalSmtpServer(tmp_path / "mail", after_keep=kill_on_first)
    smtp.start()

    def start_worker() -> None:
        log = (tmp_path / "worker.log").open("ab")
        workers.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                env=_worker_env(temporal_server, dsn, task_queue, smtp.url, tmp_path),
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        )

    try:
        start_worker()
        await _reminder_journey(client, programme_id, task_queue)
        await asyncio.to_thread(workers[0].wait, 60)
        assert workers[0].returncode == -signal.SIGKILL, "the worker was not killed mid-send"
        (kept,) = smtp.mailbox.messages()
        start_worker()  # the activity times out, is retried, sends the same bytes again
        view = await service.messages_settled(client, programme_id, "acme", within=120)
        assert view.state.messages_sent == 1
        assert _deliveries(smtp, kept.message_id) == 2  # given twice by the retry ...
        assert len(smtp.mailbox.messages()) == 1  # ... kept once: one message, as people see it
        async with EventStore.connect(dsn) as store:
            row = await store.pool.fetchrow(
                "SELECT state, attempts FROM outbox WHERE programme_id = $1", programme_id
            )
        assert row is not None and row["state"] == "sent" and row["attempts"] == 2
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(15)
        smtp.stop()


async def test_smtp_stopped_loses_nothing_and_sends_nothing_twice(
    client: Client, store: EventStore, programme_id: str, tmp_path: Path
) -> None:
    smtp = LocalSmtpServer(tmp_path / "mail")  # not started: the server is down
    task_queue = f"mail-down-{uuid.uuid4()}"
    worker = build_worker(client, store, task_queue, Mailer(SmtpServer.from_url(smtp.url)))
    running = asyncio.create_task(worker.run())
    try:
        await _reminder_journey(client, programme_id, task_queue)
        await asyncio.sleep(8)  # attempts fail and are retried meanwhile
        view = await service.view(client, programme_id, "acme")
        assert view.messages_waiting == 1 and view.state.messages_sent == 0
        smtp.start()
        view = await service.messages_settled(client, programme_id, "acme", within=90)
        assert view.state.messages_sent == 1
        (kept,) = smtp.mailbox.messages()
        assert _deliveries(smtp, kept.message_id) == 1
        assert kept.to == "Ana <ana@acme.example>"
    finally:
        smtp.stop()
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)


# --------------------------------------------------------------- the roster


def test_the_roster_refuses_unknown_advisers_and_malformed_addresses(
    tmp_path: Path, programme_id: str
) -> None:
    programme = _with_staff(programme_id)
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "firm_id,firm_name,contact_email,mission_id,introduced_on,adviser,language\n"
        "acme,Acme,ana@acme.example,m1,2013-09-17,anna,en\n"
        "beta,Beta,not-an-address,m1,2013-09-17,bob,fr\n"
        "gamma,Gamma,,m1,2013-09-17,,de\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as caught:
        load_roster(roster, programme)
    problems = [(e.row, e.column, e.value) for e in caught.value.errors]
    assert problems == [
        (3, "adviser", "bob"),
        (3, "contact_email", "not-an-address"),
        (4, "language", "de"),
    ]
    assert "unknown staff id (known: anna)" in str(caught.value)
    roster.write_text(
        "firm_id,firm_name,contact_email,mission_id,introduced_on,adviser,language\n"
        "acme,Acme,ana@acme.example,m1,2013-09-17,anna,en\n"
        "gamma,Gamma,,m1,2013-09-17,,\n",
        encoding="utf-8",
    )
    acme, gamma = load_roster(roster, programme)
    assert (acme.firm.adviser, acme.firm.language) == ("anna", "en")
    assert (gamma.firm.adviser, gamma.firm.language) == (None, "fr")


# ------------------------------------------------------------- corridor mail


def test_corridor_mail_says_when_a_filter_matches_none_of_the_messages(tmp_path: Path) -> None:
    """`--to` or `--firm` matching nothing is told apart from an empty mailbox."""
    from email.message import EmailMessage

    from corridor.stack.smtp import Mailbox

    kept = EmailMessage()
    kept["To"] = "contact@trifide.example"
    kept["Subject"] = "Rappel : visite de retour"
    kept["Message-ID"] = "<reminder-1@corridor.test>"
    kept["X-Corridor-Firm"] = "trifide"
    kept["X-Corridor-Business-Date"] = "2014-02-15"
    kept.set_content("Bonjour")
    assert Mailbox(tmp_path / "mail").keep(bytes(kept))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CORRIDOR_"))},
        "CORRIDOR_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    corridor = Path(sys.executable).with_name("corridor")

    def mail(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(corridor), "mail", *args], env=env, capture_output=True, text=True, timeout=60
        )

    listed = mail("--to", "trifide")
    assert listed.returncode == 0, listed
    assert "1 message(s)" in listed.stdout and "contact@trifide.example" in listed.stdout
    for args, asked in (
        (("--to", "nobody@example.org"), "to 'nobody@example.org'"),
        (("--firm", "boreal"), "for firm 'boreal'"),
    ):
        none = mail(*args)
        assert none.returncode == 1, none
        assert f"none of the 1 message(s) in {tmp_path / 'mail'} is {asked}" in " ".join(
            none.stderr.split()
        ), none
    empty = subprocess.run(
        [str(corridor), "mail"], env={**env, "CORRIDOR_DATA_DIR": str(tmp_path / "other")},
        capture_output=True, text=True, timeout=60,
    )
    assert empty.returncode == 1 and "no message in" in empty.stderr, empty


# ---------------------------------------------------- unsendable is an answer (issue 17)


async def _send_attempts(client: Client, programme_id: str, firm_id: str) -> list[int]:
    """The attempt number of each `send_message` activity the journey started."""
    handle = client.get_workflow_handle(f"journey/{programme_id}/{firm_id}")
    names: dict[int, str] = {}
    attempts = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            names[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if names.get(started.scheduled_event_id) == "send_message":
                attempts.append(started.attempt)
    return attempts


async def _outbox(store: EventStore, programme_id: str) -> dict[tuple[str, str], dict[str, object]]:
    """The programme's outbox rows by (firm, kind): state, attempts, last_error."""
    rows = await store.pool.fetch(
        "SELECT firm_id, kind, state, attempts, last_error, message_id FROM outbox "
        "WHERE programme_id = $1",
        programme_id,
    )
    return {(row["firm_id"] or "", row["kind"]): dict(row) for row in rows}


def _mail_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    corridor = Path(sys.executable).with_name("corridor")
    return subprocess.run(
        [str(corridor), "mail", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_a_message_that_cannot_be_built_fails_once_and_the_next_goes_out(
    client: Client, store: EventStore, smtp: LocalSmtpServer, mail_queue: str, programme_id: str
) -> None:
    """A contact name with a line break (stored before input refused it): failed, once.

    The reminder's ``To`` header cannot be built: the outbox says why, the activity
    answered at its first attempt (no retry loop), the journey records
    ``MessageFailed``, and the firm's next message (the adviser's) still goes out.
    """
    programme = _with_staff(programme_id)
    # Built in Python, as an enrolment stored before the rule was read back: accepted.
    firm = Firm(id="acme", name="Acme", contact_name="Ana\nBad", contact_email="ana@acme.example")
    with pytest.raises(ValueError, match="line break"):
        Firm.model_validate(firm.model_dump(), context=AT_INPUT)  # refused at input
    await service.enroll(
        client,
        EnrollFirm(programme=programme, firm=firm, mission_id="m1", occurred_on=date(2013, 9, 17)),
        task_queue=mail_queue,
        clock=ProgrammeClock.held_at(datetime(2013, 9, 17, 12, tzinfo=LA)),
    )
    await service.advance_clock(client, programme_id, "acme", datetime(2014, 2, 10, 9, tzinfo=LA))
    for command in (
        RequestMeeting(meeting_id="m-1", counterpart="Apple"),
        ArrangeMeeting(meeting_id="m-1", partner_id="labizfed",
                       scheduled_at=datetime(2014, 2, 10, 14, tzinfo=LA)),
    ):
        await service.send(client, programme_id, "acme", command)
    # 2014-02-15: visit 1's reminder (to Ana: cannot be built); 2014-02-17: m-1's result
    # overdue (to the adviser).
    await service.advance_clock(client, programme_id, "acme", datetime(2014, 2, 18, 12, tzinfo=LA))
    view = await service.messages_settled(client, programme_id, "acme", within=60)
    reason = (
        "it cannot be built: the contact's name contains a line break (U+000A), which an "
        "e-mail header cannot hold"
    )
    outbox = await _outbox(store, programme_id)
    reminder = outbox[("acme", "visit_reminder")]
    assert (reminder["state"], reminder["attempts"], reminder["last_error"]) == (
        "refused", 0, reason,
    )
    assert outbox[("acme", "result_overdue")]["state"] == "sent"
    kinds = Counter(m["X-Corridor-Kind"] for m in _delivered(smtp, programme_id))
    assert kinds == {"result_overdue": 1}
    assert await _send_attempts(client, programme_id, "acme") == [1, 1]  # never retried
    assert (view.state.messages_sent, view.state.messages_failed) == (1, 1)
    assert view.state.last_message_failure == reason
    (failed,) = [
        e.event for e in await store.read_stream(f"journey/{programme_id}/acme")
        if isinstance(e.event, MessageFailed)
    ]
    assert (failed.kind, failed.recipient, failed.reason) == ("visit_reminder", "contact", reason)


def _three_advisers(programme_id: str) -> Programme:
    """anna, bob (a name with a line break, stored before the rule) and carl."""
    base = make_programme(programme_id)
    return Programme.model_validate(
        {
            **base.model_dump(),
            "staff": [
                {"id": "anna", "name": "Anna Adviser", "email": "anna@agency.example",
                 "language": "en"},
                {"id": "bob", "name": "Bob\nBuilder", "email": "bob@agency.example"},
                {"id": "carl", "name": "Carl", "email": "carl@agency.example"},
            ],
            "default_adviser": "anna",
        }
    )


async def test_a_recipient_refused_for_good_fails_once_and_the_others_go_out_once(
    client: Client, store: EventStore, smtp: LocalSmtpServer, mail_queue: str,
    programme_id: str, dsn: str, tmp_path: Path,
) -> None:
    """550 for one contact: failed at its only attempt, the others sent once.

    The reason names the server's answer, never the address; `corridor mail --failed`
    and `--firm` find it; Monday's digest tells the adviser, in plain words.
    """
    refused = f"nobody-{programme_id}@beta.example"
    smtp.refused.add(refused)
    programme = _with_staff(programme_id)
    for firm_id, address in (("alpha", "ana@alpha.example"), ("beta", refused)):
        await service.enroll(
            client,
            EnrollFirm(
                programme=programme,
                firm=Firm(id=firm_id, name=firm_id.title(), contact_email=address),
                mission_id="m1",
                occurred_on=date(2013, 9, 17),
            ),
            task_queue=mail_queue,
            clock=ProgrammeClock.held_at(datetime(2013, 9, 17, 12, tzinfo=LA)),
        )
        await service.advance_clock(
            client, programme_id, firm_id, datetime(2014, 2, 15, 12, tzinfo=LA)
        )
    views = {
        firm_id: await service.messages_settled(client, programme_id, firm_id, within=60)
        for firm_id in ("alpha", "beta")
    }
    answer = "550 5.1.1 <[address]>: Recipient address rejected: mailbox unavailable"
    reason = f"the mail server refused the recipient for good: {answer}"
    outbox = await _outbox(store, programme_id)
    beta = outbox[("beta", "visit_reminder")]
    assert (beta["state"], beta["attempts"], beta["last_error"]) == ("refused", 1, reason)
    assert outbox[("alpha", "visit_reminder")]["state"] == "sent"
    assert smtp.refusals.count(refused) == 1  # refused once: not retried
    (kept,) = _delivered(smtp, programme_id)
    assert kept["To"].addresses[0].addr_spec == "ana@alpha.example"
    assert _deliveries(smtp, kept["Message-ID"]) == 1
    assert await _send_attempts(client, programme_id, "beta") == [1]
    assert (views["beta"].state.messages_failed, views["beta"].state.messages_sent) == (1, 0)
    assert (views["alpha"].state.messages_failed, views["alpha"].state.messages_sent) == (0, 1)

    # `corridor mail`: the failed message with its reason, found by --failed and --firm.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CORRIDOR_"))},
        "CORRIDOR_DATA_DIR": str(tmp_path),
        "CORRIDOR_DSN": dsn,
        "CORRIDOR_MASTER_KEY": MASTER_KEY,
        "COLUMNS": "250",
    }
    key = str(beta["message_id"])
    for args in (("--failed", "--firm", "beta"), ("--firm", "beta"), ("--failed", "--to", refused)):
        listed = _mail_cli(env, *args)
        assert listed.returncode == 0, listed
        assert key[:8] in listed.stdout and refused in listed.stdout, listed
        assert f"{key[:8]} failed: {reason}" in listed.stdout.splitlines(), listed
    shown = _mail_cli(env, key[:8])
    assert shown.returncode == 0, shown
    assert f"Failed because: {reason}" in shown.stdout.splitlines(), shown
    assert "State: failed (1 attempt(s))" in shown.stdout, shown
    none = _mail_cli(env, "--failed", "--firm", "alpha")
    assert none.returncode == 1 and "for firm 'alpha'" in " ".join(none.stderr.split()), none

    # Monday's digest (07:00 in the office) lists it for the firm's adviser.
    at = datetime(2014, 2, 17, 7, tzinfo=TORONTO)
    result = await client.execute_workflow(
        AdviserDigests.run, DigestInput(at=at, programme_id=programme_id),
        id=f"digest-{programme_id}", task_queue=mail_queue,
    )
    assert result.sent == [f"{programme_id}/anna"] and result.failed == {}
    (digest,) = [m for m in _delivered(smtp, programme_id) if m["X-Corridor-Kind"] == "digest"]
    body = digest.get_body(preferencelist=("plain",))
    text = body.get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert (
        "- 2014-02-15 Beta (beta): message not sent: the return-visit reminder to the firm's "
        f"contact: {reason}\n    corridor mail --failed --firm beta"
    ) in text
    assert "Alpha (alpha): message not sent" not in text


async def test_digests_that_cannot_be_sent_fail_and_the_others_go_on(
    client: Client, store: EventStore, smtp: LocalSmtpServer, mail_queue: str, programme_id: str
) -> None:
    """Bob's digest cannot be built, Carl's address is refused (550): Anna's goes out."""
    smtp.refused.add("carl@agency.example")
    programme = _three_advisers(programme_id)
    for firm_id, adviser in (("alpha", "anna"), ("beta", "bob"), ("gamma", "carl")):
        await service.enroll(
            client,
            EnrollFirm(
                programme=programme,
                firm=Firm(id=firm_id, name=firm_id.title(), adviser=adviser),
                mission_id="m1",
                occurred_on=date(2013, 9, 17),
            ),
            task_queue=mail_queue,
            clock=ProgrammeClock.held_at(datetime(2013, 9, 17, 12, tzinfo=LA)),
        )
        await service.sync(client, programme_id, firm_id)

    async def digest(run: str) -> DigestResult:
        # Friday 2014-03-14: each firm's return visit 1 falls due on Monday 2014-03-17.
        return await client.execute_workflow(
            AdviserDigests.run,
            DigestInput(at=datetime(2014, 3, 14, 7, tzinfo=TORONTO), programme_id=programme_id),
            id=f"digest-{programme_id}-{run}",
            task_queue=mail_queue,
        )

    first = await digest("first")
    assert first.items == {f"{programme_id}/{s}": 1 for s in ("anna", "bob", "carl")}
    assert first.sent == [f"{programme_id}/anna"]
    assert first.failed == {
        f"{programme_id}/bob": "it cannot be built: the adviser's name contains a line break "
        "(U+000A), which an e-mail header cannot hold",
        f"{programme_id}/carl": "the mail server refused the recipient for good: 550 5.1.1 "
        "<[address]>: Recipient address rejected: mailbox unavailable",
    }
    again = await digest("again")  # the same day again: nothing sent or tried twice
    assert (again.sent, again.failed) == (first.sent, first.failed)
    assert smtp.refusals.count("carl@agency.example") == 1
    (kept,) = _delivered(smtp, programme_id)
    assert kept["To"].addresses[0].addr_spec == "anna@agency.example"
    assert _deliveries(smtp, kept["Message-ID"]) == 1
    rows = await store.pool.fetch(
        "SELECT recipient, state, last_error FROM outbox WHERE programme_id = $1 "
        "ORDER BY recipient",
        programme_id,
    )
    assert [(r["recipient"], r["state"]) for r in rows] == [
        ("staff:anna", "sent"), ("staff:bob", "refused"), ("staff:carl", "refused"),
    ]
    assert not any("agency.example" in (r["last_error"] or "") for r in rows)


async def test_a_recipient_deferred_with_4xx_waits_and_goes_out_once(
    client: Client, store: EventStore, smtp: LocalSmtpServer, mail_queue: str, programme_id: str
) -> None:
    """450 (try again later) is not an answer: the message waits, then goes out once."""
    address = f"busy-{programme_id}@acme.example"
    smtp.deferred.add(address)
    try:
        await service.enroll(
            client,
            EnrollFirm(
                programme=make_programme(programme_id),
                firm=Firm(id="acme", name="Acme", contact_email=address),
                mission_id="m1",
                occurred_on=date(2013, 9, 17),
            ),
            task_queue=mail_queue,
            clock=ProgrammeClock.held_at(datetime(2013, 9, 17, 12, tzinfo=LA)),
        )
        await service.advance_clock(
            client, programme_id, "acme", datetime(2014, 2, 15, 12, tzinfo=LA)
        )
        for _ in range(100):
            if smtp.refusals.count(address) >= 2:
                break
            await asyncio.sleep(0.1)
        assert smtp.refusals.count(address) >= 2  # retried
        view = await service.view(client, programme_id, "acme")
        assert (view.messages_waiting, view.state.messages_failed) == (1, 0)
        row = (await _outbox(store, programme_id))[("acme", "visit_reminder")]
        assert row["state"] == "sending" and row["last_error"] == (
            "the mail server refused the recipient: 450 4.2.1 <[address]>: Mailbox busy, "
            "try again later"
        )
    finally:
        smtp.deferred.discard(address)
    view = await service.messages_settled(client, programme_id, "acme", within=60)
    assert (view.state.messages_sent, view.state.messages_failed) == (1, 0)
    (kept,) = _delivered(smtp, programme_id)
    assert _deliveries(smtp, kept["Message-ID"]) == 1


def test_what_is_refused_for_good_and_what_waits() -> None:
    """aiosmtplib's errors, as `send_message` reads them (the address never in the reason)."""
    import aiosmtplib

    from activities.mail import _refused_for_good, smtp_reason

    def recipients(code: int) -> aiosmtplib.SMTPRecipientsRefused:
        refused = aiosmtplib.SMTPRecipientRefused(code, "<Ana@Acme.example> no", "ana@acme.example")
        return aiosmtplib.SMTPRecipientsRefused([refused])

    for error, for_good in (
        (recipients(550), True),
        (recipients(452), False),
        (aiosmtplib.SMTPDataError(554, "5.7.1 rejected as spam"), True),
        (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), False),
        (aiosmtplib.SMTPSenderRefused(550, "5.7.1 not allowed", "corridor@localhost"), False),
        (aiosmtplib.SMTPSenderRefused(552, "5.3.4 message too big", "corridor@localhost"), True),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"), False),
        (aiosmtplib.SMTPConnectError("connection refused"), False),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), True),
        (aiosmtplib.SMTPNotSupported("STARTTLS extension not supported by server."), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
    ):
        assert _refused_for_good(error) is for_good, error
        assert "acme.example" not in smtp_reason(error, "ana@acme.example").lower()
    assert smtp_reason(recipients(550), "ana@acme.example") == (
        "the mail server refused the recipient for good: 550 <[address]> no"
    )
