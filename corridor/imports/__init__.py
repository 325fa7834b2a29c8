"""Operators' files, read and checked whole before anything is sent.

- ``spreadsheet``: CSV files as spreadsheets export them (encoding, delimiter, header)
  and the cells of a row;
- ``values``: dates, aware timestamps, amounts and currencies as operators type them;
- ``programme``, ``roster``, ``journal``: each file mapped to the domain's programme
  and commands;
- ``problems``: what is reported, each problem with its row, column and value.

Problems are worded for a spreadsheet user, not in Python's terms.
"""

from corridor.imports.journal import JournalRecord, journal_firm_ids, load_journal
from corridor.imports.problems import InputError, RowError
from corridor.imports.programme import load_programme
from corridor.imports.roster import load_roster
from corridor.imports.values import (
    parse_amount,
    parse_aware_datetime,
    parse_currency,
    parse_date,
)

__all__ = [
    "InputError",
    "JournalRecord",
    "RowError",
    "journal_firm_ids",
    "load_journal",
    "load_programme",
    "load_roster",
    "parse_amount",
    "parse_aware_datetime",
    "parse_currency",
    "parse_date",
]
