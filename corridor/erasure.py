"""Erasure on request: ``corridor forget FIRM --reason ...`` (Québec's Law 25, the GDPR).

In this order, each step safe to run again after a failure:

1. **End the journey.** A running journey first stores every event it has decided
   (the ``sync`` update), then is terminated with a reason that names no one.
2. **Record the tombstone.** ``FirmErased`` (when, who, the request's reference) is
   appended to the journey's stream; its fold drops the contact and the notes from the
   read model.
3. **Destroy the firm's data key.** Every personal field sealed with it (the events,
   the read models) and every Temporal payload of the journey (its whole history:
   input, commands, queries, details, failures) can no longer be decrypted, wherever a
   copy of them lies; other processes stop using their cached copy of the key within
   ``activities.keys.KEY_CACHE_SECONDS``.

The journey's meetings and contracts still count in the bilan (its row marked
``[erased]``); its events still read and replay, their personal fields ``[erased]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.keys import KeyDestroyed
from activities.store import EventStore
from corridor import service
from domain.events import EventEnvelope, FirmErased
from workflows.journey import event_id, journey_workflow_id

TERMINATION_REASON = "personal data erased on request (corridor forget)"


@dataclass(frozen=True)
class Erasure:
    """What ``forget`` did.

    Attributes:
        stream_id: The journey's stream (and workflow) id.
        terminated: The journey was running and was ended now.
        tombstone_version: The stream version of ``FirmErased`` (recorded now or before).
        key_destroyed: The data key was destroyed now (False: it was already).
    """

    stream_id: str
    terminated: bool
    tombstone_version: int
    key_destroyed: bool


async def forget(
    client: Client,
    store: EventStore,
    programme_id: str,
    firm_id: str,
    *,
    reason: str,
    by: str,
    now: datetime | None = None,
) -> Erasure:
    """Erase a firm's personal data in one programme (see the module's steps).

    Args:
        client: Temporal client (with the codec: it must read the journey to sync it).
        store: The event store, with its keyring.
        programme_id: The programme.
        firm_id: The firm.
        reason: The request's reference; never the person's details.
        by: Who erases (recorded in the tombstone).
        now: The erasure's real instant (aware; default: now), its ``recorded_at``.

    Raises:
        service.Refused: The firm has no journey in this programme.
        ValueError: The store has no keyring.
    """
    if store.keyring is None:
        raise ValueError("erasure needs the event store's keyring")
    stream_id = journey_workflow_id(programme_id, firm_id)
    handle = client.get_workflow_handle(stream_id)
    terminated = False
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        description = None
    if description is None and await store.stream_version(stream_id) == 0:
        raise service.Refused(
            "UnknownJourney", f"firm {firm_id} has no journey in programme {programme_id}"
        )
    business_now: datetime | None = None
    if description is not None and description.status == WorkflowExecutionStatus.RUNNING:
        await service.sync(client, programme_id, firm_id)
        business_now = (await service.view(client, programme_id, firm_id)).business_now
        try:
            await handle.terminate(reason=TERMINATION_REASON)
            terminated = True
        except RPCError as error:  # ended meanwhile
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
    version = await _tombstone(store, stream_id, reason, by, business_now, now or datetime.now(UTC))
    destroyed = await store.keyring.destroy(stream_id, reason)
    return Erasure(stream_id, terminated, version, destroyed)


async def _tombstone(
    store: EventStore,
    stream_id: str,
    reason: str,
    by: str,
    business_now: datetime | None,
    now: datetime,
) -> int:
    """Append ``FirmErased`` unless the stream has it; its version.

    It occurs at the journey's business time (a running journey's clock, else its last
    event's: an ended journey's clock stopped there) and is recorded now.
    """
    try:
        stream = await store.read_stream(stream_id)
    except KeyDestroyed:
        stream = []
    for envelope in stream:
        if isinstance(envelope.event, FirmErased):
            return envelope.stream_version
    version = len(stream)
    occurred = business_now or (stream[-1].event.occurred_at if stream else now)
    event = FirmErased(occurred_at=occurred, recorded_at=now, recorded_by=by, reason=reason)
    await store.append(
        stream_id,
        version,
        [
            EventEnvelope(
                event_id=event_id(stream_id, version + 1, event),
                stream_id=stream_id,
                stream_version=version + 1,
                event=event,
            )
        ],
    )
    return version + 1
