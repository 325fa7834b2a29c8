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

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
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
from domain.errors import DomainError
from domain.journey import decide
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
"""Seconds after which a journey that has not answered is checked for a worker."""


async def _pollers(client: Client, handle: WorkflowHandle[Any, Any]) -> tuple[str, int]:
    """The journey's task queue and how many workers poll it now."""
    description = await handle.describe()
    queue = description.task_queue or ""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return queue, len(response.pollers)


async def answered(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    call: Awaitable[T],
    *,
    within: float = ANSWER_WITHIN,
) -> T:
    """Wait for a journey's answer; if none comes ``within`` seconds, check for a worker.

    A journey answers updates and queries only through a worker. When none polls its
    task queue, waiting would hang without a word: the call is abandoned instead.

    Raises:
        NoWorker: No worker polls the journey's task queue (the message says what to
            start).
    """
    task = asyncio.ensure_future(call)
    while True:
        done, _ = await asyncio.wait({task}, timeout=within)
        if done:
            return task.result()
        try:
            queue, pollers = await _pollers(client, handle)
        except RPCError:
            continue  # the call itself will tell what is wrong
        if pollers == 0:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise NoWorker(
                f"no worker is running for task queue {queue!r}, so the journey cannot "
                "answer: start `corridor dev`, or a worker (`python worker.py`) with "
                f"CORRIDOR_TASK_QUEUE={queue}"
            )


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
) -> Enrolment:
    """Start the firm's journey, unless it already has one (running or ended).

    Args:
        client: Temporal client.
        command: The enrolment (already checked with ``check_enrollment``).
        task_queue: Task queue of the workers.
        clock: Business clock of the journey (real time by default).
        continue_as_new_after: History length after which the journey continues as new.

    Returns:
        Whether the journey was started now.
    """
    workflow_id = journey_workflow_id(command.programme.id, command.firm.id)
    journey_input = JourneyInput(enrollment=command, clock=clock or ProgrammeClock())
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


def journey_handle(client: Client, programme_id: str, firm_id: str) -> WorkflowHandle[Any, Any]:
    """Handle on a journey's latest run (follows continue-as-new)."""
    return client.get_workflow_handle(journey_workflow_id(programme_id, firm_id))


async def send(client: Client, programme_id: str, firm_id: str, command: Command) -> CommandResult:
    """Send a staff command to a journey as an update and wait for its result.

    Args:
        client: Temporal client.
        programme_id: The programme.
        firm_id: The firm whose journey receives the command.
        command: One of the staff commands.

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
                return await _on_ended_journey(handle, command, refusal)
            if refusal.rule != "Unavailable" or attempts.over():
                raise refusal from None
            # The run is continuing as new, or busy: the next run, or a moment, lets it in.
            await attempts.pause()


async def _on_ended_journey(
    handle: WorkflowHandle[Any, Any], command: Command, refusal: Refused
) -> CommandResult:
    """Answer a command sent to an ended journey.

    "Already recorded" if it was applied before the journey ended (a file sent again),
    otherwise refused with why the journey ended.
    """
    try:
        journey = await handle.query(FirmJourney.state)
        applied = command.command_id is not None and await handle.query(
            FirmJourney.applied, command.command_id
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
        return await answered(client, handle, handle.query(FirmJourney.state))
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

    return await _unless_ended(handle, programme_id, firm_id, update)


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
        return await handle.execute_update(FirmJourney.adjust_clock, change)

    return await _unless_ended(handle, programme_id, firm_id, update)


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

    return await _unless_ended(handle, programme_id, firm_id, update)


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

    return await _unless_ended(handle, programme_id, firm_id, update)


async def _unless_ended(
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
                    return Ended(await _stored_version(handle))
                if refusal.rule != "Unavailable":
                    raise refusal from None
            last = error.message
        await attempts.pause()
    raise Unreachable(f"cannot reach Temporal for the journey of {firm_id}: {last}")


async def _stored_version(handle: WorkflowHandle[Any, Any]) -> int | None:
    try:
        journey: JourneyView = await handle.query(FirmJourney.state)
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
