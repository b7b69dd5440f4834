"""The hub as other platforms see it: its OCPI identity, its credentials and its version endpoints (versions §6).

Owns: ``HubIdentity`` — the party the hub is (role HUB), the URLs it publishes for every (module, interface
role), and the Credentials object it hands out. Every module that speaks for the hub imports it from here.
Must not: do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routing.model import FUNCTIONAL_MODULES, InterfaceRole, ModuleID, PartyKey, Role
from routing.paths import CREDENTIALS_PATH, DETAILS_PATH, HUBCLIENTINFO_PATH, VERSION, VERSIONS_PATH, module_url_path


@dataclass(frozen=True, slots=True)
class HubIdentity:
    """The hub as other platforms see it."""

    party: PartyKey
    name: str
    base_url: str

    @property
    def versions_url(self) -> str:
        return self.base_url + VERSIONS_PATH

    def credentials(self, token: str) -> dict[str, Any]:
        """The hub's Credentials object: it reports only itself, as role HUB (credentials §7.3.1)."""
        return {
            "token": token,
            "url": self.versions_url,
            "roles": [
                {
                    "role": Role.HUB.value,
                    "party_id": self.party.party_id,
                    "country_code": self.party.country_code,
                    "business_details": {"name": self.name},
                }
            ],
        }

    def versions(self) -> list[dict[str, str]]:
        return [{"version": VERSION, "url": self.base_url + DETAILS_PATH}]

    def details(self) -> dict[str, Any]:
        """Version details: each (module, interface role) at its own URL, so no path is ambiguous (digest §5.4)."""
        endpoints = [
            # The role of the credentials endpoint is irrelevant; publish SENDER (versions §6.2.2 NOTE).
            {"identifier": ModuleID.CREDENTIALS.value, "role": "SENDER", "url": self.base_url + CREDENTIALS_PATH + "/"},
            {
                "identifier": ModuleID.HUBCLIENTINFO.value,
                "role": "SENDER",
                "url": self.base_url + HUBCLIENTINFO_PATH + "/",
            },
        ]
        for module in FUNCTIONAL_MODULES:
            for role in (InterfaceRole.SENDER, InterfaceRole.RECEIVER):
                endpoints.append(
                    {
                        "identifier": module.value,
                        "role": role.value,
                        "url": self.base_url + module_url_path(module, role),
                    }
                )
        return {"version": VERSION, "endpoints": endpoints}
