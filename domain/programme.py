"""The programme: its policy, missions and partners, and the firms that take part."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.calendar import zone
from domain.errors import UnknownReference
from domain.money import MAX_AMOUNT

SEALED = "enc:"
"""How a personal field sealed by the event store begins (``activities.keys``)."""
ERASED = "[erased]"
"""What personal data reads as once erased (its key destroyed): names, notes, e-mails."""

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
"""What an id may be (no line break, tab or other control character can be in one)."""

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, pattern=ID_PATTERN)]
"""Ids of programmes, missions, partners, firms and meetings: lower-case, no spaces."""


def printable(value: str) -> str:
    """Refuse NUL and the like; tabs and line breaks are kept (the rule of stored text).

    What was accepted before single-line fields refused control characters is read
    back with this rule (see :data:`Text`).

    Raises:
        ValueError: The text holds a control character (PostgreSQL refuses NUL).
    """
    for character in value:
        if (ord(character) < 32 and character not in "\t\n\r") or ord(character) == 127:
            raise ValueError(f"contains a control character (U+{ord(character):04X})")
    return value


_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")
"""Characters that end a line: LF, CR, VT, FF, NEL, the line and paragraph separators."""
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
"""Unicode bidirectional embeddings, overrides and isolates (U+202A-U+202E,
U+2066-U+2069): they make a terminal or a mail client show text in another order than
it is stored (a known spoofing trick)."""


def control_character(value: str, *, multi_line: bool = False) -> str | None:
    """The first character of ``value`` that text typed by people may not hold, described.

    Refused in every text: C0 controls (tab included), DEL, C1 controls and the
    bidirectional controls; in single-line text, line breaks too.

    Args:
        value: The text.
        multi_line: Line breaks (LF, CR, the line and paragraph separators) are allowed
            (notes, next steps, reasons).

    Returns:
        E.g. ``"a line break (U+000A)"``, or None when the text holds none.
    """
    for character in value:
        code = ord(character)
        if character in _LINE_BREAKS:
            if multi_line and character in "\n\r\u2028\u2029":
                continue
            what = "a line break"
        elif character == "\t":
            what = "a tab"
        elif code < 32 or 127 <= code < 160:
            what = "a control character"
        elif character in _BIDI_CONTROLS:
            what = "a bidirectional control"
        else:
            continue
        return f"{what} (U+{code:04X})"
    return None


_HINTS = {
    "a line break": "write it on one line",
    "a tab": "use spaces",
    "a bidirectional control": "it can make the text show in another order",
}


def _refuse_controls(value: str, *, multi_line: bool) -> str:
    found = control_character(value, multi_line=multi_line)
    if found is None:
        return value
    hint = _HINTS.get(found.rpartition(" (")[0])
    raise ValueError(f"contains {found}" + (f": {hint}" if hint else ""))


def single_line(value: str) -> str:
    """Refuse line breaks, tabs, other control characters and bidirectional controls.

    The rule of single-line text at input: names, places, counterparts, subjects, ids,
    e-mail addresses. Such text goes into e-mail headers and one-line listings, where a
    line break cannot be written and a bidirectional override would mislead.

    Raises:
        ValueError: The text holds one (its code point is named, e.g. U+000A).
    """
    return _refuse_controls(value, multi_line=False)


def multi_line(value: str) -> str:
    """Refuse control characters and bidirectional controls, keeping line breaks.

    The rule of notes, next steps and reasons at input.

    Raises:
        ValueError: The text holds one (its code point is named, e.g. U+0009).
    """
    return _refuse_controls(value, multi_line=True)


TEXT_CONTEXT = "corridor.text"
"""Key of the validation context that says where text comes from: ``"input"`` (typed by
people: files, options, signals) or ``"stored"`` (read back from a history or the
event store)."""
AT_INPUT: dict[str, str] = {TEXT_CONTEXT: "input"}
"""Validation context of what people type: single-line fields of the programme and the
firm refuse control characters (``Programme.model_validate(raw, context=AT_INPUT)``)."""
AS_STORED: dict[str, str] = {TEXT_CONTEXT: "stored"}
"""Validation context of what was accepted before: commands read back from a history
keep the text they were accepted with (only NUL and the like are refused)."""


def _source(info: ValidationInfo) -> str | None:
    context = info.context
    return context.get(TEXT_CONTEXT) if isinstance(context, dict) else None


def typed_line(value: str, info: ValidationInfo) -> str:
    """Validator of single-line text in commands: :func:`single_line` at input.

    At input (``context=AT_INPUT``: the CLI, file rows, and the journey's update
    validators and signal handler, which check each command as it arrives); otherwise
    :func:`printable`: a command read back from a Temporal history (which its data
    converter decodes without a context) is read as it was accepted, so that histories
    recorded before the rule replay as they ran.
    """
    return single_line(value) if _source(info) == "input" else printable(value)


def typed_lines(value: str, info: ValidationInfo) -> str:
    """Validator of multi-line text in commands: :func:`multi_line` at input (see above)."""
    return multi_line(value) if _source(info) == "input" else printable(value)


def kept_line(value: str, info: ValidationInfo) -> str:
    """Validator of single-line text that journeys keep (the programme, the firm).

    :func:`single_line` at input (``context=AT_INPUT``), else :func:`printable`: a
    programme or a firm enrolled before control characters were refused is read back
    from its history and its events as it was, so that its journey goes on (a message
    that cannot be built from it is failed, with its reason).
    """
    return single_line(value) if _source(info) == "input" else printable(value)


def kept_lines(value: str, info: ValidationInfo) -> str:
    """Validator of multi-line text that journeys keep: :func:`multi_line` at input."""
    return multi_line(value) if _source(info) == "input" else printable(value)


EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[^@\s]+"
"""An e-mail address as staff type it: ``name@domain.tld`` (no display name, no spaces)."""


def email_address(value: str) -> str:
    """Check an e-mail address's shape (``name@domain.tld``).

    Raises:
        ValueError: It is not one (a message staff can act on).
    """
    if not re.fullmatch(EMAIL_PATTERN, value):
        raise ValueError("not an e-mail address (expected name@domain.tld)")
    return value


def kept_email(value: str, info: ValidationInfo) -> str:
    """Validator of an e-mail address journeys keep: its shape, and at input one line.

    Raises:
        ValueError: Not ``name@domain.tld``, or (at input) a control character in it.
    """
    if _source(info) == "input":
        single_line(value)
    return email_address(value)


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(kept_email)
]
"""An e-mail address (``name@domain.tld``), at most 200 characters."""

Language = Literal["fr", "en"]
"""The language a person is written to in: French (the default) or English."""

Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(kept_line),
]
"""A short, non-empty, single-line piece of text that journeys keep (the names, places and
wishes of the programme and the firm): control characters are refused at input
(:data:`AT_INPUT`, as the roster and ``programme.toml`` are read), and what was stored
before that rule is read back as it was (:func:`kept_line`)."""

Line = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(typed_line),
]
"""A short, non-empty, single-line piece of text in a command (counterparts, places,
authors): line breaks, tabs, other control characters and bidirectional controls are
refused at input, wherever the command comes from (CLI, file row, signal, update:
:func:`typed_line`)."""


class Policy(BaseModel):
    """The programme's durations (BRIEF, "Time": a per-programme policy).

    Attributes:
        return_visit_every_months: Calendar months between two return visits.
        evaluation_after_months: Calendar months from the start of a cycle to its
            evaluation (the mayor's "le vrai bilan, c'est au bout de deux ans").
        visit_reminder_days_before: Days before a visit when the firm is reminded and
            when attendance may first be recorded.
        result_overdue_after_days: Days after a meeting when a missing result is overdue.
        max_contract_amount: The largest contract amount the programme accepts, in any
            currency (a plausibility bound against typos and overflows); at most
            ``domain.money.MAX_AMOUNT``.
        missed_visit_notice_days: Days after a return visit was missed during which the
            adviser is still told of it (``domain.messages.skip_reason``).
        overdue_notice_days: Days after a result, a next step or an evaluation fell
            overdue during which the adviser is still told of it (while it stays open);
            later, it waits in the digest instead of a message of its own.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    return_visit_every_months: int = Field(default=6, ge=1, le=24)
    evaluation_after_months: int = Field(default=24, ge=1, le=120)
    visit_reminder_days_before: int = Field(default=30, ge=0, le=180)
    result_overdue_after_days: int = Field(default=7, ge=1, le=90)
    max_contract_amount: Decimal = Field(default=Decimal(1_000_000_000), gt=0, le=MAX_AMOUNT)
    missed_visit_notice_days: int = Field(default=7, ge=0, le=90)
    overdue_notice_days: int = Field(default=14, ge=0, le=90)

    @model_validator(mode="after")
    def _reminder_within_interval(self) -> Policy:
        if self.visit_reminder_days_before >= 28 * self.return_visit_every_months:
            raise ValueError(
                f"visit_reminder_days_before ({self.visit_reminder_days_before} days) must be "
                f"shorter than the return-visit interval ({self.return_visit_every_months} "
                "months)"
            )
        return self


class Mission(BaseModel):
    """One economic mission of the programme (dates local to its destination)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    name: Text
    starts_on: date
    ends_on: date
    places: list[Text] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ends_after_start(self) -> Mission:
        if self.ends_on < self.starts_on:
            raise ValueError(f"mission {self.id} ends ({self.ends_on}) before it starts")
        return self


class Partner(BaseModel):
    """An organisation that arranges meetings for the firms (e.g. L.A. BizFed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    name: Text
    region: Text | None = None


class Staff(BaseModel):
    """A member of the agency's staff who follows firms (an adviser).

    Attributes:
        id: Staff id, as the roster's ``adviser`` column names it.
        name: Display name, used in the messages.
        email: Where the adviser's messages and digests go (personal data: never
            logged, never in a Temporal history).
        language: The language the adviser is written to in.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    name: Text
    email: Email
    language: Language = "fr"


class Programme(BaseModel):
    """A programme of missions run by an organiser, with its policy.

    Attributes:
        id: Programme id, part of every journey's workflow id.
        name: Display name.
        organiser: The agency running it (e.g. Québec International).
        currency: The organiser's reporting currency (ISO 4217).
        timezone: IANA zone of the missions' destination; every business date is local
            to it.
        policy: Durations of the journey.
        missions: The missions, in any order.
        partners: The partners who arrange meetings.
        notice: A note to show with every report of this programme (e.g. which of its
            figures are invented for a demonstration).
        staff: The staff who follow the firms (issue 9: who is told what).
        default_adviser: The staff id following a firm whose roster row names none.
        office_timezone: IANA zone of the agency's office: the daily digest's working
            days and hour are local to it.
        sender: The address messages are sent from (``name@domain.tld``); None: the
            mailer's default (``CORRIDOR_MAIL_FROM``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    name: Text
    organiser: Text
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    timezone: str
    policy: Policy = Field(default_factory=Policy)
    missions: list[Mission] = Field(min_length=1)
    partners: list[Partner] = Field(default_factory=list)
    notice: Annotated[str, AfterValidator(kept_lines)] | None = Field(default=None, max_length=1000)
    staff: list[Staff] = Field(default_factory=list)
    default_adviser: Identifier | None = None
    office_timezone: str = "America/Toronto"
    sender: Email | None = None

    @field_validator("timezone", "office_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> Programme:
        for kind, ids in (
            ("mission", [m.id for m in self.missions]),
            ("partner", [p.id for p in self.partners]),
            ("staff", [s.id for s in self.staff]),
        ):
            seen: set[str] = set()
            for item in ids:
                if item in seen:
                    raise ValueError(f"{kind} id {item!r} appears twice")
                seen.add(item)
        if self.default_adviser is not None and self.default_adviser not in ids:
            raise ValueError(f"default_adviser {self.default_adviser!r} is not in staff")
        return self

    def mission(self, mission_id: str) -> Mission:
        """Return the mission with this id.

        Raises:
            UnknownReference: If the programme has no such mission.
        """
        for mission in self.missions:
            if mission.id == mission_id:
                return mission
        known = ", ".join(m.id for m in self.missions)
        raise UnknownReference(f"unknown mission {mission_id!r} (known: {known})")

    def adviser(self, staff_id: str) -> Staff:
        """Return the staff member with this id.

        Raises:
            UnknownReference: If the programme has no such staff member.
        """
        for member in self.staff:
            if member.id == staff_id:
                return member
        known = ", ".join(m.id for m in self.staff) or "none"
        raise UnknownReference(f"unknown staff id {staff_id!r} (known: {known})")

    def partner(self, partner_id: str) -> Partner:
        """Return the partner with this id.

        Raises:
            UnknownReference: If the programme has no such partner.
        """
        for partner in self.partners:
            if partner.id == partner_id:
                return partner
        known = ", ".join(p.id for p in self.partners)
        raise UnknownReference(f"unknown partner {partner_id!r} (known: {known})")


class Firm(BaseModel):
    """A participating firm. Contact details are personal data: never logged.

    Its names, city, sector and contact refuse control characters as the roster is read
    (``context=AT_INPUT``); a firm enrolled before that rule is read back as it was.

    Attributes:
        adviser: Staff id of the adviser who follows it (None: the programme's
            ``default_adviser``).
        language: The language its contact is written to in (French by default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    name: Text
    sector: Text | None = None
    city: Text | None = None
    contact_name: Text | None = None
    contact_email: str | None = Field(default=None, max_length=200)
    adviser: Identifier | None = None
    language: Language = "fr"

    @field_validator("contact_email")
    @classmethod
    def _looks_like_email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == ERASED or value.startswith(SEALED):
            # Erased (its key destroyed), or read sealed from the store: its validity was
            # checked when the command was accepted, never again when it is read.
            return value
        return kept_email(value, info)
