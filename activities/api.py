"""What the journey workflow sends to its activities and gets back.

The workflow imports only this module (no asyncpg, no I/O): it names activities by
their names below and passes these pydantic models, which the pydantic data converter
carries through Temporal's history.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field

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


# ------------------------------------------------------------------- messages (issue 9)

SEND_MESSAGE = "send_message"
"""Send the message an event of a journey causes (once), through the outbox."""

SEND_DIGESTS = "send_digests"
"""Send each adviser's daily digest (once per adviser and day), through the outbox."""


class SendMessageInput(BaseModel):
    """The event whose message to send: ids only, never an address or a body.

    Attributes:
        stream_id: The journey's stream.
        stream_version: The version of the causing event (stored already).
        business_now: The journey's business instant (aware) at the send: a message
            whose occasion has passed by then is not sent (``skipped``); None for
            journeys begun before messages had windows (sent whatever the date).
    """

    stream_id: str
    stream_version: int = Field(ge=1)
    business_now: AwareDatetime | None = None


class SendMessageResult(BaseModel):
    """What the send did.

    Attributes:
        sent: True when the SMTP server accepted the message (now or on an earlier
            attempt); only then does the journey record ``MessageSent``.
        message_id: The message's id (None when the event tells nobody).
        kind: The message's kind (``domain.messages.MessageKind``), if any.
        recipient: ``contact`` or ``staff:<id>``, if any.
        recorded: The stream already records this message as sent.
        note: Why nothing was sent (no recipient, no address, no SMTP server, refused).
        skipped: The message's occasion had passed at ``business_now``: not sent,
            ``note`` says why; the journey records ``MessageSkipped``.
        failed: The message can never be sent (it cannot be built, or the SMTP server
            refused it for good, 5xx): ``note`` says why; the journey records
            ``MessageFailed`` and goes on with its other messages.
    """

    sent: bool = False
    message_id: UUID | None = None
    kind: str | None = None
    recipient: str | None = None
    recorded: bool = False
    note: str | None = None
    skipped: bool = False
    failed: bool = False


class DigestRequest(BaseModel):
    """Which digests to send.

    Attributes:
        at: The instant (aware) of the digest: each programme's office day is this
            instant's date in its office time zone, and the journeys are taken as
            they stood then.
        programme_id: Only this programme (None: every programme).
    """

    at: AwareDatetime
    programme_id: str | None = None


class DigestResult(BaseModel):
    """What the digests did: items and messages per adviser (``programme/staff``).

    Attributes:
        items: Items per adviser, for every adviser who had something to say.
        sent: Advisers whose digest the SMTP server accepted (now or before).
        skipped: Programmes skipped, with why (not a working day in the office).
        failed: Advisers whose digest can never be sent (it cannot be built, or the
            SMTP server refused it for good), with why in plain words (no address);
            the other digests went on.
    """

    items: dict[str, int] = Field(default_factory=dict)
    sent: list[str] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)
    failed: dict[str, str] = Field(default_factory=dict)
