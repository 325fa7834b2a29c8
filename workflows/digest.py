"""AdviserDigests: the daily digest, run by a Temporal Schedule on working days.

``corridor setup`` and ``corridor dev`` create the schedule ``corridor-digest`` (in the
office's time zone, Monday to Friday, overlaps skipped); each run sends every adviser
the digest of the office's day: what is overdue, due today and due in the next seven
days across their firms, with the command to record each (``domain.digest``). The
activity reads the journeys from PostgreSQL and sends through the outbox, once per
adviser and day; nothing is sent to an adviser with nothing to do.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import AwareDatetime, BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.api import SEND_DIGESTS, DigestRequest, DigestResult

DIGEST_WORKFLOW_ID = "corridor-digest"
"""Id of the digest's schedule, and prefix of its runs' workflow ids."""


class DigestInput(BaseModel):
    """Input of a digest run.

    Attributes:
        at: The digest's instant (aware); None: the run's start (the schedule's time).
        programme_id: Only this programme (None: every programme).
    """

    at: AwareDatetime | None = None
    programme_id: str | None = None


@workflow.defn
class AdviserDigests:
    """Send each adviser the digest of the office's day (one activity, idempotent)."""

    @workflow.run
    async def run(self, input: DigestInput) -> DigestResult:
        """Send the digests of ``input.at`` (or now); return who got how many items."""
        at = input.at or workflow.now()
        result: DigestResult = await workflow.execute_activity(
            SEND_DIGESTS,
            DigestRequest(at=at, programme_id=input.programme_id),
            result_type=DigestResult,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            summary=f"send the digests of {at:%Y-%m-%d %H:%M %Z}",
        )
        return result
