"""Keys for personal data: one data key per journey, wrapped by a master key.

Envelope encryption (AES-256-GCM, the ``cryptography`` package):

- a **data key** (32 random bytes) per journey, named by its stream id
  (``journey/<programme>/<firm>``), encrypts that firm's personal data: every Temporal
  payload of its journey (``corridor.codec``) and the personal fields of its events and
  read-model state (``seal``/``open``). One more data key per Temporal namespace
  (``namespace/<name>``) encrypts the payloads a codec sees without knowing the journey.
- the **master key** wraps every data key; only wrapped data keys are stored, in the
  ``data_keys`` table (migration 7). The master key comes from ``CORRIDOR_MASTER_KEY`` or a
  key file, never from the database or the repository. Several master keys may be given:
  the first wraps, the others only unwrap (the previous ones, during a rotation).
- **erasure** destroys a journey's data key (its wrapped form is removed): whatever was
  encrypted with it, wherever it is, can no longer be read.

A sealed field is text: ``enc:v1:`` and the base64 of a 12-byte nonce and the
ciphertext; the stream id is the associated data, so a sealed value cannot be moved to
another journey. A wrapped data key binds its key id the same way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.programme import ERASED

log = structlog.get_logger(__name__)

SEALED_PREFIX = "enc:v1:"
"""How a sealed field's text starts."""

PERSONAL_FIELDS = frozenset({"contact_name", "contact_email", "notes", "next_step"})
"""JSON keys whose text values are personal data, wherever they appear in an event or a
journey's state: the contact's name and e-mail address, notes and next steps (free text
that may name people). Everything else (ids, dates, amounts, counterparts, the firm's
name: a company's) stays in clear for the reports."""

_NONCE = 12

KEY_CACHE_SECONDS = 30.0
"""How long a process trusts an unwrapped data key before checking it again: a key
destroyed by another process stops working here within this time."""


class KeyringError(RuntimeError):
    """A key problem: unknown master key, missing or malformed key material."""


class KeyDestroyed(KeyringError):
    """The data key was destroyed (the firm's personal data was erased)."""


@dataclass(frozen=True)
class MasterKey:
    """A 256-bit master key and its id (the first 16 hex digits of its SHA-256)."""

    material: bytes

    @property
    def id(self) -> str:
        """A fingerprint that names the key without revealing it."""
        return hashlib.sha256(self.material).hexdigest()[:16]

    def encoded(self) -> str:
        """The key as base64 text (what ``CORRIDOR_MASTER_KEY`` and key files hold)."""
        return base64.b64encode(self.material).decode()

    @classmethod
    def generate(cls) -> MasterKey:
        """A new random master key."""
        return cls(AESGCM.generate_key(bit_length=256))

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        """Read a base64 key.

        Raises:
            KeyringError: Not base64 of 32 bytes.
        """
        try:
            material = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise KeyringError("a master key is the base64 of 32 random bytes") from None
        if len(material) != 32:
            raise KeyringError(f"a master key has 32 bytes, this one {len(material)}")
        return cls(material)


@dataclass(frozen=True)
class MasterKeys:
    """The master keys a process knows: ``current`` wraps, every one unwraps.

    Attributes:
        keys: The keys, the current one first, then the previous (decrypt-only) ones.
        source: Where they came from (``CORRIDOR_MASTER_KEY`` or a file's path).
        file: The key file, when they came from one (rotation rewrites it).
    """

    keys: tuple[MasterKey, ...]
    source: str
    file: Path | None = None

    @property
    def current(self) -> MasterKey:
        """The key that wraps new and re-wrapped data keys."""
        return self.keys[0]

    def by_id(self, key_id: str) -> MasterKey | None:
        """The master key with this id, if this process knows it."""
        return next((k for k in self.keys if k.id == key_id), None)

    @classmethod
    def parse(cls, text: str, source: str, file: Path | None = None) -> MasterKeys:
        """Keys separated by commas, spaces or lines; ``#`` starts a comment line.

        Raises:
            KeyringError: No key, or a malformed one.
        """
        words = [
            word
            for line in text.splitlines()
            if not line.lstrip().startswith("#")
            for word in line.replace(",", " ").split()
        ]
        if not words:
            raise KeyringError(f"{source} holds no master key")
        return cls(tuple(MasterKey.parse(w) for w in words), source, file)


def write_key_file(path: Path, keys: Iterable[MasterKey]) -> None:
    """Write master keys to ``path`` atomically, readable by its owner only (0600).

    The first key is the current one; the others are kept to unwrap until no data key
    needs them (``corridor keys retire``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Corridor master keys: the first wraps the data keys, the others only unwrap.",
        "# Never commit this file; back it up apart from the database.",
        *(k.encoded() for k in keys),
    ]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    tmp.replace(path)


def load_master_keys(
    environment: str | None, file: Path | None, *, create: bool = False
) -> MasterKeys:
    """The master keys from the environment's value, else from the key file.

    Args:
        environment: ``CORRIDOR_MASTER_KEY`` (one or more base64 keys, current first).
        file: The key file (the embedded stack's ``<data dir>/master.key``).
        create: Generate the file with one new key (mode 0600) when it is missing.

    Raises:
        KeyringError: No key anywhere, a malformed key, or a key file others may read.
    """
    if environment:
        return MasterKeys.parse(environment, "CORRIDOR_MASTER_KEY")
    if file is None:
        raise KeyringError("no master key: set CORRIDOR_MASTER_KEY or CORRIDOR_MASTER_KEY_FILE")
    if not file.exists():
        if not create:
            raise KeyringError(
                f"no master key: {file} does not exist; start `corridor dev` once (it "
                "creates it), or set CORRIDOR_MASTER_KEY or CORRIDOR_MASTER_KEY_FILE"
            )
        write_key_file(file, [MasterKey.generate()])
        log.info("keys.master_key_created", file=str(file))
    if file.stat().st_mode & 0o077:
        raise KeyringError(f"{file} may be read by others: chmod 600 {file}")
    return MasterKeys.parse(file.read_text(), str(file), file)


def _aad(key_id: str) -> bytes:
    return key_id.encode()


def encrypt(key: bytes, plaintext: bytes, key_id: str) -> bytes:
    """AES-256-GCM: a random 12-byte nonce, then the ciphertext and its tag."""
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(key_id))


def decrypt(key: bytes, blob: bytes, key_id: str) -> bytes:
    """The inverse of :func:`encrypt`.

    Raises:
        cryptography.exceptions.InvalidTag: Another key, another key id, or altered data.
    """
    return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], _aad(key_id))


def journey_key_id(workflow_id: str | None, namespace: str) -> str:
    """The data key for a payload of this workflow: its journey's, else the namespace's."""
    if workflow_id and workflow_id.startswith("journey/"):
        return workflow_id
    return f"namespace/{namespace}"


class Keyring:
    """Data keys, wrapped by the master keys, kept in PostgreSQL's ``data_keys`` table.

    Unwrapped data keys are cached in memory and checked against the table again after
    :data:`KEY_CACHE_SECONDS`: a key destroyed by one process (``corridor forget``)
    stops working in every other process within that time.

    Args:
        dsn: PostgreSQL DSN (the worker's role may read, create, re-wrap and destroy).
        master_keys: The master keys.
    """

    def __init__(self, dsn: str, master_keys: MasterKeys) -> None:
        self.dsn = dsn
        self.master_keys = master_keys
        self._pool: asyncpg.Pool | None = None
        self._keys: dict[str, bytes] = {}
        self._checked: dict[str, float] = {}
        self._destroyed: set[str] = set()

    def _fresh(self, key_id: str) -> bool:
        """Whether the cached key was checked against the table recently."""
        return time.monotonic() - self._checked.get(key_id, -KEY_CACHE_SECONDS) < (
            KEY_CACHE_SECONDS
        )

    def _remember(self, key_id: str, material: bytes) -> None:
        self._keys[key_id] = material
        self._checked[key_id] = time.monotonic()

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=2)
        return self._pool

    async def aclose(self) -> None:
        """Close the keyring's connections."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _reload_master_keys(self) -> None:
        """Read the key file again (``corridor keys rotate`` may have added a key)."""
        file = self.master_keys.file
        if file is not None and file.exists():
            self.master_keys = MasterKeys.parse(file.read_text(), str(file), file)

    def _unwrap(self, key_id: str, wrapped: bytes, master_key_id: str) -> bytes:
        master = self.master_keys.by_id(master_key_id)
        if master is None:
            self._reload_master_keys()
            master = self.master_keys.by_id(master_key_id)
        if master is None:
            raise KeyringError(
                f"data key {key_id} is wrapped by master key {master_key_id}, which this "
                f"process does not have ({self.master_keys.source} holds "
                f"{', '.join(k.id for k in self.master_keys.keys)})"
            )
        try:
            return decrypt(master.material, wrapped, key_id)
        except InvalidTag:
            raise KeyringError(f"data key {key_id} does not unwrap with its master key") from None

    def cached(self, key_id: str) -> bytes | None:
        """The data key if this process has it unwrapped (no I/O).

        Raises:
            KeyDestroyed: The key is known destroyed.
        """
        if key_id in self._destroyed:
            raise KeyDestroyed(f"the data key of {key_id} was destroyed")
        return self._keys.get(key_id)

    async def key(self, key_id: str, *, create: bool = False) -> bytes | None:
        """A data key, unwrapped.

        Args:
            key_id: The key's id (a journey's stream id, or ``namespace/<name>``).
            create: Create it when it does not exist yet.

        Returns:
            The key, or None when it does not exist and ``create`` is False.

        Raises:
            KeyDestroyed: It was destroyed (erasure).
            KeyringError: It is wrapped by a master key this process lacks.
        """
        known = self.cached(key_id)
        if known is not None and self._fresh(key_id):
            return known
        pool = await self._connection_pool()
        row = await pool.fetchrow(
            "SELECT wrapped, master_key_id, destroyed_at FROM data_keys WHERE key_id = $1",
            key_id,
        )
        if row is None and create:
            self._reload_master_keys()
            material = AESGCM.generate_key(bit_length=256)
            master = self.master_keys.current
            await pool.execute(
                "INSERT INTO data_keys (key_id, wrapped, master_key_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (key_id) DO NOTHING",
                key_id,
                encrypt(master.material, material, key_id),
                master.id,
            )
            row = await pool.fetchrow(
                "SELECT wrapped, master_key_id, destroyed_at FROM data_keys WHERE key_id = $1",
                key_id,
            )
        if row is None:
            return None
        if row["destroyed_at"] is not None:
            self._forget(key_id)
            raise KeyDestroyed(f"the data key of {key_id} was destroyed")
        if known is not None:
            self._remember(key_id, known)
            return known
        material = self._unwrap(key_id, row["wrapped"], row["master_key_id"])
        self._remember(key_id, material)
        return material

    def _forget(self, key_id: str) -> None:
        self._keys.pop(key_id, None)
        self._checked.pop(key_id, None)
        self._destroyed.add(key_id)

    async def load(self, key_ids: Iterable[str]) -> None:
        """Unwrap these keys into the cache at once (destroyed ones are remembered)."""
        wanted = [k for k in set(key_ids) if k not in self._destroyed and not self._fresh(k)]
        if not wanted:
            return
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT key_id, wrapped, master_key_id, destroyed_at FROM data_keys "
            "WHERE key_id = ANY($1::text[])",
            wanted,
        )
        for row in rows:
            key_id = row["key_id"]
            if row["destroyed_at"] is not None:
                self._forget(key_id)
            elif key_id in self._keys:
                self._checked[key_id] = time.monotonic()
            else:
                self._remember(key_id, self._unwrap(key_id, row["wrapped"], row["master_key_id"]))

    async def destroy(self, key_id: str, reason: str) -> bool:
        """Destroy a data key: its wrapped form is removed, the row keeps when and why.

        Returns:
            True if it existed and was destroyed now.
        """
        pool = await self._connection_pool()
        status = await pool.execute(
            "UPDATE data_keys SET wrapped = NULL, master_key_id = NULL, destroyed_at = now(), "
            "destroyed_reason = $2 WHERE key_id = $1 AND destroyed_at IS NULL",
            key_id,
            reason,
        )
        self._forget(key_id)
        return status.endswith(" 1")

    async def rewrap(self) -> int:
        """Re-wrap every live data key not wrapped by the current master key.

        In one transaction; the data keys themselves (and so every ciphertext) do not
        change. Returns how many were re-wrapped.
        """
        self._reload_master_keys()
        current = self.master_keys.current
        pool = await self._connection_pool()
        count = 0
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT key_id, wrapped, master_key_id FROM data_keys "
                "WHERE destroyed_at IS NULL AND master_key_id <> $1 FOR UPDATE",
                current.id,
            )
            for row in rows:
                material = self._unwrap(row["key_id"], row["wrapped"], row["master_key_id"])
                await connection.execute(
                    "UPDATE data_keys SET wrapped = $2, master_key_id = $3, rewrapped_at = now() "
                    "WHERE key_id = $1",
                    row["key_id"],
                    encrypt(current.material, material, row["key_id"]),
                    current.id,
                )
                count += 1
        return count

    async def usage(self) -> dict[str, int]:
        """How many live data keys each master key (by id) wraps."""
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT master_key_id, count(*) AS keys FROM data_keys "
            "WHERE destroyed_at IS NULL GROUP BY master_key_id"
        )
        return {r["master_key_id"]: r["keys"] for r in rows}

    async def destroyed(self) -> list[dict[str, Any]]:
        """The destroyed keys: id, when, why."""
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT key_id, destroyed_at, destroyed_reason FROM data_keys "
            "WHERE destroyed_at IS NOT NULL ORDER BY destroyed_at"
        )
        return [dict(r) for r in rows]

    # ---------------------------------------------------------- sealed fields

    def seal(self, key_id: str, text: str) -> str:
        """Encrypt a field's text with a cached data key (``await key(..., create=True)``).

        Text already sealed, and the ``[erased]`` marker, are returned as they are.

        Raises:
            KeyDestroyed: The key was destroyed: nothing personal may be written anymore.
            KeyringError: The key is not in the cache.
        """
        if text.startswith(SEALED_PREFIX) or text == ERASED:
            return text
        key = self.cached(key_id)
        if key is None:
            raise KeyringError(f"data key {key_id} is not loaded")
        return SEALED_PREFIX + base64.b64encode(encrypt(key, text.encode(), key_id)).decode()

    def open(self, key_id: str, text: str) -> str:
        """The clear text of a sealed field; ``[erased]`` when its key was destroyed.

        Text that is not sealed (stored before encryption) is returned as it is.

        Raises:
            KeyringError: The key is not in the cache, or the value does not decrypt.
        """
        if not text.startswith(SEALED_PREFIX):
            return text
        try:
            key = self.cached(key_id)
        except KeyDestroyed:
            return ERASED
        if key is None:
            raise KeyringError(f"data key {key_id} is not loaded")
        blob = base64.b64decode(text[len(SEALED_PREFIX) :])
        try:
            return decrypt(key, blob, key_id).decode()
        except InvalidTag:
            raise KeyringError(f"a sealed value of {key_id} does not decrypt") from None

    def seal_fields(self, key_id: str, data: Any) -> Any:
        """A copy of JSON data with every personal field (:data:`PERSONAL_FIELDS`) sealed."""
        return _walk(data, lambda text: self.seal(key_id, text))

    def open_fields(self, key_id: str, data: Any) -> Any:
        """A copy of JSON data with every sealed personal field opened (or ``[erased]``)."""
        return _walk(data, lambda text: self.open(key_id, text))


def _walk(data: Any, change: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: (
                change(value)
                if key in PERSONAL_FIELDS and isinstance(value, str) and value
                else _walk(value, change)
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_walk(item, change) for item in data]
    return data


def has_sealed(text: str) -> bool:
    """Whether JSON text holds a sealed value (cheap test before parsing it)."""
    return SEALED_PREFIX in text


def has_personal(text: str) -> bool:
    """Whether JSON text may hold a personal field (cheap test before parsing it)."""
    return any(f'"{name}":' in text for name in PERSONAL_FIELDS)
