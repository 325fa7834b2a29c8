"""Which commands a journey has already applied, in bounded memory.

A journey lives for years and may receive any number of commands; what it carries
across continue-as-new must stay far below Temporal's payload limits. It keeps the most
recent command ids exactly (with the version of their last event), and every id it ever
applied in a Bloom filter of fixed size. A command id the filter has never seen is new
for sure; one it may have seen is looked up in the event store, which records every
command id with its events. So a repeated command is always recognised, however old.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

FILTER_BITS = 1 << 17
"""Bits of the filter (16 KiB): about 0.25% false positives after 10,000 commands."""

FILTER_HASHES = 6


class SeenCommands:
    """Recent command ids exactly, all of them approximately.

    Args:
        recent: Recent command ids with the stream version of their last event,
            oldest first.
        packed: The filter as returned by :meth:`packed`, or None for an empty one.
        keep: How many recent ids are kept exactly.
    """

    def __init__(
        self, recent: dict[str, int] | None = None, packed: str | None = None, keep: int = 256
    ) -> None:
        self.recent: dict[str, int] = dict(recent or {})
        self.keep = keep
        self._bits = (
            bytearray(zlib.decompress(base64.b64decode(packed)))
            if packed
            else bytearray(FILTER_BITS // 8)
        )

    @staticmethod
    def _positions(command_id: str) -> list[int]:
        digest = hashlib.sha256(command_id.encode()).digest()
        return [
            int.from_bytes(digest[4 * i : 4 * i + 4], "big") % FILTER_BITS
            for i in range(FILTER_HASHES)
        ]

    def add(self, command_id: str, version: int) -> None:
        """Remember that ``command_id`` was applied; its last event is ``version``."""
        self.recent.pop(command_id, None)
        self.recent[command_id] = version
        while len(self.recent) > self.keep:
            self.recent.pop(next(iter(self.recent)))
        for position in self._positions(command_id):
            self._bits[position // 8] |= 1 << (position % 8)

    def version(self, command_id: str) -> int | None:
        """The version of a recent command's last event, or None if not recent."""
        return self.recent.get(command_id)

    def may_have_seen(self, command_id: str) -> bool:
        """False when ``command_id`` was surely never applied; True when it may have been."""
        return command_id in self.recent or all(
            self._bits[p // 8] & (1 << (p % 8)) for p in self._positions(command_id)
        )

    def packed(self) -> str:
        """The filter, compressed, as text (for continue-as-new)."""
        return base64.b64encode(zlib.compress(bytes(self._bits), 9)).decode()
