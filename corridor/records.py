"""Reading operators' files: the programme (TOML), the roster and the journal (CSV).

Every file is validated whole before anything is sent: each problem is reported with
its row (as a spreadsheet numbers it: the header is row 1), its column and the value.
CSV files may come from a spreadsheet, French ones included: UTF-8 with or without a
byte-order mark (or UTF-16 with one), ``,``, ``;`` or tab delimiters, empty columns past
the table, amounts with a decimal comma and spaces (non-breaking or narrow ones too)
between thousands. Problems are worded for a spreadsheet user, not in Python's terms.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import re
import tomllib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from domain.commands import (
    ArrangeMeeting,
    DecideEvaluation,
    Decision,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RecordVisitAttendance,
    RequestMeeting,
    SignContract,
    StaffCommand,
    Withdraw,
)
from domain.money import Money, currency_exponent
from domain.programme import Firm, Programme
from domain.wording import plain_problem

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_CELL_CHARS = 2000


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


# ----------------------------------------------------------------------- programme


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


# ----------------------------------------------------------------------------- CSV

# A cell may be long in the file (it is then reported as too long, with its column):
# the csv module's own limit (128 KB) would stop the reading without saying where.
csv.field_size_limit(max(csv.field_size_limit(), MAX_FILE_BYTES))

_DELIMITERS = {",": "','", ";": "';'", "\t": "a tab"}


def _column_letter(index: int) -> str:
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


def _read_csv(path: Path, columns: Sequence[str], required: set[str]) -> list[dict[str, str]]:
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
            column = _column_letter(index)
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
                    f"column appears twice (columns {_column_letter(seen[name])} "
                    f"and {_column_letter(index)})",
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
                column = name or _column_letter(index)
                errors.append(RowError(source, number, column, value, "contains a NUL character"))
            elif not name and value:
                errors.append(
                    RowError(
                        source,
                        number,
                        _column_letter(index),
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


class _RowReader:
    """Reads the cells of one row, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, row: dict[str, str], errors: list[RowError]) -> None:
        self.source = source
        self.row = row
        self.number = int(row["__row__"])
        self.errors = errors

    def fail(self, column: str | None, message: str) -> None:
        value = (self.row.get(column) or None) if column else None
        self.errors.append(RowError(self.source, self.number, column, value, message))

    def text(self, column: str, *, required: bool = True) -> str | None:
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
        for column in columns:
            if self.row.get(column):
                self.fail(column, f"is not used by action {self.row.get('action')!r}")


_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
)
_OFFSET = re.compile(r"(Z|[+-][0-9]{2}:?[0-9]{2})")
_TIMESTAMP_EXAMPLE = "2014-11-19T10:00:00-08:00"


def parse_date(value: str) -> date:
    """Parse an ISO 8601 calendar date (YYYY-MM-DD).

    Raises:
        ValueError: The value is not a real calendar date in that form.
    """
    if not _DATE_SHAPE.fullmatch(value):
        raise ValueError("write dates as YYYY-MM-DD, e.g. 2013-09-17")
    return date.fromisoformat(value)


def parse_aware_datetime(value: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries its UTC offset.

    Raises:
        ValueError: The value is not a timestamp, or has no UTC offset.
    """
    shape = _TIMESTAMP_SHAPE.match(value)
    if shape is None:
        raise ValueError(f"write a date and time with its UTC offset, e.g. {_TIMESTAMP_EXAMPLE}")
    rest = value[shape.end() :]
    if not rest:
        raise ValueError(f"no UTC offset (write e.g. {_TIMESTAMP_EXAMPLE})")
    if not _OFFSET.fullmatch(rest):
        raise ValueError(f"{rest.strip()!r} is not a UTC offset (write e.g. {_TIMESTAMP_EXAMPLE})")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        if "offset" in str(error):
            raise ValueError(f"UTC offset {rest} is out of range (from -23:59 to +23:59)") from None
        raise
    if parsed.tzinfo is None:  # pragma: no cover - the offset's shape was checked
        raise ValueError(f"no UTC offset (write e.g. {_TIMESTAMP_EXAMPLE})")
    return parsed


_AMOUNT = re.compile(r"[+-]?(?P<units>[0-9]+)(?:[.,](?P<decimals>[0-9]+))?")
_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?: [0-9]{3})+(?:[.,][0-9]+)?")
_CURRENCY_SIGNS = "$€£¥"


def parse_amount(value: str) -> Decimal:
    """Parse a decimal amount as spreadsheets write it.

    Accepted: ``180000.50``, ``180000,50`` (decimal comma), and spaces between
    thousands (ordinary, non-breaking, narrow no-break or thin: ``1 250 000,00``).
    Refused: both a comma and a dot, a comma before exactly three digits (``180,000``:
    thousands or decimals?), scientific notation, currency signs.

    Raises:
        ValueError: The value is not such an amount (the message says why).
    """
    spaced = "".join(" " if unicodedata.category(c) == "Zs" else c for c in value.strip())
    if any(sign in spaced for sign in _CURRENCY_SIGNS):
        raise ValueError("write the amount without a currency sign (the currency has its column)")
    if "," in spaced and "." in spaced:
        raise ValueError(
            "has both a comma and a dot: write 1250000.00 or 1 250 000,00 "
            "(spaces between thousands, one decimal separator)"
        )
    if re.fullmatch(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+", spaced):
        raise ValueError(
            "scientific notation may have lost digits: format the column as a number "
            "before exporting"
        )
    if " " in spaced and not _GROUPED.fullmatch(spaced):
        raise ValueError("spaces may only separate groups of three digits (1 250 000,00)")
    cleaned = spaced.replace(" ", "")
    match = _AMOUNT.fullmatch(cleaned)
    if match is None:
        raise ValueError("not a number (write e.g. 180000.50 or 180 000,50)")
    decimals = match["decimals"]
    if "," in cleaned and decimals is not None and len(decimals) == 3 and match["units"] != "0":
        units = match["units"]
        raise ValueError(
            f"ambiguous comma: {units}{decimals} (thousands) or {units}.{decimals} (decimals)? "
            "Write it without thousands separators"
        )
    return Decimal(cleaned.replace(",", "."))


M = TypeVar("M", bound=BaseModel)

_FIELD_COLUMNS = {"id": "firm_id", "name": "firm_name", "meeting_ids": "meeting_id"}
"""Model fields whose column has another name."""


def _model(reader: _RowReader, column: str | None, model: type[M], **fields: Any) -> M | None:
    """Build ``model`` from ``fields``, turning validation errors into row errors.

    Each error is reported in ``column`` if given, else in the column of the field it
    concerns (``meeting_ids`` in ``meeting_id``, a firm's ``id`` in ``firm_id``, ...).
    """
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        for e in error.errors():
            names = [p for p in e["loc"] if isinstance(p, str)]
            where = names[0] if names else None
            problem = plain_problem(e)
            reader.fail(column or (_FIELD_COLUMNS.get(where, where) if where else None), problem)
        return None


def command_id(
    source_kind: str, programme_id: str, row: dict[str, str], columns: Sequence[str]
) -> str:
    """A stable id for a file row, so that sending the same row twice records it once."""
    content = "\x1f".join([source_kind, programme_id, *(row.get(c, "") for c in columns)])
    return f"{source_kind}-" + hashlib.sha256(content.encode()).hexdigest()[:32]


# -------------------------------------------------------------------------- roster

ROSTER_COLUMNS = (
    "firm_id",
    "firm_name",
    "sector",
    "city",
    "contact_name",
    "contact_email",
    "mission_id",
    "introduced_on",
    "wants_to_meet",
)
_ROSTER_REQUIRED = {"firm_id", "firm_name", "mission_id", "introduced_on"}


def load_roster(path: Path, programme: Programme, today: date | None = None) -> list[EnrollFirm]:
    """Read a roster: one row per firm, each becoming an ``EnrollFirm`` command.

    Args:
        path: The roster CSV.
        programme: The programme the firms are enrolled in (missions are checked).
        today: The programme's today; introduction dates after it are refused.

    Raises:
        InputError: Every problem found, with its row and column.
    """
    source = path.name
    errors: list[RowError] = []
    commands: list[EnrollFirm] = []
    seen: dict[str, int] = {}
    for row in _read_csv(path, ROSTER_COLUMNS, _ROSTER_REQUIRED):
        reader = _RowReader(source, row, errors)
        firm_id = reader.text("firm_id")
        if firm_id is not None:
            if firm_id in seen:
                reader.fail("firm_id", f"firm already listed on row {seen[firm_id]}")
            seen.setdefault(firm_id, reader.number)
        mission_id = reader.text("mission_id")
        if mission_id is not None and mission_id not in {m.id for m in programme.missions}:
            known = ", ".join(m.id for m in programme.missions)
            reader.fail("mission_id", f"unknown mission (known: {known})")
            mission_id = None
        introduced_on = reader.parsed("introduced_on", parse_date, "a date")
        if introduced_on is not None and mission_id is not None:
            mission = programme.mission(mission_id)
            if not mission.starts_on <= introduced_on <= mission.ends_on:
                reader.fail(
                    "introduced_on",
                    f"outside mission {mission.id} ({mission.starts_on} to {mission.ends_on})",
                )
                introduced_on = None
        if introduced_on is not None and today is not None and introduced_on > today:
            reader.fail("introduced_on", f"is in the future (today is {today})")
        firm = _model(
            reader,
            None,
            Firm,
            id=row.get("firm_id", ""),
            name=row.get("firm_name", ""),
            sector=row.get("sector") or None,
            city=row.get("city") or None,
            contact_name=row.get("contact_name") or None,
            contact_email=row.get("contact_email") or None,
        )
        wants = [w.strip() for w in row.get("wants_to_meet", "").split("|") if w.strip()]
        if firm is None or mission_id is None or introduced_on is None:
            continue
        command = _model(
            reader,
            None,
            EnrollFirm,
            command_id=command_id("roster", programme.id, row, ROSTER_COLUMNS),
            occurred_on=introduced_on,
            programme=programme,
            firm=firm,
            mission_id=mission_id,
            wants_to_meet=wants,
        )
        if command is not None:
            commands.append(command)
    if errors:
        raise InputError(errors)
    return commands


# ------------------------------------------------------------------------- journal

JOURNAL_COLUMNS = (
    "occurred_on",
    "firm_id",
    "action",
    "meeting_id",
    "counterpart",
    "partner_id",
    "scheduled_at",
    "outcome",
    "amount",
    "currency",
    "mission_id",
    "decision",
    "notes",
)
_JOURNAL_REQUIRED = {"occurred_on", "firm_id", "action"}
_ACTION_COLUMNS: dict[str, set[str]] = {
    "meeting_requested": {"meeting_id", "counterpart"},
    "meeting_arranged": {"meeting_id", "partner_id", "scheduled_at"},
    "meeting_held": {"meeting_id", "outcome"},
    "contract_signed": {"meeting_id", "counterpart", "amount", "currency"},
    "visit_attended": {"mission_id"},
    "visit_skipped": {"mission_id"},
    "evaluation_decided": {"decision"},
    "withdrew": set(),
}
ACTIONS = tuple(_ACTION_COLUMNS)


@dataclass(frozen=True)
class JournalRecord:
    """One journal row, ready to send to the firm's journey.

    Attributes:
        row: Spreadsheet row number.
        firm_id: The firm whose journey receives the command.
        action: The journal's action name.
        command: The command to send.
    """

    row: int
    firm_id: str
    action: str
    command: StaffCommand

    @property
    def occurred_on(self) -> date:
        """Business date of the record."""
        assert self.command.occurred_on is not None
        return self.command.occurred_on


def _journal_command(reader: _RowReader, action: str, cid: str) -> StaffCommand | None:
    """Build the command of one journal row, or record its problems and return None."""
    before = len(reader.errors)
    day = reader.parsed("occurred_on", parse_date, "a date")
    notes = reader.text("notes", required=False) or ""
    reader.unused([c for c in JOURNAL_COLUMNS[3:-1] if c not in _ACTION_COLUMNS[action]])
    model: type[BaseModel]
    fields: dict[str, Any] = {"command_id": cid, "occurred_on": day}
    match action:
        case "meeting_requested":
            model = RequestMeeting
            fields |= {
                "meeting_id": reader.text("meeting_id"),
                "counterpart": reader.text("counterpart"),
            }
        case "meeting_arranged":
            model = ArrangeMeeting
            fields |= {
                "meeting_id": reader.text("meeting_id"),
                "partner_id": reader.text("partner_id"),
                "scheduled_at": reader.parsed("scheduled_at", parse_aware_datetime, "a timestamp"),
            }
        case "meeting_held":
            model = RecordMeetingResult
            fields |= {
                "meeting_id": reader.text("meeting_id"),
                "outcome": reader.choice("outcome", Outcome),
                "notes": notes,
            }
        case "contract_signed":
            meeting_id = reader.text("meeting_id", required=False)
            counterpart = reader.text("counterpart")
            amount = reader.parsed("amount", parse_amount, "an amount")
            currency = reader.text("currency")
            if currency is not None:
                currency = currency.upper()
                try:
                    currency_exponent(currency)
                except ValueError as error:
                    reader.fail("currency", str(error))
                    currency = None
            if amount is None or currency is None:
                return None
            value = _model(reader, "amount", Money, amount=amount, currency=currency)
            if value is None:
                return None
            model = SignContract
            fields |= {
                "counterpart": counterpart,
                "value": value,
                "meeting_ids": [meeting_id] if meeting_id else [],
                "notes": notes,
            }
        case "visit_attended" | "visit_skipped":
            model = RecordVisitAttendance
            fields |= {
                "attended": action == "visit_attended",
                "mission_id": reader.text("mission_id", required=False),
                "notes": notes,
            }
        case "evaluation_decided":
            model = DecideEvaluation
            fields |= {
                "decision": reader.choice("decision", Decision),
                "notes": notes,
            }
        case _:
            model = Withdraw
            fields |= {"reason": notes}
    if len(reader.errors) != before:
        return None
    return _model(reader, None, model, **fields)  # type: ignore[return-value]


def journal_firm_ids(path: Path) -> set[str]:
    """The firm ids a journal names (to check them before reading it whole).

    Raises:
        InputError: The file cannot be read as a journal (missing, header problems).
    """
    return {
        row["firm_id"]
        for row in _read_csv(path, JOURNAL_COLUMNS, _JOURNAL_REQUIRED)
        if row.get("firm_id")
    }


def load_journal(
    path: Path, programme: Programme, known_firms: set[str] | None = None
) -> list[JournalRecord]:
    """Read a journal: one row per record staff made, each becoming a command.

    Args:
        path: The journal CSV (columns ``JOURNAL_COLUMNS``; a row fills only the
            columns its action uses).
        programme: The programme; partner and mission ids are checked against it.
        known_firms: Firms that have a journey; other firm ids are reported (None: not
            checked).

    Returns:
        The records sorted by date (rows of the same date keep their file order).

    Raises:
        InputError: Every problem found, with its row and column.
    """
    source = path.name
    errors: list[RowError] = []
    records: list[JournalRecord] = []
    partners = {p.id for p in programme.partners}
    missions = {m.id for m in programme.missions}
    for row in _read_csv(path, JOURNAL_COLUMNS, _JOURNAL_REQUIRED):
        reader = _RowReader(source, row, errors)
        firm_id = reader.text("firm_id")
        if firm_id is not None and known_firms is not None and firm_id not in known_firms:
            reader.fail("firm_id", f"firm has no journey in programme {programme.id}")
        action = reader.text("action")
        if action is not None and action not in _ACTION_COLUMNS:
            reader.fail("action", f"unknown action (expected one of {', '.join(ACTIONS)})")
            continue
        if row.get("partner_id") and row["partner_id"] not in partners:
            reader.fail("partner_id", f"unknown partner (known: {', '.join(sorted(partners))})")
        if row.get("mission_id") and row["mission_id"] not in missions:
            reader.fail("mission_id", f"unknown mission (known: {', '.join(sorted(missions))})")
        if action is None or firm_id is None:
            continue
        cid = command_id("journal", programme.id, row, JOURNAL_COLUMNS)
        command = _journal_command(reader, action, cid)
        if command is not None:
            records.append(JournalRecord(reader.number, firm_id, action, command))
    if errors:
        raise InputError(errors)
    return sorted(records, key=lambda r: (r.occurred_on, r.row))
