"""Keep-alive connections to one party origin, and the process-wide budget all pools share.

Owns: opening connections only to addresses the network policy permits (resolved at connect time, so DNS
rebinding cannot reach a refused address), at most ``limit`` per origin and ``Budget.limit`` per process, reusing
the warmest idle one, and handing freed connections to waiters fairly — round robin between senders, first come
first served within one sender, so a sender flooding a slow receiver cannot push another sender's requests to the
back of its queue — with a cap on requests pending per origin and per sender there (answered at once with 4003,
like an Envoy circuit breaker, instead of queuing without end).
Must not: speak HTTP (hub/http/connection.py does) or know deadlines (hub/http/client.py does).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Final

from hub.http.connection import Connection
from hub.http.policy import NetworkPolicy, PartyUrl, PartyUrlError, resolve
from routing.errors import OverloadedError, ReceiverUnreachableError

log = logging.getLogger("ocpihub.outbound")

#: Idle connections are dropped before common server keep-alive timeouts (uvicorn's default is 5 s) expire,
#: so the hub rarely writes into a connection the receiver is closing.
IDLE_TIMEOUT: Final = 4.0
#: While the budget is not full, only connections idle this long are closed to make room: a hot connection of a
#: busy receiver (idle between two of its requests) is worth more than a place for a receiver that hangs.
EVICTABLE_IDLE: Final = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one origin may hold: open connections, and requests pending in all and per sender."""

    connections: int
    pending: int
    pending_per_sender: int


class Budget:
    """The process-wide cap on open connections, shared by every pool.

    Receivers that hang fill their pools and hold connections until the forwarding timeout, so the budget is shared
    out rather than first come first served (issue: greedy and dead parties): the last ``reserve`` places go only
    to a pool without any connection (a healthy receiver can always be reached), and when pools contend none may
    open — or close another pool's idle connection to open — more than its fair share of the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.reserve = min(16, limit // 4)
        self.pools: dict[tuple[str, int, bool], Pool] = {}

    def entitled(self, pool: Pool) -> bool:
        """Whether ``pool`` may have one more connection, room permitting: none yet, or below its fair share."""
        if pool.open == 0:
            return True
        # Pools holding only idle connections do not contend: those connections are theirs only until evicted.
        contending = sum(1 for p in self.pools.values() if p.in_use or p.has_waiters)
        return pool.open < max(1, (self.limit - self.reserve) // max(1, contending))

    def can_take(self, pool: Pool) -> bool:
        if self.open >= self.limit:
            return False
        if pool.open == 0:
            return True
        return self.limit - self.open > self.reserve and self.entitled(pool)

    def could_open(self, pool: Pool) -> bool:
        """Whether a waiter of ``pool`` could open a connection now: a free place it may take, or (within its share)
        an idle connection of any pool to evict for one."""
        if pool.open >= pool.limit:
            return False
        if self.can_take(pool):
            return True
        return self.entitled(pool) and self._evictable() is not None

    def take(self, pool: Pool) -> bool:
        if not self.can_take(pool):
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1

    def _evictable(self) -> tuple[Pool, Connection] | None:
        """The longest-idle connection of any pool, if it may be closed for room (see EVICTABLE_IDLE)."""
        oldest: tuple[Pool, Connection] | None = None
        for pool in self.pools.values():
            if pool.idle and (oldest is None or pool.idle[0].idle_since < oldest[1].idle_since):
                oldest = (pool, pool.idle[0])
        if oldest is None:
            return None
        if self.open < self.limit and asyncio.get_running_loop().time() - oldest[1].idle_since < EVICTABLE_IDLE:
            return None
        return oldest

    def evict_idle(self) -> bool:
        """Close the evictable idle connection; its end frees a place (Pool.forget). False: none may go."""
        oldest = self._evictable()
        if oldest is None:
            return False
        pool, conn = oldest
        pool.idle.remove(conn)
        conn.abort()
        return True

    def wake_any(self, exclude: Pool | None = None) -> None:
        """A place in the budget is free: wake a waiter of a pool that can use it, one without connections first."""
        chosen: Pool | None = None
        for pool in self.pools.values():
            if pool is exclude or not pool.has_waiters or not self.could_open(pool):
                continue  # room reserved for others, or beyond its share
            if pool.open == 0:
                chosen = pool
                break
            chosen = chosen or pool
        if chosen is not None:
            chosen.next_waiter()


class Pool:
    """Keep-alive connections to one origin."""

    def __init__(
        self,
        origin: PartyUrl,
        limits: Limits,
        ssl_context: ssl.SSLContext | None,
        budget: Budget,
        policy: NetworkPolicy,
    ) -> None:
        # Kept once: asyncio.get_running_loop() costs a getpid() system call on every call (its fork check), and
        # the hot path used it three times per request. A pool lives and dies in the loop that created it.
        self.loop = asyncio.get_running_loop()
        self.origin = origin
        self.limits = limits
        self.limit = limits.connections
        self.budget = budget
        self.policy = policy
        self.ssl_context = ssl_context
        self.idle: collections.deque[Connection] = collections.deque()
        self.open = 0
        self.in_use = 0
        #: Requests holding or waiting for a connection, in all and per sender.
        self.pending = 0
        self.pending_by: dict[str, int] = {}
        #: Waiters per sender, and the order in which senders with waiters take turns.
        self.waiters: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self.turns: collections.deque[str] = collections.deque()
        self.last_used = 0.0

    @property
    def has_waiters(self) -> bool:
        return bool(self.turns)

    def admit(self, sender: str) -> None:
        """Count a request against the caps, or refuse it at once (4003) when the origin or sender is saturated."""
        mine = self.pending_by.get(sender, 0)
        if self.pending >= self.limits.pending or mine >= self.limits.pending_per_sender:
            raise OverloadedError("the receiver has too many requests pending at the hub; try again shortly")
        self.pending += 1
        self.pending_by[sender] = mine + 1

    def done(self, sender: str) -> None:
        self.pending -= 1
        left = self.pending_by[sender] - 1
        if left:
            self.pending_by[sender] = left
        else:
            del self.pending_by[sender]

    def take_idle(self, now: float) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()  # the most recently used: warmest, least likely closed by the receiver
            if conn.closed or now - conn.idle_since > IDLE_TIMEOUT:
                conn.abort()
                continue
            self.in_use += 1
            return conn
        return None

    async def acquire(self, connect_timeout: float, sender: str) -> tuple[Connection, bool]:
        """A connection and whether it was reused."""
        loop = self.loop
        if self.turns:
            # Others queue already: a connection freed now is theirs (next_waiter woke one for it), so this request
            # takes its turn instead of taking that connection from under the woken waiter.
            await self._wait_turn(sender)
        while True:
            conn = self.take_idle(loop.time())
            if conn is not None:
                return conn, True
            if self.open < self.limit and self.budget.take(self):
                self.open += 1
                self.in_use += 1
                self._offer_room()
                try:
                    return await self._connect(connect_timeout), False
                except BaseException:
                    self.open -= 1
                    self.in_use -= 1
                    self.budget.give_back()
                    self.next_waiter()
                    raise
            if self.open < self.limit:
                if self.budget.entitled(self):
                    # Within its share, yet the budget is full or down to its reserve: an idle connection (any
                    # pool's) makes room; its end wakes this line again (Pool.forget).
                    self.budget.evict_idle()
                elif self.budget.open < self.budget.limit:
                    # Beyond this pool's share: pass the turn to a pool that may use the free places.
                    self.budget.wake_any(exclude=self)
            # Nothing free: wait at the head of the line, which is where this request is — no one queued when it
            # came, or it was woken and a newcomer took the slot meanwhile (possible only while no one else queued).
            await self._wait_turn(sender, again=True)

    def _offer_room(self) -> None:
        """After taking a place: if room is left, let the next waiter (here, else of another pool) try for it.

        Places are otherwise offered one per released or ended connection, so room that appeared while no waiter
        could use it (beyond its share then, say) would stay unused by a queue that can use it now."""
        if self.turns and self.budget.could_open(self):
            self.next_waiter()
        else:
            self.budget.wake_any(exclude=self)

    async def _wait_turn(self, sender: str, again: bool = False) -> None:
        waiter = self.loop.create_future()
        queue = self.waiters.get(sender)
        if queue is None:
            queue = self.waiters[sender] = collections.deque()
            if again:
                self.turns.appendleft(sender)
            else:
                self.turns.append(sender)
        if again:
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.next_waiter()  # woken, then cancelled before it ran: pass the turn on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            self._drop_waiter(sender, waiter)

    def _drop_waiter(self, sender: str, waiter: asyncio.Future[None]) -> None:
        queue = self.waiters.get(sender)
        if queue is None:
            return
        if waiter in queue:
            queue.remove(waiter)
        if not queue:
            del self.waiters[sender]
            if sender in self.turns:
                self.turns.remove(sender)

    async def _connect(self, timeout: float) -> Connection:
        loop = self.loop
        origin = self.origin
        try:
            async with asyncio.timeout(timeout):
                # Resolved and checked on every new connection, and connected to exactly the checked address.
                addresses = await resolve(origin, self.policy, loop=loop)
                last: OSError | None = None
                for family, address in addresses:
                    try:
                        _, protocol = await loop.create_connection(
                            lambda: Connection(self.forget, self.loop),
                            address,
                            origin.port,
                            family=family,
                            proto=socket.IPPROTO_TCP,
                            ssl=self.ssl_context if origin.tls else None,
                            server_hostname=origin.host if origin.tls else None,
                        )
                        return protocol
                    except OSError as exc:  # refused, unreachable, TLS failure (ssl.SSLError is an OSError)
                        last = exc
                raise last or OSError("no address")
        except TimeoutError:
            raise ReceiverUnreachableError(f"could not connect within {timeout:g} s") from None
        except PartyUrlError as exc:
            log.warning("party URL refused at connect time", extra={"fields": {"host": origin.host, "why": str(exc)}})
            raise ReceiverUnreachableError("could not connect: the receiver's address is not permitted") from None
        except OSError as exc:
            raise ReceiverUnreachableError(f"could not connect: {exc.strerror or type(exc).__name__}") from None

    def release(self, conn: Connection) -> None:
        self.in_use -= 1
        now = self.loop.time()
        self.last_used = now
        if not conn.reusable:
            # Nothing is free until the connection has ended: its end (forget) wakes the next waiter. Waking one
            # now would only send it to the back of the line.
            conn.abort()
            return
        conn.idle_since = now
        self.idle.append(conn)
        if self.turns:
            self.next_waiter()
        elif self.budget.open >= self.budget.limit:
            self.budget.wake_any()  # another pool may be waiting for room that this idle connection can give

    def forget(self, conn: Connection) -> None:
        """A connection ended (either side): it no longer counts against the limits."""
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        self.budget.give_back()
        if self.turns:
            self.next_waiter()
        else:
            self.budget.wake_any()

    def next_waiter(self) -> None:
        """Wake the first waiter of the sender whose turn it is; that sender goes to the back of the line."""
        while self.turns:
            sender = self.turns.popleft()
            queue = self.waiters.get(sender)
            woken = False
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    woken = True
                    break
            if queue:
                self.turns.append(sender)
            else:
                self.waiters.pop(sender, None)
            if woken:
                return

    def prune(self, now: float) -> None:
        """Close idle connections the receiver is about to drop anyway."""
        while self.idle and now - self.idle[0].idle_since > IDLE_TIMEOUT:
            self.idle.popleft().abort()

    @property
    def unused(self) -> bool:
        return self.open == 0 and self.pending == 0 and not self.turns
