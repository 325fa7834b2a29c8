"""Validation problems in plain words, the same wherever a command or a row is checked.

Staff meet these messages in three places: a spreadsheet row (``corridor enroll`` /
``corridor record``), a CLI option, and a raw signal sent from the Temporal CLI or Web
UI. Each pydantic error detail is worded once here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

ID_RULE = (
    "is not an id: use lower-case letters a-z, digits, '.', '_' or '-' "
    "(no spaces or accents, at most 63 characters)"
)
"""What an invalid id is told (ids appear in workflow ids, so they are restricted)."""

_EXAMPLES = {"Money": ' such as {"amount": "1000.00", "currency": "USD"}'}


def plain_problem(detail: Mapping[str, Any]) -> str:
    """Word one pydantic error detail for a person, without its location.

    Args:
        detail: One item of ``ValidationError.errors()``.

    Returns:
        E.g. "is required", "is not a field of this command", or the validator's own
        message without pydantic's "Value error, " prefix.
    """
    kind = detail["type"]
    context = detail.get("ctx") or {}
    if kind in ("missing", "string_too_short"):
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field of this command"
    if kind == "string_pattern_mismatch":
        return ID_RULE
    if kind == "string_too_long":
        return f"longer than {context.get('max_length')} characters"
    if kind == "model_type":
        example = _EXAMPLES.get(str(context.get("class_name", "")), "")
        return f"should be a JSON object{example}"
    return str(detail["msg"]).removeprefix("Value error, ")


def explain(error: ValidationError) -> str:
    """A whole validation error in plain words: ``"field: problem; field: problem"``."""
    problems = []
    for detail in error.errors():
        where = ".".join(str(p) for p in detail["loc"])
        message = plain_problem(detail)
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
