"""The keyer of a bulk run: lines to what their keys are (an IP, a range, bad, nothing).

A block of lines is keyed with numpy (``blocks.KeyTable``) when every line's key is what its
extractor would return, or the line has none (blank, comment) or a key that is no IP address
(those lines get no row): the table keeps each IP key's IP, summary facet and row end in
arrays, and counts its lines. The lines of other blocks are keyed one by one: each distinct
key becomes one ``Token``, kept in a memo of the run. New IP keys are handed to
``resolve_texts`` (the run's resolver and renderer) in one batch either way. Hits counted
here go to the run's ``Tally`` when keys are forgotten.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from itertools import islice
from typing import NamedTuple

import numpy as np

from ipgeo.bulk.blocks import Keyed, KeyTable
from ipgeo.bulk.parsing import Extractor, Unparseable
from ipgeo.bulk.ranges import range_token
from ipgeo.bulk.sources import LineBatch
from ipgeo.bulk.tally import Tally
from ipgeo.bulk.tokens import BAD, IP, RANGE, SKIP_TOKEN, Token, overlong

_KIND = operator.attrgetter("kind")
_FIRST = operator.itemgetter(0)


class BlockRows(NamedTuple):
    """A block keyed: each line's row end, empty for the lines without a row (``rowless``,
    with their tokens: skipped or bad lines, in line order)."""

    tails: list[bytes]
    rowless: Sequence[tuple[int, Token]] = ()
    keyed: Keyed | None = None  # where the lines are in the block's buffer


class Resolved(NamedTuple):
    """New IP keys resolved, as columns (``""`` as IP: the key is no IP address)."""

    ips: list[str]  # canonical text
    facets: list[int]  # summary facet ids
    tails: list[bytes]  # row ends


# resolves and renders the texts of new IP keys
ResolveTexts = Callable[[list[str]], Resolved]


class Keyer:
    """The keys of a run: ``blocks`` (IP keys of blocks), ``memo`` (tokens of the others)."""

    def __init__(self, resolve_texts: ResolveTexts, max_line: int, tally: Tally) -> None:
        self.resolve_texts = resolve_texts
        self.max_line = max_line
        self.tally = tally
        self.memo: dict[bytes, Token] = {}
        self.known: dict[bytes, Token] = {}  # the IP tokens of ``memo``
        self.blocks = KeyTable()

    def _shrink_blocks(self, keep: int) -> None:
        """Count the hits of ``blocks`` in the tally; keep only its ``keep`` keys most hit
        since it was last shrunk."""
        table = self.blocks
        kept = table.most_hit(keep)
        self.tally.fold_counts(*table.take_hits())
        table.keep(kept)

    def clear(self) -> None:
        """Forget every key (the databases were reloaded, or the run ends), hits counted."""
        self._shrink_blocks(0)
        self.tally.fold(list(self.memo.values()))
        self.memo.clear()
        self.known.clear()

    def bound(self, size: int) -> None:
        """Forget keys, hits counted, when either cache holds more than ``size``: in
        ``blocks`` all but the half most hit since the last time, the oldest of ``memo``
        down to half of ``size``."""
        if len(self.blocks) > size:
            self._shrink_blocks(size // 2)
        excess = len(self.memo) - size
        if excess > 0:
            victims = list(islice(self.memo, excess + size // 2))
            for victim in victims:
                self.known.pop(victim, None)
            self.tally.fold(list(map(self.memo.pop, victims)))

    def key_block(
        self, batch: LineBatch, extract: Extractor, whole_line: bool, ranges: bool
    ) -> BlockRows | None:
        """The row ends of a block's lines (counted in ``blocks``) when every line's key is an
        IP, or none (a blank or comment line, a key that is no IP address); else ``None``
        (nothing counted: the block goes line by line)."""
        assert batch.buffer is not None
        table = self.blocks
        keyed = table.key(batch.buffer, batch.end, whole_line, batch.max_line)
        if keyed is None:
            return None
        rowless: list[tuple[int, Token]] = []
        for index in keyed.odd:
            if extract(keyed.line(batch.buffer, index)):
                return None  # a key the table cannot take
            rowless.append((index, SKIP_TOKEN))
        if keyed.new_keys:
            resolved = self._resolve_new(keyed.new_keys, ranges)
            if resolved is None:
                return None
            if "" in resolved.ips:  # keys that are no IP: their lines get no row
                keyed, resolved = self._drop_bad_keys(keyed, resolved, rowless)
            keyed.ids = table.add_new(keyed, *resolved)
        table.count(keyed.ids)
        tails: list[bytes] = table.tails[keyed.ids].tolist()
        for index, _ in rowless:
            tails[index] = b""
        rowless.sort(key=_FIRST)
        return BlockRows(tails, rowless, keyed)

    def _resolve_new(self, keys: list[bytes], ranges: bool) -> Resolved | None:
        """The IP (``""``: none), facet and row end of each new key of a block, the keys the
        line-by-line path met from ``memo``; ``None`` when a key is a range."""
        memo = self.memo
        found: list[Token | None] = list(map(memo.get, keys)) if memo else [None] * len(keys)
        fresh = [key for key, token in zip(keys, found, strict=True) if token is None]
        texts = _ip_texts(fresh, ranges) if fresh else []
        if texts is None:  # not all IP candidates: tokens for them all
            self.classify(list(fresh), ranges)
            found, fresh, texts = list(map(memo.get, keys)), [], []
        resolved = self.resolve_texts(texts) if texts else Resolved([], [], [])
        if len(fresh) == len(keys):
            return resolved
        columns = iter(zip(*resolved, strict=True))
        ips: list[str] = []
        facets: list[int] = []
        tails: list[bytes] = []
        for token in found:
            if token is None:
                ip, facet, tail = next(columns)
            elif token.kind == RANGE:
                return None
            else:
                ip, facet, tail = token.ip if token.kind == IP else "", token.facet, token.tail
            ips.append(ip)
            facets.append(facet)
            tails.append(tail)
        return Resolved(ips, facets, tails)

    def _drop_bad_keys(
        self, keyed: Keyed, resolved: Resolved, rowless: list[tuple[int, Token]]
    ) -> tuple[Keyed, Resolved]:
        """Keep the new keys that are IPs; the lines of the others go to ``rowless``."""
        bad = np.array([not ip for ip in resolved.ips])
        tokens: list[Token] = []
        for key, is_bad in zip(keyed.new_keys, bad.tolist(), strict=True):
            if is_bad:
                token = self.memo.get(key)
                if token is None:
                    token = self.memo[key] = Token(BAD, reason="not an IP address")
                tokens.append(token)
        lines = bad[keyed.new_groups]
        groups = (np.cumsum(bad) - 1)[keyed.new_groups[lines]]
        for index, group in zip(keyed.new_lines[lines].tolist(), groups.tolist(), strict=True):
            rowless.append((index, tokens[group]))
        good = [index for index, is_bad in enumerate(bad.tolist()) if not is_bad]
        ips, facets, tails = resolved
        picked = Resolved(
            list(map(ips.__getitem__, good)),
            list(map(facets.__getitem__, good)),
            list(map(tails.__getitem__, good)),
        )
        return keyed.without(bad), picked

    def tokens(
        self, lines: list[bytes | None], extract: Extractor, simple: bool, ranges: bool, log: bool
    ) -> tuple[list[Token], bool]:
        """The token of every line (known IPs straight from ``known``, the rest extracted), and
        whether all of them are IPs."""
        found: list[Token | None]
        missing: Sequence[int]
        if simple and None not in lines:
            # The key of a log line that does not start with a blank or '#' is what the
            # extractor returns, and so is an IP-list line that is exactly an item. Other lines
            # have keys that are empty or start with a blank or '#', like no IP item in
            # ``known``, so they are extracted.
            keys: list[bytes] = lines  # type: ignore[assignment]
            if log:
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
                items.append(overlong(self.max_line))
                continue
            try:
                items.append(extract(line))
            except Unparseable as exc:
                items.append(Token(BAD, reason=str(exc)))
        self.classify(items, ranges)
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

    def classify(self, items: list[bytes | Token], ranges: bool) -> None:
        """Put the token of every new key of ``items`` in ``memo`` (IPs resolved together)."""
        memo = self.memo
        missing = dict.fromkeys(item for item in items if type(item) is bytes and item not in memo)
        if not missing:
            return
        raws = list(missing)
        texts = _ip_texts(raws, ranges)
        if texts is not None:  # the usual batch: every new item is an IP candidate
            self._remember(raws, texts, self.resolve_texts(texts))
            return
        candidates: list[bytes] = []
        for raw in raws:
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
            candidates.append(raw)
        if candidates:
            texts = [raw.decode("ascii") for raw in candidates]
            self._remember(candidates, texts, self.resolve_texts(texts))

    def _remember(self, raws: list[bytes], texts: list[str], resolved: Resolved) -> None:
        """Put the tokens of resolved keys in ``memo`` (and the IP ones in ``known``)."""
        memo, known = self.memo, self.known
        for raw, text, ip, facet, tail in zip(raws, texts, *resolved, strict=True):
            if ip:
                token = memo[raw] = known[raw] = Token(IP, text)
                token.ip, token.facet, token.tail = ip, facet, tail
            else:
                memo[raw] = Token(BAD, reason="not an IP address")


def _ip_texts(raws: list[bytes], ranges: bool) -> list[str] | None:
    """The texts of keys when each may be an IP address (ASCII, not empty, no range when
    ranges are read), else ``None``."""
    joined = b"\n".join(raws)
    if (
        joined.isascii()
        and joined.count(b"\n") == len(raws) - 1
        and b"" not in raws
        and not (ranges and (b"/" in joined or b"-" in joined))
    ):
        return joined.decode("ascii").split("\n")
    return None
