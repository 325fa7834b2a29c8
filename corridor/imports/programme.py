"""Reading a programme from its TOML file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from corridor.imports.problems import InputError, RowError
from domain.programme import Programme


def load_programme(path: Path) -> Programme:
    """Load a programme from its TOML file.

    Raises:
        InputError: The file is missing, is not TOML, or breaks the programme's schema
            (each problem names its field path).
    """
    source = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError([RowError(source, None, None, None, "file not found")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError([RowError(source, None, None, None, f"not valid TOML: {error}")]) from None
    try:
        return Programme.model_validate(raw)
    except ValidationError as error:
        raise InputError(
            [
                RowError(
                    source,
                    None,
                    ".".join(str(p) for p in e["loc"]) or None,
                    None if isinstance(e.get("input"), dict | list) else str(e.get("input")),
                    e["msg"],
                )
                for e in error.errors()
            ]
        ) from None


