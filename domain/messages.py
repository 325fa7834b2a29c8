"""Who is told what (issue 9): which events cause a message, to whom, and its words.

Pure: the send activity (``activities.mail``) reads the journey from the event store and
the addresses from PostgreSQL, and asks this module for the message's kind, recipient
and text. Every message speaks in business dates (the reminder of a visit due on
2014-03-17 is dated 2014-02-15 in its text), whatever the clock that made it fall due.

- The firm's contact: the return-visit reminder, at the policy's lead time, in the
  firm's language, with the visit's date and the mission.
- The firm's adviser: a meeting result overdue, a next step overdue, a return visit
  missed, the evaluation due (with the firm's assessment).
- Each adviser, on working days: the digest of what is overdue, due today and due in
  the next seven days across their firms (``domain.digest``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from enum import StrEnum
from html import escape

from pydantic import BaseModel, ConfigDict

from domain.calendar import local_date
from domain.deadlines import visit_window
from domain.digest import Bucket, CatchUpSummary, DigestItem
from domain.events import (
    EvaluationCompleted,
    Event,
    MeetingResultOverdue,
    NextStepOverdue,
    ReturnVisitMissed,
    ReturnVisitReminderDue,
)
from domain.programme import Language, Mission
from domain.state import JourneyState, VisitStatus

MESSAGE_NAMESPACE = uuid.UUID("0b7a4c1e-3f7e-4b8e-8d2a-6f1c9e5a7d33")
CONTACT = "contact"
"""Recipient of the messages to the firm's contact."""


class MessageKind(StrEnum):
    """What a message says."""

    VISIT_REMINDER = "visit_reminder"
    RESULT_OVERDUE = "result_overdue"
    NEXT_STEP_OVERDUE = "next_step_overdue"
    VISIT_MISSED = "visit_missed"
    EVALUATION_DUE = "evaluation_due"
    DIGEST = "digest"


_KINDS: dict[type[Event], MessageKind] = {
    ReturnVisitReminderDue: MessageKind.VISIT_REMINDER,
    MeetingResultOverdue: MessageKind.RESULT_OVERDUE,
    NextStepOverdue: MessageKind.NEXT_STEP_OVERDUE,
    ReturnVisitMissed: MessageKind.VISIT_MISSED,
    EvaluationCompleted: MessageKind.EVALUATION_DUE,
}


def message_kind(event: Event) -> MessageKind | None:
    """The message an event causes, or None (most events tell nobody)."""
    return _KINDS.get(type(event))


def skip_reason(kind: MessageKind, cause: Event, state: JourneyState, now: datetime) -> str | None:
    """Why a message would no longer mean anything if sent at ``now``; None: send it.

    A message is sent only while its occasion is still ahead of someone (BRIEF, "Follow-ups
    reach people": "a programme enrolled after the fact records its past deadlines but
    tells nobody about the past"). Each kind has its window, in the programme's business
    calendar:

    - a return-visit reminder, until the end of the visit's due date, and only while the
      visit is not recorded;
    - a missed visit, ``policy.missed_visit_notice_days`` (7) after it was missed, while
      it stays missed;
    - a meeting result, a next step or an evaluation overdue, while it stays open and for
      ``policy.overdue_notice_days`` (14) after it fell overdue; past that it waits in the
      adviser's digest, where every open item is listed.

    Args:
        kind: The message's kind (``message_kind(cause)``; not ``DIGEST``).
        cause: The event that causes it.
        state: The journey's state now (after every event recorded so far).
        now: The business instant (aware) at which it would be sent.

    Returns:
        The reason in plain words (ids and dates only, no personal data), or None.
    """
    policy = state.programme.policy
    today = local_date(now, state.tz)
    fell_on = local_date(cause.occurred_at, state.tz)

    def too_late(days: int, what: str) -> str | None:
        last = fell_on + timedelta(days=days)
        if today > last:
            return f"{what} on {fell_on}; its message is sent until {last}, it is now {today}"
        return None

    if isinstance(cause, ReturnVisitReminderDue):
        visit = state.visits.get(cause.visit)
        if visit is not None and visit.status in (VisitStatus.ATTENDED, VisitStatus.SKIPPED):
            return f"return visit {cause.visit} was recorded ({visit.status.value}) since"
        if today > cause.due_on:
            return f"return visit {cause.visit} was due on {cause.due_on}, it is now {today}"
        return None
    if isinstance(cause, ReturnVisitMissed):
        visit = state.visits.get(cause.visit)
        if visit is not None and visit.status is not VisitStatus.MISSED:
            return f"return visit {cause.visit} was recorded ({visit.status.value}) since"
        return too_late(policy.missed_visit_notice_days, f"return visit {cause.visit} was missed")
    if isinstance(cause, MeetingResultOverdue):
        meeting = state.meetings.get(cause.meeting_id)
        if meeting is None or meeting.outcome is not None:
            return f"the result of meeting {cause.meeting_id} was recorded since"
        return too_late(
            policy.overdue_notice_days, f"the result of meeting {cause.meeting_id} fell overdue"
        )
    if isinstance(cause, NextStepOverdue):
        step = state.next_steps.get(cause.meeting_id)
        if step is None or not step.pending:
            return f"the next step of meeting {cause.meeting_id} was done since"
        return too_late(
            policy.overdue_notice_days, f"the next step of meeting {cause.meeting_id} fell overdue"
        )
    if isinstance(cause, EvaluationCompleted):
        evaluation = state.evaluations.get(cause.cycle)
        if evaluation is not None and evaluation.decision is not None:
            return f"the evaluation of cycle {cause.cycle} was decided since"
        return too_late(
            policy.overdue_notice_days, f"the evaluation of cycle {cause.cycle} fell due"
        )
    raise ValueError(f"{type(cause).__name__} causes no {kind.value} message")


def staff_recipient(staff_id: str) -> str:
    """The recipient id of a staff member: ``staff:<id>``."""
    return f"staff:{staff_id}"


def recipient(kind: MessageKind, state: JourneyState) -> str | None:
    """Who a journey's message goes to: ``contact`` or ``staff:<id>``; None: nobody.

    Args:
        kind: The message's kind (not ``DIGEST``).
        state: The journey's state when the causing event was recorded.
    """
    if kind is MessageKind.VISIT_REMINDER:
        return CONTACT
    adviser = state.adviser_id
    return staff_recipient(adviser) if adviser is not None else None


def message_id(cause: str, to: str) -> uuid.UUID:
    """A message's id: the same for the same cause and recipient, however often sent.

    Args:
        cause: The causing event's id (or, for a digest, ``digest/<programme>/<day>``).
        to: The recipient (``contact`` or ``staff:<id>``).
    """
    return uuid.uuid5(MESSAGE_NAMESPACE, f"{cause}\n{to}")


class Draft(BaseModel):
    """A message's words, before it gets addresses and headers.

    Attributes:
        kind: What it says.
        business_date: The business date it is written on (local to the programme).
        subject: Its subject line.
        text: Its plain-text body.
        html: The same as simple HTML.
    """

    model_config = ConfigDict(frozen=True)

    kind: MessageKind
    business_date: date
    subject: str
    text: str
    html: str


Paragraph = str | list[str]
"""A paragraph of a message, or a list of items."""


def _html(paragraphs: list[Paragraph]) -> str:
    body = "".join(
        f"<p>{escape(p)}</p>"
        if isinstance(p, str)
        else "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in p) + "</ul>"
        for p in paragraphs
    )
    return f"<html><body>{body}</body></html>"


def _text(paragraphs: list[Paragraph]) -> str:
    return (
        "\n\n".join(p if isinstance(p, str) else "\n".join(f"- {i}" for i in p) for p in paragraphs)
        + "\n"
    )


def _visit_mission(state: JourneyState, visit: int) -> Mission | None:
    """The programme's mission during which return visit ``visit`` can be attended."""
    opens, closes = visit_window(state, visit)
    for mission in sorted(state.programme.missions, key=lambda m: m.starts_on):
        if mission.ends_on >= opens and mission.starts_on < closes:
            return mission
    return None


def _dated(language: Language, day: date) -> str:
    return f"Date : {day}" if language == "fr" else f"Date: {day}"


def draft(
    kind: MessageKind,
    state: JourneyState,
    event: Event,
    *,
    language: Language,
    name: str | None,
) -> Draft:
    """The words of a journey's message.

    Args:
        kind: What it says (``message_kind(event)``).
        state: The journey's state once ``event`` was folded in.
        event: The event that caused it.
        language: The recipient's language.
        name: The recipient's name for the greeting (None: a neutral greeting).

    Returns:
        The draft, dated with the event's business date.
    """
    day = local_date(event.occurred_at, state.tz)
    fr = language == "fr"
    hello = (f"Bonjour {name}," if name else "Bonjour,") if fr else (
        f"Hello {name}," if name else "Hello,"
    )
    sign = (
        f"{state.programme.organiser} — {state.programme.name}"
    )
    firm = state.firm.name
    body: list[Paragraph]
    if isinstance(event, ReturnVisitReminderDue):
        mission = _visit_mission(state, event.visit)
        where = ""
        if mission is not None:
            places = ", ".join(mission.places)
            where = (
                f" Elle peut se faire lors de la mission {mission.name} ({mission.starts_on} "
                f"au {mission.ends_on}{', ' + places if places else ''})."
                if fr
                else f" It can be made during the mission {mission.name} ({mission.starts_on} "
                f"to {mission.ends_on}{', ' + places if places else ''})."
            )
        subject = (
            f"Rappel : visite de retour {event.visit}, échéance le {event.due_on}"
            if fr
            else f"Reminder: return visit {event.visit}, due {event.due_on}"
        )
        body = [
            (
                f"La visite de retour {event.visit} de {firm} dans le cadre de "
                f"« {state.programme.name} » arrive à échéance le {event.due_on}.{where} "
                "Dites-nous si vous y participerez."
                if fr
                else f"Return visit {event.visit} of {firm} in \"{state.programme.name}\" "
                f"falls due on {event.due_on}.{where} Please tell us whether you will take part."
            )
        ]
    elif isinstance(event, MeetingResultOverdue):
        meeting = state.meetings[event.meeting_id]
        held = local_date(event.scheduled_at, state.tz)
        subject = (
            f"{firm} : résultat de la rencontre {event.meeting_id} en retard"
            if fr
            else f"{firm}: result of meeting {event.meeting_id} overdue"
        )
        command = f"corridor meeting result {state.firm.id} {event.meeting_id} OUTCOME"
        body = [
            (
                f"La rencontre {event.meeting_id} de {firm} avec {meeting.counterpart} "
                f"({held}) n'a pas de résultat enregistré. Pour l'enregistrer : {command}"
                if fr
                else f"Meeting {event.meeting_id} of {firm} with {meeting.counterpart} "
                f"({held}) has no result recorded. To record it: {command}"
            )
        ]
    elif isinstance(event, NextStepOverdue):
        subject = (
            f"{firm} : prochaine étape de la rencontre {event.meeting_id} en retard"
            if fr
            else f"{firm}: next step of meeting {event.meeting_id} overdue"
        )
        command = f"corridor next-step done {state.firm.id} {event.meeting_id}"
        body = [
            (
                f"La prochaine étape « {event.next_step} » (rencontre {event.meeting_id}) "
                f"était prévue pour le {event.due_on} et n'est pas marquée faite. Une fois "
                f"faite : {command}"
                if fr
                else f"The next step \"{event.next_step}\" (meeting {event.meeting_id}) was "
                f"due on {event.due_on} and is not marked done. Once done: {command}"
            )
        ]
    elif isinstance(event, ReturnVisitMissed):
        subject = (
            f"{firm} : visite de retour {event.visit} manquée"
            if fr
            else f"{firm}: return visit {event.visit} missed"
        )
        body = [
            (
                f"Rien n'a été enregistré pour la visite de retour {event.visit} de {firm} "
                f"(prévue le {event.due_on}) avant la suivante."
                if fr
                else f"Nothing was recorded for return visit {event.visit} of {firm} (due "
                f"{event.due_on}) before the next one fell due."
            )
        ]
    elif isinstance(event, EvaluationCompleted):
        a = event.assessment
        values = ", ".join(f"{v:,.2f} {c}" for c, v in a.value_by_currency.items()) or "0"
        subject = (
            f"{firm} : évaluation du cycle {event.cycle} — décision attendue"
            if fr
            else f"{firm}: evaluation of cycle {event.cycle} — decision needed"
        )
        command = f"corridor evaluate {state.firm.id} renew|close"
        items = (
            [
                f"rencontres demandées : {a.meetings_requested}, tenues : {a.meetings_held}",
                f"contrats : {a.contracts} ({values})",
                f"jours jusqu'au premier contrat : {a.days_to_first_contract or '-'}",
                f"visites de retour : {a.visits_attended} faites, {a.visits_skipped} "
                f"déclinées, {a.visits_missed} manquées",
            ]
            if fr
            else [
                f"meetings requested: {a.meetings_requested}, held: {a.meetings_held}",
                f"contracts: {a.contracts} ({values})",
                f"days to first contract: {a.days_to_first_contract or '-'}",
                f"return visits: {a.visits_attended} attended, {a.visits_skipped} skipped, "
                f"{a.visits_missed} missed",
            ]
        )
        body = [
            (
                f"L'évaluation du cycle {event.cycle} de {firm} est due ({event.due_on}). "
                "Bilan de la firme :"
                if fr
                else f"The evaluation of cycle {event.cycle} of {firm} is due "
                f"({event.due_on}). The firm's assessment:"
            ),
            items,
            (
                f"Une décision est attendue : {command}"
                if fr
                else f"A decision is needed: {command}"
            ),
        ]
    else:
        raise ValueError(f"{type(event).__name__} causes no message")
    paragraphs: list[Paragraph] = [_dated(language, day), hello, *body, sign]
    return Draft(
        kind=kind,
        business_date=day,
        subject=subject,
        text=_text(paragraphs),
        html=_html(paragraphs),
    )


_BUCKETS = {
    "fr": {
        Bucket.OVERDUE: "En retard",
        Bucket.TODAY: "Aujourd'hui",
        Bucket.SOON: "Dans les 7 prochains jours",
    },
    "en": {
        Bucket.OVERDUE: "Overdue",
        Bucket.TODAY: "Due today",
        Bucket.SOON: "Due in the next 7 days",
    },
}


_SKIPPED_KINDS = {
    "fr": {
        "visit_reminder": "rappels de visite de retour",
        "visit_missed": "avis de visite manquée",
        "result_overdue": "avis de résultat en retard",
        "next_step_overdue": "avis de prochaine étape en retard",
        "evaluation_due": "avis d'évaluation due",
    },
    "en": {
        "visit_reminder": "return-visit reminders",
        "visit_missed": "missed-visit notices",
        "result_overdue": "overdue-result notices",
        "next_step_overdue": "overdue-next-step notices",
        "evaluation_due": "evaluation notices",
    },
}


def _number(value: int, language: Language) -> str:
    """``1,000`` in English, ``1 000`` in French."""
    return f"{value:,}".replace(",", "\u202f" if language == "fr" else ",")


def _summary_paragraph(summary: CatchUpSummary, language: Language, open_items: int) -> str:
    """The digest's opening words on the journeys that caught up (``MessageSkipped``)."""
    kinds = ", ".join(
        f"{_number(count, language)} {_SKIPPED_KINDS[language].get(kind, kind)}"
        for kind, count in summary.skipped.items()
    )
    firms, total = _number(summary.firms, language), _number(summary.messages, language)
    if language == "fr":
        return (
            f"Non envoyés, leur moment étant passé : {total} message(s) sur {firms} de vos "
            f"firmes ({kinds}), inscrites après coup ou dépassées par ce qui a été "
            f"enregistré depuis. Ce qui reste ouvert aujourd'hui suit ({open_items} "
            "point(s))."
        )
    return (
        f"Not sent because their time had passed: {total} message(s) about {firms} of your "
        f"firms ({kinds}), enrolled after the fact or overtaken by what was recorded since. "
        f"What is still open today follows ({open_items} item(s))."
    )


DIGEST_ITEMS_LISTED = 50
"""Items of one bucket a digest lists one by one (the most recent); the rest are counted."""


def _older_line(older: list[DigestItem], language: Language) -> str:
    """The count of a bucket's items not listed: how many, about how many firms, since."""
    firms = len({i.firm_id for i in older})
    oldest = min(i.due_on for i in older)
    if language == "fr":
        return (
            f"… et {_number(len(older), language)} point(s) plus ancien(s) sur {firms} "
            f"firme(s), depuis le {oldest} : corridor status FIRME les montre."
        )
    return (
        f"… and {_number(len(older), language)} older item(s) about {firms} firm(s), since "
        f"{oldest}: corridor status FIRM shows them."
    )


def digest_draft(
    items: list[DigestItem],
    *,
    day: date,
    language: Language,
    name: str,
    organiser: str,
    summary: CatchUpSummary | None = None,
) -> Draft:
    """The words of an adviser's digest of ``day``.

    Args:
        items: What is overdue, due today and due in the next 7 days (not empty unless
            ``summary`` is given).
        day: The office's day.
        language: The adviser's language.
        name: The adviser's name.
        organiser: Who sends it (the agency).
        summary: The journeys of the adviser that caught up since the previous digest
            (enrolled after the fact), told first; None: none did.
    """
    fr = language == "fr"
    count = len(items)
    subject = (
        f"Suivi du {day} : {count} point{'s' if count > 1 else ''}"
        if fr
        else f"Follow-ups for {day}: {count} item{'s' if count > 1 else ''}"
    )
    sections: list[str] = []
    html_sections: list[str] = []
    if summary is not None:
        opening = _summary_paragraph(summary, language, count)
        sections.append(opening)
        html_sections.append(f"<p>{escape(opening)}</p>")
    for bucket in Bucket:
        chosen = [i for i in items if i.bucket is bucket]
        if not chosen:
            continue
        heading = _BUCKETS[language][bucket]
        older: list[DigestItem] = []
        if len(chosen) > DIGEST_ITEMS_LISTED:  # the most recent; the rest counted
            ordered = sorted(chosen, key=lambda i: i.due_on, reverse=True)
            chosen = sorted(ordered[:DIGEST_ITEMS_LISTED], key=lambda i: (i.due_on, i.firm_id))
            older = ordered[DIGEST_ITEMS_LISTED:]
        lines = [
            f"- {i.due_on} {i.firm_name} ({i.firm_id}): {i.what}\n    {i.command}" for i in chosen
        ]
        rest = _older_line(older, language) if older else None
        sections.append(f"{heading}\n" + "\n".join(lines + ([rest] if rest else [])))
        html_sections.append(
            f"<h3>{escape(heading)}</h3><ul>"
            + "".join(
                f"<li>{i.due_on} {escape(i.firm_name)}: {escape(i.what)}"
                f"<br><code>{escape(i.command)}</code></li>"
                for i in chosen
            )
            + "</ul>"
            + (f"<p>{escape(rest)}</p>" if rest else "")
        )
    hello = f"Bonjour {name}," if fr else f"Hello {name},"
    text = "\n\n".join([_dated(language, day), hello, *sections, organiser]) + "\n"
    html = (
        f"<html><body><p>{escape(_dated(language, day))}</p><p>{escape(hello)}</p>"
        + "".join(html_sections)
        + f"<p>{escape(organiser)}</p></body></html>"
    )
    return Draft(
        kind=MessageKind.DIGEST, business_date=day, subject=subject, text=text, html=html
    )
