"""The journal: one CSV row per record staff made, each becoming a staff command.

Besides the records, a journal may correct them (actions ``contract_corrected``,
``contract_voided``, ``meeting_result_corrected``, ``visit_attendance_corrected``, each
with a ``reason``), and say who made each record (optional column ``recorded_by``;
otherwise the ``--by`` of ``corridor record``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from corridor.imports.problems import InputError, RowError
from corridor.imports.spreadsheet import RowReader, build_model, read_csv, row_command_id
from corridor.imports.values import parse_amount, parse_aware_datetime, parse_currency, parse_date
from domain.commands import (
    ArrangeMeeting,
    CompleteNextStep,
    CorrectContract,
    CorrectMeetingResult,
    CorrectVisitAttendance,
    DecideEvaluation,
    Decision,
    Outcome,
    RecordMeetingResult,
    RecordVisitAttendance,
    RequestMeeting,
    SignContract,
    StaffCommand,
    VoidContract,
    Withdraw,
)
from domain.errors import AmountAboveMaximum
from domain.journey import check_contract_amount
from domain.money import Money
from domain.programme import Programme

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
    "contract_id",
    "mission_id",
    "decision",
    "notes",
)
_JOURNAL_REQUIRED = {"occurred_on", "firm_id", "action"}
_ACTION_COLUMNS: dict[str, set[str]] = {
    "meeting_requested": {"meeting_id", "counterpart"},
    "meeting_arranged": {"meeting_id", "partner_id", "scheduled_at"},
    "meeting_held": {"meeting_id", "outcome"},
    "contract_signed": {"meeting_id", "counterpart", "amount", "currency", "contract_id"},
    "visit_attended": {"mission_id"},
    "visit_skipped": {"mission_id"},
    "evaluation_decided": {"decision"},
    "withdrew": set(),
    "next_step_done": {"meeting_id"},
}
CORRECTION_COLUMNS = ("signed_on", "visit", "attendance", "reason")
"""Optional columns of the corrections (a journal without corrections leaves them out)."""
NEXT_STEP_COLUMNS = ("next_step", "next_step_due_on")
"""Optional columns of ``meeting_held``: the next step agreed and its due date (issue 9);
the action ``next_step_done`` (column ``meeting_id``) marks it done."""
AUTHOR_COLUMN = "recorded_by"
"""Optional column: who made the record (else ``corridor record --by``)."""
_CORRECTION_ACTIONS: dict[str, set[str]] = {
    "contract_corrected": {
        "contract_id",
        "amount",
        "currency",
        "counterpart",
        "signed_on",
        "meeting_id",
        "reason",
    },
    "contract_voided": {"contract_id", "reason"},
    "meeting_result_corrected": {"meeting_id", "outcome", "reason"},
    "visit_attendance_corrected": {"visit", "attendance", "reason"},
}
_ACTION_COLUMNS |= _CORRECTION_ACTIONS
ACTIONS = tuple(_ACTION_COLUMNS)
_ALL_COLUMNS = (*JOURNAL_COLUMNS, *CORRECTION_COLUMNS, *NEXT_STEP_COLUMNS, AUTHOR_COLUMN)


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


def _journal_command(reader: RowReader, action: str) -> StaffCommand | None:
    """Build the command of one journal row, or record its problems and return None."""
    before = len(reader.errors)
    day = reader.parsed("occurred_on", parse_date, "a date")
    notes = reader.text("notes", required=False) or ""
    reader.unused([c for c in JOURNAL_COLUMNS[3:-1] if c not in _ACTION_COLUMNS[action]])
    if action != "meeting_held":
        reader.unused(list(NEXT_STEP_COLUMNS))
    model: type[BaseModel]
    fields: dict[str, Any] = {"occurred_on": day}
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
                "next_step": reader.text("next_step", required=False),
                "next_step_due_on": reader.parsed(
                    "next_step_due_on", parse_date, "a date", required=False
                ),
            }
        case "next_step_done":
            model = CompleteNextStep
            fields |= {"meeting_id": reader.text("meeting_id"), "notes": notes}
        case "contract_signed":
            meeting_id = reader.text("meeting_id", required=False)
            counterpart = reader.text("counterpart")
            amount = reader.parsed("amount", parse_amount, "an amount")
            currency = reader.text("currency")
            if currency is not None:
                try:
                    currency = parse_currency(currency)
                except ValueError as error:
                    reader.fail("currency", str(error))
                    currency = None
            if amount is None or currency is None:
                return None
            value = build_model(reader, "amount", Money, amount=amount, currency=currency)
            if value is None:
                return None
            model = SignContract
            fields |= {
                "contract_id": reader.text("contract_id", required=False),
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
    return build_model(reader, None, model, **fields)  # type: ignore[return-value]


class _Attendance(StrEnum):
    ATTENDED = "attended"
    SKIPPED = "skipped"


def _correction_command(reader: RowReader, action: str) -> StaffCommand | None:
    """Build the command of one correction row, or record its problems and return None."""
    before = len(reader.errors)
    day = reader.parsed("occurred_on", parse_date, "a date")
    reader.unused(
        [
            c
            for c in (*JOURNAL_COLUMNS[3:], *CORRECTION_COLUMNS)
            if c not in _CORRECTION_ACTIONS[action]
        ]
    )
    reason = reader.text("reason")
    model: type[BaseModel]
    fields: dict[str, Any] = {"occurred_on": day, "reason": reason}
    match action:
        case "contract_corrected":
            model = CorrectContract
            amount = reader.parsed("amount", parse_amount, "an amount", required=False)
            currency = reader.text("currency", required=False)
            if currency is not None:
                try:
                    currency = parse_currency(currency)
                except ValueError as error:
                    reader.fail("currency", str(error))
            if (amount is None) != (currency is None) and len(reader.errors) == before:
                reader.fail(
                    "amount" if amount is None else "currency",
                    "is required with "
                    + ("currency" if amount is None else "amount")
                    + " (a corrected value has both)",
                )
            value = None
            if amount is not None and currency is not None and len(reader.errors) == before:
                value = build_model(reader, "amount", Money, amount=amount, currency=currency)
            meeting_id = reader.text("meeting_id", required=False)
            fields |= {
                "contract_id": reader.text("contract_id"),
                "value": value,
                "counterpart": reader.text("counterpart", required=False),
                "signed_on": reader.parsed("signed_on", parse_date, "a date", required=False),
                "meeting_ids": [meeting_id] if meeting_id else None,
            }
            if len(reader.errors) == before and not any(
                fields[k] is not None for k in ("value", "counterpart", "signed_on", "meeting_ids")
            ):
                reader.fail(
                    None,
                    "nothing to correct: fill amount and currency, counterpart, signed_on "
                    "or meeting_id",
                )
        case "contract_voided":
            model = VoidContract
            fields |= {"contract_id": reader.text("contract_id")}
        case "meeting_result_corrected":
            model = CorrectMeetingResult
            fields |= {
                "meeting_id": reader.text("meeting_id"),
                "outcome": reader.choice("outcome", Outcome),
            }
        case _:
            model = CorrectVisitAttendance
            attendance = reader.choice("attendance", _Attendance)
            fields |= {
                "visit": reader.parsed("visit", _visit_number, "a visit number (1, 2, ...)"),
                "attended": attendance is _Attendance.ATTENDED,
            }
    if len(reader.errors) != before:
        return None
    return build_model(reader, None, model, **fields)  # type: ignore[return-value]


def _visit_number(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError("")
    return int(value)


def _authored(reader: RowReader, command: StaffCommand, by: str | None) -> StaffCommand | None:
    """The command with its author: the row's ``recorded_by``, else ``by``."""
    author = reader.text(AUTHOR_COLUMN, required=False) or by
    if author is None:
        return command
    return build_model(
        reader, AUTHOR_COLUMN, type(command), **{**command.model_dump(), "by": author}
    )


def journal_firm_ids(path: Path) -> set[str]:
    """The firm ids a journal names (to check them before reading it whole).

    Raises:
        InputError: The file cannot be read as a journal (missing, header problems).
    """
    return {
        row["firm_id"]
        for row in read_csv(path, _ALL_COLUMNS, _JOURNAL_REQUIRED)
        if row.get("firm_id")
    }


def load_journal(
    path: Path,
    programme: Programme,
    known_firms: set[str] | None = None,
    by: str | None = None,
) -> list[JournalRecord]:
    """Read a journal: one row per record staff made, each becoming a command.

    Args:
        path: The journal CSV (columns ``JOURNAL_COLUMNS``; a row fills only the
            columns its action uses).
        programme: The programme; partner and mission ids are checked against it.
        known_firms: Firms that have a journey; other firm ids are reported (None: not
            checked).
        by: Who made the records (``Command.by``) where the row's ``recorded_by`` is
            empty; None: not said.

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
    for row in read_csv(path, _ALL_COLUMNS, _JOURNAL_REQUIRED):
        reader = RowReader(source, row, errors)
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
        command: StaffCommand | None
        if action in _CORRECTION_ACTIONS:
            reader.unused(list(NEXT_STEP_COLUMNS))
            command = _correction_command(reader, action)
        else:
            reader.unused(list(CORRECTION_COLUMNS))
            command = _journal_command(reader, action)
        if command is not None:
            command = _authored(reader, command, by)
        value = getattr(command, "value", None)
        if isinstance(value, Money):  # checked here too: a refused row would leave the rest sent
            try:
                check_contract_amount(programme, value)
            except AmountAboveMaximum as error:
                reader.fail("amount", str(error))
                continue
        if command is not None:
            cid = row_command_id("journal", programme.id, firm_id, command)
            command = command.model_copy(update={"command_id": cid})
            records.append(JournalRecord(reader.number, firm_id, action, command))
    if errors:
        raise InputError(errors)
    return sorted(records, key=lambda r: (r.occurred_on, r.row))
