"""Amounts of money: ISO 4217 currencies, positive decimal amounts, readable display."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from domain.money import Money, currency_exponent


@pytest.mark.parametrize(("code", "exponent"), [("USD", 2), ("CAD", 2), ("JPY", 0), ("BHD", 3)])
def test_iso_4217_currencies_are_accepted_with_their_minor_units(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent
    assert Money(amount=Decimal(1), currency=code).currency == code


@pytest.mark.parametrize("code", ["XYZ", "usd", "Cad", "US", "USDD", "", "dollars"])
def test_a_code_that_is_not_an_upper_case_iso_4217_currency_is_refused(code: str) -> None:
    with pytest.raises(ValidationError, match=rf"unknown currency '{code}' \(expected an ISO 4217"):
        Money(amount=Decimal(100), currency=code)


def test_currency_exponent_names_the_unknown_code() -> None:
    with pytest.raises(ValueError, match=r"unknown currency 'XYZ'"):
        currency_exponent("XYZ")


@pytest.mark.parametrize("amount", ["0", "-1", "-525000.00", "0.00"])
def test_a_zero_or_negative_amount_is_refused(amount: str) -> None:
    with pytest.raises(ValidationError, match=rf"amount {amount} must be positive"):
        Money(amount=Decimal(amount), currency="USD")


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity"])
def test_an_amount_that_is_not_a_number_is_refused(amount: str) -> None:
    with pytest.raises(ValidationError, match=r"finite number|not a number"):
        Money(amount=amount, currency="USD")


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("1.234", "USD", r"amount 1\.234 has 3 decimals; USD has 2"),
        ("1.5", "JPY", r"amount 1\.5 has 1 decimals; JPY has 0"),
        ("10.0001", "BHD", r"amount 10\.0001 has 4 decimals; BHD has 3"),
    ],
)
def test_an_amount_more_precise_than_its_currency_is_refused(
    amount: str, currency: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Money(amount=Decimal(amount), currency=currency)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("1.23", "USD"), ("1.230", "USD"), ("1500", "JPY"), ("1500.00", "JPY"), ("0.001", "BHD")],
)
def test_trailing_zeros_do_not_count_as_precision(amount: str, currency: str) -> None:
    assert Money(amount=Decimal(amount), currency=currency).amount == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("525000", "USD", "USD 525,000.00"),
        ("525000.5", "USD", "USD 525,000.50"),
        ("1250000", "JPY", "JPY 1,250,000"),
        ("1.25", "BHD", "BHD 1.250"),
        ("0.01", "CAD", "CAD 0.01"),
    ],
)
def test_money_is_shown_as_code_then_grouped_amount_with_the_currency_decimals(
    amount: str, currency: str, shown: str
) -> None:
    assert str(Money(amount=Decimal(amount), currency=currency)) == shown


def test_money_is_a_value_compared_by_amount_and_currency() -> None:
    assert Money(amount=Decimal("10.00"), currency="USD") == Money(
        amount=Decimal("10.00"), currency="USD"
    )
    assert Money(amount=Decimal(10), currency="USD") != Money(amount=Decimal(10), currency="CAD")
    money = Money(amount=Decimal(10), currency="USD")
    with pytest.raises(ValidationError, match=r"frozen"):
        money.amount = Decimal(20)  # type: ignore[misc]


def test_money_read_from_json_keeps_its_exact_decimal_amount() -> None:
    money = Money.model_validate_json('{"amount": "525000.10", "currency": "USD"}')
    assert money.amount == Decimal("525000.10")
    assert Money.model_validate_json(money.model_dump_json()) == money
