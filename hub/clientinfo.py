"""Hub Client Info (mod_hub_client_info §15): the hub's Sender GET list and its ClientInfo pushes.

Owns: the paginated list (date_from inclusive, date_to exclusive, offset, limit, X-Total-Count, X-Limit, Link;
transport_and_format §4.1.4.1), pushing one ClientInfo to every other connected party with a hubclientinfo
Receiver endpoint (PUT ``/{country_code}/{party_id}``), and the welcome push of the whole list to a party that
has just become CONNECTED by any path — the scheduler calls ``welcome`` (digest §3.3 GAP: push, so nobody
depends on a pull).
Must not: decide statuses (registry/store.py records them) or run outside the scheduler's lease for pushes
triggered by status changes (hub/background.py calls ``push``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import orjson

from hub import logs
from hub.identity import HubIdentity
from hub.ids import new_request_id
from hub.runtime import Runtime
from hub.tasks import gather_limited
from registry.codec import ClientInfo
from routing import errors
from routing.datetimes import parse_datetime
from routing.model import ConnectionStatus, InterfaceRole, ModuleID
from routing.table import Platform

log = logging.getLogger("ocpihub.clientinfo")

#: The most ClientInfo objects one page holds (X-Limit).
MAX_LIMIT: Final = 100
PUSH_CONCURRENCY: Final = 16
#: Change events read past a newcomer's own one (their parties get their own push, not a welcome copy).
WELCOME_LOOKAHEAD: Final = 10_000


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, str]]
    headers: dict[str, str]


class ClientInfoService:
    def __init__(self, rt: Runtime, identity: HubIdentity) -> None:
        self.rt = rt
        self.identity = identity

    async def page(self, query: Mapping[str, str], url: str) -> Page:
        """One page of the list, filtered by last_updated (hubclientinfo §15.3.2)."""
        try:
            date_from = parse_datetime(query["date_from"]) if "date_from" in query else None
            date_to = parse_datetime(query["date_to"]) if "date_to" in query else None
            offset = int(query.get("offset", "0"))
            limit = min(int(query.get("limit", str(MAX_LIMIT))), MAX_LIMIT)
        except ValueError as exc:
            raise errors.InvalidParametersError(f"invalid pagination parameter: {exc}") from None
        if offset < 0 or limit < 0:
            raise errors.InvalidParametersError("offset and limit must not be negative")
        infos = [
            info
            for info in await self.rt.store.clientinfos()
            if (date_from is None or parse_datetime(info.last_updated) >= date_from)
            and (date_to is None or parse_datetime(info.last_updated) < date_to)
        ]
        chunk = infos[offset : offset + limit]
        # X-Limit: the most this server returns for this query, shown even on a short page (§4.1.4.1).
        headers = {"X-Total-Count": str(len(infos)), "X-Limit": str(limit)}
        if offset + limit < len(infos) and limit > 0:
            params = {k: v for k, v in query.items() if k not in ("offset", "limit")}
            params |= {"offset": str(offset + limit), "limit": str(limit)}
            base = url.split("?", 1)[0]
            headers["Link"] = f'<{base}?{urlencode(params)}>; rel="next"'
        return Page([i.to_wire() for i in chunk], headers)

    def recipients(self, exclude_platform: str | None) -> list[tuple[Platform, str]]:
        table = self.rt.holder.table
        out = []
        for platform in table.platforms.values():
            if platform.id == exclude_platform or platform.status is not ConnectionStatus.CONNECTED:
                continue
            endpoint = platform.endpoints.get((ModuleID.HUBCLIENTINFO, InterfaceRole.RECEIVER))
            if endpoint is not None:
                out.append((platform, endpoint))
        return out

    async def push(self, info: ClientInfo, timeout: float) -> None:
        """PUT one ClientInfo to every connected party except the one it describes (§15.2.1), all at once."""
        owner = self.rt.holder.table.parties.get(info.party)
        targets = self.recipients(owner.id if owner else None)
        jobs = [self._put(platform, endpoint, info, timeout) for platform, endpoint in targets]
        await gather_limited(max(len(jobs), 1), jobs)

    def welcome(self, platform_id: str, event_id: str) -> None:
        """Push the list to a platform that became CONNECTED with the change event ``event_id``."""
        self.rt.tasks.spawn(f"welcome:{platform_id}", self._welcome(platform_id, event_id))

    async def _welcome(self, platform_id: str, event_id: str) -> None:
        platform = self.rt.holder.table.platforms.get(platform_id)
        endpoint = platform.endpoints.get((ModuleID.HUBCLIENTINFO, InterfaceRole.RECEIVER)) if platform else None
        if platform is None or endpoint is None:
            return
        # The list first, then the changes after the platform's own event: those reach it by their own push
        # (it is a recipient now), so each ClientInfo is pushed to it once — a change is written to the list and
        # to the change stream in one transaction, so nothing falls between the two reads.
        listed = await self.rt.store.clientinfos()
        later = {info.key for _, info in await self.rt.store.events_after(event_id, count=WELCOME_LOOKAHEAD)}
        infos = [i for i in listed if i.party not in platform.parties and i.key not in later]
        timeout = self.rt.settings.forward_timeout
        await gather_limited(PUSH_CONCURRENCY, [self._put(platform, endpoint, info, timeout) for info in infos])

    async def _put(self, platform: Platform, endpoint: str, info: ClientInfo, timeout: float) -> None:
        url = f"{endpoint.rstrip('/')}/{info.party.country_code}/{info.party.party_id}"
        request_id = new_request_id()
        headers: list[tuple[bytes, bytes]] = [
            (b"authorization", platform.auth_header),
            (b"content-type", b"application/json"),
            (b"x-request-id", request_id),
            (b"x-correlation-id", new_request_id()),
        ]
        body = orjson.dumps(info.to_wire())
        outcome = "ok"
        status = 0
        try:
            async with self.rt.outbound.open("PUT", url, headers, body, timeout) as upstream:
                status = upstream.status
                async for _ in upstream.chunks():
                    pass
            if status >= 400:
                outcome = "error"
        except errors.OcpiError:
            outcome = "error"
        self.rt.metrics.pushes[outcome].inc()
        line = logs.event(
            log,
            "clientinfo push",
            {
                "event": "clientinfo_push",
                "kind": "clientinfo_push",
                "platform": platform.id,
                "to_platform": platform.id,
                "about": info.key,
                "module": "hubclientinfo",
                "method": "PUT",
                "status": status,
                "client_status": info.status.value,
                "outcome": outcome,
                "request_id_out": request_id.decode(),
            },
        )
        if self.rt.tracker is not None:
            self.rt.tracker.record(line)
