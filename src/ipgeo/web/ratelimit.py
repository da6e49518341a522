"""Per-client rate limits: ``limits``' sliding-window counters, one Redis call per request.

The limits of ``IPGEO_RATE_LIMIT`` are checked smallest window first and the first one that
refuses stops the check, so a refused request costs nothing in the longer windows (what
Flask-Limiter did). The headers describe the refusing limit, else the first one, with its
window read right after the hit.

A client that keeps asking claims its budget ahead in small leases: one call charges the
request and a few spare units, and the next requests of that client in this process spend the
spare units without a call (``Lease``). Spare units are only claimed for a client that used up
its last lease within the lease's lifetime, doubling each time up to 1/64 of the smallest limit
(and at most 64), and never more than 1/16 of what the window has left, so a client near its
limit is counted request by request, and a quiet client never claims ahead. Every unit is
charged before it is spent, so no limit is ever exceeded; unspent units of an expired lease
are lost, which lets a busy client reach a limit by at most a few leases early.

In Redis, ``limits``' own two scripts (acquire a sliding-window entry, read a sliding window)
are joined into one script that runs both for every limit: one round trip per request where
the library's calls would take one per limit plus one for the headers. Keys, algorithm and
numbers stay the library's (the tests compare them with ``limits``' own calls). Without
Redis, the counts live in the process (``limits``' memory storage, its strategy called as is).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import redis
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import NoScriptError

from ipgeo.web.exchange import BoundedTable

MAX_SPARE = 64  # the most units one call claims ahead of the request that makes it
LEASE_SECONDS = 1.0  # how long claimed units may be spent (a tenth of the window if shorter)
LEASES_KEPT = 4096  # clients whose leases a process keeps (then it starts again empty)
KEY_PREFIX = "ipgeo"  # the key prefix Flask-Limiter used: counts survive the change
SCOPE = "global"  # Flask-Limiter's scope of application-wide limits


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window as ``limits`` reads it: counts and seconds to expiry."""

    previous_count: int
    previous_expires_in: float
    current_count: int
    current_expires_in: float

    def stats(self, item: RateLimitItem, now: float) -> tuple[float, int]:
        """(reset time, remaining): ``SlidingWindowCounterRateLimiter.get_window_stats``."""
        expiry = item.get_expiry()
        weighted = self.previous_count * self.previous_expires_in / expiry + self.current_count
        remaining = max(0, item.amount - math.floor(weighted))
        if not (self.previous_count or self.current_count):
            return now, remaining
        previous_reset_in = current_reset_in = math.inf
        if self.previous_count:
            previous_reset_in = self.previous_expires_in % (expiry / self.previous_count)
        if self.current_count:
            current_reset_in = self.current_expires_in % expiry
        return now + min(previous_reset_in, current_reset_in), remaining


@dataclass(frozen=True, slots=True)
class RateLimitOutcome:
    """What one request's check found: refused or not, and the numbers for the headers."""

    breached: bool
    limit: RateLimitItem  # the refusing limit, else the first (smallest window)
    checked: tuple[RateLimitItem, ...]  # the limits checked, in order
    reset_at: float  # Unix time at which ``limit`` has room again
    remaining: int
    policy: str  # ``RateLimit-Policy`` of the limits checked

    def headers(self, now: float) -> list[tuple[str, str]]:
        """The IETF ``RateLimit-*`` headers, and ``Retry-After`` when refused."""
        reset_in = max(0, math.ceil(int(self.reset_at + 1) - now))
        headers = [
            ("RateLimit-Limit", str(self.limit.amount)),
            ("RateLimit-Remaining", str(max(0, self.remaining))),
            ("RateLimit-Reset", str(reset_in)),
            ("RateLimit-Policy", self.policy),
        ]
        if self.breached:
            headers.append(("Retry-After", str(max(1, reset_in))))
        return headers

    def message(self) -> str:
        """The message of the 429 answer."""
        return (
            f"too many requests from this address: the limit is {self.limit}; "
            "retry after the number of seconds in Retry-After"
        )


class _Counter(Protocol):
    def charge(self, client: str, cost: int) -> tuple[int | None, Window | tuple[float, int]]:
        """Hit the limits in order up to the first refusal: its position, and a window."""


# ``limits``' scripts as Lua functions (``KEYS``/``ARGV`` become their parameters), run for
# each limit in turn; the first refusal ends the loop. Returns the 1-based position of the
# refusing limit (0: none) and the window of the limit the headers describe.
_JOINED_SCRIPT = """
local function acquire(KEYS, ARGV)
{acquire}
end
local function window(KEYS, ARGV)
{window}
end
local cost = ARGV[1]
for i = 1, #KEYS / 2 do
  local keys = {{KEYS[2 * i - 1], KEYS[2 * i]}}
  if not acquire(keys, {{ARGV[2 * i], ARGV[2 * i + 1], cost}}) then
    return {{i, window(keys, {{ARGV[2 * i + 1]}})}}
  end
end
return {{0, window({{KEYS[1], KEYS[2]}}, {{ARGV[3]}})}}
"""


class _Connection(Protocol):
    """What the counter uses of a redis-py connection (whose methods are not annotated)."""

    def pack_command(self, *args: object) -> list[bytes]: ...
    def send_packed_command(self, command: list[bytes]) -> None: ...
    def send_command(self, *args: object) -> None: ...
    def read_response(self) -> Any: ...
    def disconnect(self) -> None: ...


def _text(script: str | bytes) -> str:
    return script.decode() if isinstance(script, bytes) else script


class _RedisCounter:
    """Sliding windows in Redis, every limit and the header window in one script call.

    Each thread calls on a connection of its own, made by the app's pool: redis-py's pool
    bookkeeping per command (locks, health and state checks) costs about twice the call
    itself, on every request.
    """

    def __init__(self, pool: redis.ConnectionPool, items: tuple[RateLimitItem, ...]) -> None:
        self.pool = pool
        self.items = items
        self.script = _JOINED_SCRIPT.format(
            acquire=_text(RedisStorage.SCRIPT_ACQUIRE_SLIDING_WINDOW),
            window=_text(RedisStorage.SCRIPT_SLIDING_WINDOW),
        )
        self.sha = hashlib.sha1(self.script.encode(), usedforsecurity=False).hexdigest()
        self.limits = [number for item in items for number in (item.amount, item.get_expiry())]
        self.commands: BoundedTable[tuple[str, int], list[bytes]] = BoundedTable(self._command)
        self._local = threading.local()

    def _command(self, client_and_cost: tuple[str, int]) -> list[bytes]:
        """The packed EVALSHA for a client and a cost, with RedisStorage's key names."""
        client, cost = client_and_cost
        keys = []
        for item in self.items:
            key = item.key_for(KEY_PREFIX, client, SCOPE)
            keys += [f"{RedisStorage.PREFIX}:{{{key}}}/-1", f"{RedisStorage.PREFIX}:{{{key}}}"]
        packed: list[bytes] = self._connection().pack_command(
            "EVALSHA", self.sha, len(keys), *keys, cost, *self.limits
        )
        return packed

    def _connection(self) -> _Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # new thread, or a forked worker
            local.connection, local.pid = self.pool.make_connection(), os.getpid()
        return cast(_Connection, local.connection)

    def charge(self, client: str, cost: int) -> tuple[int | None, Window | tuple[float, int]]:
        """Hit the limits in order up to the first refusal: its position, and a window."""
        connection = self._connection()
        command = self.commands[(client, cost)]
        try:
            connection.send_packed_command(command)
            try:
                reply = connection.read_response()
            except NoScriptError:  # a restarted or flushed Redis: load it once more
                connection.send_command("SCRIPT", "LOAD", self.script)
                connection.read_response()
                connection.send_packed_command(command)
                reply = connection.read_response()
        except redis.RedisError:
            connection.disconnect()  # the next call connects afresh
            raise
        refused, (previous_count, previous_ttl, current_count, current_ttl) = reply
        window = Window(
            int(previous_count or 0),
            max(0, float(previous_ttl or 0)) / 1000,
            int(current_count or 0),
            max(0, float(current_ttl or 0)) / 1000,
        )
        return (int(refused) - 1 if refused else None), window


class _MemoryCounter:
    """Sliding windows in this process: ``limits``' strategy on its memory storage."""

    def __init__(self, items: tuple[RateLimitItem, ...]) -> None:
        self.items = items
        self.strategy = SlidingWindowCounterRateLimiter(MemoryStorage())

    def charge(self, client: str, cost: int) -> tuple[int | None, Window | tuple[float, int]]:
        """Hit the limits in order up to the first refusal: its position, and the stats."""
        items = self.items
        refused = None
        for index, item in enumerate(items):
            if not self.strategy.hit(item, KEY_PREFIX, client, SCOPE, cost=cost):
                refused = index
                break
        stats = self.strategy.get_window_stats(items[refused or 0], KEY_PREFIX, client, SCOPE)
        return refused, (stats.reset_time, stats.remaining)


@dataclass(slots=True)
class Lease:
    """Units of a client's budget charged ahead in this process, to be spent until ``expires``."""

    claim: RateLimitOutcome  # the claiming call's outcome
    window_left: int  # what the window had left after the claim (spare units not counted)
    left: int  # units charged and not spent yet
    spare: int  # units the claim took ahead of its own request
    expires: float  # ``time.monotonic()`` after which ``left`` is void

    def spend(self, cost: int) -> RateLimitOutcome:
        """Spend ``cost`` units: the outcome the request would have had from a call."""
        self.left -= cost
        claim = self.claim
        remaining = self.window_left + self.left
        return RateLimitOutcome(
            False, claim.limit, claim.checked, claim.reset_at, remaining, claim.policy
        )


class RateLimiter:
    """The limits of ``IPGEO_RATE_LIMIT`` per client key, counted in Redis or in memory."""

    def __init__(self, spec: str, pool: redis.ConnectionPool | None) -> None:
        # Smallest window first; equal windows keep their order (``RateLimitItem.__lt__``).
        self.items = tuple(sorted(parse_many(spec), key=lambda item: item.GRANULARITY.seconds))
        self.counter: _Counter = (
            _RedisCounter(pool, self.items) if pool is not None else _MemoryCounter(self.items)
        )
        self.policies = [
            ", ".join(f"{item.amount};w={item.get_expiry()}" for item in self.items[:checked])
            for checked in range(len(self.items) + 1)
        ]
        self.most_spare = min(MAX_SPARE, min(item.amount for item in self.items) // 64)
        self.lease_seconds = min(LEASE_SECONDS, self.items[0].get_expiry() / 10)
        self.leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def charge(self, client: str, cost: int = 1) -> RateLimitOutcome:
        """Count ``cost`` for ``client``; raises ``redis.RedisError`` when Redis fails."""
        now = time.monotonic()
        with self._lock:
            lease = self.leases.get(client)
            if lease is not None and lease.left >= cost and now < lease.expires:
                return lease.spend(cost)
        spare = self._spare(lease, now)
        outcome = self._claim(client, cost + spare)
        if outcome.breached and spare:  # maybe only the spare units did not fit
            spare = 0
            outcome = self._claim(client, cost)
        if outcome.breached:
            return outcome
        with self._lock:
            if len(self.leases) >= LEASES_KEPT:
                self.leases.clear()
            lease = Lease(outcome, outcome.remaining, spare, spare, now + self.lease_seconds)
            self.leases[client] = lease
            return lease.spend(0)

    def _spare(self, lease: Lease | None, now: float) -> int:
        """Units to claim ahead: twice the last lease's, if it was spent before it expired."""
        if lease is None or now >= lease.expires or self.most_spare < 1:
            return 0
        return max(0, min(self.most_spare, max(1, 2 * lease.spare), lease.window_left // 16))

    def _claim(self, client: str, units: int) -> RateLimitOutcome:
        """One call to the counter, charging ``units``."""
        refused, window = self.counter.charge(client, units)
        limit = self.items[refused or 0]
        if isinstance(window, Window):
            reset_at, remaining = window.stats(limit, time.time())
        else:
            reset_at, remaining = window
        checked = len(self.items) if refused is None else refused + 1
        return RateLimitOutcome(
            refused is not None,
            limit,
            self.items[:checked],
            reset_at,
            remaining,
            self.policies[checked],
        )
