"""Domain events: the facts of a firm's journey (past-tense names).

Every event carries when it happened in the business calendar (``occurred_at``), when
the journey recorded it (``recorded_at``), both aware, and who recorded it
(``recorded_by``: the author of the command that caused it; None for what the journey's
own timers record). Events are frozen; the journey's
state is the fold of its events (``domain.state.evolve``). ``EventEnvelope`` is how an
event travels to the event store: with its id, stream and version.

An event is a fact already accepted: reading or replaying it checks its shape, never
the rules a command is held to when it is accepted (amounts are ``RecordedMoney``, not
``Money``), so stored events load whatever data packages such as the currency list say
today.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from domain.commands import Decision, Outcome
from domain.money import RecordedMoney
from domain.programme import Firm, Programme


class Event(BaseModel):
    """Base of every domain event.

    Attributes:
        occurred_at: Business instant of the fact (aware). Facts known only by their
            date happen at the start of that day, local to the programme.
        recorded_at: Business instant at which the journey recorded it (aware).
        recorded_by: Who sent the command that caused it (``Command.by``); None for
            the journey's own deadlines, and for events stored before authors were
            recorded.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: ClassVar[int] = 1

    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    recorded_by: str | None = None

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        """Events hold instants in UTC, as the event store returns them."""
        return value.astimezone(UTC)

    def summary(self) -> str:
        """One line in the domain's words, for timelines, logs and the UI."""
        return type(self).__name__


class FirmEnrolled(Event):
    """The firm was introduced at a mission and its journey began."""

    type: Literal["FirmEnrolled"] = "FirmEnrolled"
    programme: Programme
    firm: Firm
    mission_id: str
    introduced_on: date
    wants_to_meet: list[str] = Field(default_factory=list)

    def summary(self) -> str:  # noqa: D102
        return f"{self.firm.name} enrolled at mission {self.mission_id} on {self.introduced_on}"


class MeetingRequested(Event):
    """The firm asked to meet a counterpart."""

    type: Literal["MeetingRequested"] = "MeetingRequested"
    meeting_id: str
    counterpart: str

    def summary(self) -> str:  # noqa: D102
        return f"meeting {self.meeting_id} with {self.counterpart} requested"


class MeetingArranged(Event):
    """A partner arranged the meeting at a date, time and place."""

    type: Literal["MeetingArranged"] = "MeetingArranged"
    meeting_id: str
    partner_id: str
    scheduled_at: AwareDatetime
    place: str | None = None

    def summary(self) -> str:  # noqa: D102
        when = self.scheduled_at.strftime("%Y-%m-%d %H:%M %z")
        return f"meeting {self.meeting_id} arranged by {self.partner_id} for {when}"


class MeetingHeld(Event):
    """The meeting took place; its outcome is promising, neutral or not interested."""

    type: Literal["MeetingHeld"] = "MeetingHeld"
    meeting_id: str
    outcome: Outcome
    notes: str = ""
    next_step: str | None = None
    next_step_due_on: date | None = None

    def summary(self) -> str:  # noqa: D102
        return f"meeting {self.meeting_id} held: {self.outcome.value.replace('_', ' ')}"


class MeetingNotHeld(Event):
    """The meeting did not take place: a no-show or a cancellation."""

    type: Literal["MeetingNotHeld"] = "MeetingNotHeld"
    meeting_id: str
    outcome: Outcome
    notes: str = ""

    def summary(self) -> str:  # noqa: D102
        return f"meeting {self.meeting_id} not held: {self.outcome.value.replace('_', ' ')}"


class MeetingResultOverdue(Event):
    """No result was recorded some days after the meeting took place (a reminder)."""

    type: Literal["MeetingResultOverdue"] = "MeetingResultOverdue"
    meeting_id: str
    scheduled_at: AwareDatetime

    def summary(self) -> str:  # noqa: D102
        return f"result of meeting {self.meeting_id} overdue"


class ContractSigned(Event):
    """A contract was signed with a counterpart, attributed to meetings."""

    type: Literal["ContractSigned"] = "ContractSigned"
    contract_id: str
    counterpart: str
    value: RecordedMoney
    meeting_ids: list[str] = Field(default_factory=list)
    notes: str = ""

    def summary(self) -> str:  # noqa: D102
        return f"contract {self.contract_id} signed with {self.counterpart}: {self.value}"


class ReturnVisitReminderDue(Event):
    """The reminder of an upcoming return visit fell due (the policy's lead time).

    It says the reminder is due, not that anyone was told: the message to the firm's
    contact is recorded as ``MessageSent`` once it went out. Stored events and
    histories written before issue 9 name it ``ReturnVisitReminderSent``; that name is
    read as this event (an upcaster: nothing stored is rewritten).
    """

    type: Literal["ReturnVisitReminderDue", "ReturnVisitReminderSent"] = "ReturnVisitReminderDue"
    visit: int
    due_on: date

    @field_validator("type")
    @classmethod
    def _upcast(cls, _value: str) -> str:
        """``ReturnVisitReminderSent`` (its name before issue 9) is this event."""
        return "ReturnVisitReminderDue"

    def summary(self) -> str:  # noqa: D102
        return f"reminder of return visit {self.visit} (due {self.due_on}) due"


LEGACY_EVENT_TYPES = {"ReturnVisitReminderSent": "ReturnVisitReminderDue"}
"""Event types stored under an earlier name, and the event each is read as."""


class ReturnVisitDue(Event):
    """A return visit fell due; a new round of meetings opens."""

    type: Literal["ReturnVisitDue"] = "ReturnVisitDue"
    visit: int
    due_on: date

    def summary(self) -> str:  # noqa: D102
        return f"return visit {self.visit} due {self.due_on}"


class ReturnVisitAttended(Event):
    """The firm took part in a return visit."""

    type: Literal["ReturnVisitAttended"] = "ReturnVisitAttended"
    visit: int
    due_on: date
    mission_id: str | None = None
    notes: str = ""

    def summary(self) -> str:  # noqa: D102
        return f"return visit {self.visit} attended"


class ReturnVisitSkipped(Event):
    """The firm said it would not take part in a return visit."""

    type: Literal["ReturnVisitSkipped"] = "ReturnVisitSkipped"
    visit: int
    due_on: date
    mission_id: str | None = None
    notes: str = ""

    def summary(self) -> str:  # noqa: D102
        return f"return visit {self.visit} skipped"


class ReturnVisitMissed(Event):
    """No attendance was recorded for a visit before the next one fell due."""

    type: Literal["ReturnVisitMissed"] = "ReturnVisitMissed"
    visit: int
    due_on: date

    def summary(self) -> str:  # noqa: D102
        return f"return visit {self.visit} (due {self.due_on}) missed: nothing recorded"


class Assessment(BaseModel):
    """The firm's assessment at an evaluation (BRIEF, "Two-year evaluation").

    Attributes:
        meetings_requested: Meetings requested since the introduction.
        meetings_held: Meetings held (promising, neutral or not interested).
        outcomes: Count of meetings per recorded outcome.
        contracts: Contracts signed since the introduction.
        value_by_currency: Total contract value per ISO 4217 currency, never converted.
        days_to_first_contract: Days from introduction to the first contract, if any.
        visits_attended: Return visits attended.
        visits_skipped: Return visits skipped.
        visits_missed: Return visits missed (nothing recorded).
    """

    model_config = ConfigDict(frozen=True)

    meetings_requested: int
    meetings_held: int
    outcomes: dict[str, int]
    contracts: int
    value_by_currency: dict[str, Decimal]
    days_to_first_contract: int | None
    visits_attended: int
    visits_skipped: int
    visits_missed: int


class EvaluationCompleted(Event):
    """The evaluation of a cycle fell due and the assessment was computed.

    A decision (renew or close) is then awaited from staff.
    """

    type: Literal["EvaluationCompleted"] = "EvaluationCompleted"
    cycle: int
    due_on: date
    assessment: Assessment

    def summary(self) -> str:  # noqa: D102
        return f"evaluation of cycle {self.cycle} completed; decision awaited"


class EvaluationDecided(Event):
    """Staff decided to renew the journey for another cycle, or to close it."""

    type: Literal["EvaluationDecided"] = "EvaluationDecided"
    cycle: int
    decision: Decision
    notes: str = ""

    def summary(self) -> str:  # noqa: D102
        if self.decision is Decision.RENEW:
            return f"cycle {self.cycle} evaluated: renewed for cycle {self.cycle + 1}"
        return f"cycle {self.cycle} evaluated: journey closed"


class FirmWithdrew(Event):
    """The firm withdrew from the programme."""

    type: Literal["FirmWithdrew"] = "FirmWithdrew"
    reason: str = ""

    def summary(self) -> str:  # noqa: D102
        return "firm withdrew" + (f": {self.reason}" if self.reason else "")


# ------------------------------------------------------ next steps, advisers, messages


class NextStepScheduled(Event):
    """A meeting result's next step with a due date became a deadline of the journey."""

    type: Literal["NextStepScheduled"] = "NextStepScheduled"
    meeting_id: str
    next_step: str
    due_on: date

    def summary(self) -> str:  # noqa: D102
        return f"next step of meeting {self.meeting_id} due {self.due_on}: {self.next_step}"


class NextStepCompleted(Event):
    """Staff marked a meeting's next step done."""

    type: Literal["NextStepCompleted"] = "NextStepCompleted"
    meeting_id: str
    notes: str = ""

    def summary(self) -> str:  # noqa: D102
        return f"next step of meeting {self.meeting_id} done"


class NextStepOverdue(Event):
    """A next step was not marked done by its due date (recorded the day after)."""

    type: Literal["NextStepOverdue"] = "NextStepOverdue"
    meeting_id: str
    next_step: str
    due_on: date

    def summary(self) -> str:  # noqa: D102
        return f"next step of meeting {self.meeting_id} (due {self.due_on}) overdue"


class AdviserAssigned(Event):
    """The firm was given to another adviser (a staff id of the programme)."""

    type: Literal["AdviserAssigned"] = "AdviserAssigned"
    adviser_id: str
    previous_adviser_id: str | None = None
    notes: str = ""

    def summary(self) -> str:  # noqa: D102
        before = self.previous_adviser_id or "nobody"
        return f"firm reassigned from {before} to {self.adviser_id}"


class MessageSent(Event):
    """A message went out: the SMTP server accepted it (the send activity's result).

    Carries ids only, never an address or a body (those stay in PostgreSQL's outbox).

    Attributes:
        message_id: The message's id (from the causing event's id and the recipient);
            its ``Message-ID`` header is made from it.
        kind: What it says (``visit_reminder``, ``result_overdue``,
            ``next_step_overdue``, ``visit_missed``, ``evaluation_due``).
        recipient: ``contact`` (the firm's contact) or ``staff:<id>`` (an adviser).
        cause_version: Stream version of the event that caused it.
    """

    type: Literal["MessageSent"] = "MessageSent"
    message_id: UUID
    kind: str
    recipient: str
    cause_version: int

    def summary(self) -> str:  # noqa: D102
        who = "the firm's contact" if self.recipient == "contact" else self.recipient
        return f"message sent to {who}: {self.kind.replace('_', ' ')}"


class MessageNotSent(Event):
    """A message that did not go out, and why: what ``MessageSkipped`` and ``MessageFailed`` share.

    Attributes:
        message_id: The message's id (the one it has, or would have had).
        kind: What it says (``visit_reminder``, ...).
        recipient: ``contact`` or ``staff:<id>``.
        cause_version: Stream version of the event that caused it.
        reason: Why, in plain words (ids and dates, never an address or a name).
    """

    message_id: UUID
    kind: str
    recipient: str
    cause_version: int
    reason: str
    outcome: ClassVar[str] = "not sent"

    def summary(self) -> str:  # noqa: D102
        who = "the firm's contact" if self.recipient == "contact" else self.recipient
        return f"message to {who} {self.outcome}: {self.kind.replace('_', ' ')}: {self.reason}"


class MessageSkipped(MessageNotSent):
    """A message was not sent: its occasion had passed before it could go out.

    A journey enrolled after the fact catches up on years of deadlines, and a worker
    down for a week finds its reminders late: a message is sent only while it still
    means something (``domain.messages.skip_reason``). What it would have said waits in
    the adviser's digest, where it is still open.
    """

    type: Literal["MessageSkipped"] = "MessageSkipped"


class MessageFailed(MessageNotSent):
    """A message can never be sent: it could not be built, or the server refused it for good.

    Recorded once; the journey's other messages go on. The outbox keeps the message and
    its reason (``corridor mail --failed``); the adviser's digest names it.
    """

    type: Literal["MessageFailed"] = "MessageFailed"
    outcome: ClassVar[str] = "failed"


class FirmErased(Event):
    """The firm's personal data was erased on request (Québec's Law 25, the GDPR).

    A tombstone: it holds no personal data, only when, who and the request's reference.
    The journey ended first; the firm's data key is destroyed right after this event is
    stored, so every personal field of the journey (in the events, the read models and
    Temporal's history) reads ``[erased]`` from then on. Its meetings and contracts
    still count in the bilan.

    Attributes:
        reason: The request's reference or legal ground, never the person's details.
    """

    type: Literal["FirmErased"] = "FirmErased"
    reason: str

    def summary(self) -> str:  # noqa: D102
        return f"personal data erased: {self.reason}"


# ------------------------------------------------------------------- corrections


class ContractCorrected(Event):
    """What a contract records was corrected; the fields that changed, before and after.

    A field that did not change is None on both sides. ``ContractSigned`` stays in the
    stream: the journey's state shows the corrected contract.
    """

    type: Literal["ContractCorrected"] = "ContractCorrected"
    contract_id: str
    reason: str
    value_before: RecordedMoney | None = None
    value_after: RecordedMoney | None = None
    counterpart_before: str | None = None
    counterpart_after: str | None = None
    signed_on_before: date | None = None
    signed_on_after: date | None = None
    meeting_ids_before: list[str] | None = None
    meeting_ids_after: list[str] | None = None

    def summary(self) -> str:  # noqa: D102
        changed = [
            name
            for name, after in (
                ("value", self.value_after),
                ("counterpart", self.counterpart_after),
                ("signing date", self.signed_on_after),
                ("meetings", self.meeting_ids_after),
            )
            if after is not None
        ]
        return f"contract {self.contract_id} corrected ({', '.join(changed)}): {self.reason}"


class ContractVoided(Event):
    """A contract recorded by mistake was voided: it no longer counts anywhere.

    Attributes:
        counterpart, value, signed_on: What the voided contract recorded.
    """

    type: Literal["ContractVoided"] = "ContractVoided"
    contract_id: str
    counterpart: str
    value: RecordedMoney
    signed_on: date
    reason: str

    def summary(self) -> str:  # noqa: D102
        return (
            f"contract {self.contract_id} with {self.counterpart} ({self.value}) voided: "
            f"{self.reason}"
        )


class MeetingResultCorrected(Event):
    """The outcome recorded for a meeting was corrected."""

    type: Literal["MeetingResultCorrected"] = "MeetingResultCorrected"
    meeting_id: str
    outcome_before: Outcome
    outcome_after: Outcome
    reason: str

    def summary(self) -> str:  # noqa: D102
        before = self.outcome_before.value.replace("_", " ")
        after = self.outcome_after.value.replace("_", " ")
        return f"result of meeting {self.meeting_id} corrected: {before} → {after}: {self.reason}"


class VisitAttendanceCorrected(Event):
    """Whether the firm attended a return visit was corrected."""

    type: Literal["VisitAttendanceCorrected"] = "VisitAttendanceCorrected"
    visit: int
    due_on: date
    attended_before: bool
    attended_after: bool
    reason: str

    def summary(self) -> str:  # noqa: D102
        before = "attended" if self.attended_before else "skipped"
        after = "attended" if self.attended_after else "skipped"
        return f"return visit {self.visit} corrected: {before} → {after}: {self.reason}"


AnyEvent = Annotated[
    FirmEnrolled
    | MeetingRequested
    | MeetingArranged
    | MeetingHeld
    | MeetingNotHeld
    | MeetingResultOverdue
    | ContractSigned
    | ReturnVisitReminderDue
    | ReturnVisitDue
    | ReturnVisitAttended
    | ReturnVisitSkipped
    | ReturnVisitMissed
    | EvaluationCompleted
    | EvaluationDecided
    | FirmWithdrew
    | FirmErased
    | ContractCorrected
    | ContractVoided
    | MeetingResultCorrected
    | VisitAttendanceCorrected
    | NextStepScheduled
    | NextStepCompleted
    | NextStepOverdue
    | AdviserAssigned
    | MessageSent
    | MessageSkipped
    | MessageFailed,
    Field(discriminator="type"),
]
"""Any domain event, told apart by its ``type``."""


class EventEnvelope(BaseModel):
    """An event on its way to the event store.

    Attributes:
        event_id: Unique id; storing the same id twice is a no-op (activities retry).
        stream_id: The journey's stream, equal to its workflow id.
        stream_version: 1 for the stream's first event, then +1 per event.
        command_id: Id of the command that caused it, if any.
        event: The domain event.
    """

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    stream_id: str
    stream_version: int = Field(ge=1)
    command_id: str | None = None
    event: AnyEvent
