"""The daily digest's Temporal Schedule, created by ``corridor setup`` and ``corridor dev``."""

from __future__ import annotations

from datetime import time

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.calendar import zone
from workflows.digest import DIGEST_WORKFLOW_ID, AdviserDigests, DigestInput


def digest_schedule(task_queue: str, timezone: str, at: time) -> Schedule:
    """The schedule: ``at`` local time in ``timezone``, Monday to Friday, overlaps skipped.

    Args:
        task_queue: The workers' task queue.
        timezone: The office's IANA zone (e.g. America/Toronto).
        at: The local time of the digest.
    """
    zone(timezone)  # an unknown zone is refused here, not by the server
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AdviserDigests.run,
            DigestInput(),
            id=DIGEST_WORKFLOW_ID,
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    second=[ScheduleRange(0)],
                    minute=[ScheduleRange(at.minute)],
                    hour=[ScheduleRange(at.hour)],
                    day_of_week=[ScheduleRange(1, 5)],  # Monday (1) to Friday (5)
                    comment="working days",
                )
            ],
            time_zone_name=timezone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_digest_schedule(
    client: Client, task_queue: str, timezone: str, at: time
) -> str:
    """Create the digest's schedule, or bring an existing one to these settings.

    Returns:
        ``created`` or ``updated``.
    """
    schedule = digest_schedule(task_queue, timezone, at)
    try:
        await client.create_schedule(DIGEST_WORKFLOW_ID, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(DIGEST_WORKFLOW_ID).update(replace)
        return "updated"
    return "created"


def digest_time(text: str) -> time:
    """Parse ``HH:MM`` (``CORRIDOR_DIGEST_TIME``).

    Raises:
        ValueError: Not a time of day.
    """
    return time.fromisoformat(text)
