"""Reading a programme from its TOML file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from corridor.imports.problems import InputError, RowError
from domain.programme import AT_INPUT, ID_PATTERN, Programme
from domain.wording import plain_problem

_ARRAY_TABLE = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]")
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def load_programme(path: Path) -> Programme:
    """Load a programme from its TOML file.

    The file is input: its single-line text (names, places, the staff's names and
    addresses, the sender) refuses line breaks, tabs, other control characters and
    bidirectional controls (``domain.programme.AT_INPUT``).

    Raises:
        InputError: The file is missing, is not TOML, or breaks the programme's schema
            (each problem names its field path, the file's line and the value, in
            file order).
    """
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise InputError([RowError(source, None, None, None, "file not found")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError([RowError(source, None, None, None, f"not valid TOML: {error}")]) from None
    try:
        return Programme.model_validate(raw, context=AT_INPUT)
    except ValidationError as error:
        lines = text.splitlines()
        problems = [
            RowError(
                source,
                _line_of(lines, tuple(e["loc"])),
                ".".join(str(p) for p in e["loc"]) or None,
                None if isinstance(e.get("input"), dict | list) else str(e.get("input")),
                _problem(e),
            )
            for e in error.errors()
        ]
        # In file order (the line of each key), problems of the whole file last.
        problems.sort(key=lambda p: (p.row is None, p.row or 0))
        raise InputError(problems) from None


def _problem(detail: ErrorDetails) -> str:
    """A validation problem in plain words (an id's rule as ids are told everywhere)."""
    pattern = (detail.get("ctx") or {}).get("pattern")
    if detail["type"] == "string_pattern_mismatch" and pattern == ID_PATTERN:
        return plain_problem(detail)
    return str(detail["msg"]).removeprefix("Value error, ")


def _line_of(lines: list[str], loc: tuple[int | str, ...]) -> int | None:
    """The line (1 = the first) where the key holding ``loc`` is written, if found.

    ``("staff", 1, "name")`` is the ``name = ...`` line of the second ``[[staff]]``
    table; ``("missions", 0, "places", 1)`` the ``places = [...]`` line of the first
    mission. None for a problem of the whole file or of a whole table.
    """
    section: tuple[int | str, ...] = ()
    counts: dict[str, int] = {}
    best: tuple[int, int] | None = None  # (length of the path matched, line)
    for number, line in enumerate(lines, start=1):
        if header := _ARRAY_TABLE.match(line):
            name = header[1]
            counts[name] = counts.get(name, 0) + 1
            section = (*name.split("."), counts[name] - 1)
            continue
        if header := _TABLE.match(line):
            section = tuple(header[1].split("."))
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        path = (*section, key[1])
        if loc[: len(path)] == path and (best is None or len(path) > best[0]):
            best = (len(path), number)
    return best[1] if best is not None else None
