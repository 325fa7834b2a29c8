"""FirmJourney: one durable workflow per firm and programme.

Read top to bottom, it is the firm's journey of the BRIEF. The rules live in
``domain.journey``; this workflow only carries them through time:

1. It records ``FirmEnrolled`` when it starts.
2. It sleeps until the journey's next deadline (a visit reminder, a visit falling due,
   an overdue meeting result, the evaluation) and records what falls due.
3. Staff commands arrive as **updates** (validated first: a refused command writes
   nothing to history and the caller gets the domain error) or as **signals** (from the
   Temporal CLI or UI: a refused signal is kept in the refusals list and never breaks
   the workflow).
4. Every event goes to the PostgreSQL event store through the ``store_events``
   activity; an update returns once its events are stored.
5. It continues as new when its history grows and at each new cycle, carrying its state
   and any event not stored yet. It ends when the firm withdraws or the journey closes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows import search

with workflow.unsafe.imports_passed_through():
    from activities.journey import JourneyActivities, StoreEventsInput
    from corridor import observability
    from domain.calendar import ProgrammeClock, local_date
    from domain.commands import (
        ArrangeMeeting,
        Command,
        DecideEvaluation,
        EnrollFirm,
        RecordMeetingResult,
        RecordVisitAttendance,
        RequestMeeting,
        SignContract,
        Withdraw,
    )
    from domain.errors import DomainError
    from domain.events import Event, EventEnvelope
    from domain.journey import (
        Deadline,
        JourneyState,
        decide,
        due_events,
        evolve,
        next_deadline,
    )
    from domain.wording import explain

TIMELINE_KEPT = 200
COMMAND_IDS_KEPT = 5000
REFUSALS_KEPT = 50


def journey_workflow_id(programme_id: str, firm_id: str) -> str:
    """The journey's workflow id, also its event stream id: ``journey/PROGRAMME/FIRM``."""
    return f"journey/{programme_id}/{firm_id}"


class TimelineEntry(BaseModel):
    """One line of the journey's timeline (the full record is the event stream)."""

    version: int
    type: str
    occurred_at: datetime
    summary: str


class Refusal(BaseModel):
    """A command sent by signal and refused; nothing was changed."""

    at: datetime
    command: str
    command_id: str | None
    rule: str
    message: str


class CommandResult(BaseModel):
    """Answer to a staff command sent as an update.

    Attributes:
        duplicate: True when this command id had already been applied (nothing new).
        stream_version: The stream's version once the command's events are stored.
        events: One line per event recorded (timer events that fell due first included).
    """

    duplicate: bool = False
    stream_version: int
    events: list[str] = Field(default_factory=list)


class JourneyInput(BaseModel):
    """Input of ``FirmJourney``, also what it carries across continue-as-new.

    Attributes:
        enrollment: The command that enrolled the firm.
        clock: Maps Temporal's clock to the programme's business clock.
        continue_as_new_after: History length after which the journey continues as new.
        state: The journey's state (None on the first run).
        unstored: Events not stored in the event store yet.
        stored_version: The stream's version in the event store.
        command_ids: Ids of commands already applied (idempotency), oldest first.
        answers: Answers already given, by update id and command id.
        refusals: The latest refused signals.
        timeline: The latest timeline entries.
    """

    enrollment: EnrollFirm
    clock: ProgrammeClock = Field(default_factory=ProgrammeClock)
    continue_as_new_after: int = Field(default=10_000, ge=50)
    state: JourneyState | None = None
    unstored: list[EventEnvelope] = Field(default_factory=list)
    stored_version: int = 0
    command_ids: list[str] = Field(default_factory=list)
    answers: dict[str, CommandResult] = Field(default_factory=dict)
    refusals: list[Refusal] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class JourneyView(BaseModel):
    """What the ``state`` query returns."""

    workflow_id: str
    business_now: datetime
    state: JourneyState
    next_deadline: Deadline | None
    stored_version: int
    unstored: int
    refusals: list[Refusal]
    clock: ProgrammeClock


class ClockChange(BaseModel):
    """Run the business clock at ``speed`` from now on (1.0 = real time)."""

    speed: float = Field(gt=0)


class JourneySummary(BaseModel):
    """Result of a finished journey."""

    stage: str
    stream_version: int


_STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["ConcurrencyError"],
)


SIGNALS = (
    "request_meeting",
    "arrange_meeting",
    "record_meeting_result",
    "sign_contract",
    "record_visit_attendance",
    "decide_evaluation",
    "withdraw",
)
"""Signals (and updates) that carry staff commands."""


def _shape(command_type: type[Command]) -> str:
    """E.g. "one JSON object with meeting_id, counterpart (optional: occurred_on, ...)"."""
    fields = {k: v for k, v in command_type.model_fields.items() if k != "kind"}
    required = ", ".join(k for k, v in fields.items() if v.is_required())
    optional = ", ".join(k for k, v in fields.items() if not v.is_required())
    return f"one JSON object{' with ' + required if required else ''} (optional: {optional})"


def _json_kind(value: Any) -> str:
    kinds = {list: "a JSON array", str: "a JSON string", bool: "true/false", type(None): "null"}
    return kinds.get(type(value), "a JSON number")


def _store_summary(batch: list[EventEnvelope]) -> str:
    """E.g. "store 3 events (versions 17-19)" or "store 1 event (version 20)"."""
    first, last = batch[0].stream_version, batch[-1].stream_version
    if first == last:
        return f"store 1 event (version {first})"
    return f"store {len(batch)} events (versions {first}-{last})"


@workflow.defn
class FirmJourney:
    """The journey of one firm in one programme (BRIEF, "The firm's journey")."""

    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        self._input = input
        self._clock = input.clock.anchored(workflow.now())
        self._state: JourneyState | None = input.state
        self._unstored: list[EventEnvelope] = list(input.unstored)
        self._stored_version = input.stored_version
        self._command_ids: dict[str, None] = dict.fromkeys(input.command_ids)
        self._refusals = list(input.refusals)
        self._timeline = list(input.timeline)
        self._answers: dict[str, CommandResult] = dict(input.answers)
        self._start_cycle = input.state.cycle if input.state else 1
        self._woken = False
        self._search_values: dict[str, Any] = {}
        self._refused_enrollment: DomainError | None = None
        if self._state is None:
            # Recorded here, not in run(): updates of the first workflow task are
            # validated before run() starts, and must find the journey begun.
            try:
                self._record(decide(None, input.enrollment, self._now()), input.enrollment)
            except DomainError as error:
                self._refused_enrollment = error

    # ------------------------------------------------------------------ the journey

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneySummary:
        """Play the journey until the firm withdraws or the journey is closed."""
        if self._refused_enrollment is not None:
            error = self._refused_enrollment
            raise ApplicationError(str(error), type=error.rule, non_retryable=True)
        while True:
            self._catch_up()
            await self._store_pending()
            if self._unstored:
                continue
            state = self._journey
            if state.is_over:
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._unstored:
                    break
                continue
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._unstored:
                    workflow.continue_as_new(self._carried())
                continue
            await self._sleep_until(next_deadline(state))
        self._describe()
        return JourneySummary(stage=self._journey.stage.value, stream_version=self._stored_version)

    async def _sleep_until(self, deadline: Deadline | None) -> None:
        """Wait for the next deadline, or for a command that recorded new events."""
        self._woken = False
        timeout: timedelta | None = None
        if deadline is not None:
            business_wait = deadline.at - self._now()
            timeout = max(self._clock.real_delay(business_wait), timedelta(milliseconds=1))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: bool(self._unstored) or self._woken,
                timeout=timeout,
                timeout_summary=deadline.description if deadline else None,
            )

    async def _store_pending(self) -> None:
        """Store the events recorded so far in the event store (retried until it works)."""
        if not self._unstored:
            return
        batch = list(self._unstored)
        try:
            result = await workflow.execute_activity_method(
                JourneyActivities.store_events,
                StoreEventsInput(
                    stream_id=workflow.info().workflow_id,
                    expected_version=batch[0].stream_version - 1,
                    events=batch,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_STORE_RETRY,
                summary=_store_summary(batch),
            )
        except Exception as error:
            # A conflict in the stream needs a person: fail the task (the workflow
            # stays open, visible in the UI) rather than the years-long journey.
            raise RuntimeError(f"cannot store events: {error}") from error
        self._unstored = self._unstored[len(batch) :]
        self._stored_version = result.stream_version
        self._describe()

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._input.continue_as_new_after
            or self._journey.cycle != self._start_cycle
        )

    def _carried(self) -> JourneyInput:
        return JourneyInput(
            enrollment=self._input.enrollment,
            clock=self._clock,
            continue_as_new_after=self._input.continue_as_new_after,
            state=self._state,
            unstored=self._unstored,
            stored_version=self._stored_version,
            command_ids=list(self._command_ids)[-COMMAND_IDS_KEPT:],
            answers=self._answers,
            refusals=self._refusals[-REFUSALS_KEPT:],
            timeline=self._timeline[-TIMELINE_KEPT:],
        )

    # ------------------------------------------------------------- staff commands

    @workflow.update
    async def request_meeting(self, command: RequestMeeting) -> CommandResult:
        """The firm asks to meet a counterpart."""
        return await self._execute(command)

    @request_meeting.validator
    def _validate_request_meeting(self, command: RequestMeeting) -> None:
        self._validate(command)

    @workflow.update
    async def arrange_meeting(self, command: ArrangeMeeting) -> CommandResult:
        """A partner arranges a requested meeting."""
        return await self._execute(command)

    @arrange_meeting.validator
    def _validate_arrange_meeting(self, command: ArrangeMeeting) -> None:
        self._validate(command)

    @workflow.update
    async def record_meeting_result(self, command: RecordMeetingResult) -> CommandResult:
        """Staff record the outcome of an arranged meeting."""
        return await self._execute(command)

    @record_meeting_result.validator
    def _validate_record_meeting_result(self, command: RecordMeetingResult) -> None:
        self._validate(command)

    @workflow.update
    async def sign_contract(self, command: SignContract) -> CommandResult:
        """Staff record a contract signed with a counterpart."""
        return await self._execute(command)

    @sign_contract.validator
    def _validate_sign_contract(self, command: SignContract) -> None:
        self._validate(command)

    @workflow.update
    async def record_visit_attendance(self, command: RecordVisitAttendance) -> CommandResult:
        """Staff record whether the firm takes part in the open return visit."""
        return await self._execute(command)

    @record_visit_attendance.validator
    def _validate_record_visit_attendance(self, command: RecordVisitAttendance) -> None:
        self._validate(command)

    @workflow.update
    async def decide_evaluation(self, command: DecideEvaluation) -> CommandResult:
        """Staff renew the journey for another cycle or close it."""
        return await self._execute(command)

    @decide_evaluation.validator
    def _validate_decide_evaluation(self, command: DecideEvaluation) -> None:
        self._validate(command)

    @workflow.update
    async def withdraw(self, command: Withdraw) -> CommandResult:
        """The firm withdraws from the programme."""
        return await self._execute(command)

    @withdraw.validator
    def _validate_withdraw(self, command: Withdraw) -> None:
        self._validate(command)

    @workflow.update
    async def sync(self) -> CommandResult:
        """Return once every event recorded so far (timers' included) is stored."""
        self._catch_up()
        version = self._journey.stream_version
        await workflow.wait_condition(lambda: self._stored_version >= version)
        return CommandResult(stream_version=self._stored_version)

    @workflow.update
    def adjust_clock(self, change: ClockChange) -> ProgrammeClock:
        """Run the business clock at another speed from now on (demos end at 1.0)."""
        self._clock = self._clock.rebased(workflow.now(), change.speed)
        self._woken = True
        return self._clock

    # ------------------------------------------------------ the same, as signals

    @workflow.signal(name="request_meeting")
    def request_meeting_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``request_meeting`` (Temporal CLI / UI)."""
        self._signal(RequestMeeting, payloads)

    @workflow.signal(name="arrange_meeting")
    def arrange_meeting_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``arrange_meeting``."""
        self._signal(ArrangeMeeting, payloads)

    @workflow.signal(name="record_meeting_result")
    def record_meeting_result_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``record_meeting_result``."""
        self._signal(RecordMeetingResult, payloads)

    @workflow.signal(name="sign_contract")
    def sign_contract_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``sign_contract``."""
        self._signal(SignContract, payloads)

    @workflow.signal(name="record_visit_attendance")
    def record_visit_attendance_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``record_visit_attendance``."""
        self._signal(RecordVisitAttendance, payloads)

    @workflow.signal(name="decide_evaluation")
    def decide_evaluation_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``decide_evaluation``."""
        self._signal(DecideEvaluation, payloads)

    @workflow.signal(name="withdraw")
    def withdraw_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``withdraw``."""
        self._signal(Withdraw, payloads)

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Any other signal name: kept in the refusals list, never applied."""
        known = ", ".join(sorted(SIGNALS))
        self._refuse(name, None, "UnknownSignal", f"unknown signal {name!r} (known: {known})")

    # -------------------------------------------------------------------- queries

    @workflow.query
    def applied(self, command_id: str) -> bool:
        """Whether a command with this id was applied (also on an ended journey)."""
        return command_id in self._command_ids


    @workflow.query
    def state(self) -> JourneyView:
        """The journey's state, next deadline and storage progress."""
        state = self._journey
        return JourneyView(
            workflow_id=workflow.info().workflow_id,
            business_now=self._now(),
            state=state,
            next_deadline=next_deadline(state),
            stored_version=self._stored_version,
            unstored=len(self._unstored),
            refusals=self._refusals,
            clock=self._clock,
        )

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        """The journey's latest events, oldest first, in the domain's words."""
        return self._timeline

    # -------------------------------------------------------------------- helpers

    @property
    def _journey(self) -> JourneyState:
        if self._state is None:
            raise ApplicationError("the journey has not started", non_retryable=True)
        return self._state

    def _now(self) -> datetime:
        """The programme's business time now."""
        return self._clock.business_time(workflow.now())

    def _catch_up(self) -> None:
        """Record every deadline that has fallen due by now, in order."""
        if self._state is None:
            return
        _, events = due_events(self._state, self._now())
        if events:
            self._record(events, None)

    def _validate(self, command: Command) -> None:
        """Refuse the command (before anything is written) if it breaks a rule."""
        if self._seen(command):
            return
        caught_up, _ = due_events(self._journey, self._now())
        try:
            decide(caught_up, command, self._now())
        except DomainError as error:
            observability.command_refused(command, error.rule)
            raise ApplicationError(str(error), type=error.rule, non_retryable=True) from None

    def _seen(self, command: Command) -> bool:
        """True for an update already answered, or a command id already applied.

        Temporal dedupes update ids within one run only: across continue-as-new it may
        deliver an update again.
        """
        update = workflow.current_update_info()
        return (update is not None and update.id in self._answers) or (
            command.command_id is not None and command.command_id in self._command_ids
        )

    async def _execute(self, command: Command) -> CommandResult:
        """Apply a validated command; return once its events are stored."""
        update = workflow.current_update_info()
        if update is not None and update.id in self._answers:
            return self._answers[update.id]
        if command.command_id is not None and command.command_id in self._command_ids:
            command_id = command.command_id
            await workflow.wait_condition(lambda: command_id in self._answers)
            known = self._answers[command_id]
            return CommandResult(duplicate=True, stream_version=known.stream_version)
        self._catch_up()
        first = self._journey.stream_version + 1
        try:
            events = decide(self._journey, command, self._now())
        except DomainError as error:
            raise ApplicationError(str(error), type=error.rule, non_retryable=True) from None
        self._record(events, command)
        version = self._journey.stream_version
        await workflow.wait_condition(lambda: self._stored_version >= version)
        result = CommandResult(
            stream_version=version,
            events=[e.summary for e in self._timeline if first <= e.version <= version],
        )
        self._answer(result, update.id if update else None, command.command_id)
        return result

    def _answer(self, result: CommandResult, *keys: str | None) -> None:
        """Keep a command's answer under its update id and command id (bounded)."""
        for key in keys:
            if key is not None:
                self._answers[key] = result
        while len(self._answers) > COMMAND_IDS_KEPT:
            self._answers.pop(next(iter(self._answers)))

    def _signal(self, command_type: type[Command], payloads: tuple[Any, ...]) -> None:
        """Apply a command sent by signal, or keep it in the refusals list.

        Whatever arrives (no input, several inputs, any JSON), the journey never fails
        on a signal: a payload it cannot use is refused with the reason.
        """
        name = str(command_type.model_fields["kind"].default)  # the signal's own name
        if len(payloads) != 1 or not isinstance(payloads[0], dict):
            got = f"{len(payloads)} inputs" if len(payloads) != 1 else _json_kind(payloads[0])
            self._refuse(
                name, None, "InvalidPayload", f"expects {_shape(command_type)}; got {got}"
            )
            return
        try:
            command = TypeAdapter(command_type).validate_python(payloads[0])
        except ValidationError as error:
            self._refuse(name, None, "InvalidPayload", explain(error))
            return
        if command.command_id is not None and command.command_id in self._command_ids:
            return
        self._catch_up()
        try:
            events = decide(self._journey, command, self._now())
        except DomainError as error:
            self._refuse(name, command.command_id, error.rule, str(error))
            return
        self._record(events, command)
        version = self._journey.stream_version
        self._answer(
            CommandResult(stream_version=version, events=[e.summary() for e in events]),
            command.command_id,
        )

    def _refuse(self, command: str, command_id: str | None, rule: str, message: str) -> None:
        self._refusals.append(
            Refusal(
                at=self._now(), command=command, command_id=command_id, rule=rule, message=message
            )
        )
        self._refusals = self._refusals[-REFUSALS_KEPT:]
        observability.command_refused(command, rule)
        workflow.logger.warning("signal refused: %s: %s", rule, message)
        self._describe()

    def _record(self, events: list[Event], command: Command | None) -> None:
        """Fold events into the state and queue them for the event store."""
        stream_id = workflow.info().workflow_id
        command_id = command.command_id if command else None
        for event in events:
            self._state = evolve(self._state, event)
            self._unstored.append(
                EventEnvelope(
                    event_id=workflow.uuid4(),
                    stream_id=stream_id,
                    stream_version=self._state.stream_version,
                    command_id=command_id,
                    event=event,
                )
            )
            self._timeline.append(
                TimelineEntry(
                    version=self._state.stream_version,
                    type=type(event).__name__,
                    occurred_at=event.occurred_at,
                    summary=event.summary(),
                )
            )
        self._timeline = self._timeline[-TIMELINE_KEPT:]
        if command is not None:
            observability.command_accepted(command)
        if command_id is not None:
            self._command_ids[command_id] = None
            if len(self._command_ids) > COMMAND_IDS_KEPT:
                self._command_ids.pop(next(iter(self._command_ids)))
        self._describe()

    def _describe(self) -> None:
        """Keep the journey's current details (Markdown, shown in the Web UI) current."""
        if self._state is None:
            return
        state = self._state
        deadline = next_deadline(state)
        assessment = state.assessment()
        lines = [
            f"**{state.firm.name}** — programme `{state.programme.id}`, "
            f"introduced at `{state.mission_id}` on {state.introduced_on}",
            "",
            f"- Stage: **{state.stage.value.replace('_', ' ')}** (cycle {state.cycle})",
            f"- Business date: {local_date(self._now(), state.tz)}",
            f"- Next deadline: {deadline.description if deadline else 'none (journey over)'}",
            f"- Meetings: {assessment.meetings_requested} requested, "
            f"{assessment.meetings_held} held; contracts: {assessment.contracts}",
            f"- Events stored: {self._stored_version} of {state.stream_version}",
            "",
            "Recent events:",
            "",
            *(
                f"- {local_date(e.occurred_at, state.tz)} {e.summary}"
                for e in self._timeline[-5:]
            ),
        ]
        if self._refusals:
            last = self._refusals[-1]
            lines += ["", f"Last refused signal: {last.command}: {last.message}"]
        workflow.set_current_details("\n".join(lines))
        self._index(state, deadline)

    def _index(self, state: JourneyState, deadline: Deadline | None) -> None:
        """Keep the search attributes current (only what changed is upserted)."""
        latest = state.evaluations.get(max(state.evaluations, default=0))
        current = search.values(
            programme_id=state.programme.id,
            firm_id=state.firm.id,
            mission_id=state.mission_id,
            stage=state.stage.value,
            next_deadline=deadline.at if deadline else None,
            next_deadline_kind=deadline.kind.value if deadline else None,
            meetings_held=state.assessment().meetings_held,
            contracts=len(state.contracts),
            partners=sorted({m.partner_id for m in state.meetings.values() if m.partner_id}),
            decision=(latest.decision or "pending") if latest else None,
            result_overdue=any(m.overdue and m.outcome is None for m in state.meetings.values()),
        )
        changes = search.updates(self._search_values, current)
        if changes:
            workflow.upsert_search_attributes(changes)
            self._search_values = current


__all__ = [
    "ClockChange",
    "CommandResult",
    "FirmJourney",
    "JourneyInput",
    "JourneySummary",
    "JourneyView",
    "journey_workflow_id",
]
