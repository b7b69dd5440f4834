"""The hub's settings: one frozen ``Settings`` built once at start-up.

Owns: every setting's name, default, type and help text; the precedence flags > env > TOML file > defaults;
validation that reports every bad key in one ``ConfigError``.
Must not: be read per request (build once, pass the object), or import anything outside the standard library.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

ServerName = Literal["uvicorn", "hypercorn"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]

ENV_PREFIX: Final = "OCPI_HUB_"

#: OCPI modules whose forwarding timeout may be overridden (OCPI 2.2.1 §6.2.4 ModuleID, functional ones).
TIMEOUT_MODULES: Final = ("cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens")

_CC = re.compile(r"[A-Za-z]{2}")
_PID = re.compile(r"[A-Za-z0-9]{3}")
#: Forwarding timeouts that apply unless a module's is set: real-time authorization answers fast (mod_tokens §12.1.3).
DEFAULT_FORWARD_TIMEOUTS: Final = {"tokens": 5.0}


class ConfigError(Exception):
    """Invalid settings; ``problems`` names every bad key at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings: " + "; ".join(problems))
        self.problems = problems


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the hub and the registry CLI are configured with."""

    host: str = field(default="127.0.0.1", metadata=_help("Listen address."))
    port: int = field(default=8080, metadata=_help("Listen port."))
    public_url: str = field(
        default="",
        metadata=_help("Base URL parties reach the hub at (default http://{host}:{port}); used in every URL it gives."),
    )
    redis_url: str = field(
        default="",
        metadata=_help("redis://, rediss://, unix:// or redis+sentinel:// URL of the registry; empty: embedded Redis."),
    )
    data_dir: str = field(default="./.ocpi-hub", metadata=_help("Where the embedded Redis keeps its data."))
    country_code: str = field(default="ZZ", metadata=_help("The hub's own OCPI country code (role HUB)."))
    party_id: str = field(default="HUB", metadata=_help("The hub's own OCPI party id (role HUB)."))
    name: str = field(default="ocpi-hub", metadata=_help("Business name in the hub's credentials."))
    workers: int = field(default=1, metadata=_help("Server worker processes."))
    server: ServerName = field(default="uvicorn", metadata=_help("HTTP server: uvicorn, or hypercorn (HTTP/2, TLS)."))
    log_level: LogLevel = field(default="info", metadata=_help("Log level."))
    certfile: str = field(default="", metadata=_help("TLS certificate file (PEM); enables HTTPS."))
    keyfile: str = field(default="", metadata=_help("TLS private key file (PEM)."))
    forward_timeout: float = field(
        default=10.0, metadata=_help("Seconds to wait for a receiver before answering 4002.")
    )
    forward_timeouts: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_FORWARD_TIMEOUTS),
        metadata=_help("Per-module overrides of forward_timeout, e.g. tokens=3,commands=8 (real-time authorization)."),
    )
    connect_timeout: float = field(default=3.0, metadata=_help("Seconds to open a connection to a receiver."))
    max_body_size: int = field(default=10_485_760, metadata=_help("Largest request body accepted, in bytes."))
    max_connections: int = field(default=512, metadata=_help("Outbound connections in all, per process."))
    max_connections_per_receiver: int = field(
        default=64, metadata=_help("Outbound connections to one receiver host, per process.")
    )
    liveness_interval: float = field(
        default=300.0, metadata=_help("Seconds of silence after which the hub GETs a party's versions endpoint.")
    )
    drain_time: float = field(
        default=10.0, metadata=_help("Seconds a shutdown waits for in-flight requests and broadcasts.")
    )
    callback_ttl: int = field(
        default=172_800, metadata=_help("Seconds a rewritten response_url or CDR Location stays usable.")
    )
    link_ttl: int = field(
        default=900, metadata=_help("Seconds a rewritten pagination Link stays usable (pages are read at once).")
    )
    snapshot_poll_interval: float = field(
        default=0.25, metadata=_help("Seconds between registry version checks (pub/sub is the fast path).")
    )
    broadcast_concurrency: int = field(default=64, metadata=_help("Deliveries of one broadcast in flight at once."))
    lease_ttl: float = field(default=10.0, metadata=_help("Seconds the scheduler lease lives without renewal."))
    key_prefix: str = field(default="ocpihub:", metadata=_help("Prefix of every Redis key the hub writes."))

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


def _choice(name: str) -> Callable[[object], str]:
    allowed = get_args(ServerName if name == "server" else LogLevel)

    def convert(raw: object) -> str:
        value = _to_str(raw).strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return convert


_CONVERTERS: Final[dict[str, Callable[[object], Any]]] = {
    "port": _to_int,
    "workers": _to_int,
    "max_body_size": _to_int,
    "max_connections": _to_int,
    "max_connections_per_receiver": _to_int,
    "broadcast_concurrency": _to_int,
    "callback_ttl": _to_int,
    "link_ttl": _to_int,
    "forward_timeout": _to_float,
    "connect_timeout": _to_float,
    "liveness_interval": _to_float,
    "drain_time": _to_float,
    "snapshot_poll_interval": _to_float,
    "lease_ttl": _to_float,
    "forward_timeouts": _parse_timeouts,
    "server": _choice("server"),
    "log_level": _choice("log_level"),
}

_POSITIVE: Final = frozenset(
    {
        "workers",
        "max_body_size",
        "max_connections",
        "max_connections_per_receiver",
        "broadcast_concurrency",
        "callback_ttl",
        "link_ttl",
        "forward_timeout",
        "connect_timeout",
        "liveness_interval",
        "snapshot_poll_interval",
        "lease_ttl",
    }
)


def _check(values: dict[str, Any], problems: list[str]) -> None:
    port = values.get("port")
    if isinstance(port, int) and not 0 <= port <= 65535:
        problems.append("port: must be between 0 and 65535")
    for name in _POSITIVE:
        value = values.get(name)
        if isinstance(value, int | float) and value <= 0:
            problems.append(f"{name}: must be positive")
    drain = values.get("drain_time")
    if isinstance(drain, float) and drain < 0:
        problems.append("drain_time: must not be negative")
    cc, pid = values.get("country_code"), values.get("party_id")
    if isinstance(cc, str) and not _CC.fullmatch(cc):
        problems.append("country_code: must be two letters (OCPI CiString(2))")
    if isinstance(pid, str) and not _PID.fullmatch(pid):
        problems.append("party_id: must be three letters or digits (OCPI CiString(3))")
    url = values.get("redis_url")
    if isinstance(url, str) and url and not url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        problems.append("redis_url: must start with redis://, rediss://, unix:// or redis+sentinel://")
    public = values.get("public_url")
    if isinstance(public, str) and public and not public.startswith(("http://", "https://")):
        problems.append("public_url: must start with http:// or https://")
    if bool(values.get("certfile")) != bool(values.get("keyfile")):
        problems.append("certfile/keyfile: give both or neither")


def read_config_file(path: str) -> dict[str, object]:
    """The TOML file's keys; raises ConfigError when it cannot be read or parsed."""
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError([f"config: cannot read {path}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: {path} is not valid TOML: {exc}"]) from None


def load_settings(
    environ: Mapping[str, str], overrides: Mapping[str, object] | None = None, config_file: str | None = None
) -> Settings:
    """Build Settings from flags (``overrides``), env, the TOML file and defaults, in that order of precedence."""
    problems: list[str] = []
    path = config_file or environ.get(ENV_PREFIX + "CONFIG") or None
    layers: list[tuple[str, Mapping[str, object]]] = []
    if path:
        file_values = read_config_file(path)
        for key in file_values:
            if key not in FIELDS:
                problems.append(f"{key}: unknown key in {path}")
        layers.append(("file", {k: v for k, v in file_values.items() if k in FIELDS}))
    env_values = {name: environ[ENV_PREFIX + name.upper()] for name in FIELDS if ENV_PREFIX + name.upper() in environ}
    layers.append(("env", env_values))
    layers.append(("flag", {k: v for k, v in (overrides or {}).items() if v is not None}))

    values: dict[str, Any] = {}
    for source, layer in layers:
        for name, raw in layer.items():
            convert = _CONVERTERS.get(name, _to_str)
            try:
                values[name] = convert(raw)
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


def to_environ(settings: Settings) -> dict[str, str]:
    """The env variables that rebuild exactly these settings (hands them to server worker processes)."""
    env: dict[str, str] = {}
    for name in FIELDS:
        value = getattr(settings, name)
        if name == "forward_timeouts":
            env[ENV_PREFIX + name.upper()] = ",".join(f"{k}={v}" for k, v in value.items())
        else:
            env[ENV_PREFIX + name.upper()] = str(value)
    return env
