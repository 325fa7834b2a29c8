"""Values as operators type them in spreadsheets: dates, timestamps, amounts, currencies.

Each parser raises ``ValueError`` with a message for a spreadsheet user (what to write
instead), which the row reader reports with the row and column.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal

from domain.money import currency_exponent

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



def parse_currency(value: str) -> str:
    """Parse an ISO 4217 currency code, in any case (``usd`` is ``USD``).

    Raises:
        ValueError: Not a current ISO 4217 code (the message names it).
    """
    code = value.upper()
    currency_exponent(code)
    return code
