"""Activities of the firm's journey: storing its events in the event store.

Activities are retried by Temporal, so each is idempotent. Errors are sorted in two:
a server that cannot be reached (or a transaction that lost a race) is raised as it is
and retried with backoff; anything else (data the store refuses, a bug in a projection)
is raised as a non-retryable ``StoreDataError``, which the journey shows in its status
and search attributes instead of retrying it unseen forever.
"""

from __future__ import annotations

import time

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.api import (
    FIND_COMMAND,
    STORE_DATA_ERROR,
    STORE_EVENTS,
    FindCommandInput,
    FindCommandResult,
    StoreEventsInput,
    StoreEventsResult,
)
from activities.metrics import record_append
from activities.store import ConcurrencyError, EventStore

log = structlog.get_logger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,
)
"""Errors that pass by themselves: the activity is retried with backoff."""


class JourneyActivities:
    """The journey's activities, wired once by the worker with their event store.

    Args:
        store: The PostgreSQL event store.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store

    @activity.defn(name=STORE_EVENTS)
    async def store_events(self, input: StoreEventsInput) -> StoreEventsResult:
        """Append a journey's new events to its stream (idempotent: safe to retry).

        Event ids derive from the stream, the version and the event's content, so a
        retry, a replay or a reset that decides the same event again stores nothing
        new. When the stream already records other events at these versions (a reset
        that decided differently), nothing is written and the stream's record from
        ``expected_version`` on is returned for the journey to adopt.

        Returns:
            The stream's version, how many events were new, and the recorded events
            the journey must adopt (usually none).

        Raises:
            ApplicationError: Non-retryable, type ``StoreDataError``, for data the store
                refuses. Connection errors are raised as they are (retried).
        """
        info = activity.info()
        bound = log.bind(workflow_id=info.workflow_id, attempt=info.attempt)
        try:
            return await self._store(input, bound)
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:
            bound.error("store_events.refused", error_type=type(error).__name__)
            raise ApplicationError(
                f"the event store refused the events: {type(error).__name__}: {error}",
                type=STORE_DATA_ERROR,
                non_retryable=True,
            ) from error

    async def _store(
        self, input: StoreEventsInput, bound: structlog.typing.FilteringBoundLogger
    ) -> StoreEventsResult:
        last = input.events[-1].stream_version if input.events else input.expected_version
        started = time.monotonic()
        try:
            result = await self.store.append(
                input.stream_id, input.expected_version, input.events
            )
            record_append(
                [e.event.type for e in input.events], result.appended, time.monotonic() - started
            )
        except ConcurrencyError as error:
            recorded = await self.store.read_stream(input.stream_id, input.expected_version)
            if not recorded:
                raise
            bound.warning(
                "store_events.adopting_record",
                reason=str(error),
                expected_version=input.expected_version,
                recorded=len(recorded),
            )
            return StoreEventsResult(
                stream_version=recorded[-1].stream_version,
                appended=0,
                recorded_after=input.expected_version,
                recorded=recorded,
            )
        recorded = []
        if result.appended == 0:
            # Already stored: a retry, or a journey re-deciding after a reset; the
            # stream may hold more than this journey knows.
            recorded = await self.store.read_stream(input.stream_id, last)
        bound.info(
            "store_events.done",
            appended=result.appended,
            stream_version=result.stream_version,
            event_types=[e.event.type for e in input.events],
        )
        return StoreEventsResult(
            stream_version=recorded[-1].stream_version if recorded else result.stream_version,
            appended=result.appended,
            recorded_after=last,
            recorded=recorded,
        )

    @activity.defn(name=FIND_COMMAND)
    async def find_command(self, input: FindCommandInput) -> FindCommandResult:
        """Find the version of the last event a command caused in a stream (read only)."""
        version = await self.store.command_version(input.stream_id, input.command_id)
        return FindCommandResult(stream_version=version)
