"""The roster: one CSV row per firm, each becoming an ``EnrollFirm`` command."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from corridor.imports.problems import InputError, RowError
from corridor.imports.spreadsheet import RowReader, build_model, read_csv, row_command_id
from corridor.imports.values import parse_date
from domain.commands import EnrollFirm
from domain.programme import Firm, Programme

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
    "adviser",
    "language",
)
"""The roster's columns; ``adviser`` (a staff id of the programme) and ``language``
(``fr``, the default, or ``en``: the contact's) are optional (issue 9)."""
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
    for row in read_csv(path, ROSTER_COLUMNS, _ROSTER_REQUIRED):
        reader = RowReader(source, row, errors)
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
        adviser = row.get("adviser") or None
        if adviser is not None and adviser not in {m.id for m in programme.staff}:
            known = ", ".join(m.id for m in programme.staff) or "none in the programme file"
            reader.fail("adviser", f"unknown staff id (known: {known})")
            adviser = None
        language = row.get("language") or "fr"
        if language not in ("fr", "en"):
            reader.fail("language", "is not a language Corridor writes in (fr or en)")
            language = "fr"
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
        firm = build_model(
            reader,
            None,
            Firm,
            id=row.get("firm_id", ""),
            name=row.get("firm_name", ""),
            sector=row.get("sector") or None,
            city=row.get("city") or None,
            contact_name=row.get("contact_name") or None,
            contact_email=row.get("contact_email") or None,
            adviser=adviser,
            language=language,
        )
        wants = [w.strip() for w in row.get("wants_to_meet", "").split("|") if w.strip()]
        if firm is None or mission_id is None or introduced_on is None:
            continue
        command = build_model(
            reader,
            None,
            EnrollFirm,
            occurred_on=introduced_on,
            programme=programme,
            firm=firm,
            mission_id=mission_id,
            wants_to_meet=wants,
        )
        if command is not None:
            cid = row_command_id("roster", programme.id, firm.id, command)
            commands.append(command.model_copy(update={"command_id": cid}))
    if errors:
        raise InputError(errors)
    return commands


