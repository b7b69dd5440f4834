"""Broadcast push fan-out (transport_and_format §4.1.8.3): one accepted push, a copy to every recipient.

Owns: applying the push to the hub's store of broadcast data (hub/holdings.py), then sending the copies
concurrently (bounded), each with OCPI-from = hub, OCPI-to = the recipient, a new
X-Request-ID and the sender's X-Correlation-ID, the body byte for byte and the owner's URL path unchanged;
logging and counting each recipient's outcome. Recipients' errors never reach the sender (status_codes §5.4)
and nothing is queued or retried (§4.4).
Must not: choose recipients (routing/table.py does) or answer the sender (the proxy already did).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import count

from hub import logs
from hub.ids import new_request_id
from hub.runtime import Runtime
from hub.tasks import gather_limited
from routing import headers as h
from routing.errors import ForwardTimeoutError, OcpiError, ReceiverUnreachableError
from routing.model import ModuleID
from routing.outcome import Outcome
from routing.paths import join_url
from routing.table import Broadcast, Recipient

log = logging.getLogger("ocpihub.broadcast")

_sequence = count()


@dataclass(frozen=True, slots=True)
class Push:
    """One accepted broadcast push: what every copy is made of."""

    module: ModuleID
    method: str
    suffix: str
    query: bytes
    body: bytes
    correlation_id: bytes
    #: The sender's headers minus routing and correlation headers, plus OCPI-from = hub.
    common: list[tuple[bytes, bytes]]


class Broadcaster:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.hub_from = h.from_headers(rt.hub)

    def start(
        self,
        decision: Broadcast,
        module: ModuleID,
        method: str,
        suffix: str,
        query: bytes,
        body: bytes,
        passthrough: list[tuple[bytes, bytes]],
        correlation_id: bytes,
    ) -> None:
        common = [kv for kv in passthrough if kv[0] not in h.ROUTING_HEADERS and kv[0] != h.X_CORRELATION_ID]
        common += [*self.hub_from, (h.X_CORRELATION_ID, correlation_id)]
        push = Push(module, method, suffix, query, body, correlation_id, common)
        self.rt.metrics.broadcasts[module.value].inc()
        self.rt.tasks.spawn(f"broadcast:{next(_sequence)}", self._fan_out(decision, push))

    async def _fan_out(self, decision: Broadcast, push: Push) -> None:
        # The hub keeps what is broadcast to it (ocpi/ocpi #508: for GET All via Hub), then passes it on.
        outcome = await self.rt.holdings.apply(push.module, push.method, push.suffix, push.query, push.body)
        self.rt.metrics.store_pushes[(push.module.value, outcome.value if outcome is not None else "error")].inc()
        jobs = [self._deliver(recipient, push) for recipient in decision.recipients]
        await gather_limited(self.rt.settings.broadcast_concurrency, jobs)

    async def _deliver(self, recipient: Recipient, push: Push) -> None:
        request_id = new_request_id()
        headers = [
            *push.common,
            *h.to_headers(recipient.party),
            (h.AUTHORIZATION, recipient.platform.auth_header),
            (h.X_REQUEST_ID, request_id),
        ]
        module = push.module
        started = time.perf_counter()
        status = 0
        outcome = Outcome.OK
        try:
            async with self.rt.outbound.open(
                push.method,
                join_url(recipient.endpoint, push.suffix, push.query),
                headers,
                push.body,
                self.rt.settings.timeout_for(module.value),
            ) as upstream:
                status = upstream.status
                async for _ in upstream.chunks():
                    pass
            if status >= 400:
                outcome = Outcome.ERROR
        except (ForwardTimeoutError, ReceiverUnreachableError) as exc:
            outcome = Outcome.TIMEOUT if isinstance(exc, ForwardTimeoutError) else Outcome.UNREACHABLE
        except OcpiError:
            outcome = Outcome.ERROR
        self.rt.metrics.deliveries[(module.value, outcome)].inc()
        line = logs.event(
            log,
            "broadcast delivery",
            {
                "event": "broadcast_delivery",
                "kind": "broadcast_copy",
                "correlation_id": push.correlation_id.decode("ascii"),
                "request_id_out": request_id.decode("ascii"),
                "from": str(self.rt.hub),
                "to": str(recipient.party),
                "platform": recipient.platform.id,
                "module": module.value,
                "interface": "RECEIVER",
                "method": push.method,
                "path": push.suffix,
                "status": status or None,  # no HTTP answer (timeout, unreachable)
                "outcome": outcome.value,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        if self.rt.tracker is not None:
            self.rt.tracker.record(line)
