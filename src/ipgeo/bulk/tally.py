"""The counts of a bulk run: hits per place facet, and distinct IPs (with hits in unique mode)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt

from ipgeo.bulk.distinct import DistinctIPs
from ipgeo.bulk.resolver import FIRST_PLACE, NOT_FOUND, RESERVED
from ipgeo.bulk.summary import Facet, Summary, top_places
from ipgeo.bulk.tokens import Token

# The facet id IP keys carry in unique mode (an id, not read: see ``Tally``)
UNCOUNTED = 0


class Tally:
    """Hits by facet id and by IP; tokens keep pending hits until they are folded in here.

    In unique mode the facet hits are counted when the rows are written (``count_facets``):
    each IP is looked up once, then, and the facet ids its keys carry before are not read.
    """

    def __init__(self, unique: bool) -> None:
        self.unique = unique
        self.seen: dict[str, int] = {}  # unique mode: hits per IP, in first-seen order
        self.fresh: list[str] = []  # unique mode: the IPs ``met`` put first in ``seen`` lately
        self.distinct = DistinctIPs()  # per-line mode
        self.facet_hits: Counter[int] = Counter()

    def met(self, ips: list[str], packed_v4: bytes = b"") -> None:
        """Count the distinct IPs met in new keys, in order (``packed_v4``: more IPv4
        addresses, as 4 bytes each; per-line mode only)."""
        if self.unique:
            seen = self.seen
            fresh = self.fresh
            for ip in ips:
                if ip not in seen:
                    seen[ip] = 0
                    fresh.append(ip)
            return
        self.distinct.add_packed_v4(packed_v4)
        for ip in ips:
            self.distinct.add(ip)

    def forget_fresh(self) -> None:
        """Take the IPs of ``fresh`` out of ``seen`` again (they have no hits yet)."""
        for ip in self.fresh:
            del self.seen[ip]
        self.fresh.clear()

    def add(self, ip: str, facet: int) -> None:
        """Count one row of ``ip``."""
        if self.unique:
            self.seen[ip] = self.seen.get(ip, 0) + 1
            return
        self.distinct.add(ip)
        self.facet_hits[facet] += 1

    def count_facets(self, facets: list[int], hits: list[int]) -> None:
        """Unique mode: count the hits of IPs whose rows are written, by their facet ids."""
        facet_hits = self.facet_hits
        for facet, count in zip(facets, hits, strict=True):
            facet_hits[facet] += count

    def fold(self, tokens: list[Token]) -> None:
        """Move the pending hit counts of tokens into the totals."""
        seen = self.seen
        facet_hits = self.facet_hits
        for token in tokens:
            if token.hits and token.facet >= 0:
                if self.unique:
                    seen[token.ip] = seen.get(token.ip, 0) + token.hits
                else:
                    facet_hits[token.facet] += token.hits
                token.hits = 0

    def fold_counts(
        self, facets: npt.NDArray[np.int64], hits: npt.NDArray[np.int64], ips: list[str]
    ) -> None:
        """Add pending hits given as columns: per IP (``ips``) its facet id and hits."""
        if not len(hits):
            return
        if self.unique:
            seen = self.seen
            for ip, count in zip(ips, hits.tolist(), strict=True):
                seen[ip] = seen.get(ip, 0) + count
            return
        distinct, inverse = np.unique(facets, return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=hits).astype(np.int64)
        facet_hits = self.facet_hits
        for facet, count in zip(distinct.tolist(), sums.tolist(), strict=True):
            facet_hits[facet] += count

    def finish(self, summary: Summary, facets: list[Facet | None], top: int) -> None:
        """Put the counts into ``summary``."""
        hits = self.facet_hits
        summary.reserved = hits[RESERVED]
        summary.not_found = hits[NOT_FOUND]
        summary.located = sum(count for facet, count in hits.items() if facet >= FIRST_PLACE)
        summary.valid = summary.located + summary.reserved + summary.not_found
        summary.distinct_ips = len(self.seen) if self.unique else len(self.distinct)
        summary.top = top_places(facets, hits, top)
