"""The keyer of a bulk run: lines to the tokens of their keys (an IP, a range, bad, nothing).

Each distinct key (the bytes an extractor returns for a line) becomes one ``Token``, kept in a
memo of the run. A block of lines is keyed with numpy (``blocks.KeyTable``) when every line's
key is what its extractor would return; the lines of other blocks are keyed one by one.
New IP keys are handed to ``resolve_ips`` (the run's resolver and renderer) in one batch.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice, repeat

from ipgeo.bulk.blocks import KeyTable
from ipgeo.bulk.parsing import Extractor, Unparseable
from ipgeo.bulk.ranges import range_token
from ipgeo.bulk.sources import LineBatch
from ipgeo.bulk.tokens import BAD, IP, SKIP_TOKEN, Token, overlong

_TAIL = operator.attrgetter("tail")
_KIND = operator.attrgetter("kind")
# fills in the tokens of new IP keys (given with their keys)
ResolveIPs = Callable[[list[tuple[bytes, Token]]], None]


class Keyer:
    """The tokens of a run's keys: ``memo`` (every key), ``known`` (IP keys), ``blocks``."""

    def __init__(self, resolve_ips: ResolveIPs, max_line: int) -> None:
        self.resolve_ips = resolve_ips
        self.max_line = max_line
        self.memo: dict[bytes, Token] = {}
        self.known: dict[bytes, Token] = {}  # the IP tokens of ``memo``
        self.blocks = KeyTable()  # the IP tokens of ``memo`` that blocks of lines met

    def _take_hits(self) -> None:
        """Move the hits counted in ``blocks`` to their tokens."""
        for token, hits in self.blocks.take_hits():
            token.hits += hits

    def clear(self) -> list[Token]:
        """Forget every key (the databases were reloaded); return the tokens forgotten."""
        self._take_hits()
        tokens = list(self.memo.values())
        self.memo.clear()
        self.known.clear()
        self.blocks.clear()
        return tokens

    def evict(self, count: int) -> list[Token]:
        """Forget the ``count`` oldest keys; return their tokens."""
        self._take_hits()
        victims = list(islice(self.memo, count))
        deque(map(self.known.pop, victims, repeat(None)), maxlen=0)
        self.blocks.clear()  # it may hold victims
        return list(map(self.memo.pop, victims))

    def key_block(self, batch: LineBatch, whole_line: bool, ranges: bool) -> list[bytes] | None:
        """The row ends of a block's lines when every line's key is an IP (counted in
        ``blocks``), else ``None`` (nothing done: the block goes line by line)."""
        assert batch.buffer is not None
        table = self.blocks
        keyed = table.key(batch.buffer, batch.end, whole_line, batch.max_line)
        if keyed is None:
            return None
        ids = keyed.ids
        if keyed.new_keys:
            self.classify(list(keyed.new_keys), ranges)
            tokens = list(map(self.memo.__getitem__, keyed.new_keys))
            if set(map(_KIND, tokens)) != {IP}:
                return None
            ids = table.add_new(keyed, tokens, list(map(_TAIL, tokens)))
        table.count(ids)
        tails: list[bytes] = table.tails[ids].tolist()
        return tails

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
        pending: list[tuple[bytes, Token]] = []
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
        if pending:
            self.resolve_ips(pending)  # turns tokens that are no IP into BAD ones
            memo.update(pending)
            self.known.update((raw, token) for raw, token in pending if token.kind == IP)
