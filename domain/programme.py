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

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
]
"""Ids of programmes, missions, partners, firms and meetings: lower-case, no spaces."""


def printable(value: str) -> str:
    """Refuse control characters (NUL and the like); tabs and line breaks are kept.

    Raises:
        ValueError: The text holds a control character (PostgreSQL refuses NUL).
    """
    for character in value:
        if (ord(character) < 32 and character not in "\t\n\r") or ord(character) == 127:
            raise ValueError(f"contains a control character (U+{ord(character):04X})")
    return value


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


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(email_address)
]
"""An e-mail address (``name@domain.tld``), at most 200 characters."""

Language = Literal["fr", "en"]
"""The language a person is written to in: French (the default) or English."""

Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(printable),
]
"""A short, non-empty piece of text (names, places, counterparts)."""


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
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    return_visit_every_months: int = Field(default=6, ge=1, le=24)
    evaluation_after_months: int = Field(default=24, ge=1, le=120)
    visit_reminder_days_before: int = Field(default=30, ge=0, le=180)
    result_overdue_after_days: int = Field(default=7, ge=1, le=90)
    max_contract_amount: Decimal = Field(default=Decimal(1_000_000_000), gt=0, le=MAX_AMOUNT)

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
    notice: str | None = Field(default=None, max_length=1000)
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
    def _looks_like_email(cls, value: str | None) -> str | None:
        if value is None or value == ERASED or value.startswith(SEALED):
            # Erased (its key destroyed), or read sealed from the store: its validity was
            # checked when the command was accepted, never again when it is read.
            return value
        return email_address(value)
