"""Errors that stop a bulk run (reported as one clear message, never a traceback)."""

from __future__ import annotations


class BulkError(Exception):
    """The run cannot continue: unreadable input, bad option, range too large to expand."""


class Cancelled(BulkError):
    """The caller asked the run to stop."""
