"""An exact count of distinct IP addresses in 4 bytes per IPv4 and 16 per IPv6 address."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import numpy.typing as npt

_MERGE_AT = 1 << 20  # pending addresses of one version before they are merged


class DistinctIPs:
    """Packed addresses, merged now and then into sorted unique numpy arrays."""

    def __init__(self) -> None:
        self._v4: npt.NDArray[np.uint32] = np.empty(0, dtype=np.uint32)
        self._v6: npt.NDArray[np.bytes_] = np.empty(0, dtype="S16")
        self._pending4 = bytearray()
        self._pending6 = bytearray()

    def add(self, ip: str) -> None:
        """Count ``ip`` (canonical text of an IPv4 or IPv6 address) once, however often added."""
        if ":" in ip:
            self._pending6 += socket.inet_pton(socket.AF_INET6, ip)
            if len(self._pending6) >= 16 * _MERGE_AT:
                self._merge()
        else:
            self._pending4 += socket.inet_pton(socket.AF_INET, ip)
            if len(self._pending4) >= 4 * _MERGE_AT:
                self._merge()

    def add_packed_v4(self, packed: bytes) -> None:
        """``add`` for IPv4 addresses given as 4 packed bytes each, back to back."""
        self._pending4 += packed
        if len(self._pending4) >= 4 * _MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        if self._pending4:
            fresh4 = np.frombuffer(bytes(self._pending4), dtype=">u4").astype(np.uint32)
            self._v4 = _union(self._v4, fresh4)
            self._pending4 = bytearray()
        if self._pending6:
            fresh6 = np.frombuffer(bytes(self._pending6), dtype="S16")
            self._v6 = _union(self._v6, fresh6)
            self._pending6 = bytearray()

    def arrays(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.bytes_]]:
        """The distinct IPv4 (as integers) and IPv6 (as 16 bytes) addresses, sorted."""
        self._merge()
        return self._v4, self._v6

    def add_arrays(self, v4: npt.NDArray[np.uint32], v6: npt.NDArray[np.bytes_]) -> None:
        """Count the addresses of ``arrays()`` (of another count) too."""
        self._merge()
        self._v4 = _union(self._v4, v4.astype(np.uint32))
        self._v6 = _union(self._v6, v6.astype("S16"))

    def __len__(self) -> int:
        self._merge()
        return len(self._v4) + len(self._v6)


def _union(known: npt.NDArray[Any], fresh: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``np.union1d`` by sorting (numpy 2's ``unique`` hashes, many times slower here)."""
    merged = np.sort(np.concatenate((known, fresh)))
    keep = np.empty(len(merged), dtype=bool)
    keep[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]
