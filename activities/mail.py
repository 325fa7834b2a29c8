"""Messages that reach people (issue 9): the outbox, the SMTP client, the activities.

**Once, as people see it.** Each message has an id derived from the event that caused
it and its recipient (``domain.messages.message_id``); its ``Message-ID`` header is made
from that id. The activity writes the whole message (addresses, body: personal data
stays in PostgreSQL, never in a Temporal history) to the ``outbox`` table before the
first attempt, and sends exactly those bytes on every attempt:

1. the row is written once (``pending``); a retry finds it;
2. ``sending``: the attempt is counted, then the SMTP server is given the message;
3. ``sent`` once the server accepted it (the activity then returns ``sent``, and the
   journey records ``MessageSent``). A retry of a message already ``sent`` sends
   nothing: it only answers ``sent`` again.

A worker killed between the server's acceptance and step 3 leaves the row ``sending``;
the retry sends the same bytes again, with the same ``Message-ID``. No SMTP client can
close that window (the server's "250 OK" and our commit are two machines' acts): the
embedded server (``corridor.stack.smtp``) keeps one file per ``Message-ID``, so its
mailbox holds the message once, and mailbox providers and mail clients that collapse
messages sharing a ``Message-ID`` show it once. With a relay that does not, the
residual risk is a second copy when a worker dies in that window of milliseconds.

A server that cannot be reached (or answers 4xx) is retried by Temporal with backoff for
as long as it lasts: messages wait and go out once it is back.

**Unsendable is an answer, not a retry loop.** A message that cannot be built (a header
that ``email`` refuses, from a name stored before control characters were refused at
input; an address no SMTP command can carry) or that the server refuses for good (a 5xx
answer about this message: its recipient refused, its data refused, too large) is
marked failed in the outbox (state ``refused``) with its reason in plain words, and the
activity answers ``failed`` instead of raising: the journey records ``MessageFailed``
and its other messages go on; ``corridor mail --failed`` and the adviser's digest show
it. A 5xx about the session rather than the message (the login, the sender address the
relay does not accept, the greeting) is a configuration to fix: messages wait for it,
as for a server down. The outbox's ``last_error`` never holds the recipient's address
(aiosmtplib's messages quote it: it is masked).
"""

from __future__ import annotations

import base64
import email.errors
import re
import urllib.parse
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate
from typing import Any
from uuid import UUID

import aiosmtplib
import structlog
from aiosmtplib.email import parse_address
from temporalio import activity

from activities.api import (
    SEND_DIGESTS,
    SEND_MESSAGE,
    DigestRequest,
    DigestResult,
    SendMessageInput,
    SendMessageResult,
)
from activities.store import EventStore
from domain.calendar import local_date, start_of_day
from domain.digest import (
    CatchUpSummary,
    DigestItem,
    FailedMessage,
    catch_up_summary,
    digest_items,
    failed_message_items,
    failures_since,
)
from domain.events import Event, MessageNotSent, MessageSent
from domain.messages import (
    CONTACT,
    Draft,
    MessageKind,
    digest_draft,
    draft,
    message_id,
    message_kind,
    recipient,
    skip_reason,
    staff_recipient,
)
from domain.programme import ERASED, Language, Programme, Staff, control_character
from domain.state import JourneyState, fold

log = structlog.get_logger(__name__)

DEFAULT_SENDER = "corridor@localhost"
"""The sender of a programme that names none, unless the worker is given another."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send (from ``CORRIDOR_SMTP_URL``).

    Attributes:
        host: The server's host name or address.
        port: Its port (25, 587 for STARTTLS, 465 for implicit TLS).
        username: The login, if the server wants one.
        password: Its password.
        starttls: Upgrade the connection with STARTTLS (required when True).
        tls: Implicit TLS from the first byte (``smtps://``).
        timeout: Seconds for each step of the conversation.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    tls: bool = False
    timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """Read ``smtp://user:pass@host:587?starttls=1`` or ``smtps://user:pass@host:465``.

        Raises:
            ValueError: Not an ``smtp://`` or ``smtps://`` URL with a host.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                "CORRIDOR_SMTP_URL must look like smtp://user:password@host:587?starttls=1 "
                "or smtps://user:password@host:465"
            )
        query = dict(urllib.parse.parse_qsl(parts.query))
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            starttls=query.get("starttls", "0").lower() in ("1", "true", "yes"),
            tls=tls,
            timeout=float(query.get("timeout", "10")),
        )

    @property
    def url(self) -> str:
        """The server as a URL, without its password (for logs)."""
        user = f"{self.username}@" if self.username else ""
        scheme = "smtps" if self.tls else "smtp"
        return f"{scheme}://{user}{self.host}:{self.port}{'?starttls=1' if self.starttls else ''}"


class Mailer:
    """Sends a message's bytes to an SMTP server (aiosmtplib).

    Args:
        server: The server.
        sender: The default envelope and ``From`` address (a programme's ``sender``
            comes first).
    """

    def __init__(self, server: SmtpServer, sender: str = DEFAULT_SENDER) -> None:
        self.server = server
        self.sender = sender

    async def send(self, message: bytes, sender: str, to: str) -> None:
        """Hand one message to the server.

        Raises:
            aiosmtplib.SMTPException, OSError: As aiosmtplib raises them.
        """
        server = self.server
        await aiosmtplib.send(
            message,
            sender=sender,
            recipients=[to],
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.tls,
            start_tls=server.starttls,
            timeout=server.timeout,
        )


def _refused_for_good(error: BaseException) -> bool:
    """A 5xx answer about this message: retrying cannot help.

    With one recipient, a recipient refused is not an ``SMTPRecipientRefused``:
    ``aiosmtplib.send`` collects each refused ``RCPT TO`` and, when every recipient was
    refused, raises ``SMTPRecipientsRefused`` (not an ``SMTPResponseException``, no
    ``code`` of its own) whose ``recipients`` hold each refusal with the server's code:
    refused for good when each is 5xx (a 4xx "mailbox busy" or greylisting waits). The
    message's data refused for good (``SMTPDataError`` 5xx, e.g. 554) and a message
    larger than the server takes (552 at ``MAIL FROM``) are too. Other 5xx answers are
    about the session, not this message (the login, a sender the relay does not accept,
    the greeting, a server that requires STARTTLS): a configuration to fix, for which
    messages wait. So do 4xx answers and a server that cannot be reached.
    """
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(r.code >= 500 for r in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code >= 500
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return error.code == 552  # the message is larger than the server accepts
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return "SMTPUTF8" in error.message  # this server cannot carry this address
    return False


_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
"""Anything shaped like an e-mail address in a server's or a library's message."""
MASKED = "[address]"
"""What an address in a failure's reason reads as."""


def masked(text: str, *personal: str | None) -> str:
    """``text`` without the given personal values and without any e-mail address.

    Args:
        text: A reason, e.g. an SMTP server's answer, which quotes the recipient.
        personal: Values to remove whatever their case (the address, a name).

    Returns:
        The text with each of them (``[address]``, ``[hidden]``) and anything shaped
        like an address masked.
    """
    for value in personal:
        if value and len(value) > 2:
            shown = MASKED if "@" in value else "[hidden]"
            text = re.sub(re.escape(value), shown, text, flags=re.IGNORECASE)
    return _ADDRESS.sub(MASKED, text)


def _answer(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


def smtp_reason(error: BaseException, address: str) -> str:
    """Why a send failed, in plain words, without the recipient's address.

    Args:
        error: What ``Mailer.send`` raised.
        address: The recipient's address (masked wherever the server quotes it).
    """
    good = " for good" if _refused_for_good(error) else ""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        answers = "; ".join(_answer(r.code, r.message) for r in error.recipients)
        text = f"the mail server refused the recipient{good}: {answers}"
    elif isinstance(error, aiosmtplib.SMTPDataError):
        text = f"the mail server refused the message{good}: {_answer(error.code, error.message)}"
    elif isinstance(error, aiosmtplib.SMTPSenderRefused):
        refused = "the message (too large)" if good else "the sender"
        text = f"the mail server refused {refused}: {_answer(error.code, error.message)}"
    elif isinstance(error, aiosmtplib.SMTPResponseException):
        text = f"the mail server answered {_answer(error.code, error.message)}"
    elif isinstance(error, aiosmtplib.SMTPNotSupported) and good:
        text = "the mail server cannot carry a non-ASCII address (no SMTPUTF8)"
    else:
        text = f"the mail server cannot be reached ({type(error).__name__}: {error})"
    return masked(text, address)[:500]


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class Outgoing:
    """A message to write to the outbox (then send).

    Attributes:
        draft: Its words; None when they could not be written (``problem`` says why).
        business_date: The business date it speaks in (the draft's, else the cause's).
        problem: Why it cannot be built, found before it was rendered; None: build it.
    """

    message_id: UUID
    kind: MessageKind
    programme_id: str
    firm_id: str | None
    stream_id: str | None
    cause: str
    recipient: str
    sender: str
    to_address: str
    to_name: str | None
    draft: Draft | None
    business_date: date
    problem: str | None = None

    @property
    def subject(self) -> str:
        """Its subject line (empty when it has no words)."""
        return self.draft.subject if self.draft is not None else ""

    def built(self) -> tuple[bytes, None] | tuple[None, str]:
        """The message's bytes, or why it can never be built (in plain words).

        What ``email`` refuses (a header with a line break: a name or a subject stored
        before line breaks were refused at input) and an address that no SMTP command
        can carry are named by what holds them, never by their values.
        """
        problem = self.problem or self._unsendable_address()
        if problem is None:
            try:
                return self.render(), None
            except (ValueError, TypeError, LookupError, email.errors.MessageError) as error:
                problem = self._culprit() or masked(
                    f"{type(error).__name__}: {error}", self.to_address, self.to_name
                )
        return None, f"it cannot be built: {problem}"[:500]

    @property
    def _whose(self) -> str:
        return "the contact's" if self.recipient == CONTACT else "the adviser's"

    def _culprit(self) -> str | None:
        """Which header holds a line break (``email`` refuses it), in plain words."""
        for what, value in (
            (f"{self._whose} name", self.to_name or ""),
            ("its subject", self.subject),
            (f"{self._whose} address", self.to_address),
            ("the sender address", self.sender),
        ):
            found = control_character(value)
            if found is not None and found.startswith("a line break"):
                return f"{what} contains {found}, which an e-mail header cannot hold"
        return None

    def _unsendable_address(self) -> str | None:
        """Why an address cannot be given to the SMTP server (aiosmtplib would raise)."""
        for what, value in (
            (f"{self._whose} address", self.to_address),
            ("the sender address", self.sender),
        ):
            found = control_character(value)
            if found is not None:
                return f"{what} contains {found}, which an SMTP command cannot carry"
            if not value.isascii():
                return f"{what} is not ASCII, which this mailer cannot send (no SMTPUTF8)"
            try:
                parse_address(value)
            except ValueError:
                return f"{what} cannot be written in an SMTP command"
        return None

    def render(self) -> bytes:
        """The whole message: headers, a plain-text part and a simple HTML part.

        Raises:
            ValueError: A header ``email`` refuses (e.g. a line break in a name).
        """
        if self.draft is None:
            raise ValueError(self.problem or "the message has no words")
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = formataddr((self.to_name or "", self.to_address))
        message["Subject"] = self.draft.subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = f"<{self.message_id}@{_domain(self.sender)}>"
        message["X-Corridor-Kind"] = self.kind.value
        message["X-Corridor-Programme"] = self.programme_id
        if self.firm_id:
            message["X-Corridor-Firm"] = self.firm_id
        message["X-Corridor-Business-Date"] = self.draft.business_date.isoformat()
        message.set_content(self.draft.text)
        message.add_alternative(self.draft.html, subtype="html")
        return message.as_bytes(policy=SMTP)


class MailActivities:
    """The activities that send messages, wired by the worker.

    Args:
        store: The event store (journeys, contacts) and its pool (the outbox).
        mailer: The SMTP client; None: no server configured, messages are kept in the
            outbox unsent and nothing is recorded as sent.
    """

    def __init__(self, store: EventStore, mailer: Mailer | None) -> None:
        self.store = store
        self.mailer = mailer

    # ------------------------------------------------------------- journeys' messages

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        """Send the message a journey's stored event causes, once (idempotent).

        Reads the journey (as it stood at the event) and the addresses from
        PostgreSQL; the input and the result carry ids only.

        Returns:
            ``sent`` when the server accepted the message (now or before); ``skipped``
            with its reason when its occasion had passed at ``input.business_now``
            before it was written to the outbox (``domain.messages.skip_reason``);
            ``failed``
            with its reason in ``note`` when it can never be sent (it cannot be built,
            or the server refused it for good: answered at once, never retried);
            otherwise why nothing was sent (nobody to tell, no address, no server
            configured).

        Raises:
            OSError, aiosmtplib.SMTPException: The server cannot be reached, or answered
                4xx (or a 5xx about the session: the login, the sender): retried
                (messages wait).
            ValueError: The event is not stored.
        """
        envelopes = await self.store.read_stream(input.stream_id)
        if len(envelopes) < input.stream_version:
            raise ValueError(f"{input.stream_id}@{input.stream_version} is not stored")
        cause = envelopes[input.stream_version - 1]
        kind = message_kind(cause.event)
        if kind is None:
            return SendMessageResult(note="this event tells nobody")
        state = fold([e.event for e in envelopes[: input.stream_version]])
        to = recipient(kind, state)
        if to is None:
            return SendMessageResult(kind=kind.value, note="the firm has no adviser")
        mid = message_id(str(cause.event_id), to)
        result = SendMessageResult(message_id=mid, kind=kind.value, recipient=to)
        for envelope in envelopes:  # the stream already says what became of it
            told = envelope.event
            if isinstance(told, MessageSent | MessageNotSent) and told.message_id == mid:
                return result.model_copy(
                    update={"sent": isinstance(told, MessageSent), "recorded": True}
                )
        if not await self._known(mid):
            if input.business_now is not None:
                now = fold([e.event for e in envelopes])
                reason = skip_reason(kind, cause.event, now, input.business_now)
                if reason is not None:  # its time passed while it waited: never written
                    return result.model_copy(update={"skipped": True, "note": reason})
            outgoing = await self._journey_message(mid, kind, to, state, cause.event, input)
            if outgoing is None:
                return result.model_copy(update={"note": "no e-mail address for the contact"})
            await self._write(outgoing)
        return await self._deliver(mid, result)

    async def _journey_message(
        self,
        mid: UUID,
        kind: MessageKind,
        to: str,
        state: JourneyState,
        event: Any,
        input: SendMessageInput,
    ) -> Outgoing | None:
        problem: str | None = None
        language: Language
        if to == CONTACT:
            contact = await self.store.firm_contact(input.stream_id)
            if contact is None or not contact.email or contact.email == ERASED:
                return None  # no address, or the firm's data was erased: nobody to tell
            address, name = contact.email, contact.name
            language = "en" if contact.language == "en" else "fr"
        else:
            staff_id = to.removeprefix("staff:")
            staff = next((m for m in state.programme.staff if m.id == staff_id), None)
            if staff is None:
                address, name, language = "", None, "fr"
                problem = f"staff id {staff_id} is not in the programme any more"
            else:
                address, name, language = staff.email, staff.name, staff.language
        words: Draft | None = None
        if problem is None:
            try:
                words = draft(kind, state, event, language=language, name=name)
            except (ValueError, TypeError, LookupError) as error:
                problem = f"its words cannot be written ({type(error).__name__}: {error})"
                problem = masked(problem, address, name)
        return Outgoing(
            message_id=mid,
            kind=kind,
            programme_id=state.programme.id,
            firm_id=state.firm.id,
            stream_id=input.stream_id,
            cause=f"{input.stream_id}@{input.stream_version}",
            recipient=to,
            sender=state.programme.sender or self._sender,
            to_address=address,
            to_name=name,
            draft=words,
            business_date=(
                words.business_date if words else local_date(event.occurred_at, state.tz)
            ),
            problem=problem,
        )

    @property
    def _sender(self) -> str:
        return self.mailer.sender if self.mailer is not None else DEFAULT_SENDER

    # ---------------------------------------------------------------- the outbox

    async def _known(self, mid: UUID) -> bool:
        found = await self.store.pool.fetchval("SELECT 1 FROM outbox WHERE message_id = $1", mid)
        return found is not None

    async def _sealed(self, stream_id: str | None, text: str) -> str:
        """Text encrypted with the journey's data key (in clear without one)."""
        keyring = self.store.keyring
        if keyring is None or stream_id is None:
            return text
        await keyring.key(stream_id, create=True)
        return keyring.seal(stream_id, text)

    async def _opened(self, stream_id: str | None, text: str) -> str:
        """The clear text of :meth:`_sealed` (``[erased]`` once the key is destroyed)."""
        keyring = self.store.keyring
        if keyring is None or stream_id is None:
            return text
        await keyring.load([stream_id])
        return keyring.open(stream_id, text)

    async def _write(self, outgoing: Outgoing) -> None:
        """Write the message to the outbox once (a retry finds it there).

        Its address and body are personal data: sealed with the journey's data key, so
        that erasing the firm (its key destroyed) leaves them unreadable here too. A
        message that cannot be built is written failed (``refused``, no body) with why:
        it is never attempted.
        """
        raw, problem = outgoing.built()
        address = await self._sealed(outgoing.stream_id, outgoing.to_address)
        body = await self._sealed(
            outgoing.stream_id, base64.b64encode(raw).decode() if raw is not None else ""
        )
        subject = "".join(  # shown by `corridor mail`: no control character reaches a terminal
            "\ufffd" if control_character(c) else c for c in outgoing.subject
        )
        await self.store.pool.execute(
            "INSERT INTO outbox (message_id, kind, programme_id, firm_id, stream_id, cause, "
            "recipient, to_address, business_date, subject, message, state, last_error) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT (message_id) DO NOTHING",
            outgoing.message_id,
            outgoing.kind.value,
            outgoing.programme_id,
            outgoing.firm_id,
            outgoing.stream_id,
            outgoing.cause,
            outgoing.recipient,
            address,
            outgoing.business_date,
            subject,
            body.encode(),
            "pending" if problem is None else "refused",
            problem,
        )
        if problem is not None:
            log.warning(
                "mail.failed",
                message_id=str(outgoing.message_id),
                kind=outgoing.kind.value,
                recipient=outgoing.recipient,
                reason=problem,
            )

    async def _deliver(self, mid: UUID, result: SendMessageResult) -> SendMessageResult:
        """Send the outbox's message ``mid`` unless it was sent (see the module)."""
        row = await self.store.pool.fetchrow(
            "SELECT state, message, to_address, last_error, stream_id FROM outbox "
            "WHERE message_id = $1",
            mid,
        )
        assert row is not None
        if row["state"] == "sent":
            return result.model_copy(update={"sent": True})
        if row["state"] == "refused":
            reason = masked(row["last_error"] or "refused for good")
            if reason == "erased":
                reason = "the firm's data was erased"
            return result.model_copy(update={"failed": True, "note": reason})
        if self.mailer is None:
            return result.model_copy(
                update={"note": "no SMTP server configured: kept in the outbox"}
            )
        await self.store.pool.execute(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1 "
            "WHERE message_id = $1 AND state <> 'sent'",
            mid,
        )
        body = await self._opened(row["stream_id"], bytes(row["message"]).decode())
        address = await self._opened(row["stream_id"], row["to_address"])
        if ERASED in (body, address):
            reason = "the firm's data was erased"
            await self.store.pool.execute(
                "UPDATE outbox SET state = 'refused', last_error = $2 WHERE message_id = $1",
                mid,
                reason,
            )
            return result.model_copy(update={"failed": True, "note": reason})
        raw = base64.b64decode(body)
        sender = _envelope_sender(raw) or self.mailer.sender
        try:
            await self.mailer.send(raw, sender, address)
        except (OSError, aiosmtplib.SMTPException) as error:
            refused = _refused_for_good(error)
            reason = smtp_reason(error, address)
            await self.store.pool.execute(
                "UPDATE outbox SET last_error = $2, state = CASE WHEN $3 THEN 'refused' "
                "ELSE state END WHERE message_id = $1",
                mid,
                reason,
                refused,
            )
            log.warning(
                "mail.not_sent",
                message_id=str(mid),
                kind=result.kind,
                error_type=type(error).__name__,
                refused=refused,
                reason=reason,
            )
            if refused:
                return result.model_copy(update={"failed": True, "note": reason})
            raise
        await self.store.pool.execute(
            "UPDATE outbox SET state = 'sent', sent_at = now(), last_error = NULL "
            "WHERE message_id = $1",
            mid,
        )
        log.info("mail.sent", message_id=str(mid), kind=result.kind, recipient=result.recipient)
        return result.model_copy(update={"sent": True})

    # ------------------------------------------------------------------- digests

    @activity.defn(name=SEND_DIGESTS)
    async def send_digests(self, request: DigestRequest) -> DigestResult:
        """Send each adviser the digest of the office's day of ``request.at``, once.

        For each programme: on a working day (Monday to Friday) in its office's time
        zone, every journey as it stood at ``request.at`` gives its items
        (``domain.digest``), gathered by adviser; an adviser with nothing to do gets
        nothing.

        Each digest also lists the firms' messages that failed since the previous
        working day (``domain.digest.failed_message_items``). A digest that cannot be
        built (e.g. an adviser's name with a line break) or that the server refuses for
        good is failed with its reason (``DigestResult.failed``); the others go on.

        Raises:
            OSError, aiosmtplib.SMTPException: The server cannot be reached (or answered
                4xx): retried; the digests already sent are not sent again.
        """
        result = DigestResult()
        by_programme: dict[str, list[JourneyState]] = {}
        for state in await self._states_at(request.at, request.programme_id):
            by_programme.setdefault(state.programme.id, []).append(state)
        for programme_id, states in sorted(by_programme.items()):
            programme = states[-1].programme
            day = local_date(request.at, programme.office_timezone)
            if day.weekday() >= 5:
                result.skipped[programme_id] = f"{day} is not a working day"
                continue
            failures = await self._failures(programme_id, day)
            skipped = await self._skipped(programme_id, day, programme.office_timezone)
            for staff in programme.staff:
                theirs = [state for state in states if state.adviser_id == staff.id]
                items = [
                    item
                    for state in theirs
                    for item in [
                        *digest_items(state, day),
                        *failed_message_items(state, failures, day),
                    ]
                ]
                summary = catch_up_summary(theirs, skipped)
                if not items and summary is None:
                    continue
                key = f"{programme_id}/{staff.id}"
                result.items[key] = len(items)
                to = staff_recipient(staff.id)
                mid = message_id(f"digest/{programme_id}/{day}", to)
                if not await self._known(mid):
                    await self._write(self._digest(programme, staff, items, day, mid, summary))
                sent = await self._deliver(
                    mid,
                    SendMessageResult(message_id=mid, kind=MessageKind.DIGEST.value, recipient=to),
                )
                if sent.sent:
                    result.sent.append(key)
                elif sent.failed:
                    result.failed[key] = sent.note or "it cannot be sent"
        return result

    def _digest(
        self,
        programme: Programme,
        staff: Staff,
        items: list[DigestItem],
        day: date,
        mid: UUID,
        summary: CatchUpSummary | None = None,
    ) -> Outgoing:
        """An adviser's digest to write to the outbox (failed if its words cannot be written)."""
        words: Draft | None = None
        problem: str | None = None
        try:
            words = digest_draft(
                items,
                day=day,
                language=staff.language,
                name=staff.name,
                organiser=programme.organiser,
                summary=summary,
            )
        except (ValueError, TypeError, LookupError) as error:
            problem = masked(
                f"its words cannot be written ({type(error).__name__}: {error})",
                staff.email,
                staff.name,
            )
        return Outgoing(
            message_id=mid,
            kind=MessageKind.DIGEST,
            programme_id=programme.id,
            firm_id=None,
            stream_id=None,
            cause=f"digest/{programme.id}/{day}",
            recipient=staff_recipient(staff.id),
            sender=programme.sender or self._sender,
            to_address=staff.email,
            to_name=staff.name,
            draft=words,
            business_date=day,
            problem=problem,
        )

    async def _skipped(
        self, programme_id: str, day: date, office_timezone: str
    ) -> dict[str, dict[str, int]]:
        """Messages the programme's journeys skipped since the previous digest.

        ``MessageSkipped`` events stored from :func:`domain.digest.failures_since` up to
        the day before ``day`` (office days, real time: a journal imported on a held
        clock records its skips at past business times), by stream id and kind: what a
        backfill did not tell, for the digest's opening summary.
        """
        rows = await self.store.pool.fetch(
            "SELECT e.stream_id, e.data->>'kind' AS kind, count(*) AS skipped "
            "FROM events e JOIN journeys j ON j.stream_id = e.stream_id "
            "WHERE j.programme_id = $1 AND e.event_type = 'MessageSkipped' "
            "AND e.stored_at >= $2 AND e.stored_at < $3 "
            "GROUP BY e.stream_id, e.data->>'kind'",
            programme_id,
            start_of_day(failures_since(day), office_timezone),
            start_of_day(day, office_timezone),
        )
        skipped: dict[str, dict[str, int]] = {}
        for row in rows:
            skipped.setdefault(row["stream_id"], {})[row["kind"]] = row["skipped"]
        return skipped

    async def _failures(self, programme_id: str, day: date) -> list[FailedMessage]:
        """The programme's journeys' messages that failed, for the digest of ``day``.

        Those dated from :func:`domain.digest.failures_since` up to the day before, as
        the outbox records them (state ``refused``), with their reasons.
        """
        rows = await self.store.pool.fetch(
            "SELECT firm_id, kind, recipient, business_date, last_error FROM outbox "
            "WHERE programme_id = $1 AND state = 'refused' AND firm_id IS NOT NULL "
            "AND business_date >= $2 AND business_date < $3 "
            "ORDER BY business_date, created_at",
            programme_id,
            failures_since(day),
            day,
        )
        failures = []
        for row in rows:
            reason = masked(row["last_error"] or "refused for good")
            if reason == "erased":
                reason = "the firm's data was erased"
            failures.append(
                FailedMessage(
                    firm_id=row["firm_id"],
                    kind=row["kind"],
                    recipient=row["recipient"],
                    failed_on=row["business_date"],
                    reason=reason,
                )
            )
        return failures

    async def _states_at(self, at: datetime, programme_id: str | None) -> list[JourneyState]:
        """Every journey as it stood at ``at`` (business time of its records).

        The ``journeys`` read model when nothing was recorded after ``at``; otherwise
        the stream's events recorded up to ``at``, folded.
        """
        rows = await self.store.pool.fetch(
            "SELECT j.stream_id, j.state, "
            "(SELECT max(e.recorded_at) FROM events e WHERE e.stream_id = j.stream_id) AS last "
            "FROM journeys j WHERE ($1::text IS NULL OR j.programme_id = $1) "
            "ORDER BY j.introduced_on, j.firm_id",
            programme_id,
        )
        states: list[JourneyState] = []
        current = [row for row in rows if row["last"] is not None and row["last"] <= at]
        opened = await self.store.open_fields([(row["stream_id"], row["state"]) for row in current])
        read = dict(zip([row["stream_id"] for row in current], opened, strict=True))
        for row in rows:
            if row["stream_id"] in read:
                states.append(JourneyState.model_validate(read[row["stream_id"]]))
                continue
            events: list[Event] = [
                e.event
                for e in await self.store.read_stream(row["stream_id"])
                if e.event.recorded_at <= at
            ]
            if events:
                states.append(fold(events))
        return states


def _envelope_sender(raw: bytes) -> str | None:
    """The address of a stored message's ``From`` header (the envelope sender)."""
    for line in raw.split(b"\r\n"):
        if not line:
            return None
        if line.lower().startswith(b"from:"):
            return line[5:].decode("ascii", "replace").strip() or None
    return None
