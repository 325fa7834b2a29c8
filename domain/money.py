"""Amounts of money: a decimal amount and its ISO 4217 currency, never a float."""

from __future__ import annotations

from decimal import Decimal

from iso4217 import Currency
from pydantic import BaseModel, ConfigDict, field_validator, model_validator


def currency_exponent(code: str) -> int:
    """Return the number of minor-unit digits of an ISO 4217 currency (USD: 2, JPY: 0).

    Raises:
        ValueError: If ``code`` is not an ISO 4217 currency code.
    """
    try:
        currency = Currency(code)
    except ValueError as error:
        raise ValueError(f"unknown currency {code!r} (expected an ISO 4217 code)") from error
    exponent = currency.exponent
    return int(exponent) if exponent is not None else 0


class Money(BaseModel):
    """A positive amount in one currency.

    Attributes:
        amount: A decimal with no more digits after the point than the currency has
            minor units (USD 2, JPY 0).
        currency: An ISO 4217 code, upper case.
    """

    model_config = ConfigDict(frozen=True)

    amount: Decimal
    currency: str

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, value: str) -> str:
        currency_exponent(value)
        return value

    @model_validator(mode="after")
    def _positive_and_precise(self) -> Money:
        if not self.amount.is_finite():
            raise ValueError(f"amount {self.amount} is not a number")
        if self.amount <= 0:
            raise ValueError(f"amount {self.amount} must be positive")
        exponent = currency_exponent(self.currency)
        as_tuple = self.amount.normalize().as_tuple()
        digits_after_point = -int(as_tuple.exponent) if int(as_tuple.exponent) < 0 else 0
        if digits_after_point > exponent:
            raise ValueError(
                f"amount {self.amount} has {digits_after_point} decimals; "
                f"{self.currency} has {exponent}"
            )
        return self

    def __str__(self) -> str:
        exponent = currency_exponent(self.currency)
        return f"{self.currency} {self.amount:,.{exponent}f}"
