"""Typed settings for Corridor, read from ``CORRIDOR_*`` environment variables."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the CLI, the worker and the embedded development stack.

    Every field can be set from the environment with the ``CORRIDOR_`` prefix, for
    example ``CORRIDOR_TEMPORAL_PORT=7300`` or ``CORRIDOR_DSN=postgresql://...``.

    Attributes:
        data_dir: Directory where the embedded stack keeps its state (PostgreSQL data,
            the Temporal SQLite file, logs and ``stack.json``).
        dsn: PostgreSQL DSN of the worker (and of the CLI's reads): the role
            ``corridor_worker`` that the migrations create. When ``None``, the embedded
            PostgreSQL server is used.
        admin_dsn: PostgreSQL DSN of the schema's owner, used only to migrate the
            schema (and create the worker's role) before the worker starts. When
            ``None``, the worker migrates with ``dsn`` if the schema is not current.
        task_queue: Temporal task queue that the worker polls.
        temporal_port: Port of the Temporal dev server's gRPC frontend.
        temporal_ui_port: Port of the Temporal dev server's web UI.
        ui_url: Base URL of the Temporal Web UI of a cluster, for journey links
            (the embedded stack's is known).
        master_key: The master key(s) wrapping the data keys (``CORRIDOR_MASTER_KEY``):
            base64 of 32 bytes; several separated by commas, the current first, the
            previous ones decrypt-only during a rotation. None: the key file.
        master_key_file: The key file used when ``master_key`` is unset (default
            ``<data_dir>/master.key``, created once by ``corridor dev``, mode 0600).
        codec_port: Port of the codec server (``corridor codec-server``, and the one
            ``corridor dev`` starts for its Web UI).
        codec_tokens: ``name=token`` pairs the codec server accepts (``corridor dev``
            makes one for its Web UI at each start).
        codec_ui_origin: The Web UI origin allowed to call the codec server from a
            browser (CORS), e.g. ``https://temporal-ui.example.org``.
        actor: Who sends the CLI's commands (``CORRIDOR_ACTOR``), recorded with their
            events, when ``--by`` is not given; None: the operating system's user.
        smtp_url: The SMTP server messages go through
            (``smtp://user:password@host:587?starttls=1``, ``smtps://...:465``); None:
            the embedded one of ``corridor dev`` (``<data_dir>/mail/``), else none
            (messages are kept in the outbox, unsent).
        smtp_port: Port of the embedded SMTP server (0: any free port).
        mail_from: The sender of programmes that name none.
        digest_time: Local time (``HH:MM``) of the daily digest, in the office's zone.
        office_timezone: The office's zone for the digest's schedule, when ``corridor
            setup`` is given no programme file.
        workflow_cache_size: How many journeys' runs a worker keeps in memory
            (Temporal's ``max_cached_workflows``; 1,000 by default, as the SDK's). A
            journey out of the cache is replayed from its history at its next task.
        catch_up_concurrency: How many workflow tasks of journeys catching up a worker
            runs at a time (twice as many activities), on the catch-up task queue: the
            share of a worker that enrolments after the fact may take (2 by default).
    """

    model_config = SettingsConfigDict(env_prefix="CORRIDOR_", extra="ignore")

    data_dir: Path = Path(".corridor")
    dsn: str | None = None
    admin_dsn: str | None = None
    task_queue: str = "corridor"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    ui_url: str | None = None
    actor: str | None = None
    smtp_url: str | None = None
    smtp_port: int = 0
    mail_from: str = "corridor@localhost"
    digest_time: str = "07:00"
    office_timezone: str = "America/Toronto"
    codec_port: int = 8234
    codec_tokens: SecretStr | None = None
    codec_ui_origin: str | None = None
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    workflow_cache_size: int = Field(default=1000, ge=0)
    catch_up_concurrency: int = Field(default=2, ge=1, le=100)

    @property
    def key_file(self) -> Path:
        """The master key file: ``master_key_file``, else ``<data_dir>/master.key``."""
        return self.master_key_file or self.data_dir / "master.key"


class SettingsError(ValueError):
    """A ``CORRIDOR_*`` environment variable holds a value Corridor cannot use."""


@functools.cache
def load_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first call.

    Returns:
        The cached :class:`Settings` instance. Call ``load_settings.cache_clear()`` to
        force a re-read (useful in tests that change the environment).

    Raises:
        SettingsError: A variable's value is refused; the message names each variable,
            its value and why, e.g. ``CORRIDOR_WORKFLOW_CACHE_SIZE='-1': Input should
            be greater than or equal to 0``.
    """
    try:
        return Settings()
    except ValidationError as error:
        problems = [
            f"CORRIDOR_{'_'.join(str(part) for part in e['loc']).upper()}="
            f"{e['input']!r}: {e['msg']}"
            for e in error.errors()
        ]
        raise SettingsError("; ".join(problems)) from None
