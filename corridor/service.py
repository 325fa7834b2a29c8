"""Client-side operations: enrolling firms and sending staff commands to journeys.

The CLI and the demo go through these functions; they turn Temporal's errors into
``Refused`` with the domain's own message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio.api.enums.v1 import PendingWorkflowTaskState, TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.calendar import ProgrammeClock
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
from domain.deadlines import next_deadline
from domain.errors import DomainError
from domain.journey import decide
from domain.state import JourneyState, evolve
from workflows import search
from workflows.journey import (
    JOURNEY_JUST_RESET,
    ClockAdvance,
    ClockChange,
    ClockRelease,
    CommandResult,
    FirmJourney,
    JourneyInput,
    JourneyView,
    journey_workflow_id,
)

T = TypeVar("T")

PATIENCE = 30.0
"""Seconds a command is sent again while its journey cannot take it yet (it continues
as new, is being reset, or has as many updates in flight as the server allows), before
it is refused as unavailable; attempts are 0.1 s apart at first, then up to 1 s."""


REACH_PATIENCE = 5.5
"""Seconds an update that any running journey accepts (``sync``...) is sent again while
the server does not answer, before Temporal is said to be unreachable."""


class _Attempts:
    """Attempts at an update for ``seconds``: 0.1 s apart at first, then up to 1 s."""

    def __init__(self, seconds: float = PATIENCE) -> None:
        self._until = time.monotonic() + seconds
        self._made = 0

    def over(self) -> bool:
        return time.monotonic() >= self._until

    async def pause(self) -> None:
        self._made += 1
        await asyncio.sleep(min(0.1 * self._made, 1.0))

_RUN_CLOSED_UNDER_UPDATE = "AcceptedUpdateCompletedWorkflow"
"""Temporal's failure type when the run that accepted an update closed before answering."""

_UNREACHABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
"""RPC statuses that say the server, not the journey, did not answer."""


class Refused(Exception):
    """A command was refused; nothing was changed.

    Attributes:
        rule: The broken rule's error type (e.g. ``MeetingRuleBroken``), or a Temporal
            condition such as ``UnknownJourney``.
        message: The explanation.
    """

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message
        super().__init__(f"{rule}: {message}")


class Unreachable(ConnectionError):
    """Temporal cannot be reached (or does not answer): nothing is known of the journey."""


class NoWorker(Unreachable):
    """No worker polls the journey's task queue: nothing can answer a command."""


ANSWER_WITHIN = 10.0
"""Seconds within which a command that no worker can answer gives up (see ``answered``)."""

CHECK_EVERY = 1.0
"""Seconds between two looks at whether a worker takes the journey's tasks, while a call
waits for its answer."""

POLL_FRESH = 75.0
"""Seconds since its last poll after which a worker is taken for gone. A live worker polls
its task queue again at least every minute (Temporal's long poll), while the server goes
on listing a poller it has not heard from for five minutes: counting every listed poller
kept a command waiting up to five minutes after its worker was killed."""

STICKY_WAIT = 11.0
"""Seconds a workflow task may wait for the worker that ran the journey last (on that
worker's own queue: 10 s, the SDK's sticky schedule-to-start timeout) before it goes to
the journey's task queue, where any worker takes it."""

TAKEN_WITHIN = 3.0
"""Seconds within which a live worker takes a task waiting on its task queue: one waiting
for a task takes it at once, a busy one polls again as soon as a slot is free."""


class _WorkerWatch:
    """Whether any worker takes a journey's tasks while a call waits for its answer.

    Three signs that none does, each from what the server says (its poller list and the
    journey's pending workflow task), whatever the connection settings:

    - no poller of the journey's task queue has polled within ``POLL_FRESH`` seconds;
    - the journey's workflow task waits and no worker has polled since it was scheduled:
      for ``TAKEN_WITHIN`` seconds once it is known to be where a live worker would take
      it at once (scheduled again after a worker's own, sticky, queue gave it up, or
      after a worker that started it timed out; or only one worker polls, whose own
      sticky queue it can only be on), ``STICKY_WAIT`` seconds otherwise (it may be on a
      dead worker's sticky queue while another worker lives: that queue gives it up
      after 10 s);
    - for a query (no workflow task): no worker has polled for ``STICKY_WAIT`` seconds
      while the query waits (a worker waiting for tasks would have answered it, and
      polled again).
    """

    def __init__(self, client: Client, handle: WorkflowHandle[Any, Any], *, query: bool) -> None:
        self._client = client
        self._handle = handle
        self._query = query
        self.queue = ""
        self._task: tuple[datetime, float, bool] | None = None  # scheduled, first seen, moved
        self._ran = False  # seen started by a worker
        self._last_poll: tuple[datetime | None, float] | None = None  # latest poll, seen

    async def gone(self) -> bool:
        """Look once: True when no worker takes the journey's tasks.

        Raises:
            RPCError: The server did not answer the question.
        """
        description = await self._handle.describe()
        self.queue = description.task_queue or ""
        response = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(name=self.queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        polls = [
            poller.last_access_time.ToDatetime(tzinfo=UTC)
            for poller in response.pollers
            if poller.HasField("last_access_time")
        ]
        now, seen_at = datetime.now(UTC), time.monotonic()
        fresh = [poll for poll in polls if (now - poll).total_seconds() < POLL_FRESH]
        if not fresh:
            return True
        latest = max(fresh)
        if self._query:
            if self._last_poll is None or self._last_poll[0] != latest:
                self._last_poll = (latest, seen_at)
                return False
            return seen_at - self._last_poll[1] >= STICKY_WAIT
        pending = description.raw_description.pending_workflow_task
        if pending.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED:
            self._task, self._ran = None, True  # a worker runs it (or ran it, and died)
            return False
        if not pending.HasField("scheduled_time"):
            self._task = None  # nothing to run: the journey waits for something else
            return False
        scheduled = pending.scheduled_time.ToDatetime(tzinfo=UTC)
        if self._task is None or self._task[0] != scheduled:
            # Scheduled again after we saw it elsewhere (a sticky queue that gave it up,
            # a worker that timed out on it): it is on the journey's task queue now.
            self._task = (scheduled, seen_at, self._task is not None or self._ran)
            return False
        if len(fresh) == 1:
            # One worker polls: a sticky queue holding the task can only be its own, which
            # it would have taken at once, were it alive.
            self._task = (*self._task[:2], True)
        if latest >= scheduled:
            return False  # a worker polled since: it is alive, and busy
        waited = seen_at - self._task[1]
        return waited >= (TAKEN_WITHIN if self._task[2] else STICKY_WAIT)


def _no_worker(queue: str) -> str:
    """What to say when no worker takes the tasks of a journey on ``queue``.

    A journey catching up runs on its programme's catch-up queue, which the workers of
    the programme's queue also poll: the queue to start a worker for is that one.
    """
    base = queue.removesuffix("-catch-up")
    served = base if base != queue and catch_up_task_queue(base) == queue else queue
    where = f" (the journey catches up on {queue!r})" if served != queue else ""
    return (
        f"no worker is running for task queue {served!r}{where}, so the journey cannot "
        "answer: start `corridor dev`, or a worker (`python worker.py`) with "
        f"CORRIDOR_TASK_QUEUE={served}"
    )


async def answered(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    call: Awaitable[T],
    *,
    query: bool = False,
    waiting: Callable[[str], None] | None = None,
) -> T:
    """Wait for a journey's answer, as long as a worker takes the journey's tasks.

    A journey answers updates and queries only through a worker. When none takes its
    tasks (none polls its task queue, or the one that did is gone), waiting would hang
    without a word: the call is abandoned instead, within about ``ANSWER_WITHIN``
    seconds (see ``_WorkerWatch``). The call is also abandoned, never left running, when
    the caller is cancelled (Ctrl-C).

    Args:
        client: Temporal client.
        handle: The journey.
        call: The update or query, not yet awaited.
        query: The call is a query (no workflow task is scheduled for it).
        waiting: Told once when, ``NOTICE_AFTER`` seconds on, the journey is still on
            its catch-up task queue (the answer waits for its catch-up).

    Raises:
        NoWorker: No worker takes the journey's tasks (the message says what to start).
    """
    task = asyncio.ensure_future(call)
    watch = _WorkerWatch(client, handle, query=query)
    began = time.monotonic()
    told = waiting is None
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=CHECK_EVERY)
            if done:
                return task.result()
            try:
                gone = await watch.gone()
            except RPCError:
                continue  # the call itself will tell what is wrong
            if gone:
                raise NoWorker(_no_worker(watch.queue))
            if (
                waiting is not None
                and not told
                and time.monotonic() - began > NOTICE_AFTER
                and watch.queue.endswith(CATCH_UP_SUFFIX)
            ):
                told = True
                waiting(
                    f"{handle.id} is still catching up (enrolled after the fact: it "
                    f"records what fell due up to today, on {watch.queue}); the command "
                    "waits for it and is recorded once it has caught up. Ctrl-C stops "
                    "waiting: sending the same command again later is safe."
                )
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@dataclass(frozen=True)
class Ended:
    """The journey has ended: nothing more will be stored.

    Attributes:
        stored_version: The last version its final run stored, or None when its state
            could not be queried.
    """

    stored_version: int | None


@dataclass(frozen=True)
class Enrolment:
    """Result of enrolling one firm: started now, or already enrolled before."""

    firm_id: str
    workflow_id: str
    started: bool


_UPDATES: dict[type[Command], str] = {
    RequestMeeting: "request_meeting",
    ArrangeMeeting: "arrange_meeting",
    RecordMeetingResult: "record_meeting_result",
    SignContract: "sign_contract",
    RecordVisitAttendance: "record_visit_attendance",
    DecideEvaluation: "decide_evaluation",
    Withdraw: "withdraw",
    CorrectContract: "correct_contract",
    VoidContract: "void_contract",
    CorrectMeetingResult: "correct_meeting_result",
    CorrectVisitAttendance: "correct_visit_attendance",
    CompleteNextStep: "complete_next_step",
    AssignAdviser: "assign_adviser",
}
"""The update of ``FirmJourney`` that takes each staff command (also its signal's name)."""


def check_enrollment(command: EnrollFirm, now: datetime | None = None) -> None:
    """Apply the enrolment rules before starting anything.

    Args:
        command: The enrolment.
        now: Business instant (aware); defaults to the real time.

    Raises:
        Refused: The enrolment breaks a rule.
    """
    try:
        decide(None, command, now or datetime.now(UTC))
    except DomainError as error:
        raise Refused(error.rule, str(error)) from None


async def enroll(
    client: Client,
    command: EnrollFirm,
    *,
    task_queue: str,
    clock: ProgrammeClock | None = None,
    continue_as_new_after: int | None = None,
    quiet_until: datetime | None = None,
) -> Enrolment:
    """Start the firm's journey, unless it already has one (running or ended).

    Args:
        client: Temporal client.
        command: The enrolment (already checked with ``check_enrollment``).
        task_queue: Task queue of the workers.
        clock: Business clock of the journey (real time by default).
        continue_as_new_after: History length after which the journey continues as new.
        quiet_until: For a past journal imported on a held clock: the real instant
            (aware) at which its messages are judged (``JourneyInput.quiet_until``), so
            that nobody is told of the past.

    Returns:
        Whether the journey was started now.
    """
    workflow_id = journey_workflow_id(command.programme.id, command.firm.id)
    journey_input = JourneyInput(
        enrollment=command, clock=clock or ProgrammeClock(), quiet_until=quiet_until
    )
    if catches_up(command, journey_input.clock):
        journey_input.task_queue = task_queue
        task_queue = catch_up_task_queue(task_queue)
    if continue_as_new_after is not None:
        journey_input.continue_as_new_after = continue_as_new_after
    try:
        await client.start_workflow(
            FirmJourney.run,
            journey_input,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"{command.firm.name}: journey in {command.programme.name}",
            static_details=(
                f"**{command.firm.name}** ({command.firm.id}), introduced at mission "
                f"`{command.mission_id}` on {command.occurred_on} — programme "
                f"{command.programme.name} (`{command.programme.id}`), organised by "
                f"{command.programme.organiser}."
            ),
            search_attributes=search.at_start(
                command.programme.id, command.firm.id, command.mission_id
            ),
            memo={"firm_name": command.firm.name, "programme": command.programme.id},
        )
    except WorkflowAlreadyStartedError:
        return Enrolment(command.firm.id, workflow_id, started=False)
    return Enrolment(command.firm.id, workflow_id, started=True)


CATCH_UP_SUFFIX = "-catch-up"
"""What a journey's own task queue is suffixed with to name its catch-up task queue."""
NOTICE_AFTER = 5.0
"""Seconds a command waits for a journey still catching up before the caller is told."""


def catch_up_task_queue(task_queue: str) -> str:
    """The task queue of the journeys of ``task_queue`` that are catching up.

    Its worker runs few tasks at a time (``CORRIDOR_CATCH_UP_CONCURRENCY``), so that
    journeys enrolled after the fact never stand in front of staff commands
    (docs/architecture.md, "Staff first").
    """
    return f"{task_queue}{CATCH_UP_SUFFIX}"


@dataclass(frozen=True)
class CatchUpBacklog:
    """What waits on a catch-up task queue (Temporal's approximate task queue stats).

    Attributes:
        task_queue: The catch-up task queue.
        tasks: Workflow tasks waiting for its worker.
        oldest_seconds: How long the oldest has waited, in seconds (0 when none waits).
    """

    task_queue: str
    tasks: int
    oldest_seconds: float


async def catch_up_backlog(client: Client, task_queue: str) -> CatchUpBacklog:
    """How long the backlog of journeys catching up on ``task_queue``'s side is.

    Args:
        client: Temporal client.
        task_queue: The journeys' own task queue (its catch-up queue is described).

    Raises:
        RPCError: Temporal cannot describe the task queue.
    """
    queue = catch_up_task_queue(task_queue)
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            report_stats=True,
        )
    )
    stats = described.stats
    return CatchUpBacklog(
        task_queue=queue,
        tasks=stats.approximate_backlog_count,
        oldest_seconds=stats.approximate_backlog_age.ToTimedelta().total_seconds(),
    )


def catches_up(command: EnrollFirm, clock: ProgrammeClock) -> bool:
    """Whether a journey enrolled now has deadlines that fell due before its enrolment.

    Only real-time journeys catch up: a held, compressed or skipped clock plays the
    journey at its own pace from its introduction.

    Args:
        command: The enrolment.
        clock: The journey's business clock.
    """
    if not clock.is_real_time:
        return False
    now = datetime.now(UTC)
    try:
        events = decide(None, command, now)
    except DomainError:
        return False  # the journey refuses it and ends at once: nothing to catch up
    state: JourneyState | None = None
    for event in events:
        state = evolve(state, event)
    deadline = next_deadline(state) if state is not None else None
    return deadline is not None and deadline.at <= now


def journey_handle(client: Client, programme_id: str, firm_id: str) -> WorkflowHandle[Any, Any]:
    """Handle on a journey's latest run (follows continue-as-new)."""
    return client.get_workflow_handle(journey_workflow_id(programme_id, firm_id))


async def send(
    client: Client,
    programme_id: str,
    firm_id: str,
    command: Command,
    *,
    waiting: Callable[[str], None] | None = None,
) -> CommandResult:
    """Send a staff command to a journey as an update and wait for its result.

    Args:
        client: Temporal client.
        programme_id: The programme.
        firm_id: The firm whose journey receives the command.
        command: One of the staff commands.
        waiting: Told once, in plain words, when the journey is still catching up on
            its catch-up task queue after ``NOTICE_AFTER`` seconds (the command waits
            for it: it is taken once the journey has caught up).

    Returns:
        The journey's answer (events recorded, or ``duplicate`` for a known command id).

    Raises:
        Refused: The journey refused the command (its rule and message), the firm has
            no journey, the journey has ended, or it could not take the command for
            ``PATIENCE`` seconds (rule ``Unavailable``; sent again until then, as one
            update: never recorded twice).
    """
    handle = journey_handle(client, programme_id, firm_id)
    update = _UPDATES[type(command)]
    # Not the command id as update id: Temporal would answer a repeated update id with
    # the first answer, hiding that the journey saw a duplicate. One id for every
    # attempt, so a retry after "workflow is closing" is recognised by the next run.
    update_id = str(uuid.uuid4())
    attempts = _Attempts()
    while True:
        try:
            result: CommandResult = await answered(
                client,
                handle,
                handle.execute_update(update, command, id=update_id, result_type=CommandResult),
                waiting=waiting,
            )
            return result
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if (
                isinstance(cause, ApplicationError)
                and cause.type in (_RUN_CLOSED_UNDER_UPDATE, JOURNEY_JUST_RESET)
                and not attempts.over()
            ):
                # The run that accepted it was closed under it (a reset, or the journey
                # ended): the next run, or the ended journey's answer, tells. Or it came
                # as the journey was being reset: the next workflow task takes it.
                await attempts.pause()
                continue
            if isinstance(cause, ApplicationError):
                raise Refused(cause.type or "Refused", cause.message) from None
            raise Refused("Refused", str(cause)) from None
        except RPCError as error:
            refusal = await _journey_unavailable(handle, firm_id, programme_id, error)
            if refusal.rule == "JourneyOver":
                return await _on_ended_journey(client, handle, command, refusal)
            if refusal.rule != "Unavailable" or attempts.over():
                raise refusal from None
            # The run is continuing as new, or busy: the next run, or a moment, lets it in.
            await attempts.pause()


async def _on_ended_journey(
    client: Client, handle: WorkflowHandle[Any, Any], command: Command, refusal: Refused
) -> CommandResult:
    """Answer a command sent to an ended journey.

    "Already recorded" if it was applied before the journey ended (a file sent again),
    otherwise refused with why the journey ended.
    """
    try:
        journey = await answered(client, handle, handle.query(FirmJourney.state), query=True)
        applied = command.command_id is not None and await answered(
            client, handle, handle.query(FirmJourney.applied, command.command_id), query=True
        )
    except (RPCError, WorkflowQueryFailedError):
        raise refusal from None
    if applied or _records_already(journey, command):
        return CommandResult(duplicate=True, stream_version=journey.stored_version)
    state = journey.state
    why = (
        f"the firm withdrew on {state.withdrawn_on}"
        if state.withdrawn_on
        else f"the journey was closed on {state.closed_on}"
    )
    raise Refused("JourneyOver", f"{state.firm.id}: refused, {why}") from None


def _records_already(journey: JourneyView, command: Command) -> bool:
    """Whether an ended journey's final state already records the command's fact.

    The same rules as a running journey's (``decide`` answers no event): a file
    re-exported with an edited note is "already recorded" after the journey ended too.
    """
    try:
        return decide(journey.state, command, journey.business_now) == []
    except DomainError:
        return False


async def _journey_unavailable(
    handle: WorkflowHandle[Any, Any], firm_id: str, programme_id: str, error: RPCError
) -> Refused:
    if error.status == RPCStatusCode.NOT_FOUND:
        try:
            description = await handle.describe()
        except RPCError:
            return Refused(
                "UnknownJourney", f"firm {firm_id} has no journey in programme {programme_id}"
            )
        if description.status != WorkflowExecutionStatus.RUNNING:
            status = description.status.name.lower() if description.status else "ended"
            return Refused("JourneyOver", f"the journey of {firm_id} has ended ({status})")
    return Refused("Unavailable", f"journey of {firm_id}: {error.message}")


async def journeys_catching_up(client: Client, programme_id: str) -> tuple[int, int]:
    """How many running journeys of a programme are still catching up, of how many.

    From Temporal's visibility (``CorridorCatchingUp``, set from enrolment until the
    journey has stored what fell due up to its today), which follows the journeys a
    moment later.

    Returns:
        The journeys catching up, and every journey of the programme (one per firm,
        running or ended).
    """
    programme = f"{search.PROGRAMME.name} = '{programme_id}'"
    behind = await client.count_workflows(
        f"{programme} AND {search.CATCHING_UP.name} = true AND ExecutionStatus = 'Running'"
    )
    known = await client.count_workflows(f"{programme} AND ExecutionStatus != 'ContinuedAsNew'")
    return behind.count, known.count


async def view(client: Client, programme_id: str, firm_id: str) -> JourneyView:
    """Query a journey's state (works on running and ended journeys).

    Raises:
        Refused: The firm has no journey in this programme.
    """
    handle = journey_handle(client, programme_id, firm_id)
    try:
        return await answered(client, handle, handle.query(FirmJourney.state), query=True)
    except RPCError as error:
        raise await _journey_unavailable(handle, firm_id, programme_id, error) from None


async def sync(client: Client, programme_id: str, firm_id: str) -> int | Ended:
    """Wait until every event of a journey is stored.

    Args:
        client: Temporal client.
        programme_id: The programme.
        firm_id: The firm.

    Returns:
        The stored version of a running journey, or :class:`Ended` for an ended one.

    Raises:
        Refused: The firm has no journey in this programme.
        Unreachable: Temporal cannot be reached.
    """
    handle = journey_handle(client, programme_id, firm_id)

    async def update() -> int:
        result = await answered(client, handle, handle.execute_update(FirmJourney.sync))
        return result.stream_version

    return await _unless_ended(client, handle, programme_id, firm_id, update)


async def adjust_clock(
    client: Client, programme_id: str, firm_id: str, change: ClockChange
) -> ProgrammeClock | Ended:
    """Run a journey's business clock at another speed from now on.

    Args:
        client: Temporal client.
        programme_id: The programme.
        firm_id: The firm.
        change: The new speed.

    Returns:
        The journey's clock now, or :class:`Ended` if the journey has ended (an ended
        journey has no clock left to set).

    Raises:
        Refused: The firm has no journey, or the journey refused the change.
        Unreachable: Temporal cannot be reached.
    """
    handle = journey_handle(client, programme_id, firm_id)

    async def update() -> ProgrammeClock:
        return await answered(
            client, handle, handle.execute_update(FirmJourney.adjust_clock, change)
        )

    return await _unless_ended(client, handle, programme_id, firm_id, update)


async def advance_clock(
    client: Client, programme_id: str, firm_id: str, to: datetime
) -> int | Ended:
    """Move a held journey's business clock on to ``to`` (aware), never backwards.

    Returns once what fell due up to ``to`` is stored.

    Returns:
        The stored version, or :class:`Ended` if the journey has ended.

    Raises:
        Refused: The firm has no journey, or its clock is not held.
        Unreachable: Temporal cannot be reached.
    """
    handle = journey_handle(client, programme_id, firm_id)

    async def update() -> int:
        result = await answered(
            client, handle, handle.execute_update(FirmJourney.advance_clock, ClockAdvance(to=to))
        )
        return result.stream_version

    return await _unless_ended(client, handle, programme_id, firm_id, update)


async def release_clock(
    client: Client, programme_id: str, firm_id: str, at: datetime | None = None
) -> int | Ended:
    """Let a journey's held clock run at real speed, reading ``at`` now (None: real time).

    Returns once the journey has caught up and stored what fell due.

    Returns:
        The stored version, or :class:`Ended` if the journey has ended.

    Raises:
        Refused: The firm has no journey.
        Unreachable: Temporal cannot be reached.
    """
    handle = journey_handle(client, programme_id, firm_id)

    async def update() -> int:
        result = await answered(
            client, handle, handle.execute_update(FirmJourney.release_clock, ClockRelease(at=at))
        )
        return result.stream_version

    return await _unless_ended(client, handle, programme_id, firm_id, update)


async def _unless_ended(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    programme_id: str,
    firm_id: str,
    update: Callable[[], Awaitable[T]],
) -> T | Ended:
    """Run an update that any running journey accepts; :class:`Ended` if it has ended.

    Retried while the journey continues as new or the server does not answer; then
    :class:`Unreachable`.
    """
    last = ""
    attempts = _Attempts(REACH_PATIENCE)
    while not attempts.over():
        try:
            return await update()
        except WorkflowUpdateFailedError as error:
            raise Refused("Refused", str(error.cause)) from None
        except RPCError as error:
            if error.status not in _UNREACHABLE:
                refusal = await _journey_unavailable(handle, firm_id, programme_id, error)
                if refusal.rule == "JourneyOver":
                    return Ended(await _stored_version(client, handle))
                if refusal.rule != "Unavailable":
                    raise refusal from None
            last = error.message
        await attempts.pause()
    raise Unreachable(f"cannot reach Temporal for the journey of {firm_id}: {last}")


async def _stored_version(client: Client, handle: WorkflowHandle[Any, Any]) -> int | None:
    try:
        journey: JourneyView = await answered(
            client, handle, handle.query(FirmJourney.state), query=True
        )
    except (RPCError, WorkflowQueryFailedError):
        return None
    return journey.stored_version


async def messages_settled(
    client: Client, programme_id: str, firm_id: str, *, within: float = 120.0
) -> JourneyView:
    """Wait until a journey has stored its events and sent (or given up) its messages.

    Messages wait while the SMTP server cannot be reached: this returns once none is
    waiting, or raises after ``within`` seconds.

    Raises:
        Refused: The firm has no journey in this programme.
        TimeoutError: Messages still wait after ``within`` seconds.
    """
    await sync(client, programme_id, firm_id)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        journey = await view(client, programme_id, firm_id)
        if journey.messages_waiting == 0 and journey.unstored == 0:
            return journey
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(
                f"{firm_id}: {journey.messages_waiting} message(s) still waiting to be sent"
            )
        await asyncio.sleep(0.2)
