"""What a command connects to: Temporal and the event store, found as the user set them.

A running ``corridor dev`` is found through its stack file; the environment
(``TEMPORAL_ADDRESS``, ``CORRIDOR_DSN``, ...) names a real cluster. Every failure to
reach a server is a :class:`~corridor.errors.Failure` with exit code 3.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.keys import Keyring, KeyringError
from activities.store import EventStore
from corridor.codec import keyring_of
from corridor.errors import Failure
from corridor.imports import load_programme
from corridor.runtime import temporal_address
from corridor.settings import Settings, load_settings
from corridor.stack import StackInfo, read_stack_file
from corridor.temporal import (
    SearchAttributesMissing,
    connect,
    open_keyring,
    require_search_attributes,
)
from workflows import search
from workflows.journey import FirmJourney, journey_workflow_id


@dataclass
class Connections:
    """What a command connects to.

    Attributes:
        client: The Temporal client.
        dsn: The event store's DSN, if one is known.
        stack: The running ``corridor dev`` stack, if any.
    """

    client: Client
    dsn: str | None
    stack: StackInfo | None


@contextlib.asynccontextmanager
async def connected(
    settings: Settings, *, search_attributes: bool = True, encrypted: bool = True
) -> AsyncIterator[Connections]:
    """Connect to Temporal (the running stack's, or the environment's).

    The client encrypts every payload (``corridor.codec``) with the data keys of the
    event store's database, unwrapped with the master key (``CORRIDOR_MASTER_KEY`` or
    the key file).

    Args:
        settings: Corridor's settings.
        search_attributes: Check that the namespace has Corridor's search attributes
            (every command but ``corridor setup``, which adds them).
        encrypted: Connect with the codec (every command but ``corridor setup``, which
            sends no payload).

    Raises:
        Failure: Temporal cannot be reached, or lacks the search attributes (exit 3);
            no database or no master key to encrypt with (exit 3 and 2).
    """
    stack = read_stack_file(settings.data_dir)
    address = temporal_address(settings, stack)  # the worker's own default (runtime)
    dsn = settings.dsn or (stack.dsn if stack else None)
    keyring: Keyring | None = None
    if encrypted:
        if dsn is None:
            where = settings.data_dir.resolve()
            raise Failure(
                f"no PostgreSQL (it holds the data keys): no `corridor dev` running from "
                f"{where}; start it, or set CORRIDOR_DSN",
                3,
            )
        try:
            keyring = open_keyring(settings, dsn)
        except KeyringError as error:
            raise Failure(str(error), 2) from None
    try:
        yield await _connected(address, dsn, stack, keyring, search_attributes)
    finally:
        if keyring is not None:
            await keyring.aclose()


async def _connected(
    address: str,
    dsn: str | None,
    stack: StackInfo | None,
    keyring: Keyring | None,
    search_attributes: bool,
) -> Connections:
    try:
        client = await connect(address, keyring=keyring)
    except RuntimeError as error:
        detail = str(error).split("\n")[0][:160]
        raise Failure(
            f"cannot reach Temporal at {os.environ.get('TEMPORAL_ADDRESS', address)}: start "
            f"`corridor dev` in another terminal, or set TEMPORAL_ADDRESS ({detail})",
            3,
        ) from None
    if search_attributes:
        try:
            await require_search_attributes(client)
        except SearchAttributesMissing as error:
            raise Failure(str(error), 3) from None
    return Connections(client, dsn, stack)


@contextlib.asynccontextmanager
async def open_store(connections: Connections) -> AsyncIterator[EventStore]:
    """Open the event store.

    Raises:
        Failure: No DSN is known, or PostgreSQL cannot be reached (exit 3).
    """
    if connections.dsn is None:
        where = load_settings().data_dir.resolve()
        raise Failure(
            f"no PostgreSQL: no `corridor dev` running from {where}; start it, or set "
            "CORRIDOR_DSN (and CORRIDOR_DATA_DIR when working from another folder)",
            3,
        )
    try:
        opening = EventStore.connect(
            connections.dsn, keyring=keyring_of(connections.client.data_converter)
        )
        store = await opening.__aenter__()
    except OSError as error:
        raise Failure(f"cannot reach PostgreSQL ({error})", 3) from None
    try:
        yield store
    finally:
        await opening.__aexit__(None, None, None)


async def programme_id_of(
    connections: Connections, given: str | None, firm: str | None = None
) -> str:
    """The programme named by id or by its TOML file, else the only one that fits.

    Without ``--programme``: the only programme in which ``firm`` has a journey, however
    many programmes there are; without a firm, the only programme there is.

    Raises:
        Failure: ``firm`` has no journey in any programme (exit 1, naming the
            programmes looked in); several programmes fit and none was chosen (exit 2,
            listing them); no programme has journeys yet (exit 1).
    """
    if given and given.endswith(".toml"):
        return load_programme(Path(given)).id
    if given:
        return given
    if firm is not None:
        found, looked_in = await programmes_of_firm(connections, firm)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise Failure(
                f"{firm} has journeys in several programmes ({', '.join(found)}): "
                "choose one with --programme",
                2,
            )
        raise Failure(f"no journey for {firm} ({_looked_in(looked_in)})", 1)
    programmes = await programme_ids(connections)
    if len(programmes) == 1:
        return programmes[0]
    if not programmes:
        raise Failure("no programme has journeys yet: enrol a roster first", 1)
    raise Failure(
        f"several programmes ({', '.join(programmes)}): choose one with --programme", 2
    )


def _looked_in(programmes: list[str], shown: int = 8) -> str:
    """``looked in 2 programmes: a, b``, the list cut after ``shown`` names."""
    if not programmes:
        return "no programme has journeys yet"
    names = ", ".join(programmes[:shown])
    if len(programmes) > shown:
        names += f" and {len(programmes) - shown} more"
    return f"looked in {len(programmes)} programme(s): {names}"


async def programme_ids(connections: Connections) -> list[str]:
    """Every programme that has journeys in the event store, sorted.

    Raises:
        Failure: PostgreSQL cannot be reached (exit 3).
    """
    async with open_store(connections) as store:
        return sorted(str(p["programme_id"]) for p in await store.programmes())


async def programmes_of_firm(connections: Connections, firm: str) -> tuple[list[str], list[str]]:
    """The programmes in which ``firm`` has a journey (running or ended), and those looked in.

    Temporal's visibility finds them in one question; when it finds none, each
    programme of the event store is asked directly for the journey's workflow id, so a
    journey started a moment ago (visibility follows a moment later) is found too.

    Returns:
        The programmes with a journey of the firm, and every programme looked in, both
        sorted.

    Raises:
        Failure: A server cannot be reached (exit 3).
    """
    found: set[str] = set()
    if _IDENTIFIER.fullmatch(firm):  # only a well-formed id goes into a query string
        try:
            found = {
                str(programme)
                async for w in connections.client.list_workflows(
                    f"{search.FIRM.name} = '{firm}'"
                )
                if (programme := w.typed_search_attributes.get(search.PROGRAMME))
            }
        except RPCError as error:
            raise Failure(f"cannot reach Temporal: {error.message}", 3) from None
    known = await programme_ids(connections)
    for programme_id in [] if found else known:
        handle = connections.client.get_workflow_handle(journey_workflow_id(programme_id, firm))
        try:
            await handle.describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise Failure(f"cannot reach Temporal: {error.message}", 3) from None
            continue
        found.add(programme_id)
    return sorted(found), sorted(set(known) | found)


_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
"""A programme id (``domain.programme.Identifier``): safe inside a quoted query string."""


async def matching_streams(
    client: Client, programme_id: str | None, query: str | None
) -> set[str] | None:
    """Workflow ids of the journeys matching a visibility filter.

    Args:
        client: Temporal client.
        programme_id: Only this programme's journeys; None: every programme's.
        query: The filter; None: no filter.

    Returns:
        None when there is no filter.

    Raises:
        Failure: An invalid programme id or filter (exit 2).
    """
    if query is None:
        return None
    # Visibility queries take no parameters: only a well-formed id goes into the string.
    if programme_id is not None and not _IDENTIFIER.fullmatch(programme_id):
        raise Failure(f"invalid programme id {programme_id!r}", 2)
    scope = (
        f"{search.PROGRAMME.name} = '{programme_id}'"
        if programme_id is not None
        else f"WorkflowType = '{FirmJourney.__name__}'"
    )
    try:
        return {
            execution.id async for execution in client.list_workflows(f"{scope} AND ({query})")
        }
    except RPCError as error:
        raise Failure(f"invalid --query {query!r}: {error.message}", 2) from None


def ui_link(settings: Settings, connections: Connections, workflow_id: str) -> str:
    """The Web UI page of a journey, or an empty string when no Web UI is known."""
    base = settings.ui_url or (connections.stack.ui_url if connections.stack else None)
    if base is None:
        return ""
    namespace = connections.client.namespace
    return f"{base.rstrip('/')}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"
