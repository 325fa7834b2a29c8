"""The payload codec: every Temporal payload of a journey encrypted with its firm's key.

Every client and worker of Corridor converts with :func:`data_converter`: pydantic
JSON, then this codec (AES-256-GCM, ``activities.keys``), and failures with their
message and stack trace moved into an encoded payload (``encode_common_attributes``).
The Temporal server, its database and a Web UI without the codec server see only
ciphertext, ids, search attributes and timestamps.

Which key: the SDK tells the codec which workflow a payload belongs to (its
serialization context: the workflow's input, updates, signals, queries, memo, details
and summaries, its activities' inputs and results, failures). A journey's payloads
(``journey/<programme>/<firm>``) are encrypted with that journey's data key, so that
destroying the key (``corridor forget``) makes its whole history unreadable. A payload
encoded without a context (none of Corridor's own; the codec server's ``/encode``, which
the Web UI calls for a signal typed in it) uses the namespace's key.

Each encrypted payload names its key (metadata ``encryption-key-id``): decoding needs
no context. A payload that is not encrypted (written before encryption was switched on)
is decoded as it is, so old histories replay and their journeys go on, encrypted from
then on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Self

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from activities.keys import KeyDestroyed, Keyring, decrypt, encrypt, journey_key_id

ENCODING = b"binary/encrypted"
"""The ``encoding`` of an encrypted payload (as in Temporal's encryption sample)."""
KEY_ID = "encryption-key-id"
CIPHER = "encryption-cipher"
_CIPHER = b"AES-256-GCM"


class PayloadErased(RuntimeError):
    """A payload's key was destroyed: the firm's personal data was erased."""


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """Encrypts payloads with the data key of the workflow they belong to.

    Args:
        keyring: Where the data keys are (created at a journey's first payload).
        namespace: The client's namespace (the key of payloads without a workflow).
        workflow_id: Set by :meth:`with_context`; None without a context.
    """

    def __init__(self, keyring: Keyring, namespace: str, workflow_id: str | None = None) -> None:
        self.keyring = keyring
        self.namespace = namespace
        self.workflow_id = workflow_id

    def with_context(self, context: SerializationContext) -> Self:
        """The codec for one workflow's (or one activity's workflow's) payloads."""
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            return type(self)(
                self.keyring, context.namespace or self.namespace, context.workflow_id
            )
        return self

    @property
    def key_id(self) -> str:
        """The key this codec encrypts with."""
        return journey_key_id(self.workflow_id, self.namespace)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload whole (metadata included) with the workflow's key.

        Raises:
            PayloadErased: The journey's key was destroyed: nothing more is written.
        """
        if not payloads:
            return []
        key_id = self.key_id
        try:
            key = await self.keyring.key(key_id, create=True)
        except KeyDestroyed as error:
            raise PayloadErased(str(error)) from None
        assert key is not None
        return [
            Payload(
                metadata={"encoding": ENCODING, KEY_ID: key_id.encode(), CIPHER: _CIPHER},
                data=encrypt(key, payload.SerializeToString(), key_id),
            )
            for payload in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads; others (plain, from before) pass as they are.

        Raises:
            PayloadErased: A payload's key was destroyed.
            activities.keys.KeyringError: Its key is wrapped by an unknown master key.
            cryptography.exceptions.InvalidTag: A payload was altered.
        """
        return [await self.decode_one(payload) for payload in payloads]

    async def decode_one(self, payload: Payload) -> Payload:
        """Decrypt one payload (see :meth:`decode`)."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata[KEY_ID].decode()
        try:
            key = await self.keyring.key(key_id)
        except KeyDestroyed as error:
            raise PayloadErased(str(error)) from None
        if key is None:
            raise PayloadErased(f"no data key {key_id}")
        decoded = Payload()
        decoded.ParseFromString(decrypt(key, payload.data, key_id))
        return decoded


def key_id_of(payload: Payload) -> str | None:
    """The key an encrypted payload names, or None for a plain payload."""
    if payload.metadata.get("encoding") != ENCODING:
        return None
    return payload.metadata[KEY_ID].decode()


def data_converter(keyring: Keyring, namespace: str) -> DataConverter:
    """Pydantic JSON, encrypted payloads, encoded failure messages and stack traces."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring, namespace),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def keyring_of(converter: DataConverter) -> Keyring | None:
    """The keyring of a converter made by :func:`data_converter` (None for others)."""
    codec = converter.payload_codec
    return codec.keyring if isinstance(codec, EncryptionCodec) else None
