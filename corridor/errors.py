"""The one error every Corridor command may end with: what to say, and the exit code."""

from __future__ import annotations


class Failure(Exception):
    """A command cannot go on: print ``message`` and exit with ``code``.

    Exit codes: 1 refused by a journey's rules or nothing found; 2 bad input, nothing
    sent; 3 a server cannot be reached.

    Attributes:
        message: What the user reads, one line.
        code: The process's exit code.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        self.message = message
        self.code = code
        super().__init__(message)
