"""Activities of the firm's journey: storing its events in the event store."""

from __future__ import annotations

import time

import structlog
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.store import ConcurrencyError, EventStore
from corridor import observability
from domain.events import EventEnvelope

log = structlog.get_logger(__name__)


class StoreEventsInput(BaseModel):
    """Events of one journey to append to its stream.

    Attributes:
        stream_id: The journey's stream (its workflow id).
        expected_version: The stream's version before these events.
        events: The events, versions ``expected_version + 1`` on.
    """

    stream_id: str
    expected_version: int = Field(ge=0)
    events: list[EventEnvelope]


class StoreEventsResult(BaseModel):
    """Outcome of a store: the stream's version and how many events were new."""

    stream_version: int
    appended: int


class JourneyActivities:
    """The journey's activities, wired once by the worker with their event store.

    Args:
        store: The PostgreSQL event store.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store

    @activity.defn
    async def store_events(self, input: StoreEventsInput) -> StoreEventsResult:
        """Append a journey's new events to its stream (idempotent: safe to retry).

        Raises:
            ApplicationError: Non-retryable, type ``ConcurrencyError``, when the stream
                holds other events at these versions. Connection errors are raised as
                they are, so Temporal retries them with backoff.
        """
        info = activity.info()
        bound = log.bind(
            workflow_id=info.workflow_id,
            stream_id=input.stream_id,
            attempt=info.attempt,
        )
        started = time.monotonic()
        try:
            result = await self.store.append(
                input.stream_id, input.expected_version, input.events
            )
        except ConcurrencyError as error:
            bound.error("store_events.conflict", error=str(error))
            raise ApplicationError(
                str(error), type="ConcurrencyError", non_retryable=True
            ) from error
        observability.record_append(
            [e.event.type for e in input.events], result.appended, time.monotonic() - started
        )
        bound.info(
            "store_events.done",
            appended=result.appended,
            stream_version=result.stream_version,
            event_types=[e.event.type for e in input.events],
        )
        return StoreEventsResult(stream_version=result.stream_version, appended=result.appended)
