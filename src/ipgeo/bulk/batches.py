"""The per-line work of a bulk run: a batch of lines to tokens, counts and output rows."""

from __future__ import annotations

import operator
import socket
from collections import Counter, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import compress, islice, repeat
from typing import BinaryIO

import numpy as np

from ipgeo.bulk.blocks import KeyTable, rows_block
from ipgeo.bulk.distinct import DistinctIPs
from ipgeo.bulk.lookup import Address, CachedLookup, Entry, network_text, parse_address
from ipgeo.bulk.options import Options
from ipgeo.bulk.parsing import Extractor, Unparseable
from ipgeo.bulk.ranges import range_entries, range_token
from ipgeo.bulk.sources import LineBatch
from ipgeo.bulk.summary import MAX_SAMPLES, BadLine, Summary
from ipgeo.bulk.tokens import BAD, IP, SKIP, SKIP_TOKEN, Token, overlong
from ipgeo.bulk.writers import RowWriter, columns_for
from ipgeo.geo import GeoService

_FRAGMENT_CACHE_SIZE = 1 << 18
_TAIL = operator.attrgetter("tail")
_KIND = operator.attrgetter("kind")
_PTON4 = partial(socket.inet_pton, socket.AF_INET)


class BatchProcessor:
    """The state of one run's lookups, counts and writer, and the work on each batch of lines."""

    def __init__(self, service: GeoService, options: Options, out: BinaryIO) -> None:
        self.options = options
        self.lookup = CachedLookup(service, options.lang, options.cache_size)
        self.columns = columns_for(options.fields, options.unique)
        self.writer = RowWriter(out, options.output_format, self.columns)
        self.summary = Summary()
        self.memo: dict[bytes, Token] = {}
        self.known: dict[bytes, Token] = {}  # the IP tokens of ``memo``
        self._generation = self.lookup.generation
        self.seen: dict[str, int] = {}  # unique mode: hits per IP, in first-seen order
        self.distinct = DistinctIPs()  # per-line mode
        # Per-line CSV rows of located addresses are made of a few per-address cells and the
        # rendered cells of their database record (``fragments``, by record pointer). Offsets
        # and local times are those at the start of the run, the same for every row.
        self.now = datetime.now(UTC)
        self.fragments: dict[int, tuple[bytes, int]] = {}
        self._fragments_generation = self.lookup.generation
        self.facet_hits: Counter[int] = Counter()
        self.keys = KeyTable()  # the IP tokens of ``memo`` that blocks of lines met

    # -- one batch -----------------------------------------------------------------------------
    def _batch(
        self,
        name: str,
        head: bytes,
        batch: LineBatch,
        lineno: int,
        extract: Extractor | None,
        simple: bool,
        fmt: str,
    ) -> int:
        """Count, look up and write the rows of one batch of lines; return its line count."""
        assert extract is not None
        if self.lookup.generation != self._generation:
            # the databases were reloaded: forget answers from the old files
            self._generation = self.lookup.generation
            self._fold(list(self.memo.values()))
            self.memo.clear()
            self.known.clear()
            self.keys.clear()
        if (
            batch.buffer is not None
            and simple
            and (self.options.unique or self.writer.streams_rows)
        ):
            count = self._block(head, batch, lineno, fmt != "log")
        else:
            count = None
        if count is None:
            count = self._line_by_line(name, head, batch.lines, lineno, extract, simple, fmt)
        if len(self.memo) > self.options.cache_size:
            self._evict(len(self.memo) - self.options.cache_size // 2)
        return count

    def _line_by_line(
        self,
        name: str,
        head: bytes,
        lines: list[bytes | None],
        lineno: int,
        extract: Extractor,
        simple: bool,
        fmt: str,
    ) -> int:
        """``_batch`` one line after the other (any input format); return the line count."""
        self.summary.lines += len(lines)
        found, all_ips = self._tokens(lines, extract, simple, fmt)
        unique = self.options.unique
        line_format = self.writer.line_format if self.writer.has_line else None
        if all_ips and not unique and self.writer.streams_rows:
            # every line has a known IP (the usual batch of a log): rows built by C-level loops
            for token, count in Counter(found).items():
                token.hits += count
            tails = list(map(_TAIL, found))
            self.writer.extend_block(rows_block(head, line_format, lineno + 1, tails), len(tails))
        else:
            self._rows(name, head, lines, lineno, found, line_format)
        return len(lines)

    def _block(self, head: bytes, batch: LineBatch, lineno: int, whole_line: bool) -> int | None:
        """``_batch`` for a block of lines whose keys are all IP addresses, with numpy
        (``blocks``); ``None`` (nothing done) for any other block."""
        assert batch.buffer is not None
        keyed = self.keys.key(batch.buffer, batch.end, whole_line, batch.max_line)
        if keyed is None:
            return None
        ids = keyed.ids
        if keyed.new_keys:
            self._resolve(list(keyed.new_keys), ranges=whole_line)  # as ``_tokens`` does
            tokens = list(map(self.memo.__getitem__, keyed.new_keys))
            if set(map(_KIND, tokens)) != {IP}:
                return None
            ids = self.keys.add_new(keyed, tokens, list(map(_TAIL, tokens)))
        self.keys.count(ids)
        self.summary.lines += keyed.lines
        if not self.options.unique:
            tails: list[bytes] = self.keys.tails[ids].tolist()
            line_format = self.writer.line_format if self.writer.has_line else None
            self.writer.extend_block(rows_block(head, line_format, lineno + 1, tails), len(tails))
        return keyed.lines

    def _tokens(
        self, lines: list[bytes | None], extract: Extractor, simple: bool, fmt: str
    ) -> tuple[list[Token], bool]:
        """The token of every line (known IPs straight from ``known``, the rest extracted), and
        whether all of them are IPs."""
        found: list[Token | None]
        missing: Sequence[int]
        if simple and None not in lines:
            # The key of a log line that does not start with a blank or '#' is what the
            # extractor returns, and so is an IP-list line that is exactly an item. Other lines
            # have keys that are empty or start with a blank or '#', like no IP item in
            # ``known``, so they are looked up the long way.
            keys: list[bytes] = lines  # type: ignore[assignment]
            if fmt == "log":
                keys = [line.partition(b" ")[0] for line in keys]
            found = list(map(self.known.get, keys))
            if None not in found:
                return found, True  # type: ignore[return-value]
            missing = [index for index, token in enumerate(found) if token is None]
        else:
            found = [None] * len(lines)
            missing = range(len(lines))
        items: list[bytes | Token] = []
        if simple and None not in lines:
            # the log and list extractors never raise
            items.extend(map(extract, map(lines.__getitem__, missing)))  # type: ignore[arg-type]
            missing_lines: Sequence[int] = ()
        else:
            missing_lines = missing
        for index in missing_lines:
            line = lines[index]
            if line is None:
                items.append(overlong(self.options.max_line))
                continue
            try:
                items.append(extract(line))
            except Unparseable as exc:
                items.append(Token(BAD, reason=str(exc)))
        self._resolve(items, ranges=fmt in ("ips", "cidrs"))
        memo = self.memo
        if len(items) == len(found) and set(map(type, items)) == {bytes}:
            # every line was new or missed the cache, and each gave an item (C-level loops)
            tokens: list[Token] = list(map(memo.__getitem__, items))  # type: ignore[arg-type]
            return tokens, set(map(_KIND, tokens)) == {IP}
        all_ips = True
        for index, item in zip(missing, items, strict=True):
            token = memo[item] if type(item) is bytes else item
            found[index] = token  # type: ignore[assignment]
            if token.kind != IP:  # type: ignore[union-attr]
                all_ips = False
        return found, all_ips  # type: ignore[return-value]

    def _rows(
        self,
        name: str,
        head: bytes,
        lines: list[bytes | None],
        lineno: int,
        found: list[Token],
        line_format: bytes | None,
    ) -> None:
        unique = self.options.unique
        rows: list[bytes] = []
        append = rows.append
        skipped = 0
        for line, token in zip(lines, found, strict=True):
            lineno += 1
            kind = token.kind
            if kind == IP:
                token.hits += 1
                if not unique:
                    if line_format is None:
                        append(head + token.tail)
                    else:
                        append(head + line_format % lineno + token.tail)
            elif kind == SKIP:
                skipped += 1
            elif kind == BAD:
                self._bad(name, lineno, token.reason, line)
            else:
                self.writer.extend(rows)
                rows = []
                append = rows.append
                self._range_rows(head, lineno, token)
        self.summary.skipped += skipped
        self.writer.extend(rows)

    def _resolve(self, tokens: list[bytes | Token], ranges: bool) -> None:
        memo = self.memo
        missing = dict.fromkeys(item for item in tokens if type(item) is bytes and item not in memo)
        if not missing:
            return
        pending: list[tuple[bytes, Token]] = []
        texts: list[str] = []
        raws = list(missing)
        joined = b"\n".join(raws)
        plain = joined.isascii() and joined.count(b"\n") == len(raws) - 1 and b"" not in missing
        if plain and not (ranges and (b"/" in joined or b"-" in joined)):
            # the usual batch: every new item is an IP candidate (C-level loops)
            texts = joined.decode("ascii").split("\n")
            pending = list(zip(raws, map(Token, repeat(IP), texts), strict=True))
            raws = []
        for raw in raws:
            assert isinstance(raw, bytes)
            if not raw:
                memo[raw] = SKIP_TOKEN
                continue
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                memo[raw] = Token(BAD, reason="not an IP address")
                continue
            if ranges and ("/" in text or "-" in text):
                memo[raw] = range_token(text)
                continue
            pending.append((raw, Token(IP, text)))
            texts.append(text)
        if not self.options.unique and self.writer.renders_records:
            self._resolve_located(pending, texts)
            return
        entries = self.lookup.get_texts(texts)
        unique = self.options.unique
        seen = self.seen
        for (raw, token), entry in zip(pending, entries, strict=True):
            if entry is None:
                memo[raw] = Token(BAD, reason="not an IP address")
                continue
            token.entry = entry
            token.facet = entry.facet
            if unique:
                if entry.key not in seen:
                    seen[entry.key] = 0
            else:
                self.distinct.add(entry.key)
                token.tail = self.writer.tail(token.text, entry)
            memo[raw] = token
            self.known[raw] = token

    def _resolve_located(self, pending: list[tuple[bytes, Token]], texts: list[str]) -> None:
        """``_resolve`` for per-line rows in the default CSV layout: rows from fragments."""
        if len(self.fragments) > _FRAGMENT_CACHE_SIZE:
            self.fragments.clear()
        plain = list(map(operator.not_, map(operator.contains, texts, repeat(":"))))
        if any(plain):
            v4_pending = list(compress(pending, plain))
            if self._resolve_v4(v4_pending, list(compress(texts, plain))):
                if all(plain):
                    return
                others = list(map(operator.not_, plain))
                pending, texts = list(compress(pending, others)), list(compress(texts, others))
        self._resolve_each(pending, texts)

    def _resolve_v4(self, pending: list[tuple[bytes, Token]], texts: list[str]) -> bool:
        """``_resolve_located`` for IPv4 texts, vectorised; False (nothing done) unless every
        text is a canonical IPv4 address and the lookup answers by record pointers."""
        try:
            packed = b"".join(map(_PTON4, texts))
        except (OSError, ValueError):
            return False
        numbers = np.frombuffer(packed, dtype=">u4").astype(np.int64)
        located = self.lookup.locate_v4(numbers, texts, self.now, self.fragments)
        if located is None:
            return False
        pointers, prefixes, rows, others = located
        if self.lookup.generation != self._fragments_generation:
            self._fragments_generation = self.lookup.generation
            self.fragments.clear()
        fragments = self.fragments
        writer = self.writer
        fresh = [(pointer, row) for pointer, row in rows.items() if pointer not in fragments]
        rendered = writer.place_fragments([place for _, (place, _) in fresh])
        for (pointer, (_, facet)), fragment in zip(fresh, rendered, strict=True):
            fragments[pointer] = (fragment, facet)
        self.distinct.add_packed_v4(packed)
        memo, known = self.memo, self.known
        if others:
            for position, entry in others.items():
                raw, token = pending[position]
                token.entry = entry
                token.facet = entry.facet
                token.tail = writer.tail(token.text, entry)
                memo[raw] = known[raw] = token
            keep = [position not in others for position in range(len(pending))]
            pending = list(compress(pending, keep))
            pointers = list(compress(pointers, keep))
            prefixes = list(compress(prefixes, keep))
            numbers = numbers[np.array(keep, dtype=bool)]
            if not pending:
                return True
        found = list(map(fragments.__getitem__, pointers))
        raws = [item[0] for item in pending]
        tails = writer.ipv4_tails(raws, numbers, prefixes, [item[0] for item in found])
        for (_, token), tail, (_, facet) in zip(pending, tails, found, strict=True):
            token.facet = facet
            token.tail = tail
        memo.update(pending)
        known.update(pending)
        return True

    def _resolve_each(self, pending: list[tuple[bytes, Token]], texts: list[str]) -> None:
        """``_resolve_located`` one address after the other (any IP version)."""
        memo = self.memo
        addresses: list[Address] = []
        tokens: list[tuple[bytes, Token]] = []
        for item, text in zip(pending, texts, strict=True):
            address = parse_address(text)
            if address is None:
                memo[item[0]] = Token(BAD, reason="not an IP address")
            else:
                addresses.append(address)
                tokens.append(item)
        answers = self.lookup.locate(addresses, self.now, self.fragments)
        if self.lookup.generation != self._fragments_generation:
            self._fragments_generation = self.lookup.generation
            self.fragments.clear()
        fragments = self.fragments
        writer = self.writer
        add = self.distinct.add
        for (raw, token), address, answer in zip(tokens, addresses, answers, strict=True):
            key, version, number = address
            add(key)
            if type(answer) is tuple:
                pointer, prefix, place = answer
                if place is not None and pointer not in fragments:
                    fragments[pointer] = (writer.place_fragment(place[0]), place[1])
                fragment, facet = fragments[pointer]
                token.facet = facet
                network = network_text(version, number, prefix)
                token.tail = writer.record_tail(token.text, key, version, network, fragment)
            else:
                assert isinstance(answer, Entry)
                token.entry = answer
                token.facet = answer.facet
                token.tail = writer.tail(token.text, answer)
            memo[raw] = token
            self.known[raw] = token

    def _evict(self, count: int) -> None:
        victims = list(islice(self.memo, count))  # the oldest
        deque(map(self.known.pop, victims, repeat(None)), maxlen=0)
        self._fold(list(map(self.memo.pop, victims)))
        self.keys.clear()  # it may hold victims

    def _fold(self, tokens: list[Token]) -> None:
        """Move pending hit counts of tokens into the per-IP and per-place totals."""
        for token, hits in self.keys.take_hits():
            token.hits += hits
        seen = self.seen if self.options.unique else None
        facet_hits = self.facet_hits
        for token in tokens:
            if token.hits and token.facet >= 0:
                if seen is not None:
                    assert token.entry is not None  # unique mode: every IP token has its entry
                    seen[token.entry.key] += token.hits
                facet_hits[token.facet] += token.hits
                token.hits = 0

    def _count(self, entry: Entry) -> None:
        if self.options.unique:
            self.seen[entry.key] = self.seen.get(entry.key, 0) + 1
        else:
            self.distinct.add(entry.key)
        self.facet_hits[entry.facet] += 1

    def _bad(self, name: str, lineno: int, reason: str, line: bytes | None) -> None:
        self.summary.unparseable += 1
        if len(self.summary.unparseable_lines) < MAX_SAMPLES:
            text = "" if line is None else line[:200].decode("utf-8", "replace")
            self.summary.unparseable_lines.append(BadLine(name, lineno, reason, text))

    # -- CIDRs and ranges ----------------------------------------------------------------------
    def _range_rows(self, head: bytes, lineno: int, token: Token) -> None:
        assert token.bounds is not None
        first, last = token.bounds
        rows: list[bytes] = []
        count = 0
        for entries in range_entries(self.lookup, self.options, lineno, token.text, first, last):
            for entry in entries:
                count += 1
                self._count(entry)
                if not self.options.unique:
                    tail = self.writer.tail(token.text, entry)
                    if self.writer.has_line:
                        rows.append(head + self.writer.line_format % lineno + tail)
                    else:
                        rows.append(head + tail)
            self.writer.extend(rows)
            rows = []
