"""Reading operators' files: the programme (TOML), the roster and the journal (CSV).

Every file is validated whole before anything is sent: each problem is reported with
its row (as a spreadsheet numbers it: the header is row 1), its column and the value.
CSV files may come from a spreadsheet: a UTF-8 byte-order mark, ``;`` or tab
delimiters are accepted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
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


def _read_csv(path: Path, columns: Sequence[str], required: set[str]) -> list[dict[str, str]]:
    """Read a CSV file into rows keyed by column, checking its header.

    Raises:
        InputError: The file is missing, too large, not UTF-8, or its header lacks a
            required column or has an unknown one.
    """
    source = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError([RowError(source, None, None, None, "file not found")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError([RowError(source, None, None, None, "file larger than 20 MB")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(
            [RowError(source, None, None, None, f"not UTF-8 text (byte {error.start})")]
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError([RowError(source, line, None, None, "contains a NUL character")])
    if not text.strip():
        raise InputError([RowError(source, None, None, None, "file is empty")])
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text.split("\n", 1)[0], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = [h.strip() for h in next(reader)]
    errors = [
        RowError(source, 1, c, None, "required column is missing")
        for c in columns
        if c in required and c not in header
    ]
    expected = ", ".join(columns)
    errors += [
        RowError(source, 1, h or "(empty)", None, f"unknown column (expected: {expected})")
        for h in header
        if h not in columns
    ]
    if errors:
        raise InputError(errors)
    rows: list[dict[str, str]] = []
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            errors.append(
                RowError(
                    source,
                    number,
                    None,
                    None,
                    f"has {len(cells)} cells, the header has {len(header)}",
                )
            )
            continue
        row = {h: c.replace("\u00a0", " ").strip() for h, c in zip(header, cells, strict=True)}
        row["__row__"] = str(number)
        rows.append(row)
    if errors:
        raise InputError(errors)
    return rows


T = TypeVar("T")


class _RowReader:
    """Reads the cells of one row, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, row: dict[str, str], errors: list[RowError]) -> None:
        self.source = source
        self.row = row
        self.number = int(row["__row__"])
        self.errors = errors

    def fail(self, column: str | None, message: str) -> None:
        value = self.row.get(column) if column else None
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

    def unused(self, columns: Sequence[str]) -> None:
        for column in columns:
            if self.row.get(column):
                self.fail(column, f"is not used by action {self.row.get('action')!r}")


def parse_date(value: str) -> date:
    """Parse an ISO 8601 calendar date (YYYY-MM-DD).

    Raises:
        ValueError: The value is not a real calendar date in that form.
    """
    if len(value) != 10:
        raise ValueError("expected YYYY-MM-DD")
    return date.fromisoformat(value)


def parse_aware_datetime(value: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries its UTC offset.

    Raises:
        ValueError: The value is not a timestamp, or has no UTC offset.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset (write e.g. 2014-11-19T10:00:00-08:00)")
    return parsed


def parse_amount(value: str) -> Decimal:
    """Parse a decimal amount written with a dot or a comma, spaces between thousands.

    Raises:
        ValueError: The value is not a finite decimal number.
    """
    cleaned = value.replace(" ", "").replace("\u202f", "")
    if "," in cleaned and "." in cleaned:
        raise ValueError("use one decimal separator, no thousands separators")
    cleaned = cleaned.replace(",", ".")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not amount.is_finite():
        raise ValueError("not a finite number")
    return amount


M = TypeVar("M", bound=BaseModel)


def _model(reader: _RowReader, column: str | None, model: type[M], **fields: Any) -> M | None:
    """Build ``model`` from ``fields``, turning validation errors into row errors."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        for e in error.errors():
            loc = [str(p) for p in e["loc"]]
            message = e["msg"].removeprefix("Value error, ")
            reader.fail(column or (loc[-1] if loc else None), message)
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
            outcomes = ", ".join(o.value for o in Outcome)
            model = RecordMeetingResult
            fields |= {
                "meeting_id": reader.text("meeting_id"),
                "outcome": reader.parsed("outcome", Outcome, f"one of {outcomes}"),
                "notes": notes,
            }
        case "contract_signed":
            meeting_id = reader.text("meeting_id", required=False)
            counterpart = reader.text("counterpart")
            amount = reader.parsed("amount", parse_amount, "an amount")
            currency = reader.text("currency")
            if currency is not None:
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
                "decision": reader.parsed("decision", Decision, "renew or close"),
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
