"""The resolver of a bulk run: addresses through the lookup kernel to typed rows.

Addresses are walked through the City (and ASN) trees of the generation in service, as
arrays; each distinct pair of records gives one ``Answer`` (the kernel's ``PlaceRecord``, its
time zone, the ASN values, the summary facet), made once per run, shared by every address it
covers. A batch of resolved addresses is a ``Rows``: per address its text, version, network
and answer, as ``lookup_ip`` would give them.
"""

from __future__ import annotations

import ipaddress
import operator
import socket
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import compress
from typing import Any, NamedTuple

import numpy as np

from ipgeo.bulk.summary import Facet
from ipgeo.geo import GeoService
from ipgeo.geo.addresses import Address, IPAddress, network_text, parse_address
from ipgeo.geo.database import PLACE_VALUES
from ipgeo.geo.generation import Generation
from ipgeo.geo.records import PlaceRecord
from ipgeo.geo.tree import IntArray

# Facet ids of rows without a location; located rows get ids from ``FIRST_PLACE`` on.
RESERVED, NOT_FOUND, FIRST_PLACE = 0, 1, 2
_FACET_VALUES = ("country_iso", "country", "region_code", "region", "city")


class Answer(NamedTuple):
    """What one City record and one ASN record say of every address they cover."""

    place: PlaceRecord | None
    zone: tuple[str, str] | None  # (time zone, source)
    asn: int | None
    asn_org: str | None
    error: str | None  # ``reserved_address``, ``not_found`` or None
    facet: int  # the summary facet id


class Rows(NamedTuple):
    """Resolved addresses as columns: position ``i`` is one typed row."""

    ips: list[str]  # canonical text
    versions: list[int]
    networks: list[str | None]
    answers: list[int]  # ids in ``Resolver.answers``


class TextRows(NamedTuple):
    """The rows of those of some texts that are IP addresses."""

    rows: Rows
    positions: Sequence[int]  # where each row's text is among the texts
    packed_v4: bytes | None  # the IPv4 rows' addresses, 4 bytes each (None: resolved one by one)


_RESERVED_ANSWER = Answer(None, None, None, None, "reserved_address", RESERVED)
_NOT_FOUND_ANSWER = Answer(None, None, None, None, "not_found", NOT_FOUND)


_PTON4 = partial(socket.inet_pton, socket.AF_INET)
_pick_facet = operator.itemgetter(*(PLACE_VALUES.index(name) for name in _FACET_VALUES))


def _packed_v4(texts: list[str]) -> bytes | None:
    """The dotted ``texts`` as 4 bytes each; None when one is no IPv4 address."""
    if not texts:
        return None
    try:
        return b"".join(map(_PTON4, texts))
    except (OSError, ValueError):
        return None


def _split(texts: list[str]) -> tuple[list[bool], list[str], bytes | None, list[int]]:
    """Which texts are dotted, the dotted ones, those packed (``None`` unless every one is an
    IPv4 address), and the positions of the texts to parse one by one."""
    plain = [":" not in text for text in texts]
    v4 = texts if all(plain) else list(compress(texts, plain))
    packed = _packed_v4(v4)
    if packed is None:
        return plain, v4, None, list(range(len(texts)))
    return plain, v4, packed, list(compress(range(len(texts)), map(operator.not_, plain)))


def _parsed(texts: list[str], candidates: list[int]) -> tuple[list[int], list[Address]]:
    """The positions among ``candidates`` of the texts that are IP addresses, and those."""
    located: list[int] = []
    addresses: list[Address] = []
    for position in candidates:
        address = parse_address(texts[position])
        if address is not None:
            addresses.append(address)
            located.append(position)
    return located, addresses


def canonical_ips(texts: list[str]) -> tuple[list[str], Sequence[int]]:
    """The canonical text of those ``texts`` that are IP addresses, and their positions:
    the ``ips`` and ``positions`` of ``Resolver.resolve_texts``, without looking them up."""
    plain, _, packed, candidates = _split(texts)
    if packed is not None and not candidates:
        return texts, range(len(texts))
    located, addresses = _parsed(texts, candidates)
    found = dict(zip(located, (address[0] for address in addresses), strict=True))
    if packed is not None:  # the dotted texts are canonical IPv4 addresses
        found.update((position, texts[position]) for position in compress(range(len(texts)), plain))
    positions = sorted(found)
    return list(map(found.__getitem__, positions)), positions


def _place_facet(place: PlaceRecord) -> tuple[Any, ...]:
    found: tuple[Any, ...] = _pick_facet(place.values)
    return found


class Resolver:
    """Resolves addresses in the generation in service; answers are numbered per run."""

    def __init__(self, service: GeoService, lang: str | None) -> None:
        self.service = service
        self.languages = service.languages_for(lang)
        self.current: Generation = service.current()
        self.answers: list[Answer] = [_RESERVED_ANSWER, _NOT_FOUND_ANSWER]
        self._answer_ids: dict[tuple[int, int], int] = {}  # (City, ASN record pointer) → id
        self.facets: list[Facet | None] = [None, None]  # by id; none for reserved, not found
        self._facet_ids: dict[Facet, int] = {}

    def refresh(self) -> bool:
        """Take the generation in service; True when it changed (record pointers are void)."""
        current = self.service.current()
        if current is self.current:
            return False
        self.current = current
        self._answer_ids.clear()
        return True

    # -- answers ---------------------------------------------------------------------------------
    def _answer_id(self, city: int, asn: int, version: int, number: int) -> int:
        """The id of the answer of a (City, ASN) record pointer pair; ``number`` is in both."""
        key = (city, asn)
        found = self._answer_ids.get(key)
        if found is not None:
            return found
        current = self.current
        place = current.place(city, version, number, self.languages)
        asn_values = current.asn_at(asn, version, number)
        if place is None and asn_values[0] is None:
            found = NOT_FOUND
        else:
            zone = self.service.zone_of(place) if place is not None else None
            values = place.rendering("summary facet", _place_facet) if place else (None,) * 5
            facet = self._facet_id(Facet._make((*values, *asn_values, zone[0] if zone else None)))
            found = len(self.answers)
            self.answers.append(Answer(place, zone, *asn_values, None, facet))
        self._answer_ids[key] = found
        return found

    def _facet_id(self, facet: Facet) -> int:
        found = self._facet_ids.get(facet)
        if found is None:
            found = self._facet_ids[facet] = len(self.facets)
            self.facets.append(facet)
        return found

    # -- batches ---------------------------------------------------------------------------------
    def resolve_v4(self, numbers: IntArray, texts: list[str]) -> Rows:
        """The rows of canonical IPv4 addresses given as integers and texts, with numpy."""
        current = self.current
        count = len(texts)
        reserved = self.service.reserved.reserved_v4(numbers)
        city, prefixes, asn = current.locate_v4(numbers)
        keys = city << 32 | asn
        keys[reserved] = -1
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        samples = numbers[first].tolist()
        ids = [
            RESERVED if key < 0 else self._answer_id(key >> 32, key & 0xFFFFFFFF, 4, sample)
            for key, sample in zip(distinct.tolist(), samples, strict=True)
        ]
        answers: list[int] = np.array(ids, dtype=np.int64)[inverse.reshape(-1)].tolist()
        masks = (0xFFFFFFFF << (32 - prefixes)) & 0xFFFFFFFF
        octets = (numbers & masks).astype(">u4").view(np.uint8).reshape(-1, 4).T.tolist()
        networks: list[str | None] = list(
            map("%d.%d.%d.%d/%d".__mod__, zip(*octets, prefixes.tolist(), strict=True))
        )
        placeless = [
            index for index, answer in enumerate(ids) if self.answers[answer].place is None
        ]
        if placeless:
            for position in np.flatnonzero(np.isin(inverse.reshape(-1), placeless)).tolist():
                networks[position] = None
        return Rows(texts, [4] * count, networks, answers)

    def resolve(self, addresses: list[Address]) -> Rows:
        """The rows of addresses of any version, given as ``(canonical text, version, integer)``."""
        count = len(addresses)
        answers = [RESERVED] * count
        networks: list[str | None] = [None] * count
        reserved = self.service.reserved.is_reserved_number
        by_version: dict[int, list[int]] = {4: [], 6: []}
        for position, (_, version, number) in enumerate(addresses):
            if not reserved(version, number):
                by_version[version].append(position)
        current = self.current
        for version, positions in by_version.items():
            if not positions:
                continue
            numbers = [addresses[position][2] for position in positions]
            city, prefixes, asn = current.locate(version, numbers)
            for position, number, pointer, prefix, asn_pointer in zip(
                positions, numbers, city, prefixes, asn, strict=True
            ):
                answer = self._answer_id(pointer, asn_pointer, version, number)
                answers[position] = answer
                if self.answers[answer].place is not None:
                    networks[position] = network_text(version, number, prefix)
        ips = [address[0] for address in addresses]
        return Rows(ips, [address[1] for address in addresses], networks, answers)

    def resolve_texts(self, texts: list[str]) -> TextRows:
        """The rows of those ``texts`` that are IP addresses, in order: IPv4 with numpy (when
        every dotted text is one), the others one by one."""
        count = len(texts)
        plain, v4, packed, candidates = _split(texts)
        if packed is not None:
            four = self.resolve_v4(np.frombuffer(packed, dtype=">u4").astype(np.int64), v4)
            if not candidates:  # the usual batch
                return TextRows(four, range(count), packed)
        located, addresses = _parsed(texts, candidates)
        others = self.resolve(addresses)
        if packed is None:
            return TextRows(others, located, None)
        # both: back into the order of ``texts``
        positions = sorted([*compress(range(count), plain), *located])
        taken = (iter(zip(*others, strict=True)), iter(zip(*four, strict=True)))
        merged = [next(taken[plain[position]]) for position in positions]
        return TextRows(Rows(*map(list, zip(*merged, strict=True))), positions, packed)

    def networks(self, first: IPAddress, last: IPAddress) -> Iterator[IPAddress]:
        """The first address (within ``first..last``) of every database network with a record."""
        make = ipaddress.IPv4Address if first.version == 4 else ipaddress.IPv6Address
        for number in self.current.networks(first.version, int(first), int(last)):
            yield make(number)
