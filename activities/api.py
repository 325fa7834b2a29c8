"""What the journey workflow sends to its activities and gets back.

The workflow imports only this module (no asyncpg, no I/O): it names activities by
their names below and passes these pydantic models, which the pydantic data converter
carries through Temporal's history.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from domain.events import EventEnvelope

STORE_EVENTS = "store_events"
"""Append a journey's new events to its stream."""

FIND_COMMAND = "find_command"
"""Look up, in the event store, whether a command id was already applied to a stream."""

STORE_DATA_ERROR = "StoreDataError"
"""Type of the non-retryable error raised when the store refuses the events' data."""


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
    """Outcome of a store.

    Attributes:
        stream_version: The stream's version in the store after the append.
        appended: How many of the events were new (0 when all were already stored).
        recorded_after: The version after which ``recorded`` starts.
        recorded: Events the store already holds after ``recorded_after`` that this
            journey does not know: the stream's record, which the journey adopts. It
            happens after a ``temporal workflow reset``, when the journey re-decides
            what was already recorded, differently (then ``recorded_after`` is the
            expected version) or not yet (then it is the batch's last version).
    """

    stream_version: int
    appended: int
    recorded_after: int = 0
    recorded: list[EventEnvelope] = Field(default_factory=list)


class FindCommandInput(BaseModel):
    """A command id to look up in one stream."""

    stream_id: str
    command_id: str


class FindCommandResult(BaseModel):
    """Where a command's events are in the stream.

    Attributes:
        stream_version: Version of the last event the command caused, or None when the
            command was never applied to this stream.
    """

    stream_version: int | None = None
