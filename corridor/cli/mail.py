"""``corridor mail``: the messages the embedded SMTP server kept (``<data dir>/mail/``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from corridor.cli.app import out, print_error
from corridor.errors import Failure
from corridor.settings import load_settings
from corridor.stack.smtp import Mailbox


def mail(
    message: Annotated[
        str | None,
        typer.Argument(help="A message's key (or its first characters) to show it whole."),
    ] = None,
    to: Annotated[str | None, typer.Option(help="Only messages to this address.")] = None,
    firm: Annotated[str | None, typer.Option(help="Only messages about this firm.")] = None,
) -> None:
    """List the messages sent (business date, to, firm, subject), or show one.

    Reads the local mailbox of `corridor dev` and `corridor demo`: one file per message
    under CORRIDOR_DATA_DIR/mail/. Messages sent to a real SMTP server
    (CORRIDOR_SMTP_URL) are in the recipients' mailboxes instead.
    """
    folder = load_settings().data_dir / "mail"
    try:
        _show(Mailbox(folder), message, to, firm)
    except Failure as failure:
        print_error(failure.message)
        raise typer.Exit(failure.code) from None


def _show(mailbox: Mailbox, message: str | None, to: str | None, firm: str | None) -> None:
    folder = mailbox.folder
    if message is not None:
        found = mailbox.find(message)
        if found is None:
            raise Failure(f"no single message whose key starts with {message!r} in {folder}", 1)
        parsed = found.parsed()
        for header in ("Date", "From", "To", "Subject", "Message-ID", "X-Corridor-Business-Date"):
            if parsed.get(header):
                out.print(f"{header}: {parsed[header]}")
        out.print("")
        out.print(found.text(), soft_wrap=True)
        return
    every = mailbox.messages()
    kept = [
        m
        for m in every
        if (to is None or to.lower() in m.to.lower()) and (firm is None or m.firm == firm)
    ]
    if not kept:
        if not every:
            raise Failure(f"no message in {folder}", 1)
        asked = " and ".join(
            [f"to {to!r}"] * (to is not None) + [f"for firm {firm!r}"] * (firm is not None)
        )
        raise Failure(f"none of the {len(every)} message(s) in {folder} is {asked}", 1)
    table = Table(title=f"{len(kept)} message(s) in {folder}")
    for column in ("key", "date", "to", "firm", "subject"):
        table.add_column(column, overflow="fold")
    for m in kept:
        table.add_row(m.key[:8], m.business_date, m.to, m.firm or "—", m.subject)
    out.print(table)
