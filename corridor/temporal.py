"""Connecting to Temporal with its standard environment configuration."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile


async def connect(default_address: str = "localhost:7233") -> Client:
    """Connect a client with the pydantic data converter.

    The address, namespace, API key and TLS settings come from Temporal's environment
    configuration (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
    ``TEMPORAL_TLS_*``, or a ``temporal.toml`` profile); ``default_address`` is used when
    none is set (the embedded dev server).

    Args:
        default_address: ``host:port`` of the frontend when the environment names none.

    Raises:
        RuntimeError: The server cannot be reached.
    """
    config = ClientConfigProfile.load().to_client_connect_config()
    config.setdefault("target_host", default_address)
    return await Client.connect(**config, data_converter=pydantic_data_converter)
