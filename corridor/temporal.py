"""Connecting to Temporal with its standard environment configuration."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from activities.keys import Keyring, load_master_keys
from corridor.codec import data_converter
from corridor.logs import core_logging
from corridor.settings import Settings
from workflows import search

log = structlog.get_logger(__name__)

#: Answers of a server that is busy or restarting, not of a wrong request: asked again.
TRANSIENT = frozenset(
    {
        RPCStatusCode.CANCELLED,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
    }
)


@functools.cache
def runtime() -> Runtime:
    """The process's Temporal runtime: the SDK core's lines go through structlog.

    See :func:`corridor.logs.core_logging` for why they must not go to standard output.
    One per process (a runtime has its own threads); ``corridor.observability`` builds
    its own, with metrics, for a worker that exports them.
    """
    return Runtime(telemetry=TelemetryConfig(logging=core_logging()))


async def connect(
    default_address: str = "localhost:7233", *, keyring: Keyring | None = None
) -> Client:
    """Connect a client with the pydantic data converter, encrypting with ``keyring``.

    The address, namespace, API key and TLS settings come from Temporal's environment
    configuration (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
    ``TEMPORAL_TLS_*``, or a ``temporal.toml`` profile); ``default_address`` is used when
    none is set (the embedded dev server).

    Args:
        default_address: ``host:port`` of the frontend when the environment names none.
        keyring: The data keys (``corridor.codec``): every payload is encrypted. None
            only where no personal data travels (tests, tools reading ids).

    Raises:
        RuntimeError: The server cannot be reached.
    """
    config = ClientConfigProfile.load().to_client_connect_config()
    config.setdefault("target_host", default_address)
    converter = (
        pydantic_data_converter
        if keyring is None
        else data_converter(keyring, str(config.get("namespace") or "default"))
    )
    return await Client.connect(**config, data_converter=converter, runtime=runtime())


def open_keyring(settings: Settings, dsn: str, *, create: bool = False) -> Keyring:
    """The keyring of the data keys in ``dsn``'s database, with the configured master keys.

    Args:
        settings: ``CORRIDOR_MASTER_KEY``, else the key file (``settings.key_file``).
        dsn: The event store's DSN (the ``data_keys`` table).
        create: Create the key file when it is missing (the embedded stack).

    Raises:
        KeyringError: No master key, or a malformed one.
    """
    secret = settings.master_key.get_secret_value() if settings.master_key else None
    return Keyring(dsn, load_master_keys(secret, settings.key_file, create=create))


class SearchAttributesMissing(RuntimeError):
    """The namespace lacks some of Corridor's search attributes (``corridor setup`` adds them)."""


async def missing_search_attributes(client: Client, *, within: float = 60.0) -> list[str]:
    """Names of Corridor's search attributes the client's namespace does not have.

    A busy server may drop the question (a dev server under load answered "operation was
    canceled" after 10 s): each attempt waits 5 s at most and is asked again, with a
    growing pause, until ``within`` seconds have passed.

    Args:
        client: A client of the namespace to check.
        within: Seconds to keep asking a server that answers with a transient error.

    Raises:
        RPCError: The server refused the question (a permanent status), or still failed
            after ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = 0.2
    while True:
        try:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=client.namespace),
                timeout=timedelta(seconds=5),
            )
            break
        except RPCError as error:
            if error.status not in TRANSIENT or loop.time() + pause > deadline:
                raise
            log.warning("temporal.asked_again", rpc="ListSearchAttributes", error=str(error))
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
    existing = set(listed.custom_attributes)
    return sorted(key.name for key in search.ALL if key.name not in existing)


async def require_search_attributes(client: Client) -> None:
    """Check that the namespace has every search attribute journeys set.

    Raises:
        SearchAttributesMissing: Some are missing; the message names them and the fix.
    """
    missing = await missing_search_attributes(client)
    if missing:
        raise SearchAttributesMissing(
            f"Temporal namespace {client.namespace!r} lacks Corridor's search attributes "
            f"({', '.join(missing)}): run `corridor setup` once"
        )


async def register_search_attributes(client: Client) -> list[str]:
    """Register the journey's search attributes that the namespace lacks.

    Args:
        client: A client of the namespace to set up.

    Returns:
        The names added now (empty when all were registered already).

    Raises:
        RuntimeError: A name is registered with another type.
    """
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    existing = dict(listed.custom_attributes)
    missing: dict[str, IndexedValueType.ValueType] = {}
    for key in search.ALL:
        wanted = IndexedValueType.ValueType(int(key.indexed_value_type))
        if key.name in existing:
            if existing[key.name] != wanted:
                raise RuntimeError(f"search attribute {key.name} exists with another type")
            continue
        missing[key.name] = wanted
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)
