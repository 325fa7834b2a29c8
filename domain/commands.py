"""Commands: what staff and operators ask the journey to do (imperative names).

Every command may carry a ``command_id`` chosen by the client: sending the same command
twice with the same id is accepted once and answered "already recorded" the second
time. ``occurred_on`` is the business date of the fact, local to the programme's time
zone; when it is omitted the journey uses its own business today.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from domain.money import Money
from domain.programme import (
    Firm,
    Identifier,
    Line,
    Programme,
    Text,
    kept_line,
    typed_line,
    typed_lines,
)

Author = Line
"""Who sent a command: a person's name or login, or the tool that relayed it (one line)."""

Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(typed_lines),
]
"""Why a record is corrected or voided: required, at most 2,000 characters (line breaks
allowed, no other control character)."""

Notes = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000), AfterValidator(typed_lines)
]
"""Free text recorded with a fact; at most 2,000 characters (line breaks allowed, no other
control character)."""

CommandId = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(typed_line)
]
"""A command's id, chosen by its client: one line, at most 100 characters."""

_KeptCommandId = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(kept_line)
]


class Outcome(StrEnum):
    """Result of a meeting as staff record it (BRIEF, "The firm's journey", 2)."""

    PROMISING = "promising"
    NEUTRAL = "neutral"
    NOT_INTERESTED = "not_interested"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"

    @property
    def held(self) -> bool:
        """A meeting is held when its outcome is promising, neutral or not interested."""
        return self in (Outcome.PROMISING, Outcome.NEUTRAL, Outcome.NOT_INTERESTED)


class Decision(StrEnum):
    """Staff decision at the two-year evaluation."""

    RENEW = "renew"
    CLOSE = "close"


class Command(BaseModel):
    """Base of every command.

    Attributes:
        command_id: Client-chosen id making the command idempotent (optional).
        occurred_on: Business date of the fact (local to the programme); None = today.
        by: Who sent the command (stored with its events as ``recorded_by``); None
            when the sender did not say.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: CommandId | None = None
    occurred_on: date | None = None
    by: Author | None = None


class EnrollFirm(Command):
    """Enrol a firm in a programme at the mission where it was introduced.

    A journey carries its enrolment for ever (its input, at each continue-as-new): its
    text is checked as the programme's and the firm's are, strictly at input
    (``context=AT_INPUT``, as the roster is read) and read back as it was accepted.
    """

    kind: Literal["enroll_firm"] = "enroll_firm"
    command_id: _KeptCommandId | None = None
    by: Text | None = None
    programme: Programme
    firm: Firm
    mission_id: Identifier
    wants_to_meet: list[Text] = Field(default_factory=list)


class RequestMeeting(Command):
    """Ask to meet a counterpart (e.g. Apple)."""

    kind: Literal["request_meeting"] = "request_meeting"
    meeting_id: Identifier
    counterpart: Line


class ArrangeMeeting(Command):
    """A partner arranges a requested meeting at an aware date and time."""

    kind: Literal["arrange_meeting"] = "arrange_meeting"
    meeting_id: Identifier
    partner_id: Identifier
    scheduled_at: AwareDatetime
    place: Line | None = None


class RecordMeetingResult(Command):
    """Record how an arranged meeting went."""

    kind: Literal["record_meeting_result"] = "record_meeting_result"
    meeting_id: Identifier
    outcome: Outcome
    notes: Notes = ""
    next_step: Notes | None = None
    next_step_due_on: date | None = None


class SignContract(Command):
    """Record a contract signed with a counterpart, attributed to its meetings.

    A contract is recognised by its ``contract_id`` when it has one, else by its
    natural key: the counterpart (case aside) and the signing date. Two contracts with
    the same counterpart, value and date are two contracts only with distinct ids.

    Attributes:
        contract_id: The contract's own id (id rules: lower case, no spaces); None:
            the journey assigns the next free ``c1``, ``c2``, ...
        value: Its amount in an active ISO 4217 currency (``Money``'s rules); the
            programme's maximum (``Policy.max_contract_amount``) is checked by
            ``decide``.
    """

    kind: Literal["sign_contract"] = "sign_contract"
    contract_id: Identifier | None = None
    counterpart: Line
    value: Money
    meeting_ids: list[Identifier] = Field(default_factory=list)
    notes: Notes = ""


class RecordVisitAttendance(Command):
    """Record whether the firm takes part in the open return visit."""

    kind: Literal["record_visit_attendance"] = "record_visit_attendance"
    attended: bool
    mission_id: Identifier | None = None
    notes: Notes = ""


class DecideEvaluation(Command):
    """Renew the journey for another cycle, or close it, once the evaluation is due."""

    kind: Literal["decide_evaluation"] = "decide_evaluation"
    decision: Decision
    notes: Notes = ""


class Withdraw(Command):
    """The firm withdraws from the programme."""

    kind: Literal["withdraw"] = "withdraw"
    reason: Notes = ""


class CompleteNextStep(Command):
    """Mark the next step agreed at a meeting's result done."""

    kind: Literal["complete_next_step"] = "complete_next_step"
    meeting_id: Identifier
    notes: Notes = ""


class AssignAdviser(Command):
    """Give the firm to another adviser (a staff id of the programme)."""

    kind: Literal["assign_adviser"] = "assign_adviser"
    adviser_id: Identifier
    notes: Notes = ""


# ------------------------------------------------------------------- corrections


class CorrectContract(Command):
    """Correct what a signed contract records; only the fields given change.

    Attributes:
        contract_id: The contract (``c1``, ``c2``, ... or the id it was signed with).
        value: Its corrected amount and currency (``Money``'s rules).
        counterpart: Its corrected counterpart.
        signed_on: Its corrected signing date (local to the programme).
        meeting_ids: The meetings it is attributed to instead (``[]``: none).
        reason: Why it is corrected.
    """

    kind: Literal["correct_contract"] = "correct_contract"
    contract_id: Identifier
    value: Money | None = None
    counterpart: Line | None = None
    signed_on: date | None = None
    meeting_ids: list[Identifier] | None = None
    reason: Reason


class VoidContract(Command):
    """Void a contract recorded by mistake: it no longer counts anywhere."""

    kind: Literal["void_contract"] = "void_contract"
    contract_id: Identifier
    reason: Reason


class CorrectMeetingResult(Command):
    """Correct the outcome recorded for a meeting."""

    kind: Literal["correct_meeting_result"] = "correct_meeting_result"
    meeting_id: Identifier
    outcome: Outcome
    reason: Reason


class CorrectVisitAttendance(Command):
    """Correct whether the firm attended a return visit (1 = the first)."""

    kind: Literal["correct_visit_attendance"] = "correct_visit_attendance"
    visit: int = Field(ge=1, le=1000)
    attended: bool
    reason: Reason


Correction = CorrectContract | VoidContract | CorrectMeetingResult | CorrectVisitAttendance
"""Any command that corrects an earlier record."""

StaffCommand = Annotated[
    RequestMeeting
    | ArrangeMeeting
    | RecordMeetingResult
    | SignContract
    | RecordVisitAttendance
    | DecideEvaluation
    | Withdraw
    | CorrectContract
    | VoidContract
    | CorrectMeetingResult
    | CorrectVisitAttendance
    | CompleteNextStep
    | AssignAdviser,
    Field(discriminator="kind"),
]
"""Any command staff send to a running journey."""
