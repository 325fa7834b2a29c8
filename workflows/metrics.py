"""The journey's metrics, counted from workflow code through the SDK's metric meter.

The SDK's meter is replay-safe: a journey replayed on another worker counts nothing
twice. The worker's runtime exports them with the SDK's own (``temporal_*``).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow


def _commands() -> Any:
    return workflow.metric_meter().create_counter(
        "corridor_commands_total", "Staff commands accepted or refused, by rule"
    )


def _name(command: object) -> str:
    """A command's kind (``request_meeting``), from the command or its name."""
    return command if isinstance(command, str) else str(getattr(command, "kind", command))


def command_accepted(command: object) -> None:
    """Count a command a journey accepted (call from workflow code; replay-safe).

    Args:
        command: The command (its ``kind`` labels the count) or its kind.
    """
    _commands().add(1, {"command": _name(command), "outcome": "accepted", "rule": ""})


def command_refused(command: object, rule: str) -> None:
    """Count a command a journey refused by ``rule`` (workflow code; replay-safe).

    Args:
        command: The command or its kind.
        rule: The domain rule that refused it (``DomainError.rule``).
    """
    _commands().add(1, {"command": _name(command), "outcome": "refused", "rule": rule})
