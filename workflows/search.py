"""The journey's search attributes: what auditors filter on in the Temporal Web UI.

Typed keys, kept current by ``FirmJourney``. They stay within what SQL visibility
stores accept (at most 10 Keyword and 3 each of Int, Datetime, Double, Bool, Text and
KeywordList custom attributes), so the same code runs on a self-hosted PostgreSQL
cluster. ``corridor setup`` registers them on a cluster; ``corridor dev`` on its server.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

PROGRAMME = SearchAttributeKey.for_keyword("CorridorProgramme")
FIRM = SearchAttributeKey.for_keyword("CorridorFirm")
MISSION = SearchAttributeKey.for_keyword("CorridorMission")
"""The mission where the firm was introduced."""
STAGE = SearchAttributeKey.for_keyword("CorridorStage")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("CorridorNextDeadline")
"""Business date and time of the next deadline (unset once the journey is over)."""
NEXT_DEADLINE_KIND = SearchAttributeKey.for_keyword("CorridorNextDeadlineKind")
MEETINGS_HELD = SearchAttributeKey.for_int("CorridorMeetingsHeld")
CONTRACTS = SearchAttributeKey.for_int("CorridorContracts")
PARTNERS = SearchAttributeKey.for_keyword_list("CorridorPartners")
"""Partners that arranged at least one of the firm's meetings."""
DECISION = SearchAttributeKey.for_keyword("CorridorDecision")
"""The latest evaluation decision: renew, close, or pending while awaited."""
RESULT_OVERDUE = SearchAttributeKey.for_bool("CorridorResultOverdue")
"""True while a meeting's result is overdue."""
STORAGE_BLOCKED = SearchAttributeKey.for_bool("CorridorStorageBlocked")
"""True while the event store refuses the journey's events (a data error to look at)."""
CATCHING_UP = SearchAttributeKey.for_bool("CorridorCatchingUp")
"""True from enrolment until the journey has recorded and stored what fell due up to its
today (a journey enrolled after the fact catches up first; reports count them)."""

ALL: Sequence[SearchAttributeKey[Any]] = (
    PROGRAMME,
    FIRM,
    MISSION,
    STAGE,
    NEXT_DEADLINE,
    NEXT_DEADLINE_KIND,
    MEETINGS_HELD,
    CONTRACTS,
    PARTNERS,
    DECISION,
    RESULT_OVERDUE,
    STORAGE_BLOCKED,
    CATCHING_UP,
)

_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def registrations() -> dict[str, str]:
    """Name to type (``Keyword``, ``Int``, ...) of every attribute, for the dev server."""
    return {key.name: _TYPE_NAMES[key.indexed_value_type] for key in ALL}


def at_start(programme_id: str, firm_id: str, mission_id: str) -> TypedSearchAttributes:
    """The attributes a journey starts with (the rest follow from its first task)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(PROGRAMME, programme_id),
            SearchAttributePair(FIRM, firm_id),
            SearchAttributePair(MISSION, mission_id),
            SearchAttributePair(CATCHING_UP, True),
        ]
    )


def updates(
    previous: dict[str, Any], current: dict[str, Any]
) -> list[SearchAttributeUpdate[Any]]:
    """The updates turning ``previous`` values into ``current`` ones (by attribute name).

    A value of None unsets the attribute.
    """
    keys = {key.name: key for key in ALL}
    changes: list[SearchAttributeUpdate[Any]] = []
    for name, value in current.items():
        if previous.get(name, ...) == value:
            continue
        key = keys[name]
        changes.append(key.value_unset() if value is None else key.value_set(value))
    return changes


def values(
    *,
    programme_id: str,
    firm_id: str,
    mission_id: str,
    stage: str,
    next_deadline: datetime | None,
    next_deadline_kind: str | None,
    meetings_held: int,
    contracts: int,
    partners: list[str],
    decision: str | None,
    result_overdue: bool,
    storage_blocked: bool = False,
    catching_up: bool | None = None,
) -> dict[str, Any]:
    """The attributes' values by name, from a journey's facts.

    ``catching_up`` None leaves that attribute out (journeys started before it).
    """
    values = {
        PROGRAMME.name: programme_id,
        FIRM.name: firm_id,
        MISSION.name: mission_id,
        STAGE.name: stage,
        NEXT_DEADLINE.name: next_deadline,
        NEXT_DEADLINE_KIND.name: next_deadline_kind,
        MEETINGS_HELD.name: meetings_held,
        CONTRACTS.name: contracts,
        PARTNERS.name: partners or None,
        DECISION.name: decision,
        RESULT_OVERDUE.name: result_overdue,
        STORAGE_BLOCKED.name: True if storage_blocked else None,
    }
    if catching_up is not None:
        values[CATCHING_UP.name] = True if catching_up else None
    return values
