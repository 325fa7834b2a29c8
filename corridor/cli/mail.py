"""``corridor mail``: the messages sent, failed and waiting.

What the embedded SMTP server kept (``<data dir>/mail/``, one file per message: sent),
and, when the event store is known (a running ``corridor dev``, or ``CORRIDOR_DSN``),
the outbox's messages that were not sent: ``failed`` (they can never be sent: they
could not be built, or the SMTP server refused them for good), with why, and
``waiting`` (the server cannot be reached yet), with the last error.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Annotated

import asyncpg
import typer
from rich.table import Table

from activities.keys import Keyring, KeyringError
from corridor.cli.app import err, out, print_error
from corridor.errors import Failure
from corridor.settings import Settings, load_settings
from corridor.stack import read_stack_file
from corridor.stack.smtp import Mailbox
from corridor.temporal import open_keyring
from domain.programme import ERASED, control_character

FAILED = "failed"
WAITING = "waiting"
SENT = "sent"


@dataclass(frozen=True)
class Listed:
    """One message as ``corridor mail`` lists it.

    Attributes:
        key: Its key (the ``Message-ID``'s id: the outbox's message id).
        business_date: The business date it speaks in.
        to: Its recipient (``contact`` or ``staff:<id>`` when the address is sealed
            and cannot be opened here).
        firm: The firm it is about (empty for a digest).
        subject: Its subject.
        state: ``sent`` (in the mailbox), ``failed`` or ``waiting`` (in the outbox).
        why: Why it failed, or the last error of a waiting message.
        kind: What it says.
        attempts: How many times it was handed to the SMTP server (outbox only).
        body: The outbox's message (None: in the mailbox, or never built).
    """

    key: str
    business_date: str
    to: str
    firm: str
    subject: str
    state: str
    why: str = ""
    kind: str = ""
    attempts: int = 0
    body: bytes | None = None


def mail(
    message: Annotated[
        str | None,
        typer.Argument(help="A message's key (or its first characters) to show it whole."),
    ] = None,
    to: Annotated[str | None, typer.Option(help="Only messages to this address.")] = None,
    firm: Annotated[str | None, typer.Option(help="Only messages about this firm.")] = None,
    failed: Annotated[
        bool,
        typer.Option("--failed", help="Only the messages that can never be sent, each with why."),
    ] = False,
) -> None:
    """List the messages (business date, to, firm, subject, state), or show one.

    Sent: the local mailbox of `corridor dev` and `corridor demo`, one file per message
    under CORRIDOR_DATA_DIR/mail/ (messages sent to a real SMTP server, with
    CORRIDOR_SMTP_URL, are in the recipients' mailboxes instead). Failed and waiting:
    the outbox in PostgreSQL (a running `corridor dev`, or CORRIDOR_DSN), with why a
    message failed (it cannot be built, or the SMTP server refused it for good) or the
    last error of one that waits for the server.
    """
    settings = load_settings()
    folder = settings.data_dir / "mail"
    try:
        outbox = asyncio.run(_outbox(settings, failed=failed, bodies=message is not None))
        _show(Mailbox(folder), outbox, message, to, firm, failed=failed)
    except Failure as failure:
        print_error(failure.message)
        raise typer.Exit(failure.code) from None


# --------------------------------------------------------------------- the outbox


async def _outbox(settings: Settings, *, failed: bool, bodies: bool) -> list[Listed] | None:
    """The outbox's messages not sent, or None when it is not known.

    Args:
        settings: Where the event store is (``CORRIDOR_DSN``, or the running stack's).
        failed: Only the failed ones; the outbox is then required.
        bodies: With each message's bytes (to show one).

    Raises:
        Failure: ``failed`` and no event store known or reachable (exit 3); without
            ``failed``, a warning says the outbox was not read.
    """
    required = failed
    stack = read_stack_file(settings.data_dir)
    dsn = settings.dsn or (stack.dsn if stack else None)
    if dsn is None:
        if required:
            raise Failure(
                "the failed messages are in the outbox (PostgreSQL): no `corridor dev` "
                f"running from {settings.data_dir.resolve()}; start it, or set CORRIDOR_DSN",
                3,
            )
        return None
    try:
        connection = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        if required:
            raise Failure(f"cannot reach PostgreSQL ({error})", 3) from None
        err.print(f"warning: the outbox was not read, cannot reach PostgreSQL ({error})")
        return None
    try:
        if await connection.fetchval("SELECT to_regclass('outbox')") is None:
            return []
        rows = await connection.fetch(
            "SELECT message_id, kind, firm_id, stream_id, recipient, to_address, "
            "business_date, subject, CASE WHEN $2 THEN message END AS message, state, "
            "attempts, last_error FROM outbox "
            "WHERE state <> 'sent' AND (NOT $1 OR state = 'refused') "
            "ORDER BY business_date, created_at",
            failed,
            bodies,
        )
    finally:
        await connection.close()
    keyring = _keyring(settings, dsn) if any(r["stream_id"] for r in rows) else None
    try:
        if keyring is not None:
            await keyring.load({r["stream_id"] for r in rows if r["stream_id"]})
        return [_listed(row, keyring) for row in rows]
    finally:
        if keyring is not None:
            await keyring.aclose()


def _listed(row: asyncpg.Record, keyring: Keyring | None) -> Listed:
    """An outbox row as listed: its address and body opened when the keyring can."""
    stream_id = row["stream_id"]
    address: str | None = row["to_address"]
    body: str | None = bytes(row["message"]).decode() if row["message"] is not None else None
    if stream_id:  # sealed with the journey's key
        address = _opened(keyring, stream_id, row["to_address"])
        body = _opened(keyring, stream_id, body) if body else None
    why = row["last_error"] or ""
    return Listed(
        key=str(row["message_id"]),
        business_date=row["business_date"].isoformat(),
        to=address if address and address != ERASED else row["recipient"],
        firm=row["firm_id"] or "",
        subject=row["subject"],
        state=FAILED if row["state"] == "refused" else WAITING,
        why="the firm's data was erased" if why == "erased" else why,
        kind=row["kind"],
        attempts=row["attempts"],
        body=base64.b64decode(body) if body and body != ERASED else None,
    )


def _keyring(settings: Settings, dsn: str) -> Keyring | None:
    try:
        return open_keyring(settings, dsn)
    except KeyringError:
        return None  # no master key here: the sealed addresses stay sealed


def _opened(keyring: Keyring | None, stream_id: str, text: str) -> str | None:
    """A sealed field in clear; None when this process cannot open it."""
    if keyring is None:
        return None if text.startswith("enc:") else text
    try:
        return keyring.open(stream_id, text)
    except KeyringError:
        return None


# ---------------------------------------------------------------------- showing


def _line(text: str) -> str:
    """Text for a terminal line: control and bidirectional characters shown as U+FFFD."""
    return "".join("\ufffd" if control_character(c) else c for c in text)


def _mailbox(mailbox: Mailbox) -> list[Listed]:
    return [
        Listed(
            key=m.key,
            business_date=m.business_date,
            to=m.to,
            firm=m.firm,
            subject=m.subject,
            state=SENT,
            kind=m.kind,
        )
        for m in mailbox.messages()
    ]


def _show(
    mailbox: Mailbox,
    outbox: list[Listed] | None,
    message: str | None,
    to: str | None,
    firm: str | None,
    *,
    failed: bool,
) -> None:
    folder = mailbox.folder
    where = f"{folder}" + (" and the outbox" if outbox is not None else "")
    if message is not None:
        _show_one(mailbox, outbox or [], message, where)
        return
    every = (
        [m for m in outbox or [] if m.state == FAILED]
        if failed
        else [
            *_mailbox(mailbox),
            *(outbox or []),
        ]
    )
    kept = [
        m
        for m in every
        if (to is None or to.lower() in m.to.lower()) and (firm is None or m.firm == firm)
    ]
    what = "failed message(s)" if failed else "message(s)"
    if not kept:
        if not every:
            raise Failure(f"no {what.replace('(s)', '')} in {where}", 1)
        asked = " and ".join(
            [f"to {to!r}"] * (to is not None) + [f"for firm {firm!r}"] * (firm is not None)
        )
        raise Failure(f"none of the {len(every)} {what} in {where} is {asked}", 1)
    counts = {s: sum(1 for m in kept if m.state == s) for s in (SENT, FAILED, WAITING)}
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    table = Table(title=f"{len(kept)} {what} in {where} ({shown})")
    for column in ("key", "date", "to", "firm", "subject", "state"):
        table.add_column(column, overflow="fold")
    ordered = sorted(kept, key=lambda m: (m.business_date, m.to, m.subject, m.key))
    for m in ordered:
        table.add_row(
            m.key[:8], m.business_date, _line(m.to), m.firm or "—", _line(m.subject), m.state
        )
    out.print(table)
    # Why each failed (or waits): one line each, whole, also when piped.
    for m in ordered:
        if m.why:
            out.print(_line(f"{m.key[:8]} {m.state}: {m.why}"), soft_wrap=True)


def _show_one(mailbox: Mailbox, outbox: list[Listed], key: str, where: str) -> None:
    found = mailbox.find(key)
    if found is not None:
        _print_message(found.parsed(), found.text())
        return
    matches = [m for m in outbox if m.key.startswith(key)]
    if len(matches) != 1:
        raise Failure(f"no single message whose key starts with {key!r} in {where}", 1)
    (listed,) = matches
    for header, value in (
        ("Key", listed.key),
        ("To", listed.to),
        ("Firm", listed.firm),
        ("Kind", listed.kind),
        ("Business date", listed.business_date),
        ("Subject", listed.subject),
        ("State", f"{listed.state} ({listed.attempts} attempt(s))"),
        ("Failed because" if listed.state == FAILED else "Last error", listed.why),
    ):
        if value:
            out.print(f"{header}: {_line(value)}")
    if listed.body:
        parsed = email.message_from_bytes(listed.body, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        part = parsed.get_body(preferencelist=("plain",))
        out.print("")
        out.print(part.get_content() if part is not None else "", soft_wrap=True)


def _print_message(parsed: EmailMessage, text: str) -> None:
    for header in ("Date", "From", "To", "Subject", "Message-ID", "X-Corridor-Business-Date"):
        if parsed.get(header):
            out.print(f"{header}: {_line(str(parsed[header]))}")
    out.print("")
    out.print(text, soft_wrap=True)
