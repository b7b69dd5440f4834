"""The ``ocpi-hub`` command: ``serve``, ``registry`` (with the hub-initiated ``registry connect`` and the
party-URL-checked ``registry endpoint``) and ``trace``.

Owns: turning flags into Settings (flags > env > file > defaults) with click types and choices taken from the
Settings fields; ``serve --check``; checks of the files and directories settings name, before anything starts;
exit codes and one-line errors; bare ``ocpi-hub`` help; and the text of config/default.toml
(``default_config_text``).
Must not: contain hub or registry logic, or import the server stack at module level: ``registry`` commands must
start fast, so server, handshake and HTTP modules are imported by the commands that use them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, NoReturn

import click

from config.settings import (
    FIELDS,
    SECRET_SETTINGS,
    ConfigError,
    Settings,
    choices,
    effective,
    load_settings,
)
from registry.cli import (
    REGISTRY_SETTINGS,
    URL_SETTINGS,
    CliContext,
    cli_context,
    describe,
    echo_json,
    fail,
    global_options,
    global_values,
    json_option,
    network_option,
    parse_party,
    parse_roles,
    registry,
    run_with_store,
    trace,
)
from registry.codec import EndpointRecord, PlatformRecord
from registry.store import PartyStore, RegistryError
from routing.model import InterfaceRole, ModuleID


@click.group(context_settings={"max_content_width": 120})
@click.version_option(package_name="ocpi-hub")
@global_options
def cli() -> None:
    """ocpi-hub: an OCPI 2.2.1 roaming hub.

    Global options (--redis-url, --data-dir, --public-url, --config) are accepted here, after `registry`, or after
    the command itself.
    """


def main() -> None:
    """Console entry point: a usage error is one line on stderr and exit status 2 (docs/operator-guide.md)."""
    try:
        cli.main(standalone_mode=False)
    except _NO_ARGS_HELP as exc:
        # A bare `ocpi-hub` or `ocpi-hub registry` asks for help: the normal multi-line text, not an error line.
        ctx = getattr(exc, "ctx", None)
        click.echo(ctx.get_help() if isinstance(ctx, click.Context) else cli.get_help(click.Context(cli)))
        sys.exit(0)
    except click.UsageError as exc:
        fail_usage(exc.format_message())
    except click.ClickException as exc:
        fail(exc.format_message())
    except click.Abort:
        fail("aborted; nothing changed")


#: click ≥ 8.2 raises this for a bare group (older ones print the help themselves and exit 0).
_NO_ARGS_HELP: Final[tuple[type[Exception], ...]] = tuple(
    kind for kind in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if isinstance(kind, type)
)


def fail_usage(message: str) -> NoReturn:
    click.echo(f"ocpi-hub: {' '.join(message.split())} (see --help)", err=True)
    sys.exit(2)


DEFAULTS: Final = Settings()
_TYPES: Final = typing.get_type_hints(Settings)


def flag_name(name: str) -> str:
    """The flag of a setting: ``--max-body-size``; a list setting is a repeatable singular flag
    (``allow_party_networks`` → ``--allow-party-network``)."""
    base = name[:-1] if typing.get_origin(_TYPES[name]) is tuple and name.endswith("s") else name
    return "--" + base.replace("_", "-")


def _click_type(name: str) -> tuple[click.ParamType[Any], str | None]:
    hint = _TYPES[name]
    allowed = choices(name)
    if allowed:
        return click.Choice(allowed, case_sensitive=False), None
    if hint is int:
        return click.INT, None
    if hint is float:
        return click.FLOAT, None
    if typing.get_origin(hint) is tuple:
        return click.STRING, "CIDR" if name == "allow_party_networks" else "VALUE"
    if name == "forward_timeouts":
        return click.STRING, "MODULE=SECONDS,..."
    return click.STRING, None


def _shown_default(name: str) -> str:
    default = getattr(DEFAULTS, name)
    if isinstance(default, Mapping):
        return ",".join(f"{k}={v:g}" for k, v in default.items()) or "none"
    if isinstance(default, tuple):
        return ",".join(default) or "none"
    return str(default) if default != "" else "none"


def _serve_options(func: Callable[..., Any]) -> Callable[..., Any]:
    # Every setting is a flag (docs/operator-guide.md: a flag, an OCPI_HUB_* variable and a config-file key each).
    for name in reversed(list(FIELDS)):
        kind, metavar = _click_type(name)
        repeatable = typing.get_origin(_TYPES[name]) is tuple
        env = f"OCPI_HUB_{name.upper()}" + (", separated by commas" if repeatable else "")
        help_text = FIELDS[name].metadata.get("help", "")
        where = f"[env {env}; default: {_shown_default(name)}]"
        func = click.option(
            flag_name(name),
            name,
            type=kind,
            metavar=metavar,
            multiple=repeatable,
            default=None,
            help=f"{help_text} {where}",
        )(func)
    return click.option("--config", "config_file", metavar="FILE", default=None, help="TOML file with the same keys.")(
        func
    )


def _given(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Flags the operator gave (a repeatable one not given arrives as an empty tuple)."""
    return {k: v for k, v in flags.items() if v is not None and v != ()}


def load_for_serve(flags: Mapping[str, Any], config_file: str | None) -> Settings:
    """Every setting (flags, global options given before ``serve``, env, file), checked, with the files and
    directories they name; one line and exit 1 on anything wrong."""
    globals_given = global_values()
    config_file = config_file or globals_given.pop("config_file", None)
    overrides = {**globals_given, **_given(flags)}
    try:
        settings = load_settings(os.environ, overrides, config_file)
    except ConfigError as exc:
        fail(str(exc))
    problems = path_problems(settings)
    if problems:
        fail("invalid settings: " + "; ".join(problems))
    return settings


def path_problems(settings: Settings) -> list[str]:
    """What is wrong with the files, directories and URLs settings name (checked without changing anything)."""
    from registry.connection import RegistryUrlError, check_url

    problems = []
    for name in ("certfile", "keyfile"):
        path = getattr(settings, name)
        if path and not (Path(path).is_file() and os.access(path, os.R_OK)):
            problems.append(f"{name}: {path} is not a readable file")
    for name in ("redis_url", "store_redis_url"):
        url = getattr(settings, name)
        if url:
            try:
                check_url(url)
            except RegistryUrlError as exc:
                problems.append(str(exc).replace("redis_url", name, 1))
    if not settings.redis_url:
        problem = directory_problem(settings.data_dir)
        if problem:
            problems.append(f"data_dir: {problem}")
    return problems


def directory_problem(path_text: str) -> str | None:
    """Why a directory cannot be used (or made) for data, or None."""
    path = Path(path_text).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            return f"{path} is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is not a directory"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"{path} cannot be created: {parent} is not writable"


@cli.command()
@_serve_options
@click.option(
    "--check", is_flag=True, help="Validate the settings, print the effective configuration (secrets masked), exit."
)
def serve(config_file: str | None, check: bool, **flags: Any) -> None:
    """Run the hub (with no Redis URL, on an embedded Redis under --data-dir)."""
    settings = load_for_serve(flags, config_file)
    if check:
        click.echo(effective_toml(settings))
        click.echo("ocpi-hub: settings are valid", err=True)
        return
    from hub import server
    from registry.embedded import EmbeddedRedisError

    try:
        server.run(settings)
    except EmbeddedRedisError as exc:
        fail(str(exc))


# -- registry commands that need the hub's HTTP side --------------------------------------------------------------

_CONNECT_SETTINGS: Final = URL_SETTINGS | {
    "country_code",
    "party_id",
    "name",
    "connect_timeout",
    "forward_timeout",
    "allow_party_networks",
}


@registry.command("connect")
@click.option("--versions-url", required=True, metavar="URL", help="The party's OCPI versions URL.")
@click.option("--token-a", required=True, help="The token A the party gave the operator.")
@click.option("--party", "parties", multiple=True, required=True, metavar="CC:PID:ROLE", help="Repeatable.")
@click.option("--name", default="", help="A name for the platform.")
@json_option
@network_option
@global_options
def connect_command(versions_url: str, token_a: str, parties: tuple[str, ...], name: str, as_json: bool) -> None:
    """Hub-initiated registration with a platform that gave the operator its token A."""
    roles = tuple(parse_roles(parties))
    if not versions_url.startswith(("http://", "https://")):
        fail("--versions-url must be an http(s) URL")
    obj = cli_context(_CONNECT_SETTINGS)
    from hub.credentials import connect
    from hub.http.client import Outbound
    from hub.http.policy import NetworkPolicy
    from hub.identity import HubIdentity
    from routing.errors import OcpiError
    from routing.model import PartyKey

    settings = obj.settings

    async def action(store: PartyStore) -> PlatformRecord:
        base = settings.base_url if obj.public_url_given else (await store.public_url() or settings.base_url)
        identity = HubIdentity(PartyKey(settings.country_code, settings.party_id), settings.name, base)
        policy = NetworkPolicy.from_cidrs(settings.allow_party_networks)
        outbound = Outbound(max_connections=8, per_host=4, connect_timeout=settings.connect_timeout, policy=policy)
        # The hub's own public URL is the operator's, not a party's: any address may serve it.
        own = Outbound(
            max_connections=4, per_host=4, connect_timeout=settings.connect_timeout, policy=NetworkPolicy.anywhere()
        )
        try:
            return await connect(
                store,
                outbound,
                identity,
                versions_url=versions_url,
                token_a=token_a,
                roles=roles,
                name=name,
                timeout=settings.forward_timeout,
                own=own,
                actor=obj.actor,
            )
        except OcpiError as exc:
            raise RegistryError(f"connect failed ({exc.ocpi_status}): {exc.message}") from None
        finally:
            await outbound.close()
            await own.close()

    record = run_with_store(obj, action)
    info = describe(record)
    if as_json:
        echo_json(info)
    else:
        click.echo(f"{info['id']} {info['status']} ({', '.join(info['parties'])})")


@registry.command("endpoint")
@click.argument("party")
@click.option(
    "--module", required=True, type=click.Choice([m.value for m in ModuleID], case_sensitive=False), help="Module."
)
@click.option(
    "--role", required=True, type=click.Choice([r.value for r in InterfaceRole], case_sensitive=False), help="Role."
)
@click.option("--url", metavar="URL", help="The endpoint's URL (checked like any party URL).")
@click.option("--remove", is_flag=True, help="Remove the override of this module and role.")
@json_option
@network_option
@global_options
def endpoint_command(party: str, module: str, role: str, url: str | None, remove: bool, as_json: bool) -> None:
    """Operator override of one endpoint a party failed to publish (kept across its credentials PUT)."""
    key = parse_party(party)
    if remove == (url is not None):
        fail("endpoint takes --url URL, or --remove")
    obj = cli_context(REGISTRY_SETTINGS | {"allow_party_networks"})
    module, role = module.lower(), role.upper()
    checked = None if url is None else check_party_url(url, obj)

    async def action(store: PartyStore) -> PlatformRecord:
        record = await store.find(key)
        if checked is None:
            return await store.remove_endpoint_override(record.id, module, role, actor=obj.actor)
        return await store.set_endpoint_override(record.id, EndpointRecord(module, role, checked), actor=obj.actor)

    record = run_with_store(obj, action)
    if as_json:
        echo_json(describe(record))
    elif checked is None:
        click.echo(f"{record.id} {module} {role}: override removed")
    else:
        click.echo(f"{record.id} {module} {role} → {checked}")


def check_party_url(url: str, obj: CliContext) -> str:
    """The URL as the hub will call it, if the party URL policy allows it (syntax, then the addresses its host
    resolves to); one line and exit 1 otherwise."""
    from hub.http.policy import NetworkPolicy, PartyAddressError, PartyUrlError, check_literal, parse_party_url, resolve

    try:
        policy = NetworkPolicy.from_cidrs(obj.settings.allow_party_networks)
        parsed = parse_party_url(url)
        check_literal(parsed, policy)
        asyncio.run(resolve(parsed, policy))
    except PartyAddressError as exc:
        fail(
            f"--url: {exc} ({exc.detail}); allow a network with --allow-party-network or OCPI_HUB_ALLOW_PARTY_NETWORKS"
        )
    except (PartyUrlError, ValueError) as exc:
        fail(f"--url: {exc}")
    return parsed.text


cli.add_command(registry)
cli.add_command(trace)


# -- settings as TOML: serve --check and config/default.toml -----------------------------------------------------


def toml_value(value: object) -> str:
    """A setting's value in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def effective_toml(settings: Settings) -> str:
    """Every setting as a TOML line, secrets masked (usable as a config file once the masks are replaced)."""
    masked = effective(settings)
    lines = []
    for name in FIELDS:
        value: object = getattr(settings, name)
        if name in SECRET_SETTINGS and value:
            value = masked[name]
        lines.append(f"{name} = {toml_value(value)}")
    return "\n".join(lines)


DEFAULT_CONFIG_HEADER: Final = """\
# ocpi-hub settings: every key, with its default and what it means. Flags beat OCPI_HUB_* env beats this file
# beats defaults. Copy what you change; an unknown key is refused at start-up (with a "did you mean").
# Generated from config/settings.py by hub.cli.default_config_text(); tests/unit/config/test_default_toml.py
# fails when the two disagree.
"""


def default_config_text() -> str:
    """The text of config/default.toml: every setting, commented out, with its help text and default."""
    parts = [DEFAULT_CONFIG_HEADER]
    for name in FIELDS:
        help_text = FIELDS[name].metadata.get("help", "")
        comment = textwrap.wrap(help_text, width=116) or [""]
        parts.append(
            "\n".join(f"# {line}" for line in comment) + f"\n# {name} = {toml_value(getattr(DEFAULTS, name))}\n"
        )
    return "\n".join(parts)
