"""config/settings.py: precedence, validation (every bad key at once), forward_timeouts, env round trip."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import (
    ENV_PREFIX,
    FIELDS,
    TIMEOUT_MODULES,
    ConfigError,
    Settings,
    choices,
    effective,
    load_settings,
    to_environ,
)

WriteConfig = Callable[[str], str]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    def write(text: str) -> str:
        path = tmp_path / "hub.toml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def problem_keys(error: ConfigError) -> set[str]:
    return {p.split(":", 1)[0] for p in error.problems}


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.country_code == "ZZ"
    assert settings.party_id == "HUB"
    assert settings.server == "uvicorn"
    assert dict(settings.forward_timeouts) == {"tokens": 5.0}


def test_precedence_flags_over_env_over_file_over_defaults(write_config: WriteConfig) -> None:
    path = write_config('port = 1000\nhost = "127.0.0.5"\nname = "from-file"\nworkers = 3\n')
    environ = {ENV_PREFIX + "PORT": "2000", ENV_PREFIX + "NAME": "from-env", ENV_PREFIX + "WORKERS": "4"}
    settings = load_settings(environ, {"port": 3000, "workers": None}, config_file=path)
    assert settings.port == 3000  # flag
    assert settings.name == "from-env"  # env beats file
    assert settings.workers == 4  # a None flag is "not given": env stays
    assert settings.host == "127.0.0.5"  # file beats default
    assert settings.log_level == "info"  # default


def test_env_beats_file(write_config: WriteConfig) -> None:
    path = write_config("port = 1000\n")
    assert load_settings({ENV_PREFIX + "PORT": "2000"}, config_file=path).port == 2000
    assert load_settings({}, config_file=path).port == 1000


def test_config_file_from_env(write_config: WriteConfig) -> None:
    path = write_config('party_id = "abc"\n')
    assert load_settings({ENV_PREFIX + "CONFIG": path}).party_id == "ABC"


def test_config_file_argument_beats_the_env_one(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config("port = 1000\n")
    settings = load_settings({ENV_PREFIX + "CONFIG": str(tmp_path / "missing.toml")}, config_file=path)
    assert settings.port == 1000


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({}, config_file=str(tmp_path / "missing.toml"))


def test_invalid_toml(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, config_file=write_config("port = = 1\n"))


def test_country_code_and_party_id_are_upper_cased() -> None:
    settings = load_settings({ENV_PREFIX + "COUNTRY_CODE": "nl"}, {"party_id": "h1b"})
    assert (settings.country_code, settings.party_id) == ("NL", "H1B")


def test_choices_are_case_insensitive() -> None:
    settings = load_settings({ENV_PREFIX + "SERVER": "Hypercorn", ENV_PREFIX + "LOG_LEVEL": "DEBUG"})
    assert (settings.server, settings.log_level) == ("hypercorn", "debug")


def test_every_bad_key_is_reported_at_once(write_config: WriteConfig) -> None:
    path = write_config('colour = "blue"\nserver = "nginx"\n')
    environ = {ENV_PREFIX + "PORT": "x", ENV_PREFIX + "COUNTRY_CODE": "N1"}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ, {"workers": 0, "party_id": "TOOLONG"}, config_file=path)
    keys = problem_keys(caught.value)
    assert keys == {"colour", "server", ENV_PREFIX + "PORT", "country_code", "workers", "party_id"}
    assert len(caught.value.problems) == 6
    for key in keys:
        assert key in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"port": "x"}, "port"),
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"port": True}, "port"),
        ({"port": 80.5}, "port"),
        ({"workers": 0}, "workers"),
        ({"max_body_size": -1}, "max_body_size"),
        ({"forward_timeout": 0}, "forward_timeout"),
        ({"forward_timeout": "inf"}, "forward_timeout"),
        ({"forward_timeout": "nan"}, "forward_timeout"),
        ({"connect_timeout": "soon"}, "connect_timeout"),
        ({"drain_time": -1}, "drain_time"),
        ({"server": "nginx"}, "server"),
        ({"log_level": "verbose"}, "log_level"),
        ({"country_code": "N1"}, "country_code"),
        ({"country_code": "NLD"}, "country_code"),
        ({"party_id": "AB"}, "party_id"),
        ({"party_id": "A-C"}, "party_id"),
        ({"redis_url": "http://localhost:6379"}, "redis_url"),
        ({"public_url": "hub.example.com"}, "public_url"),
        ({"certfile": "cert.pem"}, "certfile/keyfile"),
        ({"keyfile": "key.pem"}, "certfile/keyfile"),
        ({"host": 5}, "host"),
    ],
)
def test_bad_value_is_named(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, overrides)
    assert problem_keys(caught.value) == {key}


@pytest.mark.parametrize(("key", "value"), [("country_code", "NL\n"), ("party_id", "HUB\n")])
def test_hub_party_with_trailing_newline_is_refused(key: str, value: str) -> None:
    # A CiString(2) / CiString(3) is exactly that many characters; "NL\n" must not become the hub's country code.
    with pytest.raises(ConfigError) as caught:
        load_settings({ENV_PREFIX + key.upper(): value})
    assert problem_keys(caught.value) == {key}


def test_env_problem_is_labelled_with_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({ENV_PREFIX + "WORKERS": "many"})
    assert caught.value.problems[0].startswith(ENV_PREFIX + "WORKERS: ")


def test_drain_time_zero_and_port_zero_are_allowed() -> None:
    settings = load_settings({}, {"drain_time": 0, "port": 0})
    assert (settings.drain_time, settings.port) == (0.0, 0)


def test_numbers_from_strings_are_converted() -> None:
    settings = load_settings({ENV_PREFIX + "PORT": " 9000 ", ENV_PREFIX + "FORWARD_TIMEOUT": "2.5"})
    assert settings.port == 9000
    assert settings.forward_timeout == 2.5
    assert isinstance(settings.forward_timeout, float)


# -- forward_timeouts ----------------------------------------------------------------------------------------


def test_forward_timeouts_from_a_string() -> None:
    settings = load_settings({ENV_PREFIX + "FORWARD_TIMEOUTS": "tokens=3, commands=8"})
    assert dict(settings.forward_timeouts) == {"tokens": 3.0, "commands": 8.0}


def test_forward_timeouts_from_a_toml_table(write_config: WriteConfig) -> None:
    path = write_config("[forward_timeouts]\ntokens = 3\ncommands = 8.5\n")
    settings = load_settings({}, config_file=path)
    assert dict(settings.forward_timeouts) == {"tokens": 3.0, "commands": 8.5}


def test_forward_timeouts_empty_string_keeps_the_defaults() -> None:
    settings = load_settings({ENV_PREFIX + "FORWARD_TIMEOUTS": ""})
    assert dict(settings.forward_timeouts) == {"tokens": 5.0}
    assert settings.timeout_for("locations") == settings.forward_timeout


def test_forward_timeouts_override_one_module_and_keep_the_other_defaults() -> None:
    settings = load_settings({ENV_PREFIX + "FORWARD_TIMEOUTS": "commands=8"})
    assert dict(settings.forward_timeouts) == {"tokens": 5.0, "commands": 8.0}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("foo=3", "unknown module 'foo'"),
        ("credentials=3", "unknown module 'credentials'"),
        ("tokens", "expected module=seconds"),
        ("tokens=soon", "could not convert"),
        ("tokens=0", "must be positive"),
        ("tokens=-1", "must be positive"),
        ("tokens=inf", "finite"),
    ],
)
def test_forward_timeouts_bad_strings(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings({ENV_PREFIX + "FORWARD_TIMEOUTS": raw})
    assert problem_keys(caught.value) == {ENV_PREFIX + "FORWARD_TIMEOUTS"}


def test_forward_timeouts_unknown_module_in_toml_table(write_config: WriteConfig) -> None:
    path = write_config("[forward_timeouts]\nfoo = 3\n")
    with pytest.raises(ConfigError, match="unknown module 'foo'") as caught:
        load_settings({}, config_file=path)
    assert problem_keys(caught.value) == {"forward_timeouts"}


def test_forward_timeouts_of_wrong_type(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=write_config("forward_timeouts = 3\n"))
    assert problem_keys(caught.value) == {"forward_timeouts"}


def test_timeout_modules_are_the_functional_modules() -> None:
    modules = {"cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens"}
    assert set(TIMEOUT_MODULES) == modules


def test_timeout_for() -> None:
    settings = Settings(forward_timeout=9.0, forward_timeouts={"tokens": 3.0, "commands": 8.0})
    assert settings.timeout_for("tokens") == 3.0
    assert settings.timeout_for("commands") == 8.0
    assert settings.timeout_for("locations") == 9.0


def test_default_timeout_for_tokens_is_shorter() -> None:
    settings = Settings()
    assert settings.timeout_for("tokens") == 5.0
    assert settings.timeout_for("sessions") == settings.forward_timeout == 10.0


# -- to_environ ----------------------------------------------------------------------------------------------


def test_to_environ_names_every_field() -> None:
    env = to_environ(Settings())
    assert set(env) == {ENV_PREFIX + name.upper() for name in FIELDS}
    assert all(isinstance(v, str) for v in env.values())


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(
            host="0.0.0.0",
            port=0,
            public_url="https://hub.example.com/ocpi/",
            redis_url="rediss://user@redis.example.com:6380/2",
            data_dir="/var/lib/ocpi-hub",
            country_code="NL",
            party_id="H1B",
            name="Hub, B.V. = 'roaming'",
            workers=4,
            server="hypercorn",
            log_level="debug",
            certfile="/tls/cert.pem",
            keyfile="/tls/key.pem",
            forward_timeout=12.5,
            forward_timeouts={"tokens": 3.0, "commands": 8.25, "cdrs": 0.1},
            connect_timeout=1e-3,
            max_body_size=1,
            max_connections=10,
            max_connections_per_receiver=2,
            liveness_interval=60.0,
            drain_time=0.0,
            callback_ttl=3600,
            snapshot_poll_interval=0.05,
            broadcast_concurrency=8,
            lease_ttl=30.0,
            key_prefix="test:ocpi:",
        ),
        Settings(forward_timeouts={"tokens": 2.0}),
    ],
)
def test_to_environ_round_trips(settings: Settings) -> None:
    rebuilt = load_settings(to_environ(settings))
    assert rebuilt == settings
    for name in FIELDS:
        assert getattr(rebuilt, name) == getattr(settings, name), name


def test_every_field_has_help() -> None:
    for f in dataclasses.fields(Settings):
        assert f.metadata.get("help"), f.name


# -- base_url ------------------------------------------------------------------------------------------------


def test_base_url_default() -> None:
    assert Settings().base_url == "http://127.0.0.1:8080"
    assert Settings(host="127.0.0.6", port=9443, certfile="c.pem", keyfile="k.pem").base_url == "https://127.0.0.6:9443"


@pytest.mark.parametrize(
    "public_url", ["https://hub.example.com", "https://hub.example.com/", "https://hub.example.com//"]
)
def test_base_url_from_public_url_without_trailing_slash(public_url: str) -> None:
    assert load_settings({}, {"public_url": public_url}).base_url == "https://hub.example.com"


def test_base_url_keeps_a_public_path() -> None:
    assert Settings(public_url="https://example.com/hub/").base_url == "https://example.com/hub"


# -- types, bounds and helpers ---------------------------------------------------------------------------------


def test_unknown_key_in_the_file_gets_a_suggestion(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=write_config("forward_timout = 3\n"))
    assert "did you mean forward_timeout?" in str(caught.value)


def test_party_networks_from_env_file_and_flag(write_config: WriteConfig) -> None:
    env = {ENV_PREFIX + "ALLOW_PARTY_NETWORKS": "10.0.0.0/8, fd00::/8"}
    assert load_settings(env).allow_party_networks == ("10.0.0.0/8", "fd00::/8")
    path = write_config('allow_party_networks = ["127.0.0.0/8"]\n')
    assert load_settings({}, config_file=path).allow_party_networks == ("127.0.0.0/8",)
    assert load_settings({}, {"allow_party_networks": "192.0.2.0/24"}).allow_party_networks == ("192.0.2.0/24",)


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "300.0.0.0/8", "nonsense"])
def test_party_networks_must_be_networks(bad: str) -> None:
    with pytest.raises(ConfigError, match="allow_party_networks"):
        load_settings({}, {"allow_party_networks": bad})


def test_only_validates_the_settings_a_command_uses() -> None:
    env = {ENV_PREFIX + "WORKERS": "0", ENV_PREFIX + "REDIS_URL": "redis://127.0.0.1:1/0"}
    with pytest.raises(ConfigError, match="workers"):
        load_settings(env)
    settings = load_settings(env, only=frozenset({"redis_url"}))
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.workers == Settings().workers


def test_effective_masks_secrets() -> None:
    settings = Settings(redis_url="redis://user:s3cret@redis:6379/0", admin_token="t0ken")
    shown = effective(settings)
    assert "s3cret" not in shown["redis_url"]
    assert shown["redis_url"] == "redis://user:********@redis:6379/0"
    assert shown["admin_token"] == "********"
    assert set(shown) == set(FIELDS)


def test_every_bound_is_checked() -> None:
    for name, field in FIELDS.items():
        if field.metadata.get("positive"):
            with pytest.raises(ConfigError, match=name):
                load_settings({}, {name: 0})


def test_choices_are_listed() -> None:
    assert choices("server") == ("uvicorn", "hypercorn")
    assert choices("port") == ()
