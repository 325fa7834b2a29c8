"""The embedded SMTP server and its mailbox: every message kept as a file.

``corridor dev`` and ``corridor demo`` run :class:`LocalSmtpServer` (aiosmtpd) on
loopback; it keeps each message it accepts under ``<data dir>/mail/`` as one ``.eml``
file named after its ``Message-ID``, so a message sent again with the same
``Message-ID`` (a retry after a worker died between the server's acceptance and the
outbox's record) is held once, as a mail client showing one conversation would. It
nevertheless counts every delivery it was given (``deliveries``), which the tests read.
Tests may also make it refuse recipients for good (``refused``: ``550`` at ``RCPT TO``,
as a mailbox provider answers for an address that does not exist) or for now
(``deferred``: ``450``, try again later).
``corridor mail`` reads the mailbox (:class:`Mailbox`).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from corridor.stack.processes import free_port

_SAFE_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


@dataclass(frozen=True)
class KeptMessage:
    """A message of the mailbox, as ``corridor mail`` shows it.

    Attributes:
        key: The file's name without ``.eml`` (from the ``Message-ID``).
        path: The file.
        message_id: Its ``Message-ID`` header.
        business_date: The business date it speaks in (``X-Corridor-Business-Date``).
        to: Its ``To`` header.
        firm: The firm it is about (``X-Corridor-Firm``), empty for a digest.
        kind: What it says (``X-Corridor-Kind``).
        subject: Its subject.
    """

    key: str
    path: Path
    message_id: str
    business_date: str
    to: str
    firm: str
    kind: str
    subject: str

    def parsed(self) -> EmailMessage:
        """The whole message (headers and parts)."""
        message = email.message_from_bytes(self.path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def text(self) -> str:
        """Its plain-text part."""
        body = self.parsed().get_body(preferencelist=("plain",))
        return body.get_content() if body is not None else ""


def _key(message_id: str) -> str:
    """A file name for a ``Message-ID``: its local part when it is a plain id."""
    local = message_id.strip().strip("<>").partition("@")[0]
    if _SAFE_ID.match(local):
        return local
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


class Mailbox:
    """The folder where the embedded server keeps its messages, one file each.

    Args:
        folder: The folder (``<data dir>/mail``), created when the first message comes.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def keep(self, raw: bytes) -> bool:
        """Keep a message once per ``Message-ID``; True when it was new.

        Written to a temporary file, then linked to its final name: a second message
        with the same ``Message-ID`` finds the name taken and is dropped, even when two
        arrive at once.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        message_id = str(parsed.get("Message-ID") or "")
        key = _key(message_id) if message_id else hashlib.sha256(raw).hexdigest()[:32]
        final = self.folder / f"{key}.eml"
        tmp = self.folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_bytes(raw)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def messages(self) -> list[KeptMessage]:
        """Every message kept, by business date then recipient and subject."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob("*.eml"):
            with path.open("rb") as handle:
                headers = email.message_from_binary_file(handle, policy=email.policy.default)
            found.append(
                KeptMessage(
                    key=path.stem,
                    path=path,
                    message_id=str(headers.get("Message-ID", "")),
                    business_date=str(headers.get("X-Corridor-Business-Date", "")),
                    to=str(headers.get("To", "")),
                    firm=str(headers.get("X-Corridor-Firm", "")),
                    kind=str(headers.get("X-Corridor-Kind", "")),
                    subject=str(headers.get("Subject", "")),
                )
            )
        return sorted(found, key=lambda m: (m.business_date, m.to, m.subject, m.key))

    def find(self, key: str) -> KeptMessage | None:
        """The message whose key starts with ``key`` (one only), or None."""
        matches = [m for m in self.messages() if m.key.startswith(key)]
        return matches[0] if len(matches) == 1 else None


class _Handler:
    """aiosmtpd's handler: keep what the server accepts in the mailbox."""

    def __init__(self, server: LocalSmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.server.refused:
            self.server.refusals.append(address)
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        if address.lower() in self.server.deferred:
            self.server.refusals.append(address)
            return f"450 4.2.1 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        self.server.record(raw)
        return "250 Message accepted for delivery"


class LocalSmtpServer:
    """An SMTP server on loopback (aiosmtpd) keeping messages in a :class:`Mailbox`.

    Args:
        folder: The mailbox's folder.
        port: Its port (0: a free one, kept across a stop and start).
        after_keep: Called with each delivery after it was kept, before the server
            answers (tests use it to kill a worker in the window between the server's
            acceptance and the client's record).
        refuse: Addresses refused for good at ``RCPT TO`` (``550 5.1.1``, the address
            quoted as real servers do), whatever their case; more may be added to
            ``refused`` while it runs, and addresses to answer ``450`` (try again later)
            to ``deferred``. For tests: ``corridor dev`` refuses none.

    Attributes:
        deliveries: Every message it was given, in order (a retry counts again).
        refusals: Every recipient it refused (550) or deferred (450), in order.
    """

    def __init__(
        self,
        folder: Path,
        port: int = 0,
        *,
        after_keep: Callable[[bytes], None] | None = None,
        refuse: Iterable[str] = (),
    ) -> None:
        self.mailbox = Mailbox(folder)
        self.port = port or free_port()
        self.after_keep = after_keep
        self.refused: set[str] = {address.lower() for address in refuse}
        self.deferred: set[str] = set()
        self.refusals: list[str] = []
        self.deliveries: list[bytes] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        """``smtp://127.0.0.1:PORT``: what ``CORRIDOR_SMTP_URL`` names for it."""
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether it accepts connections now."""
        return self._controller is not None

    def record(self, raw: bytes) -> None:
        """Keep one delivery (and count it)."""
        with self._lock:
            self.deliveries.append(raw)
            self.mailbox.keep(raw)
        if self.after_keep is not None:
            self.after_keep(raw)

    def start(self) -> None:
        """Listen on ``127.0.0.1:port`` (in aiosmtpd's own thread)."""
        if self._controller is not None:
            return
        controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening; what it kept stays in the mailbox."""
        controller, self._controller = self._controller, None
        if controller is not None:
            with contextlib.suppress(Exception):
                controller.stop()
