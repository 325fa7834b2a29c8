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

import asyncio
import base64
import contextlib
import uuid
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import metrics, search
from workflows.seen import SeenCommands

with workflow.unsafe.imports_passed_through():
    from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError

    from activities.api import (
        FIND_COMMAND,
        SEND_MESSAGE,
        STORE_EVENTS,
        FindCommandInput,
        FindCommandResult,
        SendMessageInput,
        SendMessageResult,
        StoreEventsInput,
        StoreEventsResult,
    )
    from domain.calendar import ProgrammeClock, local_date
    from domain.commands import (
        ArrangeMeeting,
        AssignAdviser,
        Command,
        CompleteNextStep,
        CorrectContract,
        CorrectMeetingResult,
        CorrectVisitAttendance,
        DecideEvaluation,
        EnrollFirm,
        RecordMeetingResult,
        RecordVisitAttendance,
        RequestMeeting,
        SignContract,
        VoidContract,
        Withdraw,
    )
    from domain.deadlines import Deadline, due_events, next_deadline
    from domain.errors import DomainError
    from domain.events import (
        Event,
        EventEnvelope,
        MessageFailed,
        MessageNotSent,
        MessageSent,
        MessageSkipped,
        NextStepScheduled,
    )
    from domain.journey import decide
    from domain.messages import CONTACT, message_id, message_kind, recipient, skip_reason
    from domain.programme import AT_INPUT
    from domain.state import JourneyState, evolve
    from domain.timeline import TimelineEntry, entry
    from domain.wording import explain

TIMELINE_KEPT = 50
"""Timeline entries kept in the workflow (the whole timeline is the event stream)."""
RECENT_COMMANDS_KEPT = 256
"""Command ids kept exactly; older ones are recognised through ``SeenCommands``."""
UPDATES_KEPT = 200
"""Update ids answered, kept to recognise an update delivered again after continue-as-new."""
REFUSALS_KEPT = 20
STORAGE_RETRY_AFTER = timedelta(hours=1)
"""How long a journey whose events the store refused waits before trying again."""

SIGNAL_AUTHOR = "temporal (signal)"
"""Author of a command sent by signal without ``by`` (Temporal CLI or Web UI)."""
UPDATE_AUTHOR = "temporal (update)"
"""Author of a command sent as an update without ``by`` (a client other than corridor)."""

FOLLOW_UPS_PATCH = "follow-ups-reach-people"
"""Patch of issue 9: next steps become deadlines and the journey's messages are sent.

Journeys begun before it replay without it (no send activities, no next-step
deadlines); their next run (after continue-as-new) follows it."""

READ_RECORD_AFTER_RESET_PATCH = "read-record-after-reset"
"""Patch: a reset journey reads the event store's record before it refuses a command.

A run reset (``temporal workflow reset``) goes on from a point of its history and does
not know the events the store recorded after it. Before this patch it learnt them only
at its next append, so a command that depended on them (the result of a meeting
arranged after the reset point) was refused. With it, the first command such a run
would refuse after the reset makes it read the record, adopt it and decide again
(called only then).
"""

JOURNEY_JUST_RESET = "JourneyJustReset"
"""Rule of an update that reached a journey in the very task that applies its reset.

That task runs the update's validator before Temporal tells the run it was reset, so
the run cannot yet tell a refusal from a gap in its record: it asks for the command
again (:func:`corridor.service.send` does, at once), and the next task knows.
"""

NEXT_STEP_AFTER_RESULT_PATCH = "next-step-after-result"
"""Patch: a meeting's result sent again with a next step it lacked adds the next step.

Before it, such a command was "already recorded" and its next step dropped; a history
that went that way replays that way (``FirmJourney._decide``)."""

MESSAGE_WINDOWS_PATCH = "messages-while-meaningful"
"""Patch: a message is sent only while its occasion is still ahead (``skip_reason``).

Before it, every event with a message kind was sent, however late: a journey enrolled
years after the fact told its contact of visits long past. With it, a message whose
window has closed is recorded ``MessageSkipped`` instead of sent, at once when the
journey stores its cause (a catch-up skips years of messages without one activity), and
again just before sending (a message that waited out an outage); a message that can
never be sent is recorded ``MessageFailed`` and the journey's other messages go on."""

TEXT_AT_INPUT_PATCH = "text-checked-at-input"
"""Patch: a signal's text is held to the input rule (no control characters in one line).

Updates are checked in their validators, which never replay; a signal is checked in its
handler, which does: a history that accepted such a signal before replays as it ran."""

_SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
"""An SMTP server that cannot be reached is retried for as long as it lasts."""

EVENT_ID_NAMESPACE = uuid.UUID("5b0c6f0e-7d1c-4d0e-9a55-8f2f1c6d0a11")


def journey_workflow_id(programme_id: str, firm_id: str) -> str:
    """The journey's workflow id, also its event stream id: ``journey/PROGRAMME/FIRM``."""
    return f"journey/{programme_id}/{firm_id}"


def event_id(stream_id: str, version: int, event: Event) -> uuid.UUID:
    """The id of an event: the same whenever the same event is decided at that place.

    Derived from the stream, the version and the event's content (its recording time
    and author aside), so that a retried activity, a replay or a ``temporal workflow reset`` that
    re-decides the same fact stores it once, while a different fact at a taken version
    is a conflict the store detects.
    """
    content = event.model_dump_json(exclude={"recorded_at", "recorded_by"})
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{stream_id}\n{version}\n{content}")


def pack_state(state: JourneyState) -> str:
    """A journey's state, compressed, as text (what continue-as-new carries)."""
    return base64.b64encode(zlib.compress(state.model_dump_json().encode(), 9)).decode()


def unpack_state(packed: str) -> JourneyState:
    """The state packed by :func:`pack_state`."""
    return JourneyState.model_validate_json(zlib.decompress(base64.b64decode(packed)))


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

    Everything carried is bounded in bytes, whatever the number of commands: the state
    is compressed, command ids are kept exactly for the latest ones only and otherwise
    in a fixed-size filter (``workflows.seen``), timeline and refusals are the latest.

    Attributes:
        enrollment: The command that enrolled the firm.
        clock: Maps Temporal's clock to the programme's business clock.
        continue_as_new_after: History length after which the journey continues as new.
        packed_state: The journey's state, packed (None on the first run).
        unstored: Events not stored in the event store yet.
        stored_version: The stream's version in the event store.
        recent_commands: Latest command ids applied, with their last event's version.
        seen_filter: Every command id applied, as a packed filter.
        recent_updates: Latest update ids answered, with the version they answered.
        refusals: The latest refused signals.
        timeline: The latest timeline entries.
        state: Earlier form of ``packed_state`` (runs started by older versions).
        command_ids: Earlier form of ``recent_commands``.
        answers: Earlier form of ``recent_updates``.
        outgoing: Versions of stored events whose messages are not sent yet.
        task_queue: The task queue the journey serves staff on once it has caught up.
            A journey enrolled after the fact starts on the catch-up task queue (whose
            worker runs few tasks at a time, so that years of deadlines never stand in
            front of staff commands) and continues as new on this one when it has
            stored what fell due up to today; None: it stays where it started.
        quiet_until: A real instant (aware): while the journey's clock is held (a past
            journal being imported), a message is judged at this instant if it is later
            than the business time, so an import in 2026 of 2014's records tells nobody
            of 2014; None: at the business time.
    """

    enrollment: EnrollFirm
    clock: ProgrammeClock = Field(default_factory=ProgrammeClock)
    continue_as_new_after: int = Field(default=10_000, ge=50)
    packed_state: str | None = None
    unstored: list[EventEnvelope] = Field(default_factory=list)
    stored_version: int = 0
    recent_commands: dict[str, int] = Field(default_factory=dict)
    seen_filter: str | None = None
    recent_updates: dict[str, int] = Field(default_factory=dict)
    refusals: list[Refusal] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    state: JourneyState | None = None
    command_ids: list[str] = Field(default_factory=list)
    answers: dict[str, CommandResult] = Field(default_factory=dict)
    outgoing: list[int] = Field(default_factory=list)
    task_queue: str | None = None
    quiet_until: AwareDatetime | None = None


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
    storage_problem: str | None = None
    messages_waiting: int = 0


class ClockChange(BaseModel):
    """Run the business clock at ``speed`` from now on (1.0 = real time)."""

    speed: float = Field(gt=0)


class ClockAdvance(BaseModel):
    """Move a held business clock on to ``to`` (aware); never backwards."""

    to: AwareDatetime


class ClockRelease(BaseModel):
    """Let a held business clock run at real speed, reading ``at`` now (None: real time)."""

    at: AwareDatetime | None = None


class JourneySummary(BaseModel):
    """Result of a finished journey."""

    stage: str
    stream_version: int


_STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
"""Transient errors are retried for as long as they last; data errors are not retried
(the activity raises them non-retryable) and block the journey's storage visibly."""


SIGNALS = (
    "request_meeting",
    "arrange_meeting",
    "record_meeting_result",
    "sign_contract",
    "record_visit_attendance",
    "decide_evaluation",
    "withdraw",
    "correct_contract",
    "void_contract",
    "correct_meeting_result",
    "correct_visit_attendance",
    "complete_next_step",
    "assign_adviser",
)
"""Signals (and updates) that carry staff commands."""


def _shape(command_type: type[Command]) -> str:
    """E.g. "one JSON object with meeting_id, counterpart (optional: occurred_on, ...)"."""
    fields = {k: v for k, v in command_type.model_fields.items() if k != "kind"}
    required = ", ".join(k for k, v in fields.items() if v.is_required())
    optional = ", ".join(k for k, v in fields.items() if not v.is_required())
    return f"one JSON object{' with ' + required if required else ''} (optional: {optional})"


def _signal_name(command_type: type[Command]) -> str:
    """The signal (and update) name of a command type, e.g. ``request_meeting``."""
    return str(command_type.model_fields["kind"].default)


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
        # First, at the same place in every run: whether this run follows issue 9.
        self._follow_ups = workflow.patched(FOLLOW_UPS_PATCH)
        self._outgoing: list[int] = list(input.outgoing) if self._follow_ups else []
        self._messages_recorded: set[uuid.UUID] = set()
        self._sender: asyncio.Task[None] | None = None
        self._windows = self._follow_ups and workflow.patched(MESSAGE_WINDOWS_PATCH)
        self._causes: dict[int, tuple[uuid.UUID, Event, JourneyState | None]] = {}
        # Messages judged not worth sending (version, cause id, cause, state at cause,
        # why), recorded as MessageSkipped by _record_skipped.
        self._to_skip: list[tuple[int, uuid.UUID, Event, JourneyState | None, str]] = []
        self._skips_through = 0  # version of the latest MessageSkipped recorded
        self._input = input
        self._clock = input.clock.anchored(workflow.now())
        self._state: JourneyState | None = (
            unpack_state(input.packed_state) if input.packed_state else input.state
        )
        self._unstored: list[EventEnvelope] = list(input.unstored)
        self._stored_version = input.stored_version
        # States after each unstored event, and the commands that caused them: what a
        # journey needs to adopt the event store's record (see _adopt).
        self._stored_state: JourneyState | None = (
            self._state if not self._unstored else None
        )
        self._pending_states: dict[int, JourneyState] = {}
        self._decided_by: dict[int, Command] = {}
        self._seen = SeenCommands(
            input.recent_commands, input.seen_filter, keep=RECENT_COMMANDS_KEPT
        )
        for command_id in input.command_ids:  # runs carried by an older version
            known = input.answers.get(command_id)
            self._seen.add(command_id, known.stream_version if known else input.stored_version)
        self._updates: dict[str, int] = dict(input.recent_updates)
        self._updates.update({k: v.stream_version for k, v in input.answers.items()})
        self._checking: set[str] = set()
        self._lookups = 0
        self._lookup_tasks: set[asyncio.Task[None]] = set()
        self._refusals = list(input.refusals)
        self._timeline = list(input.timeline)
        self._start_cycle = self._state.cycle if self._state else 1
        self._woken = False
        self._search_values: dict[str, Any] = {}
        # Details and search attributes once per workflow task, not once per command: a
        # burst of hundreds of signals (also those waiting for a run continued as new,
        # delivered before its run() starts) is folded in one task.
        self._lazy = workflow.patched("describe-lazily")
        self._dirty = False
        self._index_catching_up = False
        self._caught_up = self._state is not None  # a run continued as new was caught up
        self._storage_problem: str | None = None
        self._retry_storage = False
        # A reset run may not know all of its record until it reads it once: Temporal
        # says it was reset by giving it a new random seed (see _on_new_seed).
        self._reset_applied = False
        self._record_known = True
        self._record_reader: asyncio.Task[bool] | None = None
        workflow.register_random_seed_callback(self._on_new_seed)
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
        if workflow.patched("describe-each-run"):
            self._describe()  # each run shows its details from its first task on
        self._index_catching_up = workflow.patched("catching-up-attribute")
        if self._follow_ups:
            self._sender = asyncio.create_task(self._send_messages())
        while True:
            self._catch_up()
            self._flush_description()
            await self._store_pending()
            if self._unstored:
                continue
            state = self._journey
            if state.is_over:
                # Its last messages go out before it ends (they wait for the server).
                await workflow.wait_condition(lambda: self._settled() and not self._outgoing)
                if not self._unstored:
                    break
                continue
            if self._should_continue_as_new():
                await workflow.wait_condition(self._settled)
                if not self._unstored:
                    if self._leaves_catch_up():
                        self._describe()  # caught up: its next run inherits the attributes
                    workflow.continue_as_new(self._carried(), task_queue=self._task_queue())
                continue
            self._flush_description()
            await self._sleep_until(next_deadline(state))
        self._describe()
        return JourneySummary(stage=self._journey.stage.value, stream_version=self._stored_version)

    def _settled(self) -> bool:
        """No handler running and no signal waiting for a look-up in the event store."""
        return workflow.all_handlers_finished() and self._lookups == 0

    async def _sleep_until(self, deadline: Deadline | None) -> None:
        """Wait for the next deadline, or for a command that recorded new events."""
        self._woken = False
        timeout: timedelta | None = None
        if deadline is not None and not self._clock.held:
            business_wait = deadline.at - self._now()
            timeout = max(self._clock.real_delay(business_wait), timedelta(milliseconds=1))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: bool(self._unstored) or self._woken,
                timeout=timeout,
                timeout_summary=deadline.description if deadline else None,
            )

    async def _store_pending(self) -> None:
        """Store the events recorded so far in the event store.

        Transient failures are retried by the activity's retry policy for as long as
        they last. Data the store refuses blocks storage visibly (status, details, the
        ``CorridorStorageBlocked`` search attribute) until an operator signals
        ``retry_storage`` or an hour has passed.
        """
        if not self._unstored:
            return
        batch = list(self._unstored)
        try:
            result = await workflow.execute_activity(
                STORE_EVENTS,
                StoreEventsInput(
                    stream_id=workflow.info().workflow_id,
                    expected_version=batch[0].stream_version - 1,
                    events=batch,
                ),
                result_type=StoreEventsResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_STORE_RETRY,
                summary=_store_summary(batch),
            )
        except ActivityError as error:
            await self._storage_blocked(str(error.cause or error))
            return
        last = batch[-1].stream_version
        if result.recorded:
            self._adopt(result.recorded_after, result.recorded)
        else:
            self._stored(last)
        self._record_skipped()  # after the record is known: the store's, if adopted
        self._describe_soon()

    def _on_new_seed(self, _seed: int) -> None:
        """Temporal applied a reset (it gives the run a new random seed).

        From here on the run goes on from its reset point while the event store may
        hold events the journey recorded after it: the first command it would refuse
        reads the record first. Called while the reset is applied (replays included),
        where no workflow call is allowed: it only takes note.
        """
        self._reset_applied = True
        self._record_known = False

    def _may_be_behind(self) -> bool:
        """Whether this run was reset and has not read the event store's record yet."""
        return not self._record_known

    def _in_reset_task(self) -> bool:
        """In an update validator: the update came in the task that applies a reset.

        The run's id differs from the id its history began with only in a reset run;
        until the reset is applied, that run cannot know it. Only validators may ask
        (they are not replayed; the run id is not part of the history).
        """
        info = workflow.info()
        return info.run_id != info.original_execution_run_id and not self._reset_applied

    async def _read_record_after_reset(self) -> bool:
        """After a reset, adopt what the event store recorded beyond this run's knowledge.

        Called when a command would be refused: in a reset run, the refusal may come
        from events recorded after the reset point (see
        :data:`READ_RECORD_AFTER_RESET_PATCH`). Reads once per run; concurrent callers
        share the read.

        Returns:
            True when the record was read (the caller decides again), False when the
            journey knows its record, or replays a history written before the patch.
        """
        if self._record_reader is None:
            if self._record_known or not workflow.patched(READ_RECORD_AFTER_RESET_PATCH):
                return False
            self._record_reader = asyncio.create_task(self._read_record())
        return await self._record_reader

    async def _read_record(self) -> bool:
        after = self._stored_version
        try:
            result = await workflow.execute_activity(
                STORE_EVENTS,
                StoreEventsInput(
                    stream_id=workflow.info().workflow_id, expected_version=after, events=[]
                ),
                result_type=StoreEventsResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_STORE_RETRY,
                summary=f"read the record after version {after} (the journey was reset)",
            )
        except ActivityError as error:
            workflow.logger.warning("could not read the record after a reset: %s", error)
            return False
        self._record_known = True
        if self._unstored:  # events decided meanwhile: storing them adopts the record
            await workflow.wait_condition(lambda: not self._unstored)
            return True
        # The journey may have stored some of it meanwhile (a store that was in flight
        # at the reset point): those it knows; it adopts the rest.
        known = self._stored_version
        newer = [e for e in result.recorded if e.stream_version > known]
        if newer:
            self._adopt(known, newer)
            self._record_skipped()
            self._describe_soon()
        return True

    def _stored(self, version: int) -> None:
        """Events up to ``version`` are in the event store."""
        self._queue_messages([e for e in self._unstored if e.stream_version <= version])
        self._unstored = [e for e in self._unstored if e.stream_version > version]
        self._stored_state = self._pending_states.get(version, self._stored_state)
        self._pending_states = {v: s for v, s in self._pending_states.items() if v > version}
        self._decided_by = {v: c for v, c in self._decided_by.items() if v > version}
        self._stored_version = version

    def _adopt(self, after: int, recorded: list[EventEnvelope]) -> None:
        """Take the event store's record of the stream after version ``after``.

        The store is the record of what happened: after a reset, the journey re-decides
        events that were already stored, perhaps differently (a command reapplied in
        another order among the deadlines). It folds what the store holds and decides
        again only the commands the record does not have.
        """
        if after > self._stored_version:
            self._stored(after)  # the batch was stored as decided; the record goes on
        base = self._stored_state
        assert base is not None and base.stream_version == after
        recorded_commands = {e.command_id for e in recorded if e.command_id}
        redo: list[Command] = []
        for version in sorted(self._decided_by):
            command = self._decided_by[version]
            if command.command_id not in recorded_commands and command not in redo:
                redo.append(command)
        self._timeline = [e for e in self._timeline if e.version <= after]
        state = base
        for envelope in recorded:
            before, state = state, evolve(state, envelope.event)
            self._timeline.append(entry(envelope.event, before, state))
            if envelope.command_id:
                self._seen.add(envelope.command_id, envelope.stream_version)
        self._state = state
        self._unstored, self._pending_states, self._decided_by = [], {}, {}
        self._queue_messages(recorded)
        self._stored_state = state
        self._stored_version = state.stream_version
        workflow.logger.warning(
            "adopted %d recorded events after version %d (%d commands decided again)",
            len(recorded),
            after,
            len(redo),
        )
        self._skips_through = min(self._skips_through, self._stored_version)
        for command in redo:
            self._apply(_signal_name(type(command)), command)

    def _queue_messages(self, stored: list[EventEnvelope]) -> None:
        """Queue the messages that stored events cause (issue 9), in stream order.

        With :data:`MESSAGE_WINDOWS_PATCH`, a message whose occasion has already passed
        is set aside for ``MessageSkipped`` (recorded by :meth:`_record_skipped`).
        """
        if not self._follow_ups:
            return
        told = {  # causes whose message's fate the record already has (an adopted record)
            e.event.cause_version
            for e in stored
            if isinstance(e.event, MessageNotSent | MessageSent) and self._windows
        }
        for envelope in stored:
            if message_kind(envelope.event) is None or envelope.stream_version in told:
                continue
            at_cause = self._pending_states.get(envelope.stream_version)
            reason = self._skip(envelope.event) if self._windows else None
            if reason is not None:
                self._to_skip.append(
                    (envelope.stream_version, envelope.event_id, envelope.event, at_cause, reason)
                )
                continue
            if self._windows:
                self._causes[envelope.stream_version] = (
                    envelope.event_id, envelope.event, at_cause
                )
            self._outgoing.append(envelope.stream_version)

    def _skip(self, cause: Event) -> str | None:
        """Why the message of ``cause`` would mean nothing now (None: send it)."""
        kind = message_kind(cause)
        assert kind is not None
        return skip_reason(kind, cause, self._journey, self._told_at())

    def _told_at(self) -> datetime:
        """When a message would reach its reader: the business time, or a past replayed.

        A journal imported after the fact plays on a held clock whose business time lies
        in the past: its messages are judged at the import's real instant
        (``JourneyInput.quiet_until``).
        """
        now = self._now()
        quiet = self._input.quiet_until
        if self._clock.held and quiet is not None and quiet > now:
            return quiet
        return now

    def _settled_at(self, version: int) -> int:
        """The version to store for ``version`` to be settled: with the skips it causes.

        Storing a deadline whose message's time has passed records ``MessageSkipped``
        at once (:meth:`_record_skipped`): what a caller waiting for ``version`` waits
        for too, so that the stream it reads next does not grow by itself.
        """
        return max(version, self._skips_through) if self._windows else version

    def _record_skipped(self) -> None:
        """Record ``MessageSkipped`` for the messages set aside by :meth:`_queue_messages`."""
        if not self._to_skip:
            return
        skipped, self._to_skip = self._to_skip, []
        self._catch_up()
        now = self._now()
        events: list[Event] = []
        for version, cause_id, cause, at_cause, reason in skipped:
            kind = message_kind(cause)
            assert kind is not None
            state = at_cause or self._journey
            to = recipient(kind, state)
            if to is None or (to == CONTACT and not state.firm.contact_email):
                continue  # nobody to tell: no adviser, no address
            events.append(
                MessageSkipped(
                    occurred_at=now,
                    recorded_at=now,
                    message_id=message_id(str(cause_id), to),
                    kind=kind.value,
                    recipient=to,
                    cause_version=version,
                    reason=reason,
                )
            )
        if events:
            self._record(events, None)
            self._skips_through = self._journey.stream_version

    async def _send_messages(self) -> None:
        """Send the queued messages one by one; record ``MessageSent`` for each sent.

        The activity gets the stream and the event's version only: it reads the
        journey and the addresses from PostgreSQL and sends once through the outbox.
        Only a message the SMTP server accepted is recorded as sent.
        """
        stream_id = workflow.info().workflow_id
        while True:
            await workflow.wait_condition(lambda: bool(self._outgoing))
            version = self._outgoing[0]
            cause = self._causes.pop(version, None)
            late = self._skip(cause[1]) if cause is not None else None
            if cause is not None and late is not None:
                # Its occasion passed while it waited (a worker down, a busy server).
                self._outgoing.pop(0)
                self._to_skip.append((version, *cause, late))
                self._record_skipped()
                continue
            result = await workflow.execute_activity(
                SEND_MESSAGE,
                SendMessageInput(
                    stream_id=stream_id,
                    stream_version=version,
                    business_now=self._told_at() if self._windows else None,
                ),
                result_type=SendMessageResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_SEND_RETRY,
                summary=f"send the message of event {version}",
            )
            self._outgoing.pop(0)
            if (
                result.recorded
                or result.message_id is None
                or result.message_id in self._messages_recorded
            ):
                continue
            if not (result.sent or (self._windows and (result.skipped or result.failed))):
                continue  # nobody to tell, no address, no server configured
            self._messages_recorded.add(result.message_id)
            self._catch_up()
            now = self._now()
            what: dict[str, Any] = {
                "occurred_at": now,
                "recorded_at": now,
                "message_id": result.message_id,
                "kind": result.kind or "",
                "recipient": result.recipient or "",
                "cause_version": version,
            }
            event: Event
            if result.sent:
                event = MessageSent(**what)
            elif result.skipped:
                event = MessageSkipped(**what, reason=result.note or "its time had passed")
            else:
                event = MessageFailed(**what, reason=result.note or "it cannot be sent")
            self._record([event], None)

    async def _storage_blocked(self, problem: str) -> None:
        """Show that the store refuses this journey's events; wait, then try again."""
        self._storage_problem = problem
        self._retry_storage = False
        workflow.logger.error("event store refused the journey's events: %s", problem)
        self._describe()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._retry_storage,
                timeout=STORAGE_RETRY_AFTER,
                timeout_summary="retry storing events",
            )
        self._storage_problem = None
        self._describe()

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._input.continue_as_new_after
            or self._journey.cycle != self._start_cycle
            or self._leaves_catch_up()
        )

    def _leaves_catch_up(self) -> bool:
        """Caught up on the catch-up task queue: time to serve staff on its own queue.

        Messages still to send go with it (``JourneyInput.outgoing``): a mail server
        down keeps no journey on the catch-up queue.
        """
        target = self._input.task_queue
        return (
            target is not None
            and target != workflow.info().task_queue
            and self._is_caught_up(next_deadline(self._journey))
        )

    def _task_queue(self) -> str | None:
        """The task queue of the next run: the journey's own once it has caught up."""
        target = self._input.task_queue
        if target is not None and self._is_caught_up(next_deadline(self._journey)):
            return target
        return None

    def _carried(self) -> JourneyInput:
        return JourneyInput(
            enrollment=self._input.enrollment,
            clock=self._clock,
            continue_as_new_after=self._input.continue_as_new_after,
            packed_state=pack_state(self._journey),
            unstored=self._unstored,
            stored_version=self._stored_version,
            recent_commands=self._seen.recent,
            seen_filter=self._seen.packed(),
            recent_updates=dict(list(self._updates.items())[-UPDATES_KEPT:]),
            refusals=self._refusals[-REFUSALS_KEPT:],
            timeline=self._timeline[-TIMELINE_KEPT:],
            outgoing=self._outgoing,
            task_queue=self._input.task_queue,
            quiet_until=self._input.quiet_until,
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
    async def correct_contract(self, command: CorrectContract) -> CommandResult:
        """Staff correct what a contract records (amount, counterpart, date, meetings)."""
        return await self._execute(command)

    @correct_contract.validator
    def _validate_correct_contract(self, command: CorrectContract) -> None:
        self._validate(command)

    @workflow.update
    async def void_contract(self, command: VoidContract) -> CommandResult:
        """Staff void a contract recorded by mistake."""
        return await self._execute(command)

    @void_contract.validator
    def _validate_void_contract(self, command: VoidContract) -> None:
        self._validate(command)

    @workflow.update
    async def correct_meeting_result(self, command: CorrectMeetingResult) -> CommandResult:
        """Staff correct the outcome recorded for a meeting."""
        return await self._execute(command)

    @correct_meeting_result.validator
    def _validate_correct_meeting_result(self, command: CorrectMeetingResult) -> None:
        self._validate(command)

    @workflow.update
    async def correct_visit_attendance(self, command: CorrectVisitAttendance) -> CommandResult:
        """Staff correct whether the firm attended a return visit."""
        return await self._execute(command)

    @correct_visit_attendance.validator
    def _validate_correct_visit_attendance(self, command: CorrectVisitAttendance) -> None:
        self._validate(command)

    @workflow.update
    async def complete_next_step(self, command: CompleteNextStep) -> CommandResult:
        """Staff mark a meeting's next step done."""
        return await self._execute(command)

    @complete_next_step.validator
    def _validate_complete_next_step(self, command: CompleteNextStep) -> None:
        self._validate(command)

    @workflow.update
    async def assign_adviser(self, command: AssignAdviser) -> CommandResult:
        """Staff give the firm to another adviser."""
        return await self._execute(command)

    @assign_adviser.validator
    def _validate_assign_adviser(self, command: AssignAdviser) -> None:
        self._validate(command)

    @workflow.update
    async def sync(self) -> CommandResult:
        """Return once every event recorded so far (timers' included) is stored."""
        self._catch_up()
        version = self._journey.stream_version
        await workflow.wait_condition(lambda: self._stored_version >= self._settled_at(version))
        return CommandResult(stream_version=self._stored_version)

    @workflow.update
    def adjust_clock(self, change: ClockChange) -> ProgrammeClock:
        """Run the business clock at another speed from now on (demos end at 1.0)."""
        self._clock = self._clock.rebased(workflow.now(), change.speed)
        self._woken = True
        return self._clock

    @workflow.update
    async def advance_clock(self, advance: ClockAdvance) -> CommandResult:
        """Move the held business clock on; return once what fell due is stored.

        A journal of past records plays through this: each record's day is reached
        first, so the deadlines between records fall due in their business-time order.
        """
        self._clock = self._clock.advanced_to(advance.to)
        self._catch_up()
        version = self._journey.stream_version
        await workflow.wait_condition(lambda: self._stored_version >= self._settled_at(version))
        return CommandResult(stream_version=version)

    @advance_clock.validator
    def _validate_advance_clock(self, advance: ClockAdvance) -> None:
        if not self._clock.held:
            raise ApplicationError(
                "the journey's clock is not held: it runs on its own", type="ClockNotHeld"
            )

    @workflow.update
    async def release_clock(self, release: ClockRelease) -> CommandResult:
        """Let the held business clock run at real speed; return once caught up."""
        if self._clock.held:
            self._clock = self._clock.running_from(workflow.now(), release.at)
        self._woken = True
        self._catch_up()
        version = self._journey.stream_version
        await workflow.wait_condition(lambda: self._stored_version >= version)
        return CommandResult(stream_version=version)

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

    @workflow.signal(name="correct_contract")
    def correct_contract_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``correct_contract``."""
        self._signal(CorrectContract, payloads)

    @workflow.signal(name="void_contract")
    def void_contract_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``void_contract``."""
        self._signal(VoidContract, payloads)

    @workflow.signal(name="correct_meeting_result")
    def correct_meeting_result_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``correct_meeting_result``."""
        self._signal(CorrectMeetingResult, payloads)

    @workflow.signal(name="correct_visit_attendance")
    def correct_visit_attendance_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``correct_visit_attendance``."""
        self._signal(CorrectVisitAttendance, payloads)

    @workflow.signal(name="complete_next_step")
    def complete_next_step_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``complete_next_step``."""
        self._signal(CompleteNextStep, payloads)

    @workflow.signal(name="assign_adviser")
    def assign_adviser_signal(self, *payloads: Any) -> None:
        """Raw-JSON form of ``assign_adviser``."""
        self._signal(AssignAdviser, payloads)

    @workflow.signal
    def retry_storage(self) -> None:
        """Try storing the journey's events again now (after the store was fixed)."""
        self._retry_storage = True

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Any other signal name: kept in the refusals list, never applied."""
        known = ", ".join(sorted(SIGNALS))
        self._refuse(name, None, "UnknownSignal", f"unknown signal {name!r} (known: {known})")

    # -------------------------------------------------------------------- queries

    @workflow.query
    def applied(self, command_id: str) -> bool:
        """Whether a command with this id is among the latest applied (also once ended).

        Exact for the latest ``RECENT_COMMANDS_KEPT`` commands; older ones are known to
        the event store (``EventStore.command_version``).
        """
        return self._seen.version(command_id) is not None

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
            storage_problem=self._storage_problem,
            messages_waiting=len(self._outgoing),
        )

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        """The journey's latest events, oldest first, in the domain's words.

        Each with its recorded time, author, stage before and after, and for
        corrections the value before and after (``domain.timeline``). The latest
        ``TIMELINE_KEPT`` only: ``corridor timeline`` reads the whole stream.
        """
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
        """Refuse the command (before anything is written) if it breaks a rule.

        A command that may have been applied already is let through: its handler
        answers "already recorded" from the journey's or the event store's record.
        """
        update = workflow.current_update_info()
        if update is not None and update.id in self._updates:
            return
        try:  # the text rule of input (validators run once, never on replay)
            type(command).model_validate(command.model_dump(), context=AT_INPUT)
        except ValidationError as error:
            metrics.command_refused(command, "InvalidPayload")
            raise ApplicationError(
                explain(error), type="InvalidPayload", non_retryable=True
            ) from None
        if command.command_id is not None and self._seen.may_have_seen(command.command_id):
            return
        if self._in_reset_task():
            raise ApplicationError(
                "the journey is being reset: send the command again",
                type=JOURNEY_JUST_RESET,
                non_retryable=True,
            )
        if self._may_be_behind():
            return  # reset: the handler reads the record before it refuses
        caught_up, _ = due_events(self._journey, self._now())
        try:
            decide(caught_up, command, self._now())
        except DomainError as error:
            metrics.command_refused(command, error.rule)
            raise ApplicationError(str(error), type=error.rule, non_retryable=True) from None

    async def _applied_version(self, command_id: str | None) -> int | None:
        """The version of the last event of an already applied command, else None.

        Recent commands are known exactly; an older one the filter may have seen is
        looked up in the event store, which records every command id.
        """
        if command_id is None:
            return None
        await workflow.wait_condition(lambda: command_id not in self._checking)
        version = self._seen.version(command_id)
        if version is not None or not self._seen.may_have_seen(command_id):
            return version
        self._checking.add(command_id)
        try:
            found = await workflow.execute_activity(
                FIND_COMMAND,
                FindCommandInput(stream_id=workflow.info().workflow_id, command_id=command_id),
                result_type=FindCommandResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_STORE_RETRY,
                summary=f"look up command {command_id}",
            )
        finally:
            self._checking.discard(command_id)
        stored: int | None = found.stream_version
        if stored is not None:
            self._seen.add(command_id, stored)
        return stored

    async def _already(self, version: int, update_id: str | None) -> CommandResult:
        """Answer a command applied before: once its events are stored, nothing new."""
        await workflow.wait_condition(lambda: self._stored_version >= version)
        self._remember_update(update_id, version)
        return CommandResult(duplicate=True, stream_version=version)

    def _remember_update(self, update_id: str | None, version: int) -> None:
        if update_id is None:
            return
        self._updates[update_id] = version
        while len(self._updates) > UPDATES_KEPT:
            self._updates.pop(next(iter(self._updates)))

    async def _execute(self, command: Command) -> CommandResult:
        """Apply a validated command; return once its events are stored.

        A command repeated (same update id, or same command id however long ago) gets
        "already recorded" and changes nothing; it never waits for an answer that is
        gone.
        """
        update = workflow.current_update_info()
        update_id = update.id if update is not None else None
        if update_id is not None and update_id in self._updates:
            return await self._already(self._updates[update_id], update_id)
        known = await self._applied_version(command.command_id)
        if known is not None:
            return await self._already(known, update_id)
        if command.by is None:
            command = command.model_copy(update={"by": UPDATE_AUTHOR})
        self._catch_up()
        first = self._journey.stream_version + 1
        try:
            events = self._decide(command)
        except DomainError as error:
            if not (self._may_be_behind() and await self._read_record_after_reset()):
                raise ApplicationError(str(error), type=error.rule, non_retryable=True) from None
            return await self._execute(command)  # decided again on the record
        self._record(events, command)
        version = self._journey.stream_version
        await workflow.wait_condition(lambda: self._stored_version >= version)
        self._remember_update(update_id, version)
        return CommandResult(
            duplicate=not events,  # the journey already records this fact
            stream_version=version,
            events=[e.summary for e in self._timeline if first <= e.version <= version],
        )

    def _signal(self, command_type: type[Command], payloads: tuple[Any, ...]) -> None:
        """Apply a command sent by signal, or keep it in the refusals list.

        Whatever arrives (no input, several inputs, any JSON), the journey never fails
        on a signal: a payload it cannot use is refused with the reason.
        """
        name = _signal_name(command_type)
        if len(payloads) != 1 or not isinstance(payloads[0], dict):
            got = f"{len(payloads)} inputs" if len(payloads) != 1 else _json_kind(payloads[0])
            self._refuse(
                name, None, "InvalidPayload", f"expects {_shape(command_type)}; got {got}"
            )
            return
        # Signals replay: what was accepted before the text rule is read as it was then.
        context = AT_INPUT if workflow.patched(TEXT_AT_INPUT_PATCH) else None
        try:
            command = TypeAdapter(command_type).validate_python(payloads[0], context=context)
        except ValidationError as error:
            self._refuse(name, None, "InvalidPayload", explain(error))
            return
        if command.by is None:
            command = command.model_copy(update={"by": SIGNAL_AUTHOR})
        command_id = command.command_id
        if command_id is not None and (
            command_id in self._checking or self._seen.may_have_seen(command_id)
        ):
            if self._seen.version(command_id) is None:
                self._lookups += 1
                task = asyncio.create_task(self._signal_after_lookup(name, command))
                self._lookup_tasks.add(task)
                task.add_done_callback(self._lookup_tasks.discard)
            return
        self._apply(name, command)

    async def _signal_after_lookup(self, name: str, command: Command) -> None:
        """Apply a signalled command the filter may have seen, unless the store has it."""
        try:
            if await self._applied_version(command.command_id) is None:
                self._apply(name, command)
        finally:
            self._lookups -= 1

    def _apply(self, name: str, command: Command) -> None:
        """Decide a command now and record its events, or keep it in the refusals."""
        self._catch_up()
        try:
            events = self._decide(command)
        except DomainError as error:
            if self._may_be_behind() and workflow.patched(READ_RECORD_AFTER_RESET_PATCH):
                self._lookups += 1
                task = asyncio.create_task(self._apply_after_reading(name, command, error))
                self._lookup_tasks.add(task)
                task.add_done_callback(self._lookup_tasks.discard)
                return
            self._refuse(name, command.command_id, error.rule, str(error))
            return
        self._record(events, command)

    async def _apply_after_reading(self, name: str, command: Command, error: DomainError) -> None:
        """Read the record of a reset journey, then apply a signalled command again."""
        try:
            if await self._read_record_after_reset():
                self._apply(name, command)
            else:
                self._refuse(name, command.command_id, error.rule, str(error))
        finally:
            self._lookups -= 1

    def _decide(self, command: Command) -> list[Event]:
        """``decide`` on the journey now, as the code that started the history decided.

        Raises:
            DomainError: The command breaks a rule of the journey.
        """
        if isinstance(command, RecordMeetingResult) and command.next_step_due_on is not None:
            meeting = self._journey.meetings.get(command.meeting_id)
            if (
                meeting is not None
                and meeting.outcome is command.outcome
                and command.meeting_id not in self._journey.next_steps
                and not workflow.patched(NEXT_STEP_AFTER_RESULT_PATCH)
            ):
                return []  # recorded before the patch: "already recorded", step dropped
        return decide(self._journey, command, self._now())

    def _refuse(self, command: str, command_id: str | None, rule: str, message: str) -> None:
        self._refusals.append(
            Refusal(
                at=self._now(), command=command, command_id=command_id, rule=rule, message=message
            )
        )
        self._refusals = self._refusals[-REFUSALS_KEPT:]
        metrics.command_refused(command, rule)
        workflow.logger.warning("signal refused: %s: %s", rule, message)
        self._describe()

    def _record(self, events: list[Event], command: Command | None) -> None:
        """Fold events into the state and queue them for the event store."""
        if not self._follow_ups:  # a journey begun before issue 9 keeps its record
            events = [e for e in events if not isinstance(e, NextStepScheduled)]
        stream_id = workflow.info().workflow_id
        command_id = command.command_id if command else None
        for event in events:
            before = self._state
            self._state = evolve(before, event)
            version = self._state.stream_version
            self._unstored.append(
                EventEnvelope(
                    event_id=event_id(stream_id, version, event),
                    stream_id=stream_id,
                    stream_version=version,
                    command_id=command_id,
                    event=event,
                )
            )
            self._pending_states[version] = self._state
            if command is not None and not isinstance(command, EnrollFirm):
                self._decided_by[version] = command
            self._timeline.append(entry(event, before, self._state))
        self._timeline = self._timeline[-TIMELINE_KEPT:]
        if command is not None:
            metrics.command_accepted(command)
        if command_id is not None and self._state is not None:
            self._seen.add(command_id, self._state.stream_version)
        self._describe_soon()

    def _describe_soon(self) -> None:
        """Describe the journey now, or at the end of this task's work (see run)."""
        if self._lazy:
            self._dirty = True
        else:
            self._describe()

    def _flush_description(self) -> None:
        if self._dirty:
            self._dirty = False
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
            *self._follow_up_lines(state),
            "",
            "Recent events:",
            "",
            *(f"- {e.line(state.tz)}" for e in self._timeline[-5:]),
        ]
        if self._storage_problem:
            lines += [
                "",
                f"**Storage blocked**: {self._storage_problem} (retried within the hour, "
                "or at once by the `retry_storage` signal)",
            ]
        if self._refusals:
            last = self._refusals[-1]
            lines += ["", f"Last refused signal: {last.command}: {last.message}"]
        workflow.set_current_details("\n".join(lines))
        self._index(state, deadline)

    def _is_caught_up(self, deadline: Deadline | None) -> bool:
        """Whether the journey has, once, recorded and stored what fell due up to today.

        Held clocks (a past journal being imported) are not caught up.
        """
        if not self._caught_up and self._state is not None:
            self._caught_up = (
                not self._clock.held
                and not self._unstored
                and self._stored_version == self._state.stream_version
                and (deadline is None or deadline.at > self._now())
            )
        return self._caught_up

    def _follow_up_lines(self, state: JourneyState) -> list[str]:
        """Details of issue 9 (adviser, next steps, messages), for journeys that follow it."""
        if not self._follow_ups:
            return []
        lines = [
            f"- Adviser: {state.adviser_id or 'none'}; messages sent: {state.messages_sent}"
            + (f", {len(self._outgoing)} waiting" if self._outgoing else "")
        ]
        for step in state.next_steps.values():
            status = "**overdue**" if step.status == "overdue" else step.status
            lines.append(
                f"- Next step of {step.meeting_id}: {step.next_step} (due {step.due_on}, {status})"
            )
        return lines

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
            storage_blocked=self._storage_problem is not None,
            catching_up=(not self._is_caught_up(deadline)) if self._index_catching_up else None,
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
    "TimelineEntry",
    "journey_workflow_id",
]
