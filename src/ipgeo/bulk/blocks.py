"""Lines to key ids without a Python object per line: a whole block of lines at once, with numpy.

A log line's key is its first field and an IP list line's key is the line itself, and in the
usual block every key was seen before. So each line's key is cut out of the block as a
zero-padded window of ``WIDTH`` bytes, hashed, and looked up in a table of the keys seen
before (a slot per hash, a sorted spill list for hashes whose slot is taken). Every match is
confirmed by comparing the windows themselves, so a hash collision can at worst send a block
to the line-by-line path, which does everything this does; it never gives a wrong answer.
A line is keyed here only where its key is exactly what the line-by-line extractors
(``log_client``, ``list_item``) would return; the others (blank and comment lines, lines that
start with a blank, keys too long for a window) are left to the caller (``Keyed.odd``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

UNKEYED = -2  # the key id of a line a block leaves to its caller
WIDTH = 40  # bytes of a key window: IPv6 text is at most 39 characters (IPv4-mapped: 45)
_WORDS = WIDTH // 8
_SLOT_BITS = 21
_SHIFT = np.uint64(64 - _SLOT_BITS)
_NEWLINE = 10
_COMMENT = ord("#")
_PAD = bytes(WIDTH)
_MIX = [
    np.uint64(constant)
    for constant in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                     0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD)
]  # fmt: skip
# _MASKS[n]: the words of a window that keep its first n bytes and zero the rest
_MASKS = np.zeros((WIDTH + 1, WIDTH), dtype=np.uint8)
_MASKS[np.arange(WIDTH)[None, :] < np.arange(WIDTH + 1)[:, None]] = 255
_MASKS = _MASKS.view(np.uint64)
_BLANK = np.zeros(256, dtype=bool)
_BLANK[list(b" \t\r\x0b\x0c")] = True  # what ``bytes.strip`` removes inside a line
_LOG_START = _BLANK.copy()
_LOG_START[ord("#")] = True  # lines ``log_client`` takes apart otherwise

# _QUADS[n]: the four ASCII digits of n (with leading zeros), for n below 10,000
_QUADS = (np.arange(10_000)[:, None] // np.array([1000, 100, 10, 1]) % 10 + 48).astype(np.uint8)

IntArray = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]


@dataclass
class Keyed:
    """A block's lines keyed: each line's key id, and the keys not in the table yet."""

    lines: int
    ids: IntArray  # per line: the key's id, -1 for a new key, ``UNKEYED`` for an odd line
    new_keys: list[bytes]  # the distinct new keys
    new_lines: IntArray  # the lines with a new key ...
    new_groups: IntArray  # ... and the position of that key in ``new_keys``
    new_hashes: Words
    new_words: Words
    odd: list[int] = field(default_factory=list)  # lines not keyed here (blank, comments, …)
    starts: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    ends: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def line(self, buffer: bytes, index: int) -> bytes:
        """The text of line ``index`` of the block in ``buffer``."""
        return buffer[int(self.starts[index]) : int(self.ends[index])]

    def without(self, dropped: npt.NDArray[np.bool_]) -> Keyed:
        """This keying without the new keys ``dropped`` marks: their lines become unkeyed."""
        kept_lines = ~dropped[self.new_groups]
        ids = self.ids.copy()
        ids[self.new_lines[~kept_lines]] = UNKEYED
        renumbered = np.cumsum(~dropped) - 1
        return Keyed(
            self.lines,
            ids,
            [key for key, drop in zip(self.new_keys, dropped.tolist(), strict=True) if not drop],
            self.new_lines[kept_lines],
            renumbered[self.new_groups[kept_lines]],
            self.new_hashes[~dropped],
            self.new_words[~dropped],
            self.odd,
            self.starts,
            self.ends,
        )


class KeyTable:
    """The keys of earlier blocks, each with an id (0, 1, …) in the order they were added."""

    def __init__(self) -> None:
        self._slots = np.full(1 << _SLOT_BITS, -1, dtype=np.int32)  # by hash: an id, or -1
        self._slot_of: IntArray = np.empty(0, dtype=np.int64)
        self.ips: list[str] = []  # by id: the key's canonical IP text
        self.clear()

    def clear(self) -> None:
        """Forget every key."""
        used = self._slot_of[: len(self)]
        self._slots[used[used >= 0]] = -1
        self._spill_hashes: Words = np.empty(0, dtype=np.uint64)  # sorted
        self._spill_ids: IntArray = np.empty(0, dtype=np.int64)
        self.ips = []
        # by id, with room for more ids (grown by doubling):
        self._slot_of = np.empty(0, dtype=np.int64)  # -1 for spilled keys
        self._words: Words = np.empty((0, _WORDS), dtype=np.uint64)
        self.tails: npt.NDArray[np.object_] = np.empty(0, dtype=object)  # row ends
        self.facets: IntArray = np.empty(0, dtype=np.int64)  # summary facet ids
        self.hits: IntArray = np.empty(0, dtype=np.int64)  # lines counted here
        self._grow(1)  # never empty: reading row -1 must work

    def __len__(self) -> int:
        return len(self.ips)

    def _grow(self, size: int) -> None:
        """Make room for ids up to ``size``."""
        capacity = len(self.hits)
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity, 1024)
        used = len(self)
        self._slot_of = np.resize(self._slot_of, capacity)
        words = np.zeros((capacity, _WORDS), dtype=np.uint64)
        words[:used] = self._words[:used]
        self._words = words
        tails = np.empty(capacity, dtype=object)
        tails[:used] = self.tails[:used]
        self.tails = tails
        facets = np.zeros(capacity, dtype=np.int64)
        facets[:used] = self.facets[:used]
        self.facets = facets
        hits = np.zeros(capacity, dtype=np.int64)
        hits[:used] = self.hits[:used]
        self.hits = hits

    def key(self, buffer: bytes, end: int, whole_line: bool, max_line: int) -> Keyed | None:
        """The keys of the lines in ``buffer[:end]`` (newline-separated), but of the lines
        whose key may not be what their extractor returns (``Keyed.odd``: blank lines,
        comments, lines that start with a blank, keys too long for a window); ``None`` when
        no line is keyed here, or some line is too long (the block then goes line by line)."""
        if end == 0:
            return None  # one empty line
        block = np.frombuffer(buffer, dtype=np.uint8, count=end)
        breaks = np.flatnonzero(block == _NEWLINE)
        count = len(breaks) + 1
        starts = np.zeros(count, dtype=np.int64)
        starts[1:] = breaks + 1
        ends = np.full(count, end, dtype=np.int64)
        ends[:-1] = breaks
        lengths = ends - starts
        if int(lengths.max()) > max_line or buffer.find(b"\0", 0, end) >= 0:
            return None
        source = buffer if int(starts[-1]) + WIDTH <= len(buffer) else buffer + _PAD
        view: npt.NDArray[Any] = np.ndarray(
            (len(source) - WIDTH + 1,), dtype=f"S{WIDTH}", buffer=source, strides=(1,)
        )
        windows = view[starts]
        firsts = windows.view(np.uint8)[::WIDTH]
        if whole_line:
            sizes = lengths
            odd = (sizes > WIDTH) | _BLANK[firsts] | _BLANK[block[np.maximum(ends - 1, 0)]]
            if buffer.find(b"#", 0, end) >= 0:
                comments = np.flatnonzero(block == _COMMENT)
                odd[np.searchsorted(starts, comments, side="right") - 1] = True
        else:
            sizes = np.strings.find(windows, b" ")  # -1: no space in the window
            odd = (sizes >= lengths) | _LOG_START[firsts]
        odd |= sizes <= 0  # a key of nothing: a blank line, or no space where one must be
        unkeyed = np.flatnonzero(odd)
        kept = None
        if len(unkeyed):
            if len(unkeyed) == count:
                return None
            kept = np.flatnonzero(~odd)
            windows, sizes = windows[kept], sizes[kept]
        words = windows.view(np.uint64).reshape(-1, _WORDS) & np.take(_MASKS, sizes, axis=0)
        keyed = self._match(len(words), words, _hashes(words))
        if keyed is None:
            return None
        keyed.starts, keyed.ends = starts, ends
        if kept is not None:
            ids = np.full(count, UNKEYED, dtype=np.int64)
            ids[kept] = keyed.ids
            keyed.ids, keyed.lines = ids, count
            keyed.new_lines = kept[keyed.new_lines]
            keyed.odd = unkeyed.tolist()
        return keyed

    def _match(self, count: int, words: Words, hashes: Words) -> Keyed | None:
        ids = self._slots[hashes >> _SHIFT].astype(np.int64)
        known = ids >= 0
        if known.all() and (np.take(self._words, ids, axis=0) == words).all():
            unknown: IntArray = np.empty(0, dtype=np.int64)  # the usual block
        else:
            # (id -1 reads the last row of the table: ``known`` is false there anyway)
            known &= _equal_rows(np.take(self._words, ids, axis=0), words)
            ids[~known] = -1
            unknown = np.flatnonzero(~known)
        if unknown.size and self._spill_hashes.size:
            spilled = hashes[unknown]
            at = np.minimum(
                np.searchsorted(self._spill_hashes, spilled), self._spill_hashes.size - 1
            )
            hit = self._spill_hashes[at] == spilled
            found = self._spill_ids[at[hit]]
            hit[hit] = _equal_rows(np.take(self._words, found, axis=0), words[unknown[hit]])
            ids[unknown[hit]] = self._spill_ids[at[hit]]
            unknown = unknown[~hit]
        if not unknown.size:
            empty = np.empty(0, dtype=np.int64)
            return Keyed(count, ids, [], empty, empty, hashes[:0], words[:0])
        order = unknown[np.argsort(hashes[unknown], kind="stable")]
        ordered = hashes[order]
        first = np.ones(len(order), dtype=bool)
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        groups = np.cumsum(first) - 1
        representatives = order[first]  # each key's first line
        if not _equal_rows(words[representatives[groups]], words[order]).all():
            return None  # two different keys of the block share a hash
        # new keys in the order of their first lines, as the line-by-line path meets them
        by_line = np.argsort(representatives)
        rank = np.empty(len(by_line), dtype=np.int64)
        rank[by_line] = np.arange(len(by_line))
        new_words = words[representatives[by_line]]
        new_keys: list[bytes] = new_words.view(f"S{WIDTH}").ravel().tolist()
        new_hashes = ordered[first][by_line]
        return Keyed(count, ids, new_keys, order, rank[groups], new_hashes, new_words)

    def add_new(
        self, keyed: Keyed, ips: list[str], facets: list[int], tails: list[bytes]
    ) -> IntArray:
        """Give the new keys of ``keyed`` ids, with their IP texts, summary facets and row
        ends; return the id of each line's key."""
        start = len(self.ips)
        end = start + len(ips)
        self._grow(end)
        fresh = np.arange(start, end, dtype=np.int64)
        slots = (keyed.new_hashes >> _SHIFT).astype(np.int64)
        # a free slot goes to the first new key that wants it; the others spill
        taken = self._slots[slots] < 0
        order = np.argsort(slots, kind="stable")
        repeated = np.zeros(len(slots), dtype=bool)
        repeated[order[1:]] = slots[order[1:]] == slots[order[:-1]]
        taken &= ~repeated
        self._slots[slots[taken]] = fresh[taken]
        self._slot_of[start:end] = np.where(taken, slots, -1)
        if not taken.all():
            spill = np.flatnonzero(~taken)
            spill = spill[np.argsort(keyed.new_hashes[spill])]
            at = np.searchsorted(self._spill_hashes, keyed.new_hashes[spill])
            self._spill_hashes = np.insert(self._spill_hashes, at, keyed.new_hashes[spill])
            self._spill_ids = np.insert(self._spill_ids, at, fresh[spill])
        self._words[start:end] = keyed.new_words
        self.ips += ips
        self.facets[start:end] = facets
        self.tails[start:end] = tails
        ids = keyed.ids
        ids[keyed.new_lines] = fresh[keyed.new_groups]
        return ids

    def most_hit(self, count: int) -> IntArray:
        """The ids (ascending) of at most ``count`` keys most hit since hits were last taken,
        keys without hits left out."""
        hits = self.hits[: len(self)]
        most = np.argsort(-hits, kind="stable")[:count]
        return np.sort(most[hits[most] > 0])

    def keep(self, ids: IntArray) -> None:
        """Forget every key but ``ids`` (ascending; their hits taken), which get new ids."""
        words, facets, tails = self._words[ids], self.facets[ids], self.tails[ids]
        ips = list(map(self.ips.__getitem__, ids.tolist()))
        self.clear()
        count = len(ips)
        each = np.arange(count, dtype=np.int64)
        keyed = Keyed(count, np.full(count, -1), [], each, each, _hashes(words), words)
        self.add_new(keyed, ips, facets.tolist(), tails.tolist())

    def count(self, ids: IntArray) -> None:
        """Add one hit per line to the keys ``ids`` of a block's lines (none for unkeyed ones)."""
        self.hits += np.bincount(ids[ids >= 0], minlength=len(self.hits))

    def take_hits(self) -> tuple[IntArray, IntArray, list[str]]:
        """The summary facets, hits and IP texts of the keys with hits counted since the last
        call (then zeroed)."""
        counted = np.flatnonzero(self.hits)
        ips = list(map(self.ips.__getitem__, counted.tolist()))
        found = self.facets[counted], self.hits[counted], ips
        self.hits[:] = 0
        return found


def _hashes(words: Words) -> Words:
    """The hash of each row of key windows (as words)."""
    hashes: Words = words[:, 0] * _MIX[0]
    for column in range(1, _WORDS):
        hashes += words[:, column] * _MIX[column]
    hashes ^= hashes >> np.uint64(29)
    return hashes


def _equal_rows(left: Words, right: Words) -> npt.NDArray[np.bool_]:
    """Row by row: are all words equal (column by column: cheaper than ``all(axis=1)``)."""
    equal: npt.NDArray[np.bool_] = left[:, 0] == right[:, 0]
    for column in range(1, _WORDS):
        equal &= left[:, column] == right[:, column]
    return equal


def rows_block(
    head: bytes,
    line_format: bytes | None,
    first: int,
    tails: list[bytes],
    rowless: Sequence[int] = (),
) -> bytes:
    """The rows of consecutive lines from line ``first`` on: head, line number and row end;
    none for the lines at the positions ``rowless`` (their row ends are empty)."""
    if line_format is None:
        if not head:
            return b"".join(tails)
        rows = [head + tail for tail in tails]
        for index in rowless:
            rows[index] = b""
        return b"".join(rows)
    before, after = line_format.split(b"%d")
    pieces: list[bytes] = [b""] * (2 * len(tails))
    pieces[::2] = numbered(head + before, after, first, len(tails))
    pieces[1::2] = tails
    for index in rowless:
        pieces[2 * index] = b""
    return b"".join(pieces)


def numbered(prefix: bytes, suffix: bytes, first: int, count: int) -> list[bytes]:
    """``prefix + b"%d" % n + suffix`` for ``n`` from ``first`` on, ``count`` of them."""
    pieces: list[bytes] = []
    number, end = first, first + count
    fixed = np.frombuffer(prefix, dtype=np.uint8), np.frombuffer(suffix, dtype=np.uint8)
    while number < end:
        digits = len(str(number))
        stop = min(end, 10**digits)
        values = np.arange(number, stop, dtype=np.int64)
        width = len(prefix) + digits + len(suffix)
        matrix = np.empty((len(values), width), dtype=np.uint8)
        matrix[:, : len(prefix)] = fixed[0]
        matrix[:, width - len(suffix) :] = fixed[1]
        # four digits at a time, from the right, each group read from a table
        right = len(prefix) + digits
        while right > len(prefix):
            left = max(right - 4, len(prefix))
            quads = np.take(_QUADS, values % 10_000, axis=0)
            matrix[:, left:right] = quads[:, 4 - (right - left) :]
            values //= 10_000
            right = left
        pieces += matrix.view(f"S{width}").ravel().tolist()
        number = stop
    return pieces
