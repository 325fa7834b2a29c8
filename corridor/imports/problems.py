"""Problems found in an input file, each with its row, column and value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RowError:
    """One problem in an input file.

    Attributes:
        source: File name.
        row: Spreadsheet row number (header = 1), or None for the whole file.
        column: Column name, or None when the problem is not one cell's.
        value: The offending value, as read.
        message: What is wrong.
    """

    source: str
    row: int | None
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column {self.column}"
        shown = "" if self.value is None else f" (value {_shorten(self.value)!r})"
        return f"{where}: {self.message}{shown}"


class InputError(Exception):
    """An input file has problems; nothing was sent.

    Attributes:
        errors: Every problem found, in file order.
    """

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def _shorten(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"

