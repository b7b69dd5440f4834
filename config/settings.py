"""The hub's settings: one frozen ``Settings`` built once at start-up.

Owns: every setting's name, default, type and help text; the precedence flags > env > TOML file > defaults;
validation that reports every bad key in one ``ConfigError``. A setting's converter follows from its declared
type (int, float, str, a Literal of choices, a tuple of strings, the per-module timeout table), its bounds from
its field metadata, so adding a setting is one line here.
Must not: be read per request (build once, pass the object), or import anything outside the standard library.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

ServerName = Literal["uvicorn", "hypercorn"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]

ENV_PREFIX: Final = "OCPI_HUB_"

#: OCPI modules whose forwarding timeout may be overridden (OCPI 2.2.1 §6.2.4 ModuleID, functional ones).
TIMEOUT_MODULES: Final = ("cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens")

_CC = re.compile(r"[A-Za-z]{2}")
_PID = re.compile(r"[A-Za-z0-9]{3}")
#: Forwarding timeouts that apply unless a module's is set: real-time authorization answers fast (mod_tokens §12.1.3).
DEFAULT_FORWARD_TIMEOUTS: Final = {"tokens": 5.0}
#: Settings that hold secrets: masked wherever the effective configuration is shown.
SECRET_SETTINGS: Final = frozenset({"admin_token", "redis_url", "store_redis_url"})


class ConfigError(Exception):
    """Invalid settings; ``problems`` names every bad key at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings: " + "; ".join(problems))
        self.problems = problems


def _setting(default: Any, help: str, *, minimum: float | None = None, positive: bool = False) -> Any:
    """A field with its help text and bounds (``positive``: > 0; ``minimum``: ≥ that)."""
    metadata = {"help": help, "minimum": minimum, "positive": positive}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the hub and the registry CLI are configured with."""

    host: str = _setting("127.0.0.1", "Listen address.")
    port: int = _setting(8080, "Listen port.", minimum=0)
    listen_fd: int = _setting(
        -1,
        "Serve on this inherited, already-bound socket instead of host:port (systemd socket activation); -1: off.",
        minimum=-1,
    )
    public_url: str = _setting(
        "", "Base URL parties reach the hub at (default http://{host}:{port}); used in every URL it gives."
    )
    admin_host: str = _setting("", "Listen address of the admin listener (/metrics, operator page; default: host).")
    admin_port: int = _setting(
        8081,
        "Port of the admin listener (/metrics, operator page); 0: a free port, named in the 'hub ready' line.",
        minimum=0,
    )
    admin_token: str = _setting("", "Bearer token the admin listener requires (default: none, open).")
    redis_url: str = _setting(
        "", "redis://, rediss://, unix:// or redis+sentinel:// URL of the registry; empty: embedded Redis."
    )
    store_redis_url: str = _setting(
        "", "Redis URL of the store of broadcast objects (GET All via Hub); empty: the registry's Redis."
    )
    data_dir: str = _setting("./.ocpi-hub", "Where the embedded Redis keeps its data.")
    country_code: str = _setting("ZZ", "The hub's own OCPI country code (role HUB).")
    party_id: str = _setting("HUB", "The hub's own OCPI party id (role HUB).")
    name: str = _setting("ocpi-hub", "Business name in the hub's credentials.")
    workers: int = _setting(1, "Server worker processes.", positive=True)
    server: ServerName = _setting("uvicorn", "HTTP server: uvicorn, or hypercorn (HTTP/2, TLS).")
    log_level: LogLevel = _setting("info", "Log level.")
    certfile: str = _setting("", "TLS certificate file (PEM); enables HTTPS.")
    keyfile: str = _setting("", "TLS private key file (PEM).")
    forward_timeout: float = _setting(10.0, "Seconds to wait for a receiver before answering 4002.", positive=True)
    forward_timeouts: Mapping[str, float] = _setting(
        DEFAULT_FORWARD_TIMEOUTS,
        "Per-module overrides of forward_timeout, e.g. tokens=3,commands=8 (real-time authorization).",
    )
    connect_timeout: float = _setting(3.0, "Seconds to open a connection to a receiver.", positive=True)
    max_body_size: int = _setting(10_485_760, "Largest request body accepted, in bytes.", positive=True)
    max_buffered_answer: int = _setting(
        1_048_576,
        "Answers up to this many bytes are read whole before the requester gets them (a receiver failing "
        "mid-answer then yields 4002/4003, not a cut-off 200); larger ones stream.",
        minimum=0,
    )
    max_connections: int = _setting(512, "Outbound connections in all, per process.", positive=True)
    max_connections_per_receiver: int = _setting(
        64, "Outbound connections to one receiver host, per process.", positive=True
    )
    max_pending_per_receiver: int = _setting(
        512,
        "Requests to one receiver host in flight or queued, per process; past it: 4003 at once (circuit breaker).",
        positive=True,
    )
    max_pending_per_sender: int = _setting(
        256,
        "Of those, the most one sending platform may hold (a flooding sender cannot crowd others out).",
        positive=True,
    )
    max_client_connections: int = _setting(
        4096,
        "Client connections per process; past it a new connection gets HTTP 503 and is closed (uvicorn only).",
        positive=True,
    )
    max_request_headers: int = _setting(
        100, "Most headers a request may have (else HTTP 431; uvicorn only).", positive=True
    )
    max_header_line: int = _setting(
        8192, "Longest request line or header line, in bytes (else HTTP 431; uvicorn only).", positive=True
    )
    max_head_size: int = _setting(32_768, "Largest request head, in bytes (else HTTP 431).", positive=True)
    head_timeout: float = _setting(
        10.0, "Seconds a request head may take to arrive (else HTTP 408, connection closed).", positive=True
    )
    keepalive_timeout: float = _setting(5.0, "Seconds an idle keep-alive client connection stays open.", positive=True)
    liveness_interval: float = _setting(
        300.0, "Seconds of silence after which the hub GETs a party's versions endpoint.", positive=True
    )
    drain_time: float = _setting(10.0, "Seconds a shutdown waits for in-flight requests and broadcasts.", minimum=0)
    callback_ttl: int = _setting(
        172_800, "Seconds a rewritten response_url or CDR Location stays usable.", positive=True
    )
    link_ttl: int = _setting(
        900, "Seconds a relayed pagination Link stays usable (pages are read at once).", positive=True
    )
    snapshot_poll_interval: float = _setting(
        0.25, "Seconds between registry version checks (pub/sub is the fast path).", positive=True
    )
    broadcast_concurrency: int = _setting(64, "Deliveries of one broadcast in flight at once.", positive=True)
    get_all_limit: int = _setting(
        500, "Most objects a page of GET All via Hub holds (X-Limit; at most 1000).", positive=True
    )
    lease_ttl: float = _setting(10.0, "Seconds the scheduler lease lives without renewal.", positive=True)
    trace_max_records: int = _setting(
        250_000,
        "Message-tracking records kept in Redis at most (about 580 bytes each); 0 turns message tracking off.",
        minimum=0,
    )
    trace_max_age: float = _setting(
        7 * 86_400.0, "Seconds message-tracking records are kept (ocpi-hub trace, registry traffic).", positive=True
    )
    audit_retention: float = _setting(
        365 * 86_400.0, "Seconds registry audit events are kept (ocpi-hub registry history).", positive=True
    )
    allow_party_networks: tuple[str, ...] = _setting(
        (),
        "Networks (CIDR, repeatable) party URLs may resolve to besides public addresses; loopback, private, "
        "link-local and other special addresses are refused otherwise.",
    )
    key_prefix: str = _setting("ocpihub:", "Prefix of every Redis key the hub writes.")

    @property
    def base_url(self) -> str:
        """The public base URL, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def timeout_for(self, module: str) -> float:
        """The forwarding timeout for one module."""
        return self.forward_timeouts.get(module, self.forward_timeout)


FIELDS: Final = {f.name: f for f in dataclasses.fields(Settings)}
_TYPES: Final = typing.get_type_hints(Settings)


def _parse_timeouts(raw: object) -> dict[str, float]:
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, str):
        items = []
        for part in filter(None, (p.strip() for p in raw.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"expected module=seconds, got {part!r}")
            items.append((key.strip(), value.strip()))
    else:
        raise ValueError("expected a table or module=seconds,...")
    result: dict[str, float] = {}
    for key, value in items:
        if key not in TIMEOUT_MODULES:
            raise ValueError(f"unknown module {key!r}")
        seconds = _to_float(value)
        if seconds <= 0:
            raise ValueError(f"timeout for {key} must be positive")
        result[str(key)] = seconds
    return result


def _to_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        return int(raw.strip())
    raise ValueError("expected an integer")


def _to_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        value = float(raw.strip())
    else:
        raise ValueError("expected a number")
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _to_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _to_strings(raw: object) -> tuple[str, ...]:
    """A TOML array of strings, or a comma-separated string (env, flags)."""
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(raw, list | tuple) and all(isinstance(v, str) for v in raw):
        return tuple(v.strip() for v in raw if v.strip())
    raise ValueError("expected a list of strings")


def _choice(allowed: tuple[str, ...]) -> Callable[[object], str]:
    def convert(raw: object) -> str:
        value = _to_str(raw).strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return convert


def choices(name: str) -> tuple[str, ...]:
    """The allowed values of a setting with a fixed set of choices; () for any other."""
    hint = _TYPES[name]
    return tuple(get_args(hint)) if get_origin(hint) is Literal else ()


def _converter(name: str) -> Callable[[object], Any]:
    hint = _TYPES[name]
    if name == "forward_timeouts":
        return _parse_timeouts
    if get_origin(hint) is Literal:
        return _choice(choices(name))
    if get_origin(hint) is tuple:
        return _to_strings
    return {int: _to_int, float: _to_float}.get(hint, _to_str)


_CONVERTERS: Final = {name: _converter(name) for name in FIELDS}


def _check(values: dict[str, Any], problems: list[str]) -> None:
    for name, value in values.items():
        meta = FIELDS[name].metadata
        if not isinstance(value, int | float):
            continue
        if meta.get("positive") and value <= 0:
            problems.append(f"{name}: must be positive")
        elif meta.get("minimum") is not None and value < meta["minimum"]:
            problems.append(f"{name}: must not be below {meta['minimum']:g}")
    limit = values.get("get_all_limit")
    if isinstance(limit, int) and limit > 1000:
        problems.append("get_all_limit: must not be above 1000")
    for name in ("port", "admin_port"):
        port = values.get(name)
        if isinstance(port, int) and port > 65535:
            problems.append(f"{name}: must be between 0 and 65535")
    cc, pid = values.get("country_code"), values.get("party_id")
    if isinstance(cc, str) and not _CC.fullmatch(cc):
        problems.append("country_code: must be two letters (OCPI CiString(2))")
    if isinstance(pid, str) and not _PID.fullmatch(pid):
        problems.append("party_id: must be three letters or digits (OCPI CiString(3))")
    for name in ("redis_url", "store_redis_url"):
        url = values.get(name)
        schemes = ("redis://", "rediss://", "unix://", "redis+sentinel://")
        if isinstance(url, str) and url and not url.startswith(schemes):
            problems.append(f"{name}: must start with redis://, rediss://, unix:// or redis+sentinel://")
    public = values.get("public_url")
    if isinstance(public, str) and public and not public.startswith(("http://", "https://")):
        problems.append("public_url: must start with http:// or https://")
    if bool(values.get("certfile")) != bool(values.get("keyfile")):
        problems.append("certfile/keyfile: give both or neither")
    for cidr in values.get("allow_party_networks", ()):
        try:
            # strict: "10.1.2.3/8" is more likely a typo than a wish to allow all of 10/8.
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            problems.append(f"allow_party_networks: {cidr!r} is not a network in CIDR form (e.g. 10.0.0.0/8)")


def read_config_file(path: str) -> dict[str, object]:
    """The TOML file's keys; raises ConfigError when it cannot be read or parsed."""
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError([f"config: cannot read {path}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: {path} is not valid TOML: {exc}"]) from None


def _unknown(key: str, where: str) -> str:
    guess = difflib.get_close_matches(key, FIELDS, n=1)
    return f"{key}: unknown key in {where}" + (f" (did you mean {guess[0]}?)" if guess else "")


def load_settings(
    environ: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
    config_file: str | None = None,
    *,
    only: frozenset[str] | None = None,
) -> Settings:
    """Build Settings from flags (``overrides``), env, the TOML file and defaults, in that order of precedence.

    ``only``: validate just these settings from env and file (a registry command must not fail on a serve-only
    variable such as OCPI_HUB_WORKERS=0); the others keep their defaults.
    """
    problems: list[str] = []
    path = config_file or environ.get(ENV_PREFIX + "CONFIG") or None
    layers: list[tuple[str, Mapping[str, object]]] = []
    if path:
        file_values = read_config_file(path)
        for key in file_values:
            if key not in FIELDS:
                problems.append(_unknown(key, path))
        layers.append(("file", {k: v for k, v in file_values.items() if k in FIELDS}))
    env_values = {name: environ[ENV_PREFIX + name.upper()] for name in FIELDS if ENV_PREFIX + name.upper() in environ}
    layers.append(("env", env_values))
    layers.append(("flag", {k: v for k, v in (overrides or {}).items() if v is not None}))

    values: dict[str, Any] = {}
    for source, layer in layers:
        for name, raw in layer.items():
            if only is not None and source != "flag" and name not in only:
                continue
            try:
                values[name] = _CONVERTERS[name](raw)
            except ValueError as exc:
                label = ENV_PREFIX + name.upper() if source == "env" else name
                problems.append(f"{label}: {exc}")
    _check(values, problems)
    if problems:
        raise ConfigError(problems)
    if "forward_timeouts" in values:
        # A module named in env or file overrides that module only; the other defaults stay.
        values["forward_timeouts"] = {**DEFAULT_FORWARD_TIMEOUTS, **values["forward_timeouts"]}
    if "country_code" in values:
        values["country_code"] = values["country_code"].upper()
    if "party_id" in values:
        values["party_id"] = values["party_id"].upper()
    return Settings(**values)


def _text(name: str, value: object) -> str:
    if name == "forward_timeouts" and isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def to_environ(settings: Settings) -> dict[str, str]:
    """The env variables that rebuild exactly these settings (hands them to server worker processes)."""
    return {ENV_PREFIX + name.upper(): _text(name, getattr(settings, name)) for name in FIELDS}


def effective(settings: Settings) -> dict[str, str]:
    """Every setting as text, secrets masked (``ocpi-hub serve --check``)."""
    shown: dict[str, str] = {}
    for name in FIELDS:
        text = _text(name, getattr(settings, name))
        if name in SECRET_SETTINGS and text:
            text = _mask_url(text) if name.endswith("url") else "********"
        shown[name] = text
    return shown


def _mask_url(url: str) -> str:
    # redis://user:password@host → redis://user:********@host
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1********@", url)
