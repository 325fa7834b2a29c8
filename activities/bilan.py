"""The bilan in SQL, from the read models rather than from journey states.

``journeys``, ``meetings``, ``contracts`` and ``return_visits`` give the same
:class:`domain.bilan.Bilan`, with the same figures, as :func:`domain.bilan.compute_bilan`
folds from journey states, without reading any state.

Amounts are summed per currency by PostgreSQL's ``numeric`` (exact), never across
currencies; the median of the days to a first contract is ``percentile_cont(0.5)``,
which is ``statistics.median``'s definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from activities.migrations import Connection
from domain.bilan import Bilan, FirmRow
from domain.commands import Outcome
from domain.journey import Stage

_HELD = [o.value for o in Outcome if o.held]

_FIRM_ROWS = """
WITH chosen AS (
    SELECT stream_id, firm_id, firm_name, mission_id, introduced_on, stage, cycle,
           last_event_at
      FROM journeys
     WHERE programme_id = $1
       AND ($2::text IS NULL OR mission_id = $2)
       AND ($3::text[] IS NULL OR stream_id = ANY ($3::text[]))
), meeting_counts AS (
    SELECT m.stream_id,
           count(*) AS requested,
           count(*) FILTER (WHERE m.scheduled_at IS NOT NULL) AS arranged,
           count(*) FILTER (WHERE m.outcome = ANY ($4::text[])) AS held,
           count(*) FILTER (WHERE m.overdue AND m.outcome IS NULL) AS overdue
      FROM meetings m JOIN chosen USING (stream_id)
     WHERE m.programme_id = $1
     GROUP BY m.stream_id
), contract_values AS (
    SELECT c.stream_id, c.currency, count(*) AS contracts, sum(c.amount) AS amount,
           min(c.signed_on) AS first_signed
      FROM contracts c JOIN chosen USING (stream_id)
     WHERE c.programme_id = $1 AND c.voided_on IS NULL
     GROUP BY c.stream_id, c.currency
), contract_counts AS (
    SELECT stream_id, sum(contracts)::integer AS contracts, min(first_signed) AS first_signed,
           array_agg(currency::text ORDER BY currency) AS currencies,
           array_agg(amount ORDER BY currency) AS amounts
      FROM contract_values GROUP BY stream_id
), visit_counts AS (
    SELECT v.stream_id,
           count(*) FILTER (WHERE v.status = 'attended') AS attended,
           count(*) FILTER (WHERE v.status = 'skipped') AS skipped,
           count(*) FILTER (WHERE v.status = 'missed') AS missed
      FROM return_visits v JOIN chosen USING (stream_id)
     WHERE v.programme_id = $1
     GROUP BY v.stream_id
), firm_rows AS (
    SELECT j.stream_id, j.firm_id, j.firm_name, j.mission_id, j.introduced_on, j.stage,
           j.cycle, j.last_event_at,
           coalesce(m.requested, 0)::integer AS meetings_requested,
           coalesce(m.arranged, 0)::integer AS meetings_arranged,
           coalesce(m.held, 0)::integer AS meetings_held,
           coalesce(m.overdue, 0)::integer AS results_overdue,
           coalesce(c.contracts, 0) AS contracts,
           coalesce(c.currencies, '{}') AS currencies,
           coalesce(c.amounts, '{}') AS amounts,
           c.first_signed - j.introduced_on AS days_to_first_contract,
           coalesce(v.attended, 0)::integer AS visits_attended,
           coalesce(v.skipped, 0)::integer AS visits_skipped,
           coalesce(v.missed, 0)::integer AS visits_missed
      FROM chosen j
      LEFT JOIN meeting_counts m USING (stream_id)
      LEFT JOIN contract_counts c USING (stream_id)
      LEFT JOIN visit_counts v USING (stream_id)
)
"""

_ROWS = _FIRM_ROWS + """
SELECT firm_id, firm_name, mission_id, introduced_on, stage, cycle, meetings_requested,
       meetings_arranged, meetings_held, results_overdue, contracts, currencies, amounts,
       days_to_first_contract, visits_attended, visits_skipped, visits_missed
  FROM firm_rows ORDER BY introduced_on, firm_id
"""

_TOTALS = _FIRM_ROWS + """
SELECT count(*)::integer AS firms,
       coalesce(sum(meetings_requested), 0)::integer AS meetings_requested,
       coalesce(sum(meetings_arranged), 0)::integer AS meetings_arranged,
       coalesce(sum(meetings_held), 0)::integer AS meetings_held,
       coalesce(sum(results_overdue), 0)::integer AS results_overdue,
       coalesce(sum(contracts), 0)::integer AS contracts,
       (count(*) FILTER (WHERE contracts > 0))::integer AS firms_with_contract,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY days_to_first_contract)
           AS median_days_to_first_contract,
       coalesce(sum(visits_attended), 0)::integer AS visits_attended,
       coalesce(sum(visits_skipped), 0)::integer AS visits_skipped,
       coalesce(sum(visits_missed), 0)::integer AS visits_missed,
       (count(*) FILTER (WHERE stage = 'withdrawn'))::integer AS withdrawn,
       (count(*) FILTER (WHERE stage = 'closed'))::integer AS closed,
       max((last_event_at AT TIME ZONE $5)::date) AS as_of,
       (SELECT array_agg(outcome ORDER BY outcome) FROM (
            SELECT m.outcome || '=' || count(*) AS outcome
              FROM meetings m JOIN firm_rows USING (stream_id)
             WHERE m.programme_id = $1 AND m.outcome IS NOT NULL GROUP BY m.outcome) o
       ) AS outcomes,
       (SELECT array_agg(currency::text ORDER BY currency) FROM (
            SELECT DISTINCT unnest(currencies) AS currency FROM firm_rows) c
       ) AS currencies,
       (SELECT array_agg(amount ORDER BY currency) FROM (
            SELECT c.currency, sum(c.amount) AS amount
              FROM contracts c JOIN firm_rows USING (stream_id)
             WHERE c.programme_id = $1 AND c.voided_on IS NULL GROUP BY c.currency) a
       ) AS amounts
  FROM firm_rows
"""


async def programme_bilan(
    connection: Connection,
    programme_id: str,
    mission_id: str | None = None,
    stream_ids: Sequence[str] | None = None,
) -> Bilan | None:
    """Compute a programme's bilan from the read models, in SQL.

    Args:
        connection: A connection (its own snapshot is used: the figures are consistent).
        programme_id: The programme.
        mission_id: Keep only the firms introduced at this mission; None for all.
        stream_ids: Keep only these journeys (e.g. those a Temporal query matched);
            None for all.

    Returns:
        The bilan, with one row per firm sorted by introduction date then firm id; None
        when the programme has no journey.
    """
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        programme = await connection.fetchrow(
            "SELECT state->'programme'->>'name' AS name,"
            " state->'programme'->>'timezone' AS timezone"
            " FROM journeys WHERE programme_id = $1 LIMIT 1",
            programme_id,
        )
        if programme is None:
            return None
        ids = list(stream_ids) if stream_ids is not None else None
        rows = await connection.fetch(_ROWS, programme_id, mission_id, ids, _HELD)
        totals = await connection.fetchrow(
            _TOTALS, programme_id, mission_id, ids, _HELD, programme["timezone"]
        )
    assert totals is not None
    outcomes = {o.value: 0 for o in Outcome}
    for pair in totals["outcomes"] or []:
        name, _, count = pair.rpartition("=")
        outcomes[name] = int(count)
    firms = totals["firms"]
    median = totals["median_days_to_first_contract"]
    return Bilan(
        as_of=totals["as_of"],
        programme_id=programme_id,
        programme_name=programme["name"],
        scope=mission_id or "programme",
        firms=firms,
        meetings_requested=totals["meetings_requested"],
        meetings_arranged=totals["meetings_arranged"],
        meetings_held=totals["meetings_held"],
        outcomes=outcomes,
        results_overdue=totals["results_overdue"],
        contracts=totals["contracts"],
        value_by_currency=dict(
            zip(totals["currencies"] or [], totals["amounts"] or [], strict=True)
        ),
        firms_with_contract=totals["firms_with_contract"],
        share_with_contract=totals["firms_with_contract"] / firms if firms else None,
        median_days_to_first_contract=float(median) if median is not None else None,
        visits_attended=totals["visits_attended"],
        visits_skipped=totals["visits_skipped"],
        visits_missed=totals["visits_missed"],
        withdrawn=totals["withdrawn"],
        closed=totals["closed"],
        active=firms - totals["withdrawn"] - totals["closed"],
        rows=[_firm_row(r) for r in rows],
    )


def _firm_row(row: Any) -> FirmRow:
    return FirmRow(
        firm_id=row["firm_id"],
        firm_name=row["firm_name"],
        mission_id=row["mission_id"],
        introduced_on=row["introduced_on"],
        stage=Stage(row["stage"]),
        cycle=row["cycle"],
        meetings_requested=row["meetings_requested"],
        meetings_arranged=row["meetings_arranged"],
        meetings_held=row["meetings_held"],
        results_overdue=row["results_overdue"],
        contracts=row["contracts"],
        value_by_currency=dict(zip(row["currencies"], row["amounts"], strict=True)),
        days_to_first_contract=row["days_to_first_contract"],
        visits_attended=row["visits_attended"],
        visits_skipped=row["visits_skipped"],
        visits_missed=row["visits_missed"],
    )
