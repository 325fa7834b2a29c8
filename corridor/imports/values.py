"""Values as operators type them in spreadsheets: dates, timestamps, amounts, currencies.

Each parser raises ``ValueError`` with a message for a spreadsheet user (what to write
instead), which the row reader reports with the row and column.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal

from domain.money import active_currency

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


_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+")
_NUMBER = re.compile(r"(?P<sign>[+-]?)(?P<body>[0-9][0-9 .,']*)")
_GROUPS = re.compile(r"[0-9]{1,3}(?:(?P<sep>[ .,'])[0-9]{3})(?:(?P=sep)[0-9]{3})*")
_CURRENCY_SIGNS = "$€£¥"
_APOSTROPHES = "’ʼ"
"""Apostrophes spreadsheets write between thousands (Swiss style), read as ``'``."""


def parse_amount(value: str) -> Decimal:
    """Parse a decimal amount as people and spreadsheets write it.

    One parser for the CLI and the files. Thousands may be separated by spaces
    (ordinary, non-breaking, narrow no-break or thin), dots, commas or apostrophes,
    in groups of three; the decimal separator is a dot or a comma. These read the
    same: ``1250000.50``, ``1 250 000,50``, ``1.250.000,50``, ``1,250,000.50``,
    ``1'250'000.50``. A single dot or comma followed by exactly three digits
    (``180,000``, ``180.000``) may be thousands or decimals: it is refused, and the
    message says how to write either (``0.500`` is decimals). Refused too: scientific
    notation, currency signs, anything else. Minor units and maxima are the money's
    rules (``domain.money.Money``), not this parser's.

    Args:
        value: The amount as typed, e.g. ``"1 250 000,50"``.

    Returns:
        The amount, with the decimals it was written with (``2001,00`` is ``2001.00``).

    Raises:
        ValueError: The value is not such an amount (the message says what to write).
    """
    text = "".join(" " if unicodedata.category(c) == "Zs" else c for c in value.strip())
    text = "".join("'" if c in _APOSTROPHES else c for c in text)
    if any(sign in text for sign in _CURRENCY_SIGNS):
        raise ValueError("write the amount without a currency sign (the currency has its column)")
    if _SCIENTIFIC.fullmatch(text):
        raise ValueError(
            "scientific notation may have lost digits: format the column as a number "
            "before exporting"
        )
    match = _NUMBER.fullmatch(text)
    if match is None or not match["body"][-1].isdigit():
        raise ValueError("not a number (write e.g. 180000.50 or 180 000,50)")
    sign, body = match["sign"], match["body"]
    separators = [c for c in body if not c.isdigit()]
    if not separators:
        return Decimal(sign + body)
    last = separators[-1]
    if len(separators) == 1 and last in ".,":  # 180,5 / 180.000 (ambiguous) / 0.500
        units, decimals = body.split(last)
        if len(decimals) == 3 and units.lstrip("0"):
            raise ValueError(_ambiguous(sign, last, units, decimals))
        return Decimal(f"{sign}{units}.{decimals}")
    if last in ".," and separators.count(last) == 1:  # 1.250.000,50 / 1 250,5
        units, decimals = body.rsplit(last, 1)
    else:  # only thousands: 1 250 000 / 1.250.000
        units, decimals = body, ""
    grouping = {c for c in units if not c.isdigit()}
    if len(grouping) > 1:
        raise ValueError(
            "mixes thousands separators: use one kind, e.g. 1 250 000,50, 1.250.000,50 "
            "or 1,250,000.50"
        )
    if grouping and not _GROUPS.fullmatch(units):
        raise ValueError(
            "thousands separators must split the digits in groups of three "
            "(1 250 000,50 or 1,250,000.50)"
        )
    digits = "".join(c for c in units if c.isdigit())
    return Decimal(f"{sign}{digits}.{decimals}" if decimals else f"{sign}{digits}")


def _ambiguous(sign: str, separator: str, units: str, decimals: str) -> str:
    """How to write ``units`` + three digits unambiguously, read either way.

    E.g. for ``180.000``: 180000 or 180000.00 for 180 thousand, 180.00 for 180.
    """
    thousands = f"{sign}{units}{decimals}"
    words = f"{sign}{int(units)} thousand" + (f" {int(decimals)}" if int(decimals) else "")
    reading = Decimal(f"{sign}{units}.{decimals}")
    plain = format(reading.normalize(), "f")
    two_places = reading == reading.quantize(Decimal("0.01"))
    written = format(reading, ".2f") if two_places else f"{sign}{units}.{decimals}0"
    if two_places:
        decimal = f"for {plain}" if written != plain else f"if the '{separator}' marks decimals"
    else:  # 12.345 as decimals fits only the currencies with 3 decimals
        decimal = f"for {plain} in a currency with 3 decimals (most have 2)"
    return (
        f"ambiguous (thousands or decimals?): write {thousands} or {thousands}.00 for "
        f"{words}, {written} {decimal}"
    )


def parse_currency(value: str) -> str:
    """Parse a currency as an active ISO 4217 code, in any case (``usd`` is ``USD``).

    The same rule as the commands' money (``domain.money.active_currency``): ``XXX``,
    ``XTS``, metals, units of account and fund codes are refused.

    Raises:
        ValueError: Not an active ISO 4217 currency (the message names it).
    """
    return active_currency(value)
