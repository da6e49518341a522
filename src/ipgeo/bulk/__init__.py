"""Bulk enrichment of IP lists, CIDRs, ranges and access logs (no Flask).

``run(service, inputs, options, output, progress, should_cancel) -> Summary`` is the whole API
used by the ``ipgeo bulk`` command and by background jobs.
"""

from ipgeo.bulk.engine import Options, Progress, ProgressCallback, run
from ipgeo.bulk.errors import BulkError, Cancelled, TooLarge
from ipgeo.bulk.parsing import INPUT_FORMATS
from ipgeo.bulk.summary import BadLine, Summary
from ipgeo.bulk.writers import OUTPUT_FORMATS, PER_LINE_DEFAULT, UNIQUE_DEFAULT

__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "PER_LINE_DEFAULT",
    "UNIQUE_DEFAULT",
    "BadLine",
    "BulkError",
    "Cancelled",
    "Options",
    "Progress",
    "ProgressCallback",
    "Summary",
    "TooLarge",
    "run",
]
