"""Amounts of money: a decimal amount and its currency, never a float.

Money has two moments, with two sets of rules:

- ``Money`` is what a command carries. It is checked when the command is accepted: an
  active ISO 4217 currency (no ``XXX``, ``XTS``, precious metals, units of account or
  fund codes), upper and lower case alike (``usd`` is ``USD``), no more decimals than
  the currency's minor units (JPY has none), and at most ``MAX_AMOUNT``. A programme
  sets its own, lower, plausibility bound (``Policy.max_contract_amount``), checked by
  ``domain.journey.decide``.
- ``RecordedMoney`` is what events and journey states carry. It only asks for a
  three-letter upper-case code and a positive finite amount: a stored event is read and
  replayed whatever today's currency list says (a currency withdrawn from ISO 4217
  since it was recorded, such as ZWL, still loads and prints).

Both compare as values (same amount and currency), whichever of the two they are.
"""

from __future__ import annotations

import re
from decimal import Decimal

from iso4217 import Currency
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

MAX_AMOUNT = Decimal(10) ** 15
"""The most a command's amount may be, in any currency (a thousand million million).

It refuses overflows and runaway typos such as ``99999999999999999999999`` before any
programme sees them; a programme's own maximum may only be lower.
"""

NOT_CURRENCIES = frozenset(
    {
        "XXX",  # no currency involved
        "XTS",  # reserved for testing
        "XAU",  # gold
        "XAG",  # silver
        "XPD",  # palladium
        "XPT",  # platinum
        "XDR",  # IMF special drawing right
        "XSU",  # Sucre (ALBA unit of account)
        "XUA",  # ADB unit of account
        "XAD",  # Arab Monetary Fund accounting dinar
        "XBA",  # European composite unit (bond markets)
        "XBB",  # European monetary unit (bond markets)
        "XBC",  # European unit of account 9 (bond markets)
        "XBD",  # European unit of account 17 (bond markets)
        "BOV",  # Bolivian Mvdol (fund code)
        "CHE",  # WIR euro (fund code)
        "CHW",  # WIR franc (fund code)
        "CLF",  # Chilean Unidad de Fomento (fund code)
        "COU",  # Colombian Unidad de Valor Real (fund code)
        "MXV",  # Mexican Unidad de Inversión (fund code)
        "USN",  # US dollar next day (fund code)
        "UYI",  # Uruguayan peso in indexed units (fund code)
        "UYW",  # Uruguayan Unidad Previsional (fund code)
    }
)
"""ISO 4217 codes that are not a currency a contract is signed in.

Metals, units of account, bond-market units, testing and "no currency" codes, and the
fund codes of ISO 4217's list one. Any other code without minor units is refused too.
"""

_ISO_4217: dict[str, Currency] = {currency.code: currency for currency in Currency}


def currency_exponent(code: str) -> int:
    """Return the number of minor-unit digits of an ISO 4217 currency (USD: 2, JPY: 0).

    Args:
        code: An ISO 4217 code, upper case.

    Returns:
        The currency's minor units; 0 for a code without any (e.g. ``XXX``).

    Raises:
        ValueError: If ``code`` is not an ISO 4217 currency code.
    """
    currency = _ISO_4217.get(code)
    if currency is None:
        raise ValueError(f"unknown currency {code!r} (expected an ISO 4217 code)")
    exponent = currency.exponent
    return int(exponent) if exponent is not None else 0


def active_currency(code: str) -> str:
    """Return ``code`` as an active ISO 4217 currency, in upper case.

    Args:
        code: A currency code in any case, e.g. ``"usd"``.

    Returns:
        The upper-case code, e.g. ``"USD"``.

    Raises:
        ValueError: If the code is not in ISO 4217 (``XYZ``), or is a code that is not
            a currency: ``XXX``, ``XTS``, metals, units of account, fund codes
            (``NOT_CURRENCIES``).
    """
    upper = code.strip().upper()
    currency = _ISO_4217.get(upper)
    if currency is None:
        raise ValueError(f"unknown currency {code!r} (expected an ISO 4217 code)")
    if upper in NOT_CURRENCIES or currency.exponent is None:
        raise ValueError(
            f"{upper} ({currency.currency_name}) is not a currency contracts are signed in "
            "(expected an active ISO 4217 currency such as USD, EUR or CAD)"
        )
    return upper


def _minor_units(code: str) -> int | None:
    """Minor units of a currency ISO 4217 knows today; None for any other code."""
    currency = _ISO_4217.get(code)
    if currency is None or currency.exponent is None:
        return None
    return int(currency.exponent)


def _decimals(amount: Decimal) -> int:
    """Digits after the point, trailing zeros not counted (``1.230`` has 2)."""
    exponent = int(amount.normalize().as_tuple().exponent)
    return -exponent if exponent < 0 else 0


class RecordedMoney(BaseModel):
    """A positive amount in one currency, as an event or a journey state holds it.

    Reading a stored event never consults the currency list (see the module's notes).

    Attributes:
        amount: A positive, finite decimal.
        currency: Three upper-case letters (an ISO 4217 code when it was recorded).
    """

    model_config = ConfigDict(frozen=True, revalidate_instances="subclass-instances")

    amount: Decimal
    currency: str

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return cls._checked_currency(value)

    @classmethod
    def _checked_currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"currency {value!r} is not a three-letter code such as USD")
        return value

    @model_validator(mode="after")
    def _amount(self) -> RecordedMoney:
        self._check_amount()
        return self

    def _check_amount(self) -> None:
        if not self.amount.is_finite():
            raise ValueError(f"amount {self.amount} is not a number")
        if self.amount <= 0:
            raise ValueError(f"amount {self.amount} must be positive")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordedMoney):
            return (self.amount, self.currency) == (other.amount, other.currency)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def __str__(self) -> str:
        """E.g. ``USD 525,000.00``: the currency's decimals, or more if recorded with more."""
        exponent = _minor_units(self.currency)
        if exponent is None:  # a code ISO 4217 does not list today: as recorded
            return f"{self.currency} {self.amount:,f}"
        places = max(exponent, _decimals(self.amount))
        return f"{self.currency} {self.amount:,.{places}f}"


class Money(RecordedMoney):
    """A positive amount in an active currency, as a command carries it.

    Checked when the command is accepted (and built): events hold it as
    ``RecordedMoney``.

    Attributes:
        amount: A positive decimal of at most ``MAX_AMOUNT``, with no more digits after
            the point than the currency has minor units (USD 2, JPY 0).
        currency: An active ISO 4217 code; given in any case, kept in upper case.

    Raises:
        pydantic.ValidationError: On construction, naming the value and the rule.
    """

    @classmethod
    def _checked_currency(cls, value: str) -> str:
        return active_currency(value)

    def _check_amount(self) -> None:
        super()._check_amount()
        if self.amount > MAX_AMOUNT:
            raise ValueError(
                f"amount {self.amount} is above the maximum of {MAX_AMOUNT:,} "
                f"{self.currency} any contract may have"
            )
        exponent = currency_exponent(self.currency)
        decimals = _decimals(self.amount)
        if decimals > exponent:
            raise ValueError(
                f"amount {self.amount} has {decimals} decimals; {self.currency} has {exponent}"
            )
