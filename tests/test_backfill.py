"""A programme enrolled after the fact tells nobody about the past (issue 17).

A message is sent only while its occasion is still ahead of someone
(``domain.messages.skip_reason``); what fell due long ago is recorded
``MessageSkipped`` with its reason, on the real servers: Temporal, PostgreSQL and the
embedded SMTP server on loopback.
"""

from __future__ import annotations

import asyncio
import email.message
import os
import sys
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.store import EventStore
from corridor import service
from corridor.stack import TemporalDevServer
from corridor.stack.smtp import LocalSmtpServer
from domain.calendar import ProgrammeClock, add_months, local_date, start_of_day
from domain.commands import ArrangeMeeting, EnrollFirm, RequestMeeting
from domain.events import (
    EvaluationCompleted,
    MeetingResultOverdue,
    MessageSkipped,
    ReturnVisitMissed,
    ReturnVisitReminderDue,
)
from domain.messages import MessageKind, skip_reason
from domain.programme import Firm, Programme
from domain.state import JourneyState, evolve
from tests.conftest import MASTER_KEY, make_programme
from tests.support import run_program
from workflows.digest import AdviserDigests, DigestInput

TZ = "America/Los_Angeles"
CORRIDOR = Path(sys.executable).with_name("corridor")


def _programme(programme_id: str, mission_on: date | None = None) -> Programme:
    """A programme with an adviser; its mission "late" spans ``mission_on``, if given."""
    base = make_programme(programme_id)
    missions = base.model_dump()["missions"]
    if mission_on is not None:
        missions.append({"id": "late", "name": "Late mission",
                         "starts_on": mission_on - timedelta(days=1), "ends_on": mission_on})
    return Programme.model_validate(
        {
            **base.model_dump(),
            "missions": missions,
            "staff": [
                {"id": "anna", "name": "Anna Adviser", "email": "anna@agency.example",
                 "language": "en"},
            ],
            "default_adviser": "anna",
        }
    )


def _enrolled(introduced_on: date) -> JourneyState:
    programme = _programme("p")
    at = start_of_day(introduced_on, TZ)
    from domain.events import FirmEnrolled

    return evolve(
        None,
        FirmEnrolled(
            occurred_at=at, recorded_at=at, programme=programme,
            firm=Firm(id="acme", name="Acme"), mission_id="m1", introduced_on=introduced_on,
        ),
    )


# ------------------------------------------------------------------ the rules


def test_a_visit_reminder_means_something_until_the_visit_day_only() -> None:
    state = _enrolled(date(2013, 9, 17))
    due = date(2014, 3, 17)
    reminder = ReturnVisitReminderDue(
        occurred_at=start_of_day(date(2014, 2, 15), TZ),
        recorded_at=start_of_day(date(2014, 2, 15), TZ), visit=1, due_on=due,
    )
    kind = MessageKind.VISIT_REMINDER
    assert skip_reason(kind, reminder, state, start_of_day(date(2014, 2, 15), TZ)) is None
    assert skip_reason(kind, reminder, state, start_of_day(due, TZ) + timedelta(hours=23)) is None
    late = skip_reason(kind, reminder, state, start_of_day(date(2014, 3, 18), TZ))
    assert late == "return visit 1 was due on 2014-03-17, it is now 2014-03-18"


@pytest.mark.parametrize(
    ("event", "days"),
    [
        (lambda at: ReturnVisitMissed(occurred_at=at, recorded_at=at, visit=1,
                                      due_on=date(2014, 3, 17)), 7),
        (lambda at: MeetingResultOverdue(occurred_at=at, recorded_at=at, meeting_id="m-1",
                                         scheduled_at=at - timedelta(days=7)), 14),
        (lambda at: EvaluationCompleted(
            occurred_at=at, recorded_at=at, cycle=1, due_on=at.date(),
            assessment=_enrolled(date(2013, 9, 17)).assessment()), 14),
    ],
    ids=["visit missed", "result overdue", "evaluation due"],
)
def test_an_adviser_is_told_of_what_is_open_within_the_policy_window(event, days) -> None:  # type: ignore[no-untyped-def]
    fell = start_of_day(date(2014, 9, 17), TZ) + timedelta(hours=9)
    cause = event(fell)
    state = _enrolled(date(2013, 9, 17))
    if isinstance(cause, ReturnVisitMissed):
        from domain.state import VisitState, VisitStatus

        state = state.model_copy(update={"visits": {1: VisitState(
            visit=1, due_on=date(2014, 3, 17), status=VisitStatus.MISSED)}})
    if isinstance(cause, MeetingResultOverdue):
        from domain.state import MeetingState

        state = state.model_copy(update={"meetings": {"m-1": MeetingState(
            meeting_id="m-1", counterpart="Apple", requested_on=date(2014, 9, 1))}})
    from domain.messages import message_kind

    kind = message_kind(cause) if not isinstance(cause, EvaluationCompleted) else (
        MessageKind.EVALUATION_DUE)
    assert kind is not None
    last_day = start_of_day(date(2014, 9, 17) + timedelta(days=days), TZ) + timedelta(hours=20)
    assert skip_reason(kind, cause, state, last_day) is None
    reason = skip_reason(kind, cause, state, last_day + timedelta(hours=5))
    assert reason is not None
    assert f"sent until {date(2014, 9, 17) + timedelta(days=days)}" in reason


def test_a_result_recorded_since_is_no_longer_overdue_news() -> None:
    from domain.commands import Outcome
    from domain.state import MeetingState

    at = start_of_day(date(2014, 9, 17), TZ)
    state = _enrolled(date(2013, 9, 17)).model_copy(update={"meetings": {"m-1": MeetingState(
        meeting_id="m-1", counterpart="Apple", requested_on=date(2014, 9, 1),
        outcome=Outcome.PROMISING)}})
    cause = MeetingResultOverdue(occurred_at=at, recorded_at=at, meeting_id="m-1",
                                 scheduled_at=at - timedelta(days=7))
    assert skip_reason(MessageKind.RESULT_OVERDUE, cause, state, at) == (
        "the result of meeting m-1 was recorded since"
    )


# ------------------------------------------------------------- on the servers


def _kept(smtp: LocalSmtpServer, programme_id: str) -> list[email.message.EmailMessage]:
    return [
        m.parsed() for m in smtp.mailbox.messages()
        if m.parsed()["X-Corridor-Programme"] == programme_id
    ]


async def test_a_firm_enrolled_two_years_late_is_told_only_of_what_is_still_ahead(
    client: Client, store: EventStore, smtp: LocalSmtpServer, mail_queue: str,
    programme_id: str,
) -> None:
    """Introduced 24 months (less 12 days) ago, on the real clock, enrolled today.

    Its visits 1-3 and their reminders, and visits 1-2 missed, lie in the past: five
    messages skipped, each with its reason; the reminder of visit 4 (due in 12 days,
    reminded 18 days ago) is still ahead of the firm: the one message sent.
    """
    today = local_date(datetime.now(UTC), TZ)
    introduced = add_months(today, -24) + timedelta(days=12)
    programme = _programme(programme_id, introduced)
    await service.enroll(
        client,
        EnrollFirm(
            programme=programme,
            firm=Firm(id="late", name="Late Inc.", contact_name="Lee",
                      contact_email="lee@late.example"),
            mission_id="late",
            occurred_on=introduced,
        ),
        task_queue=mail_queue,
    )
    view = await service.messages_settled(client, programme_id, "late")
    assert (view.state.messages_sent, view.state.messages_skipped) == (1, 5)
    # It caught up on the catch-up task queue, then moved to its own to serve staff.
    handle = client.get_workflow_handle(f"journey/{programme_id}/late")
    for _ in range(100):
        described = await handle.describe()
        if described.task_queue == mail_queue:
            break
        await asyncio.sleep(0.1)
    assert described.task_queue == mail_queue
    runs = [
        w.task_queue
        async for w in client.list_workflows(f"WorkflowId = 'journey/{programme_id}/late'")
    ]
    assert sorted(runs) == sorted([mail_queue, f"{mail_queue}-catch-up"])
    assert await service.journeys_catching_up(client, programme_id) == (0, 1)
    kept = _kept(smtp, programme_id)
    assert [(m["X-Corridor-Kind"], m["To"].addresses[0].addr_spec) for m in kept] == [
        ("visit_reminder", "lee@late.example")
    ]
    assert str(add_months(introduced, 24)) in kept[0]["Subject"]  # visit 4, in French
    stream = await store.read_stream(f"journey/{programme_id}/late")
    skipped = [e.event for e in stream if isinstance(e.event, MessageSkipped)]
    causes = {e.stream_version: e.event for e in stream}
    assert Counter((s.kind, s.recipient) for s in skipped) == {
        ("visit_reminder", "contact"): 3,
        ("visit_missed", "staff:anna"): 2,
    }
    for s in skipped:  # each names its cause and why, in dates
        cause = causes[s.cause_version]
        assert isinstance(cause, ReturnVisitReminderDue | ReturnVisitMissed)
        assert f"return visit {cause.visit} was" in s.reason and str(today) in s.reason
    # The adviser hears of it once, at the top of the next working day's digest.
    office = programme.office_timezone
    day = local_date(datetime.now(UTC), office) + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    result = await client.execute_workflow(
        AdviserDigests.run,
        DigestInput(at=start_of_day(day, office) + timedelta(hours=7), programme_id=programme_id),
        id=f"digest-{programme_id}",
        task_queue=mail_queue,
    )
    assert result.sent == [f"{programme_id}/anna"]
    (digest,) = [m for m in _kept(smtp, programme_id) if m["X-Corridor-Kind"] == "digest"]
    body = digest.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    body = " ".join(body.split())
    assert (
        "Not sent because their time had passed: 5 message(s) about 1 of your firms (2 "
        "missed-visit notices, 3 return-visit reminders), enrolled after the fact or "
        "overtaken by what was recorded since. What is still open today follows (1 item(s))."
    ) in body


async def test_a_message_whose_time_passed_while_the_journey_waited_is_skipped(
    client: Client, store: EventStore, smtp: LocalSmtpServer, mail_queue: str,
    programme_id: str,
) -> None:
    """A meeting arranged 30 days ago and never given a result: overdue 23 days ago.

    Past the 14-day window, the adviser gets no message of its own (the digest lists
    it as overdue); the journey records why.
    """
    today = local_date(datetime.now(UTC), TZ)
    programme = _programme(programme_id, today - timedelta(days=40))
    await service.enroll(
        client,
        EnrollFirm(programme=programme, firm=Firm(id="slow", name="Slow Ltd."),
                   mission_id="late", occurred_on=today - timedelta(days=40)),
        task_queue=mail_queue,
    )
    await service.send(client, programme_id, "slow",
                       RequestMeeting(meeting_id="m-1", counterpart="Apple",
                                      occurred_on=today - timedelta(days=35)))
    await service.send(client, programme_id, "slow",
                       ArrangeMeeting(meeting_id="m-1", partner_id="labizfed",
                                      scheduled_at=start_of_day(today, TZ) - timedelta(days=30)))
    view = await service.messages_settled(client, programme_id, "slow")
    assert view.state.meetings["m-1"].overdue
    assert (view.state.messages_sent, view.state.messages_skipped) == (0, 1)
    assert _kept(smtp, programme_id) == []
    (skip,) = [e.event for e in await store.read_stream(f"journey/{programme_id}/slow")
               if isinstance(e.event, MessageSkipped)]
    assert skip.kind == "result_overdue" and skip.recipient == "staff:anna"
    assert skip.reason.startswith("the result of meeting m-1 fell overdue on ")


async def test_status_says_how_many_journeys_catch_up_and_what_was_not_sent(
    client: Client, temporal_server: TemporalDevServer, dsn: str, task_queue: str,
    worker: None, programme_id: str, tmp_path: Path,
) -> None:
    """One journey caught up (its messages skipped), one waiting for a catch-up worker.

    The firms have no contact address: only the adviser's two missed visits count.
    """
    today = local_date(datetime.now(UTC), TZ)
    introduced = add_months(today, -24) + timedelta(days=12)
    programme = _programme(programme_id, introduced)

    def enrolment(firm: str) -> EnrollFirm:
        return EnrollFirm(programme=programme, firm=Firm(id=firm, name=firm.title()),
                          mission_id="late", occurred_on=introduced)

    await service.enroll(client, enrolment("done"), task_queue=task_queue)
    await service.messages_settled(client, programme_id, "done")
    nobody = f"nobody-{uuid.uuid4()}"  # no worker polls its catch-up queue
    await service.enroll(client, enrolment("stuck"), task_queue=nobody)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CORRIDOR_"))},
        "TEMPORAL_ADDRESS": temporal_server.address,
        "CORRIDOR_DSN": dsn,
        "CORRIDOR_MASTER_KEY": MASTER_KEY,
        "CORRIDOR_TASK_QUEUE": nobody,
        "CORRIDOR_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    for _ in range(50):  # visibility follows a moment later
        shown = await run_program(CORRIDOR, "status", "--programme", programme_id, env=env)
        if "1 journey(s) catching up" in shown.out:
            break
        await asyncio.sleep(0.2)
    assert shown.code == 0, shown
    assert (
        f"{programme_id}: 1 journey(s) catching up (enrolled after the fact: recording what "
        f"fell due up to today); 1 task(s) waiting on {nobody}-catch-up"
    ) in " ".join(shown.out.split()), shown
    done = await run_program(CORRIDOR, "status", "done", env=env)
    assert done.code == 0, done
    assert (
        "adviser: anna; messages sent: 0, 2 not sent because their time had passed"
        in " ".join(done.out.split())
    ), done


async def test_a_command_waiting_for_a_journey_still_catching_up_is_told_why(
    client: Client, task_queue: str, worker: None, programme_id: str
) -> None:
    """A journey on the catch-up task queue (polled, busy): the caller hears why it waits."""
    programme = _programme(programme_id)
    await service.enroll(
        client,
        EnrollFirm(programme=programme, firm=Firm(id="busy", name="Busy"), mission_id="m1",
                   occurred_on=date(2013, 9, 17)),
        task_queue=service.catch_up_task_queue(task_queue),  # as if still catching up
        clock=ProgrammeClock.held_at(start_of_day(date(2013, 9, 17), TZ)),
    )
    handle = service.journey_handle(client, programme_id, "busy")
    told: list[str] = []
    # An answer that takes longer than NOTICE_AFTER, as behind a catch-up backlog.
    await service.answered(client, handle, asyncio.sleep(service.NOTICE_AFTER + 2.5),
                           waiting=told.append)
    assert told == [
        f"journey/{programme_id}/busy is still catching up (enrolled after the fact: it "
        f"records what fell due up to today, on {task_queue}-catch-up); the command waits "
        "for it and is recorded once it has caught up. Ctrl-C stops waiting: sending the "
        "same command again later is safe."
    ]


def test_a_digest_after_a_backfill_lists_the_latest_items_and_counts_the_rest() -> None:
    from domain.digest import Bucket, DigestItem
    from domain.messages import DIGEST_ITEMS_LISTED, digest_draft

    items = [
        DigestItem(firm_id=f"f{n % 40}", firm_name=f"Firm {n % 40}", bucket=Bucket.OVERDUE,
                   due_on=date(2015, 1, 1) + timedelta(days=n), what=f"item {n}",
                   command="corridor visit ...")
        for n in range(120)
    ]
    words = digest_draft(items, day=date(2026, 12, 8), language="en", name="Anna",
                         organiser="Québec International")
    listed = [line for line in words.text.splitlines() if line.startswith("- ")]
    assert len(listed) == DIGEST_ITEMS_LISTED == 50
    assert listed[0].startswith("- 2015-03-12 ") and listed[-1].startswith("- 2015-04-30 ")
    assert "… and 70 older item(s) about 40 firm(s), since 2015-01-01" in words.text
    assert words.subject == "Follow-ups for 2026-12-08: 120 items"
