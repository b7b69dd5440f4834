"""``ocpi-hub registry``: the hub operator's commands on the registry (operator-interface.md).

Owns: argument parsing, one-line errors with a non-zero exit, tables and ``--json``. Every change goes through
registry/store.py, so a bad input changes nothing and a good one reaches every running hub within a second.
Must not: speak OCPI HTTP (``connect`` is added by hub/cli.py, which owns the handshake).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
import orjson

from config.settings import ConfigError, Settings, load_settings
from registry.codec import PlatformRecord
from registry.connection import open_redis
from registry.keys import RegistryKeys
from registry.store import REGISTRY_ERRORS, PartyStore, RegistryError
from routing.model import PartyKey, PartyRole
from routing.paths import VERSIONS_PATH

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CliContext:
    settings: Settings
    public_url_given: bool


def fail(message: str) -> NoReturn:
    click.echo(f"ocpi-hub: {message}", err=True)
    sys.exit(1)


def run_with_store(ctx: CliContext, action: Callable[[PartyStore], Awaitable[T]]) -> T:
    """Run ``action`` against the configured registry; any failure is one line on stderr and exit 1."""

    async def go() -> T:
        async with open_redis(ctx.settings.redis_url, ctx.settings.data_dir) as redis:
            store = PartyStore(redis, RegistryKeys(ctx.settings.key_prefix))
            await store.ping()
            return await action(store)

    try:
        return asyncio.run(go())
    except RegistryError as exc:
        fail(str(exc))
    except REGISTRY_ERRORS as exc:
        fail(f"registry unreachable: {exc}")


def parse_roles(values: tuple[str, ...]) -> list[PartyRole]:
    try:
        return [PartyRole.parse(v) for v in values]
    except ValueError as exc:
        fail(str(exc))


def parse_party(value: str) -> PartyKey:
    try:
        return PartyKey.parse(value)
    except ValueError as exc:
        fail(str(exc))


def describe(record: PlatformRecord, seen: float | None = None) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "parties": [str(r) for r in record.roles],
        "status": record.status.value,
        "registered": record.registered,
        "status_since": record.status_since,
        "versions_url": record.versions_url or None,
        "version": record.version or None,
        "endpoints": [{"identifier": e.identifier, "role": e.role, "url": e.url} for e in record.endpoints],
        "token_form": record.token_form.value,
        "last_seen": seen,
    }


@click.group("registry")
@click.option("--redis-url", envvar="OCPI_HUB_REDIS_URL", help="Registry URL (default: the embedded Redis).")
@click.option("--data-dir", envvar="OCPI_HUB_DATA_DIR", help="Data directory of the embedded Redis.")
@click.option("--public-url", envvar="OCPI_HUB_PUBLIC_URL", help="The hub's public base URL.")
@click.option("--config", "config_file", envvar="OCPI_HUB_CONFIG", help="TOML settings file.")
@click.pass_context
def registry(
    ctx: click.Context, redis_url: str | None, data_dir: str | None, public_url: str | None, config_file: str | None
) -> None:
    """Declare, inspect and manage the platforms that connect to the hub."""
    try:
        settings = load_settings(
            os.environ, {"redis_url": redis_url, "data_dir": data_dir, "public_url": public_url}, config_file
        )
    except ConfigError as exc:
        fail(str(exc))
    ctx.obj = CliContext(settings, public_url_given=bool(public_url))


@registry.command("add")
@click.option("--party", "parties", multiple=True, required=True, help="CC:PID:ROLE; repeat for more.")
@click.option("--name", default="", help="A name for the platform.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def add(obj: CliContext, parties: tuple[str, ...], name: str, as_json: bool) -> None:
    """Declare a platform; print its credentials token A and the hub's versions URL."""
    roles = parse_roles(parties)

    async def action(store: PartyStore) -> tuple[PlatformRecord, str, str]:
        record, token_a = await store.declare(roles, name)
        base = obj.settings.base_url if obj.public_url_given else (await store.public_url() or obj.settings.base_url)
        return record, token_a, base.rstrip("/") + VERSIONS_PATH

    record, token_a, versions_url = run_with_store(obj, action)
    if as_json:
        click.echo(orjson.dumps({"token_a": token_a, "versions_url": versions_url, "id": record.id}).decode())
    else:
        click.echo(f"platform   {record.id} ({', '.join(map(str, record.roles))})")
        click.echo(f"token A    {token_a}")
        click.echo(f"versions   {versions_url}")


@registry.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj: CliContext, as_json: bool) -> None:
    """Every platform and party with its ConnectionStatus."""

    async def action(store: PartyStore) -> tuple[list[PlatformRecord], dict[str, float]]:
        return await store.platforms(), await store.last_seen()

    records, seen = run_with_store(obj, action)
    if as_json:
        click.echo(orjson.dumps([describe(r, seen.get(r.id)) for r in records]).decode())
        return
    rows = [("PARTY", "ROLE", "STATUS", "PLATFORM", "NAME")]
    rows += [(str(p.party), p.role.value, r.status.value, r.id, r.name) for r in records for p in r.roles]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@registry.command("show")
@click.argument("party")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: CliContext, party: str, as_json: bool) -> None:
    """One platform: parties, status, endpoints, version, last seen."""
    key = parse_party(party)

    async def action(store: PartyStore) -> tuple[PlatformRecord, float | None]:
        record = await store.find(key)
        return record, (await store.last_seen()).get(record.id)

    record, seen = run_with_store(obj, action)
    info = describe(record, seen)
    if as_json:
        click.echo(orjson.dumps(info).decode())
        return
    for field in ("id", "name", "status", "registered", "status_since", "versions_url", "version", "token_form"):
        click.echo(f"{field:13} {info[field]}")
    click.echo(f"{'parties':13} {', '.join(info['parties'])}")
    click.echo(f"{'last_seen':13} {seen if seen is not None else '-'}")
    for endpoint in record.endpoints:
        click.echo(f"  {endpoint.identifier:17} {endpoint.role:9} {endpoint.url}")


def _status_command(name: str, doc: str, method: str) -> None:
    @registry.command(name, help=doc)
    @click.argument("party")
    @click.pass_obj
    def command(obj: CliContext, party: str) -> None:
        key = parse_party(party)

        async def action(store: PartyStore) -> PlatformRecord:
            record = await store.find(key)
            change: Callable[[str], Awaitable[PlatformRecord]] = getattr(store, method)
            return await change(record.id)

        record = run_with_store(obj, action)
        click.echo(f"{record.id} {record.status.value}" if method != "remove" else f"{record.id} removed")


_status_command("suspend", "Status SUSPENDED: the hub refuses traffic to and from the platform.", "suspend")
_status_command("resume", "Undo suspend.", "resume")
_status_command("remove", "Unregister the platform; its tokens stop working at once.", "remove")
