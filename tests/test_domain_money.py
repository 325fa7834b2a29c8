"""Amounts of money: checked as commands accept them, read back as events recorded them.

``Money`` (commands): active ISO 4217 currencies, any case, minor units, a ceiling.
``RecordedMoney`` (events, states): any three-letter code, any positive finite amount.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from domain.commands import EnrollFirm, SignContract
from domain.events import AnyEvent, ContractSigned, EventEnvelope
from domain.journey import decide
from domain.money import MAX_AMOUNT, Money, RecordedMoney, active_currency, currency_exponent
from domain.programme import Firm
from domain.state import fold
from tests.conftest import make_programme


@pytest.mark.parametrize(("code", "exponent"), [("USD", 2), ("CAD", 2), ("JPY", 0), ("BHD", 3)])
def test_iso_4217_currencies_are_accepted_with_their_minor_units(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent
    assert Money(amount=Decimal(1), currency=code).currency == code


@pytest.mark.parametrize("code", ["XYZ", "US", "USDD", "", "dollars", "ZWL"])
def test_a_code_that_is_not_an_iso_4217_currency_is_refused(code: str) -> None:
    with pytest.raises(ValidationError, match=rf"unknown currency '{code}' \(expected an ISO 4217"):
        Money(amount=Decimal(100), currency=code)


@pytest.mark.parametrize(("given", "kept"), [("usd", "USD"), ("Cad", "CAD"), (" jpy ", "JPY")])
def test_upper_and_lower_case_codes_are_the_same_currency(given: str, kept: str) -> None:
    money = Money(amount=Decimal(100), currency=given)
    assert money.currency == kept
    assert money == Money(amount=Decimal(100), currency=kept)
    signed = SignContract(counterpart="Apple", value={"amount": "100", "currency": given})
    assert signed.value.currency == kept


@pytest.mark.parametrize(
    "code",
    [
        *("XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XDR", "XSU", "XUA", "XAD"),
        *("XBA", "XBB", "XBC", "XBD"),
        *("USN", "BOV", "CLF", "CHE", "CHW", "COU", "MXV", "UYI", "UYW"),
        "xxx",
    ],
)
def test_iso_4217_codes_that_are_not_a_currency_are_refused(code: str) -> None:
    upper = code.upper()
    with pytest.raises(
        ValidationError,
        match=rf"{upper} \(.+\) is not a currency contracts are signed in \(expected an active",
    ):
        Money(amount=Decimal(100), currency=code)
    with pytest.raises(ValueError, match=rf"{upper} \(.+\) is not a currency"):
        active_currency(code)


def test_the_no_currency_and_testing_codes_say_what_they_are() -> None:
    with pytest.raises(ValueError, match=r"XXX \(The codes assigned for transactions where no"):
        active_currency("XXX")
    with pytest.raises(ValueError, match=r"XAU \(Gold\) is not a currency"):
        active_currency("XAU")


@pytest.mark.parametrize(("code", "exponent"), [("XAF", 0), ("XOF", 0), ("XCD", 2), ("XPF", 0)])
def test_active_currencies_whose_code_starts_with_x_are_accepted(code: str, exponent: int) -> None:
    assert active_currency(code) == code
    assert currency_exponent(code) == exponent


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
        ("1200.5", "JPY", r"amount 1200\.5 has 1 decimals; JPY has 0"),
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


# ------------------------------------------------------------ plausibility bound


@pytest.mark.parametrize("amount", ["99999999999999999999999", "1000000000000000.01", "1E+30"])
def test_an_amount_above_the_ceiling_of_any_contract_is_refused(amount: str) -> None:
    shown = str(Decimal(amount))
    with pytest.raises(
        ValidationError,
        match=rf"amount {re.escape(shown)} is above the maximum of 1,000,000,000,000,000 USD",
    ):
        Money(amount=Decimal(amount), currency="USD")


def test_a_23_digit_amount_in_a_command_payload_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"amount 99999999999999999999999 is above"):
        SignContract.model_validate(
            {
                "counterpart": "Apple",
                "value": {"amount": "99999999999999999999999", "currency": "usd"},
            }
        )
    with pytest.raises(ValidationError, match=r"is above the maximum of 1,000,000,000,000,000"):
        SignContract.model_validate_json(
            '{"counterpart": "Apple", '
            '"value": {"amount": 99999999999999999999999, "currency": "USD"}}'
        )


def test_the_ceiling_itself_is_accepted() -> None:
    assert Money(amount=MAX_AMOUNT, currency="JPY").amount == MAX_AMOUNT


# ----------------------------------------------------------- money as recorded


def _signed(currency: str, amount: str = "1250.5") -> ContractSigned:
    return ContractSigned(
        occurred_at=datetime(2024, 3, 1, tzinfo=UTC),
        recorded_at=datetime(2024, 3, 1, tzinfo=UTC),
        contract_id="c1",
        counterpart="Harare Trading",
        value=RecordedMoney(amount=Decimal(amount), currency=currency),
    )


@pytest.mark.parametrize("currency", ["ZWL", "QQQ", "XXX"])
def test_an_event_whose_currency_is_not_an_active_one_today_still_loads_and_prints(
    currency: str,
) -> None:
    with pytest.raises(ValidationError):
        Money(amount=Decimal(1), currency=currency)
    event = _signed(currency)
    assert event.summary() == f"contract c1 signed with Harare Trading: {currency} 1,250.5"
    read_back = ContractSigned.model_validate_json(event.model_dump_json())
    assert read_back == event
    assert str(read_back.value) == f"{currency} 1,250.5"
    envelope = EventEnvelope.model_validate_json(
        EventEnvelope(
            event_id=uuid.uuid4(), stream_id="journey/p/f", stream_version=2, event=event
        ).model_dump_json()
    )
    assert envelope.event == event
    assert TypeAdapter(AnyEvent).validate_json(event.model_dump_json()) == event


def test_a_recorded_amount_keeps_the_decimals_it_was_recorded_with() -> None:
    assert str(RecordedMoney(amount=Decimal("12.345"), currency="USD")) == "USD 12.345"
    assert str(RecordedMoney(amount=Decimal("12.3"), currency="USD")) == "USD 12.30"
    assert str(RecordedMoney(amount=Decimal("12.345"), currency="QQQ")) == "QQQ 12.345"
    assert RecordedMoney(amount=Decimal("1200.5"), currency="JPY").amount == Decimal("1200.5")


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("0", "QQQ", r"amount 0 must be positive"),
        ("NaN", "QQQ", r"finite number|not a number"),
        ("10", "usd", r"currency 'usd' is not a three-letter code"),
        ("10", "US", r"currency 'US' is not a three-letter code"),
    ],
)
def test_a_recorded_amount_is_still_a_positive_amount_with_a_three_letter_code(
    amount: str, currency: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        RecordedMoney(amount=Decimal(amount), currency=currency)


def test_money_placed_in_an_event_is_held_as_recorded_money_equal_to_it() -> None:
    money = Money(amount=Decimal("525000.00"), currency="USD")
    built = ContractSigned.model_validate({**_signed("USD").model_dump(), "value": money})
    assert type(built.value) is RecordedMoney
    assert built.value == money and money == built.value
    assert hash(built.value) == hash(money)
    assert ContractSigned.model_validate_json(built.model_dump_json()) == built


def test_a_journey_folds_a_contract_in_a_currency_withdrawn_since() -> None:
    enrol = EnrollFirm(
        programme=make_programme("p-money"),
        firm=Firm(id="harare", name="Harare Trading"),
        mission_id="m1",
        occurred_on=date(2013, 9, 17),
    )
    enrolled = decide(None, enrol, datetime(2013, 9, 18, 19, tzinfo=UTC))
    withdrawn = _signed("ZWL").model_copy(
        update={"occurred_at": datetime(2013, 10, 1, 19, tzinfo=UTC)}
    )
    state = fold([*enrolled, withdrawn])
    assert state.assessment().value_by_currency == {"ZWL": Decimal("1250.5")}
    assert str(state.contracts[0].value) == "ZWL 1,250.5"
