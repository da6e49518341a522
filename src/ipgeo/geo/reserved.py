"""A fast, exact test for "no public location" (``ipgeo.geo.queries.reserved_reason``).

``reserved_reason`` checks two dozen networks plus ``ipaddress``'s ``is_global``; per address
that costs more than the database lookup. Most addresses lie outside every special-purpose
range, so a bisect over the merged ranges answers them, and only candidates inside a range get
the full (authoritative) check. Arrays of IPv4 addresses are checked at once against the exact
reserved ranges (``reserved_spans_v4``), derived from ``reserved_reason`` itself.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
from typing import Any

import numpy as np
import numpy.typing as npt

from ipgeo.geo.queries import _SPECIAL_NETS, reserved_reason

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _candidate_networks() -> list[IPNetwork] | None:
    """Every network in which ``is_global`` may be false, or ``None`` if unknown."""
    networks: list[IPNetwork] = [network for network, _ in _SPECIAL_NETS]
    networks.append(ipaddress.ip_network("::ffff:0:0/96"))
    for constants in ("_IPv4Constants", "_IPv6Constants"):
        holder: Any = getattr(ipaddress, constants, None)
        if holder is None:
            return None
        names = ("_private_networks", "_public_network", "_private_networks_exceptions")
        for name in names:
            value = getattr(holder, name, None)
            if value is None:
                continue
            networks.extend(value if isinstance(value, list | tuple) else [value])
        if not hasattr(holder, "_private_networks"):
            return None
    return networks


def _merged(networks: list[IPNetwork], version: int) -> tuple[list[int], list[int]]:
    spans = sorted(
        (int(net.network_address), int(net.broadcast_address))
        for net in networks
        if net.version == version
    )
    starts: list[int] = []
    ends: list[int] = []
    for start, end in spans:
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


class ReservedFilter:
    """``is_reserved(ip)`` equals ``reserved_reason(ip) is not None``, only faster."""

    def __init__(self) -> None:
        networks = _candidate_networks()
        self._exact_only = networks is None
        self._spans = {version: _merged(networks or [], version) for version in (4, 6)}
        exact = None if self._exact_only else reserved_spans_v4()
        self._exact4 = (
            (np.array(exact[0], dtype=np.int64), np.array(exact[1], dtype=np.int64))
            if exact is not None
            else None
        )

    def reserved_v4(self, numbers: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """``is_reserved`` of each IPv4 address (as integers) at once, exactly."""
        if self._exact4 is None:  # ``ipaddress`` internals unknown: the authoritative check
            return np.array(
                [self.is_reserved_number(4, number) for number in numbers.tolist()], dtype=bool
            )
        starts, ends = self._exact4
        index = np.searchsorted(starts, numbers, side="right") - 1
        return (index >= 0) & (numbers <= ends[np.maximum(index, 0)])

    def is_reserved_number(self, version: int, number: int) -> bool:
        """``is_reserved`` for an address given as version and integer."""
        if not self._exact_only:
            starts, ends = self._spans[version]
            index = bisect.bisect_right(starts, number) - 1
            if index < 0 or number > ends[index]:
                return False
        ip = ipaddress.IPv4Address(number) if version == 4 else ipaddress.IPv6Address(number)
        return reserved_reason(ip) is not None

    def is_reserved(self, ip: IPAddress) -> bool:
        """True when ``ip`` has no public location (private, loopback, reserved, …)."""
        if not self._exact_only:
            starts, ends = self._spans[ip.version]
            number = int(ip)
            index = bisect.bisect_right(starts, number) - 1
            if index < 0 or number > ends[index]:
                return False
        return reserved_reason(ip) is not None


def reserved_spans_v4() -> tuple[list[int], list[int]] | None:
    """Exactly the IPv4 addresses ``reserved_reason`` names, as merged inclusive ranges.

    ``reserved_reason`` only tests membership in the candidate networks, so it is constant
    between consecutive network boundaries: one check per stretch decides it for all.
    """
    networks = _candidate_networks()
    if networks is None:
        return None
    shared: Any = getattr(getattr(ipaddress, "_IPv4Constants", None), "_shared_address_space", None)
    if shared is not None:
        networks.append(shared)
    bounds = {0, 1 << 32}
    for network in networks:
        if network.version == 4:
            bounds.update((int(network.network_address), int(network.broadcast_address) + 1))
    points = sorted(bounds)
    starts: list[int] = []
    ends: list[int] = []
    for low, high in itertools.pairwise(points):
        if reserved_reason(ipaddress.IPv4Address(low)) is None:
            continue
        if ends and ends[-1] == low - 1:
            ends[-1] = high - 1
        else:
            starts.append(low)
            ends.append(high - 1)
    return starts, ends
