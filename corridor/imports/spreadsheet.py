"""Reading a CSV file as a spreadsheet exports it, and the cells of its rows.

CSV files may come from a spreadsheet, French ones included: UTF-8 with or without a
byte-order mark (or UTF-16 with one), ``,``, ``;`` or tab delimiters, empty columns past
the table. Rows are numbered as a spreadsheet numbers them (the header is row 1).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from corridor.imports.problems import InputError, RowError
from domain.money import currency_exponent
from domain.programme import AT_INPUT
from domain.wording import plain_problem

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_CELL_CHARS = 2000



# A cell may be long in the file (it is then reported as too long, with its column):
# the csv module's own limit (128 KB) would stop the reading without saying where.
csv.field_size_limit(max(csv.field_size_limit(), MAX_FILE_BYTES))

_DELIMITERS = {",": "','", ";": "';'", "\t": "a tab"}


def column_letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index (0: A, 26: AA)."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _decode(source: str, data: bytes) -> str:
    """Decode a file as UTF-8 (with or without BOM) or UTF-16 with its BOM.

    Raises:
        InputError: Neither; the error names the row of the first bad byte.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(
                [RowError(source, None, None, None, "not valid UTF-16 text")]
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = data[: error.start].count(b"\n") + 1
        message = (
            f"not UTF-8 text (byte 0x{data[error.start]:02x}); save it as "
            '"CSV UTF-8" (in French: "CSV UTF-8 (délimité par des virgules)")'
        )
        raise InputError([RowError(source, row, None, None, message)]) from None


def _delimiter(header_line: str) -> str:
    """The delimiter a header line uses: the most frequent of ``,``, ``;`` and tab."""
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(counts.values())
    return next((d for d, n in counts.items() if n == best), ",") if best else ","


def _csv_problem(error: csv.Error) -> str:
    """A csv module error in a spreadsheet user's words."""
    text = str(error)
    if "unexpected end of data" in text:
        return 'a quote (") opened on this row is never closed'
    if "expected after" in text:
        return 'a quoted cell goes on after its closing quote (inside quotes, write a quote as "")'
    return f"cannot be read as CSV ({text})"


def read_csv(path: Path, columns: Sequence[str], required: set[str]) -> list[dict[str, str]]:
    """Read a CSV file into rows keyed by column, checking its header.

    The delimiter is the header's (``,``, ``;`` or tab). Columns without a name (empty
    header cells, as spreadsheets export past the table's last column) are ignored
    when they hold nothing.

    Raises:
        InputError: The file is missing, too large, not text, or badly formed: a
            header without a required column or with an unknown or repeated one, a row
            whose cells do not match the header, a NUL character.
    """
    source = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError([RowError(source, None, None, None, "file not found")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError([RowError(source, None, None, None, "file larger than 20 MB")])
    text = _decode(source, data)
    if not text.strip():
        raise InputError([RowError(source, None, None, None, "file is empty")])
    delimiter = _delimiter(text.splitlines()[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as error:
        raise InputError([RowError(source, 1, None, None, _csv_problem(error))]) from None
    errors = [
        RowError(source, 1, c, None, "required column is missing")
        for c in columns
        if c in required and c not in header
    ]
    expected = ", ".join(columns)
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if "\x00" in name:
            column = column_letter(index)
            errors.append(RowError(source, 1, column, name, "contains a NUL character"))
            continue
        if not name:
            continue
        if name not in columns:
            close = difflib.get_close_matches(name.lower(), columns, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            errors.append(
                RowError(source, 1, name, None, f"unknown column ({hint}expected: {expected})")
            )
        elif name in seen:
            errors.append(
                RowError(
                    source,
                    1,
                    name,
                    None,
                    f"column appears twice (columns {column_letter(seen[name])} "
                    f"and {column_letter(index)})",
                )
            )
        seen.setdefault(name, index)
    if errors:
        raise InputError(errors)
    rows: list[dict[str, str]] = []
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            errors.append(RowError(source, number, None, None, _csv_problem(error)))
            break
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            message = f"has {len(cells)} cell{'s' if len(cells) != 1 else ''}, the header has "
            message += f"{len(header)}"
            others = [d for d in _DELIMITERS if d != delimiter and d in cells[0]]
            if len(cells) == 1 and others:
                message += (
                    f" (the header is separated by {_DELIMITERS[delimiter]}, "
                    f"this row by {_DELIMITERS[others[0]]})"
                )
            elif len(cells) > len(header):
                message += f" (a cell holding {_DELIMITERS[delimiter]} must be in quotes)"
            errors.append(RowError(source, number, None, None, message))
            continue
        row: dict[str, str] = {}
        for index, (name, cell) in enumerate(zip(header, cells, strict=True)):
            value = cell.replace("\u00a0", " ").strip()
            if "\x00" in value:
                column = name or column_letter(index)
                errors.append(RowError(source, number, column, value, "contains a NUL character"))
            elif not name and value:
                errors.append(
                    RowError(
                        source,
                        number,
                        column_letter(index),
                        value,
                        "cell under a header cell left empty (name the column or clear it)",
                    )
                )
            elif name:
                row[name] = value
        row["__row__"] = str(number)
        rows.append(row)
    if errors:
        raise InputError(errors)
    return rows


T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


class RowReader:
    """Reads the cells of one row, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, row: dict[str, str], errors: list[RowError]) -> None:
        self.source = source
        self.row = row
        self.number = int(row["__row__"])
        self.errors = errors

    def fail(self, column: str | None, message: str) -> None:
        """Record a problem in ``column`` (None: the row's), with the cell's value."""
        value = (self.row.get(column) or None) if column else None
        self.errors.append(RowError(self.source, self.number, column, value, message))

    def text(self, column: str, *, required: bool = True) -> str | None:
        """The cell's text; None (and a problem) when required and empty, or too long."""
        value = self.row.get(column, "")
        if not value:
            if required:
                self.fail(column, "is required")
            return None
        if len(value) > MAX_CELL_CHARS:
            self.fail(column, f"longer than {MAX_CELL_CHARS} characters")
            return None
        return value

    def parsed(
        self, column: str, parse: Callable[[str], T], what: str, *, required: bool = True
    ) -> T | None:
        """The cell parsed by ``parse``; None (and "is not {what}") when it fails."""
        value = self.text(column, required=required)
        if value is None:
            return None
        try:
            return parse(value)
        except (ValueError, InvalidOperation) as error:
            detail = str(error).split("\n")[0]
            self.fail(column, f"is not {what}" + (f": {detail}" if detail else ""))
            return None

    def choice(self, column: str, choices: type[E]) -> E | None:
        """The cell as one of an enumeration's values (written exactly as listed)."""
        value = self.text(column)
        if value is None:
            return None
        try:
            return choices(value)
        except ValueError:
            self.fail(column, f"is not one of {', '.join(c.value for c in choices)}")
            return None

    def unused(self, columns: Sequence[str]) -> None:
        """Report every filled cell among ``columns``: the row's action does not use it."""
        for column in columns:
            if self.row.get(column):
                self.fail(column, f"is not used by action {self.row.get('action')!r}")



M = TypeVar("M", bound=BaseModel)

_FIELD_COLUMNS = {"id": "firm_id", "name": "firm_name", "meeting_ids": "meeting_id"}
"""Model fields whose column has another name."""


def build_model(reader: RowReader, column: str | None, model: type[M], **fields: Any) -> M | None:
    """Build ``model`` from ``fields``, turning validation errors into row errors.

    Each error is reported in ``column`` if given, else in the column of the field it
    concerns (``meeting_ids`` in ``meeting_id``, a firm's ``id`` in ``firm_id``, ...).
    A row is input: single-line text refuses control characters
    (``domain.programme.AT_INPUT``).
    """
    try:
        return model.model_validate(fields, context=AT_INPUT)
    except ValidationError as error:
        for e in error.errors():
            names = [p for p in e["loc"] if isinstance(p, str)]
            where = names[0] if names else None
            problem = plain_problem(e)
            reader.fail(column or (_FIELD_COLUMNS.get(where, where) if where else None), problem)
        return None


def row_command_id(source_kind: str, programme_id: str, firm_id: str, command: BaseModel) -> str:
    """A stable id for the command a file row becomes, so that sending it twice records it once.

    Derived from the command's parsed values, never from the row's text: ``2001.00``
    and ``2001,00`` (amounts are taken at their currency's minor units: ``2001`` too),
    ``2013-09-19T17:00Z`` and ``2013-09-19T10:00-07:00``, a re-export with other
    separators or quotes, all give the same id. Another note gives another id (the
    journey still recognises the record by its meaning: "already recorded").

    Args:
        source_kind: ``journal`` or ``roster``, the id's prefix.
        programme_id: The programme the row is sent in.
        firm_id: The firm whose journey receives the command.
        command: The parsed command (its own ``command_id``, programme and author are
            left out: the same record sent by someone else is the same record).

    Returns:
        ``<source_kind>-`` and 32 hexadecimal digits.
    """
    data = command.model_dump(mode="json", exclude={"command_id", "programme", "by"})
    content = json.dumps(
        [source_kind, programme_id, firm_id, _canonical(data)],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return f"{source_kind}-" + hashlib.sha256(content.encode()).hexdigest()[:32]


def _canonical(data: Any) -> Any:
    """``data`` with every amount at its currency's minor units and instants in UTC."""
    if isinstance(data, list):
        return [_canonical(item) for item in data]
    if not isinstance(data, dict):
        return data
    canonical = {key: _canonical(value) for key, value in data.items()}
    if set(canonical) == {"amount", "currency"}:
        places = currency_exponent(canonical["currency"])
        amount = Decimal(canonical["amount"]).quantize(Decimal(10) ** -places)
        canonical["amount"] = format(amount, "f")
    for key, value in canonical.items():
        if isinstance(value, str) and key.endswith("_at"):
            canonical[key] = datetime.fromisoformat(value).astimezone(UTC).isoformat()
    return canonical
