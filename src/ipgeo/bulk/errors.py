"""Errors that stop a bulk run (reported as one clear message, never a traceback)."""

from __future__ import annotations


class BulkError(Exception):
    """The run cannot continue: unreadable input, bad option, range too large to expand."""


class Cancelled(BulkError):
    """The caller asked the run to stop."""


class TooLarge(BulkError):
    """The run went past one of its bounds: ``rows`` written or ``input`` bytes read."""

    def __init__(self, bound: str, limit: int) -> None:
        self.bound = bound
        self.limit = limit
        if bound == "rows":
            message = f"the result has more than {limit:,} rows"
        else:
            message = f"the input is larger than {limit:,} bytes (decompressed)"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[TooLarge], tuple[str, int]]:
        return (TooLarge, (self.bound, self.limit))  # pickled between processes
