"""Errors a lookup can end with; the web layer maps each ``code`` to an HTTP status."""

from __future__ import annotations


class GeoError(Exception):
    """A lookup that cannot produce an answer, with a stable machine-readable ``code``."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidQuery(GeoError):
    """The query is neither an IP address nor a valid domain name."""

    code = "invalid_query"


class NotFound(GeoError):
    """The address is public but the database has no record for it."""

    code = "not_found"


class ReservedAddress(GeoError):
    """The address is private, loopback, link-local, multicast or otherwise reserved."""

    code = "reserved_address"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Unresolvable(GeoError):
    """A domain name has no A/AAAA records, does not exist, or DNS timed out."""

    code = "unresolvable"


class DatabaseUnavailable(GeoError):
    """No database is open, so no lookup can be answered."""

    code = "database_unavailable"
