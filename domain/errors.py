"""Errors raised when a command breaks a rule of the journey.

A refused command changes nothing. Each error class names a family of rules; its
message says which rule was broken and with which value.
"""


class DomainError(Exception):
    """A command was refused because it breaks a rule of the journey."""

    @property
    def rule(self) -> str:
        """The class name, used as the error type across Temporal and the CLI."""
        return type(self).__name__


class UnknownReference(DomainError):
    """The command names a mission, partner, meeting or contract that does not exist."""


class DateOutOfRange(DomainError):
    """The command's date is impossible here.

    In the future, before the introduction, in a closed cycle, or before the fact it
    depends on.
    """


class JourneyOver(DomainError):
    """The firm has withdrawn or its journey was closed at an evaluation."""


class MeetingRuleBroken(DomainError):
    """A meeting rule was broken.

    Requested twice, given a result before it was arranged or twice, and the like.
    """


class ContractRuleBroken(DomainError):
    """A contract's amount, currency or attributed meetings are not acceptable."""


class AmountAboveMaximum(ContractRuleBroken):
    """A contract's amount is above the programme's maximum (``max_contract_amount``).

    A plausibility bound: a typo's extra digits or an overflow cannot enter the bilan.
    """


class VisitRuleBroken(DomainError):
    """No return visit is open for attendance on the command's date."""


class EvaluationRuleBroken(DomainError):
    """An evaluation decision came before the evaluation was due, or twice."""


class AlreadyEnrolled(DomainError):
    """The firm already has a journey in this programme."""


class CorrectionRuleBroken(DomainError):
    """A correction or void makes no sense.

    The record is voided already, has nothing recorded to correct (a meeting without a
    result, a visit without an attendance), or would not change.
    """


class RecordDiffers(DomainError):
    """The command names a record the journey already has, with different values.

    The same business identity (a meeting id, a contract id or natural key, a return
    visit, a cycle's evaluation) with the same values is "already recorded" (``decide``
    returns no event); with other values it is refused with this error, whose message
    names each field that differs, its recorded and its new value, and the command
    that corrects the record (when it can be corrected). Notes and other free text
    never make a record differ.

    Attributes:
        fields: The names of the fields that differ (e.g. ``("amount",)``).
        correction: The command that corrects the record, as typed in a shell
            (``corridor correct contract ...``), or None when it cannot be corrected.
    """

    def __init__(
        self, message: str, *, fields: tuple[str, ...] = (), correction: str | None = None
    ) -> None:
        super().__init__(message)
        self.fields = fields
        self.correction = correction
