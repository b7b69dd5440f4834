"""The ``ocpi-hub`` command: ``serve`` and ``registry`` (with the hub-initiated ``registry connect``).

Owns: turning flags into Settings (flags > env > file > defaults), exit codes and one-line errors.
Must not: contain hub or registry logic.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, NoReturn

import click
import orjson

from config.settings import FIELDS, ConfigError, Settings, load_settings
from hub import server
from hub.credentials import connect
from hub.http.client import Outbound
from hub.http.policy import NetworkPolicy
from hub.identity import HubIdentity
from registry.cli import CliContext, describe, fail, parse_roles, registry
from registry.connection import open_redis
from registry.keys import RegistryKeys
from registry.store import REGISTRY_ERRORS, PartyStore, RegistryError
from routing.errors import OcpiError
from routing.model import PartyKey


@click.group()
@click.version_option(package_name="ocpi-hub")
def cli() -> None:
    """ocpi-hub: an OCPI 2.2.1 roaming hub."""


def main() -> None:
    """Console entry point: a usage error is one line on stderr and exit status 2 (operator-interface.md)."""
    try:
        cli.main(standalone_mode=False)
    except click.UsageError as exc:
        fail_usage(exc.format_message())
    except click.ClickException as exc:
        fail(exc.format_message())
    except click.Abort:
        sys.exit(1)


def fail_usage(message: str) -> NoReturn:
    click.echo(f"ocpi-hub: {' '.join(message.split())} (see --help)", err=True)
    sys.exit(2)


DEFAULTS = Settings()


def _serve_options(func: Any) -> Any:
    for name in reversed(list(FIELDS)):
        if name == "key_prefix":
            continue
        help_text = FIELDS[name].metadata.get("help", "")
        flag = "--" + name.replace("_", "-")
        default = getattr(DEFAULTS, name)
        shown = ",".join(f"{k}={v:g}" for k, v in default.items()) if isinstance(default, dict) else default
        where = f"[env OCPI_HUB_{name.upper()}; default: {shown if shown != '' else 'none'}]"
        func = click.option(flag, name, default=None, help=f"{help_text} {where}")(func)
    return click.option("--config", "config_file", default=None, help="TOML file with the same keys.")(func)


@cli.command()
@_serve_options
def serve(config_file: str | None, **flags: Any) -> None:
    """Run the hub (with no Redis URL, on an embedded Redis under --data-dir)."""
    try:
        settings = load_settings(os.environ, flags, config_file)
    except ConfigError as exc:
        fail(str(exc))
    server.run(settings)


@registry.command("connect")
@click.option("--versions-url", required=True, help="The party's OCPI versions URL.")
@click.option("--token-a", required=True, help="The token A the party gave the operator.")
@click.option("--party", "parties", multiple=True, required=True, help="CC:PID:ROLE; repeat for more.")
@click.option("--name", default="", help="A name for the platform.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def connect_command(
    obj: CliContext, versions_url: str, token_a: str, parties: tuple[str, ...], name: str, as_json: bool
) -> None:
    """Hub-initiated registration with a platform that gave the operator its token A."""
    roles = tuple(parse_roles(parties))
    if not versions_url.startswith(("http://", "https://")):
        fail("--versions-url must be an http(s) URL")
    settings = obj.settings

    async def go() -> dict[str, Any]:
        async with open_redis(settings.redis_url, settings.data_dir) as redis:
            store = PartyStore(redis, RegistryKeys(settings.key_prefix))
            await store.ping()
            base = settings.base_url if obj.public_url_given else (await store.public_url() or settings.base_url)
            identity = HubIdentity(PartyKey(settings.country_code, settings.party_id), settings.name, base)
            policy = NetworkPolicy.from_cidrs(settings.allow_party_networks)
            outbound = Outbound(max_connections=8, per_host=4, connect_timeout=settings.connect_timeout, policy=policy)
            # The hub's own public URL is the operator's, not a party's: any address may serve it.
            own = Outbound(
                max_connections=4, per_host=4, connect_timeout=settings.connect_timeout, policy=NetworkPolicy.anywhere()
            )
            try:
                record = await connect(
                    store,
                    outbound,
                    identity,
                    versions_url=versions_url,
                    token_a=token_a,
                    roles=roles,
                    name=name,
                    timeout=settings.forward_timeout,
                    own=own,
                )
            finally:
                await outbound.close()
                await own.close()
            return describe(record)

    try:
        info = asyncio.run(go())
    except OcpiError as exc:
        fail(f"connect failed ({exc.ocpi_status}): {exc.message}")
    except RegistryError as exc:
        fail(str(exc))
    except REGISTRY_ERRORS as exc:
        fail(f"registry unreachable: {exc}")
    if as_json:
        click.echo(orjson.dumps(info).decode())
    else:
        click.echo(f"{info['id']} {info['status']} ({', '.join(info['parties'])})")


cli.add_command(registry)
