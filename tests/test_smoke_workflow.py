from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from temporalio.client import Client

from activities.store import EventStore
from corridor import service
from domain.calendar import ProgrammeClock
from domain.commands import (
    ArrangeMeeting, EnrollFirm, Outcome, RecordMeetingResult, RequestMeeting, SignContract,
)
from domain.money import Money
from domain.programme import Firm
from tests.conftest import make_programme

LA = ZoneInfo("America/Los_Angeles")


async def test_smoke(client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str) -> None:
    programme = make_programme(programme_id)
    clock = ProgrammeClock(business_origin=datetime(2013, 9, 17, 12, tzinfo=LA), speed=1.0)
    enrol = EnrollFirm(occurred_on=date(2013, 9, 17), programme=programme,
                       firm=Firm(id="trifide", name="Groupe Trifide"), mission_id="m1")
    res = await service.enroll(client, enrol, task_queue=task_queue, clock=clock)
    assert res.started
    r = await service.send(client, programme_id, "trifide", RequestMeeting(meeting_id="mt-1", counterpart="Apple"))
    print(r)
    r = await service.send(client, programme_id, "trifide", ArrangeMeeting(meeting_id="mt-1", partner_id="labizfed", scheduled_at=datetime(2013, 9, 17, 15, tzinfo=LA)))
    print(r)
    try:
        await service.send(client, programme_id, "trifide", RecordMeetingResult(meeting_id="mt-1", outcome=Outcome.PROMISING))
    except service.Refused as e:
        print("refused", e)
    v = await service.view(client, programme_id, "trifide")
    print(v.business_now, v.next_deadline)
    states = await store.journey_states(programme_id)
    print(states)
