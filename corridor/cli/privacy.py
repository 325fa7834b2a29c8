"""Commands for personal data: forget (erasure), keys (rotation), codec-server."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import typer

from activities.keys import Keyring, KeyringError, MasterKey, write_key_file
from corridor import erasure, service
from corridor.cli.app import ByOption, ProgrammeOption, author, err, out, run
from corridor.cli.connections import connected, open_store, programme_id_of
from corridor.codec_server import CodecServer, codec_app, parse_tokens
from corridor.errors import Failure
from corridor.logs import configure_logging
from corridor.settings import Settings, load_settings
from corridor.stack.processes import HOST
from corridor.temporal import open_keyring

CODEC_FILE = "codec.json"
"""In the data directory while ``corridor dev`` runs: its codec server's URL and token."""


def forget(
    firm: Annotated[str, typer.Argument(help="Firm id.")],
    reason: Annotated[
        str, typer.Option(help="The request's reference (never the person's details).")
    ],
    programme: ProgrammeOption = None,
    by: ByOption = None,
) -> None:
    """Erase a firm's personal data: end its journey, record a tombstone, destroy its key.

    Afterwards nothing decrypts its contact, notes or Temporal history; its meetings
    and contracts still count in the bilan, marked [erased].
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        async with connected(settings) as connections, open_store(connections) as store:
            programme_id = await programme_id_of(connections, programme, firm)
            try:
                done = await erasure.forget(
                    connections.client,
                    store,
                    programme_id,
                    firm,
                    reason=reason,
                    by=author(by),
                )
            except service.Refused as refused:
                raise Failure(refused.message, 1) from None
        out.print(
            f"{done.stream_id}: "
            + ("journey ended, " if done.terminated else "journey had ended, ")
            + f"tombstone at version {done.tombstone_version}, "
            + ("data key destroyed." if done.key_destroyed else "data key already destroyed.")
        )

    run(main())


def _keyring_settings() -> Settings:
    configure_logging("WARNING")
    return load_settings()


def _dsn(settings: Settings) -> str:
    from corridor.stack import read_stack_file

    stack = read_stack_file(settings.data_dir)
    dsn = settings.dsn or (stack.dsn if stack else None)
    if dsn is None:
        raise Failure("no PostgreSQL: start `corridor dev`, or set CORRIDOR_DSN", 3)
    return dsn


@asynccontextmanager
async def _keyring(settings: Settings) -> AsyncIterator[Keyring]:
    """The store's keyring with the configured master keys, closed on exit.

    Raises:
        Failure: No PostgreSQL (exit 3), or the master keys cannot be read (exit 2).
    """
    try:
        keyring = open_keyring(settings, _dsn(settings))
    except KeyringError as error:
        raise Failure(str(error), 2) from None
    try:
        yield keyring
    finally:
        await keyring.aclose()


def keys_status() -> None:
    """Show the master keys this process has and how many data keys each wraps."""
    settings = _keyring_settings()

    async def main() -> None:
        async with _keyring(settings) as keyring:
            usage = await keyring.usage()
            destroyed = await keyring.destroyed()
        known = keyring.master_keys
        out.print(f"master keys from {known.source}:")
        for index, key in enumerate(known.keys):
            role = "current" if index == 0 else "decrypt-only"
            needed = usage.get(key.id, 0)
            out.print(f"  {key.id}  {role:12}  wraps {needed} data key(s)")
        for missing in sorted(set(usage) - {k.id for k in known.keys}):
            out.print(f"  {missing}  MISSING       wraps {usage[missing]} data key(s)")
        out.print(f"destroyed data keys (erased journeys): {len(destroyed)}")

    run(main())


def keys_rotate() -> None:
    """Re-wrap every data key under a new master key; the old one stays decrypt-only.

    With the key file (embedded default), a new key is generated and put first in the
    file. With CORRIDOR_MASTER_KEY, put the new key first yourself
    (CORRIDOR_MASTER_KEY=NEW,OLD on every process) and run this: it re-wraps what is
    not under the first key. Then `corridor keys retire` drops the old key once no
    data key needs it.
    """
    settings = _keyring_settings()

    async def main() -> None:
        async with _keyring(settings) as keyring:
            known = keyring.master_keys
            if known.file is not None:
                new = MasterKey.generate()
                write_key_file(known.file, [new, *known.keys])
                err.print(f"new master key {new.id} written first in {known.file}")
            count = await keyring.rewrap()
            usage = await keyring.usage()
        current = keyring.master_keys.current
        out.print(f"{count} data key(s) re-wrapped under master key {current.id}")
        for key in keyring.master_keys.keys[1:]:
            out.print(
                f"master key {key.id}: decrypt-only, wraps {usage.get(key.id, 0)} data key(s)"
                " (retire it with `corridor keys retire` once every process has the new key)"
            )

    run(main())


def keys_retire() -> None:
    """Drop, from the key file, the old master keys that no data key needs anymore."""
    settings = _keyring_settings()

    async def main() -> None:
        async with _keyring(settings) as keyring:
            usage = await keyring.usage()
        known = keyring.master_keys
        kept = [known.current, *(k for k in known.keys[1:] if usage.get(k.id, 0) > 0)]
        dropped = [k.id for k in known.keys if k not in kept]
        if known.file is None:
            if dropped:
                out.print(
                    "no data key needs master key(s) "
                    f"{', '.join(dropped)}: remove them from CORRIDOR_MASTER_KEY"
                )
            else:
                out.print("every master key given is still needed")
            return
        write_key_file(known.file, kept)
        out.print(f"retired: {', '.join(dropped) or 'none'}; kept: {len(kept)} key(s)")

    run(main())


def keys_generate() -> None:
    """Print a new random master key (base64), e.g. for CORRIDOR_MASTER_KEY."""
    out.print(MasterKey.generate().encoded())


def codec_server(
    port: Annotated[int | None, typer.Option(help="Port (default CORRIDOR_CODEC_PORT).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = HOST,
    ui_origin: Annotated[
        str | None,
        typer.Option(help="The Web UI's origin allowed by CORS (CORRIDOR_CODEC_UI_ORIGIN)."),
    ] = None,
) -> None:
    """Serve /decode and /encode for the Temporal Web UI and CLI (bearer tokens).

    Tokens come from CORRIDOR_CODEC_TOKENS (name=token pairs); every decode is logged
    with the token's name, the namespace and the workflows, never the data.
    """
    configure_logging("INFO")
    settings = load_settings()

    async def main() -> None:
        text = settings.codec_tokens.get_secret_value() if settings.codec_tokens else ""
        try:
            tokens = parse_tokens(text)
        except ValueError as error:
            raise Failure(f"CORRIDOR_CODEC_TOKENS: {error}", 2) from None
        if not tokens:
            raise Failure("set CORRIDOR_CODEC_TOKENS (name=token pairs) first", 2)
        async with _keyring(settings) as keyring:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            app = codec_app(keyring, tokens, ui_origin or settings.codec_ui_origin)
            async with CodecServer(app, host, port or settings.codec_port) as server:
                err.print(f"codec server at {server.url}; Ctrl-C stops it")
                await stop.wait()

    run(main())


def dev_codec_token() -> str:
    """A fresh token for the Web UI of one ``corridor dev`` run."""
    return secrets.token_urlsafe(24)


def write_codec_file(data_dir: Path, url: str, token: str) -> Path:
    """``<data_dir>/codec.json`` (0600): the dev codec server's URL and token, for the CLI.

    ``temporal workflow show --codec-endpoint URL --codec-auth "Bearer TOKEN" ...``
    """
    path = data_dir / CODEC_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"url": url, "token": token}, file)
        file.write("\n")
    return path

