"""Staff commands, one fact at a time: meetings, contract, visit, evaluate, withdraw.

Also a next step marked done (``next-step done``) and a firm given to another adviser
(``reassign``).

And the corrections of what they recorded: ``correct contract|meeting|visit`` and
``void contract``, each with a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from corridor import service
from corridor.cli.app import (
    ByOption,
    CommandIdOption,
    OnOption,
    ProgrammeOption,
    author,
    err,
    out,
    run,
)
from corridor.cli.connections import connected, programme_id_of
from corridor.errors import Failure
from corridor.imports import parse_amount, parse_aware_datetime, parse_currency, parse_date
from corridor.logs import configure_logging
from corridor.settings import load_settings
from domain.commands import (
    ArrangeMeeting,
    AssignAdviser,
    Command,
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
    VoidContract,
    Withdraw,
)
from domain.money import Money
from domain.programme import AT_INPUT
from domain.wording import explain


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError as error:
        raise Failure(f"{option} {value!r} is not a date: {error}", 2) from None


def _first(error: BaseException) -> str:
    """An error in plain words (pydantic's without its jargon)."""
    if isinstance(error, ValidationError):
        return explain(error)
    return str(error).splitlines()[0] if str(error) else type(error).__name__


E = TypeVar("E", bound=StrEnum)


def _choice(kind: type[E], value: str, name: str) -> E:
    """One of an enumeration's values, or a one-line error naming them all."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise Failure(f"{name} {value!r} is not one of {allowed}", 2) from None


def _retry_safe_id(firm: str, command: Command) -> str:
    """A command id for a command typed without one.

    The same command for the same firm on the same day gets the same id, so running it
    again after a time-out or an error records it once (whoever runs it again).
    """
    today = datetime.now(UTC).date()
    content = f"{firm}\x1f{today}\x1f{command.model_dump_json(exclude={'command_id', 'by'})}"
    return "cli-" + hashlib.sha256(content.encode()).hexdigest()[:32]


def _send_one(
    programme: str | None, firm: str, build: Callable[[], Command], by: str | None = None
) -> None:
    """Build a staff command from options and send it to the firm's journey.

    Args:
        programme: The ``--programme`` option.
        firm: The firm whose journey receives it.
        build: Builds the command (raises ``ValueError`` or ``Failure`` for bad input).
        by: The ``--by`` option: who sends it (see ``author``).
    """
    configure_logging("WARNING")
    settings = load_settings()

    async def main() -> None:
        try:
            command = build()
            command = type(command).model_validate(
                {**command.model_dump(), "by": author(by)}, context=AT_INPUT
            )
        except ValueError as error:
            raise Failure(_first(error), 2) from None
        if command.command_id is None:
            command = command.model_copy(update={"command_id": _retry_safe_id(firm, command)})
        async with connected(settings) as connections:
            programme_id = await programme_id_of(connections, programme, firm)
            try:
                result = await service.send(
                    connections.client, programme_id, firm, command,
                    waiting=lambda text: err.print(text, soft_wrap=True),
                )
            except service.Refused as refusal:
                raise Failure(f"refused ({refusal.rule}): {refusal.message}", 1) from None
        if result.duplicate:
            out.print("already recorded: nothing new was written")
        for line in result.events:
            out.print(f"recorded: {line}")

    run(main())


def meeting_request(
    firm: str,
    meeting_id: str,
    counterpart: str,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """The firm asks to meet COUNTERPART (e.g. Apple)."""
    _send_one(
        programme,
        firm,
        lambda: RequestMeeting(
            meeting_id=meeting_id,
            counterpart=counterpart,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


def meeting_arrange(
    firm: str,
    meeting_id: str,
    partner: Annotated[str, typer.Option(help="Partner id, e.g. labizfed.")],
    at: Annotated[str, typer.Option(help="When, with its UTC offset: 2014-11-19T10:00-08:00.")],
    place: Annotated[str | None, typer.Option(help="Where.")] = None,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """A partner arranges a requested meeting."""

    def build() -> Command:
        try:
            scheduled = parse_aware_datetime(at)
        except ValueError as error:
            raise Failure(f"--at {at!r}: {error}", 2) from None
        return ArrangeMeeting(
            meeting_id=meeting_id,
            partner_id=partner,
            scheduled_at=scheduled,
            place=place,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        )

    _send_one(programme, firm, build, by)


def meeting_result(
    firm: str,
    meeting_id: str,
    outcome: Annotated[
        str, typer.Argument(help="promising, neutral, not_interested, no_show or cancelled.")
    ],
    notes: Annotated[str, typer.Option(help="Notes on the meeting.")] = "",
    next_step: Annotated[str | None, typer.Option(help="Agreed next step.")] = None,
    next_step_due: Annotated[str | None, typer.Option(help="Next step due YYYY-MM-DD.")] = None,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Record how an arranged meeting went."""
    _send_one(
        programme,
        firm,
        lambda: RecordMeetingResult(
            meeting_id=meeting_id,
            outcome=_choice(Outcome, outcome, "outcome"),
            notes=notes,
            next_step=next_step,
            next_step_due_on=_date(next_step_due, "--next-step-due"),
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


def contract(
    firm: str,
    counterpart: Annotated[str, typer.Option(help="Who the contract is with.")],
    amount: Annotated[str, typer.Option(help="Amount, e.g. 180000.00.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. USD.")],
    meeting: Annotated[
        list[str] | None, typer.Option(help="Meeting that led to it (repeatable).")
    ] = None,
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    contract_id: Annotated[
        str | None,
        typer.Option(
            help="The contract's own id (e.g. po-2014-07); without one the journey numbers "
            "it c1, c2, ... Two contracts alike on one day need distinct ids."
        ),
    ] = None,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Record a contract signed with a counterpart.

    The amount is read as in files: 2001,00, 1 250 000,50 and 1,250,000.50 are fine,
    180.000 or 180,000 is ambiguous (write 180000). The currency in any case (usd).
    """

    def build() -> Command:
        try:
            code = parse_currency(currency)
        except ValueError as error:
            raise Failure(f"--currency {currency!r}: {_first(error)}", 2) from None
        try:
            parsed = parse_amount(amount)
        except ValueError as error:
            raise Failure(f"--amount {amount!r}: {_first(error)}", 2) from None
        try:
            value = Money(amount=parsed, currency=code)
        except (ValueError, ArithmeticError) as error:
            message = f"--amount {amount!r} --currency {currency!r}: {_first(error)}"
            raise Failure(message, 2) from None
        return SignContract(
            contract_id=contract_id,
            counterpart=counterpart,
            value=value,
            meeting_ids=meeting or [],
            notes=notes,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        )

    _send_one(programme, firm, build, by)


class Attendance(StrEnum):
    """Whether the firm takes part in the open return visit."""

    ATTENDED = "attended"
    SKIPPED = "skipped"


def visit(
    firm: str,
    attendance: Annotated[str, typer.Argument(help="attended or skipped.")],
    mission: Annotated[str | None, typer.Option(help="Mission id of the visit.")] = None,
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Record whether the firm takes part in the open return visit."""
    _send_one(
        programme,
        firm,
        lambda: RecordVisitAttendance(
            attended=_choice(Attendance, attendance, "attendance") is Attendance.ATTENDED,
            mission_id=mission,
            notes=notes,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


def evaluate(
    firm: str,
    decision: Annotated[str, typer.Argument(help="renew or close.")],
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Decide the two-year evaluation: renew for another cycle, or close."""
    _send_one(
        programme,
        firm,
        lambda: DecideEvaluation(
            decision=_choice(Decision, decision, "decision"),
            notes=notes,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


def withdraw(
    firm: str,
    reason: Annotated[str, typer.Option(help="Why the firm withdraws.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """The firm withdraws from the programme."""
    _send_one(
        programme,
        firm,
        lambda: Withdraw(reason=reason, occurred_on=_date(on, "--on"), command_id=command_id),
        by,
    )


def next_step_done(
    firm: str,
    meeting_id: Annotated[str, typer.Argument(help="The meeting whose next step is done.")],
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Mark the next step agreed at a meeting's result done (it is then never overdue)."""
    _send_one(
        programme,
        firm,
        lambda: CompleteNextStep(
            meeting_id=meeting_id, notes=notes, occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


def reassign(
    firm: str,
    adviser: Annotated[str, typer.Argument(help="Staff id of the new adviser.")],
    notes: Annotated[str, typer.Option(help="Notes.")] = "",
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Give the firm to another adviser (a staff id of the programme file)."""
    _send_one(
        programme,
        firm,
        lambda: AssignAdviser(
            adviser_id=adviser, notes=notes, occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


# ------------------------------------------------------------------- corrections

ReasonOption = Annotated[str, typer.Option(help="Why it is corrected (required).")]


def _money(amount: str | None, currency: str | None) -> Money | None:
    """``--amount`` and ``--currency`` as Money, None when neither is given."""
    if amount is None and currency is None:
        return None
    if amount is None or currency is None:
        raise Failure(
            "give --amount and --currency together (e.g. --amount 2002.00 --currency USD)", 2
        )
    try:
        return Money(amount=parse_amount(amount), currency=currency)
    except (ValueError, ArithmeticError) as error:
        message = f"--amount {amount!r} --currency {currency!r}: {_first(error)}"
        raise Failure(message, 2) from None


def correct_contract(
    firm: str,
    contract_id: Annotated[str, typer.Argument(help="The contract's id, e.g. c1.")],
    reason: ReasonOption,
    amount: Annotated[str | None, typer.Option(help="Corrected amount, e.g. 2002.00.")] = None,
    currency: Annotated[
        str | None, typer.Option(help="Currency of the corrected amount, e.g. USD.")
    ] = None,
    counterpart: Annotated[str | None, typer.Option(help="Corrected counterpart.")] = None,
    signed_on: Annotated[
        str | None, typer.Option(help="Corrected signing date YYYY-MM-DD.")
    ] = None,
    meeting: Annotated[
        list[str] | None,
        typer.Option(help="The meeting(s) it is attributed to instead (repeatable)."),
    ] = None,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Correct a contract: its amount, counterpart, signing date or meetings."""

    def build() -> Command:
        value = _money(amount, currency)
        if value is None and counterpart is None and signed_on is None and not meeting:
            raise Failure(
                "nothing to correct: give --amount and --currency, --counterpart, "
                "--signed-on or --meeting",
                2,
            )
        return CorrectContract(
            contract_id=contract_id,
            value=value,
            counterpart=counterpart,
            signed_on=_date(signed_on, "--signed-on"),
            meeting_ids=meeting or None,
            reason=reason,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        )

    _send_one(programme, firm, build, by)


def void_contract(
    firm: str,
    contract_id: Annotated[str, typer.Argument(help="The contract's id, e.g. c1.")],
    reason: Annotated[str, typer.Option(help="Why it is voided (required).")],
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Void a contract recorded by mistake: it no longer counts in any figure."""
    _send_one(
        programme,
        firm,
        lambda: VoidContract(
            contract_id=contract_id,
            reason=reason,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


def correct_meeting(
    firm: str,
    meeting_id: str,
    outcome: Annotated[
        str, typer.Argument(help="promising, neutral, not_interested, no_show or cancelled.")
    ],
    reason: ReasonOption,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Correct the outcome recorded for a meeting."""
    _send_one(
        programme,
        firm,
        lambda: CorrectMeetingResult(
            meeting_id=meeting_id,
            outcome=_choice(Outcome, outcome, "outcome"),
            reason=reason,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )


def correct_visit(
    firm: str,
    visit_number: Annotated[
        int, typer.Argument(metavar="VISIT", help="Visit number (1: the first).")
    ],
    attendance: Annotated[str, typer.Argument(help="attended or skipped.")],
    reason: ReasonOption,
    programme: ProgrammeOption = None,
    on: OnOption = None,
    command_id: CommandIdOption = None,
    by: ByOption = None,
) -> None:
    """Correct whether the firm attended a return visit."""
    _send_one(
        programme,
        firm,
        lambda: CorrectVisitAttendance(
            visit=visit_number,
            attended=_choice(Attendance, attendance, "attendance") is Attendance.ATTENDED,
            reason=reason,
            occurred_on=_date(on, "--on"),
            command_id=command_id,
        ),
        by,
    )
