"""Broadcast push fan-out (transport_and_format §4.1.8.3): one accepted push, a copy to every recipient.

Owns: sending the copies concurrently (bounded), each with OCPI-from = hub, OCPI-to = the recipient, a new
X-Request-ID and the sender's X-Correlation-ID, the body byte for byte and the owner's URL path unchanged;
logging and counting each recipient's outcome. Recipients' errors never reach the sender (status_codes §5.4)
and nothing is queued or retried (§4.4).
Must not: choose recipients (routing/table.py does) or answer the sender (the proxy already did).
"""

from __future__ import annotations

import logging
import time
from itertools import count

from hub.forward import gather_limited
from hub.runtime import Runtime, new_request_id
from routing import headers as h
from routing.errors import ForwardTimeoutError, OcpiError, ReceiverUnreachableError
from routing.model import ModuleID
from routing.paths import join_url
from routing.table import Broadcast, Recipient

log = logging.getLogger("ocpihub.broadcast")

_ROUTING_HEADERS = frozenset(
    {h.OCPI_TO_COUNTRY_CODE, h.OCPI_TO_PARTY_ID, h.OCPI_FROM_COUNTRY_CODE, h.OCPI_FROM_PARTY_ID}
)
_sequence = count()


class Broadcaster:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.hub_from = [
            (h.OCPI_FROM_COUNTRY_CODE, rt.hub.country_code.encode()),
            (h.OCPI_FROM_PARTY_ID, rt.hub.party_id.encode()),
        ]

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
        common = [kv for kv in passthrough if kv[0] not in _ROUTING_HEADERS and kv[0] != h.X_CORRELATION_ID]
        common += self.hub_from
        common.append((h.X_CORRELATION_ID, correlation_id))
        self.rt.metrics.broadcasts.labels(module.value).inc()
        self.rt.tasks.spawn(
            f"broadcast:{next(_sequence)}",
            self._fan_out(decision, module, method, suffix, query, body, common, correlation_id),
        )

    async def _fan_out(
        self,
        decision: Broadcast,
        module: ModuleID,
        method: str,
        suffix: str,
        query: bytes,
        body: bytes,
        common: list[tuple[bytes, bytes]],
        correlation_id: bytes,
    ) -> None:
        jobs = [
            self._deliver(r, module, method, suffix, query, body, common, correlation_id) for r in decision.recipients
        ]
        await gather_limited(self.rt.settings.broadcast_concurrency, jobs)

    async def _deliver(
        self,
        recipient: Recipient,
        module: ModuleID,
        method: str,
        suffix: str,
        query: bytes,
        body: bytes,
        common: list[tuple[bytes, bytes]],
        correlation_id: bytes,
    ) -> None:
        request_id = new_request_id()
        headers = [
            *common,
            (h.OCPI_TO_COUNTRY_CODE, recipient.party.country_code.encode()),
            (h.OCPI_TO_PARTY_ID, recipient.party.party_id.encode()),
            (h.AUTHORIZATION, recipient.platform.auth_header),
            (h.X_REQUEST_ID, request_id),
        ]
        started = time.perf_counter()
        status = 0
        outcome = "ok"
        try:
            async with self.rt.outbound.open(
                method,
                join_url(recipient.endpoint, suffix, query),
                headers,
                body,
                self.rt.settings.timeout_for(module.value),
            ) as upstream:
                status = upstream.status
                async for _ in upstream.chunks():
                    pass
            if status >= 400:
                outcome = "error"
        except ForwardTimeoutError:
            outcome = "timeout"
        except ReceiverUnreachableError:
            outcome = "unreachable"
        except OcpiError:
            outcome = "error"
        self.rt.metrics.deliveries[(module.value, outcome)].inc()
        log.info(
            "broadcast delivery",
            extra={
                "fields": {
                    "event": "broadcast_delivery",
                    "correlation_id": correlation_id.decode("ascii"),
                    "request_id_out": request_id.decode("ascii"),
                    "to": str(recipient.party),
                    "module": module.value,
                    "method": method,
                    "status": status,
                    "outcome": outcome,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                }
            },
        )
