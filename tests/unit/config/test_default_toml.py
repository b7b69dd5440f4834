"""config/default.toml says what config/settings.py says: every key, its default and its help text.

Regenerate the file after changing a setting:
``python -c "from hub.cli import default_config_text; print(default_config_text(), end='')" > config/default.toml``
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

from config.settings import FIELDS, Settings, load_settings
from hub.cli import default_config_text

DEFAULT_TOML = Path(__file__).resolve().parents[3] / "config" / "default.toml"
REGENERATE = (
    "config/default.toml is out of date; regenerate it: "
    "python -c \"from hub.cli import default_config_text; print(default_config_text(), end='')\" > config/default.toml"
)
_KEY_LINE = re.compile(r"# ([a-z_]+) = (.*)")


def commented_keys(text: str) -> dict[str, str]:
    """``# key = value`` lines → key → value text."""
    found = {}
    for line in text.splitlines():
        match = _KEY_LINE.fullmatch(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_the_file_is_the_generated_text() -> None:
    assert DEFAULT_TOML.read_text() == default_config_text(), REGENERATE


def test_every_setting_is_in_the_file_once_and_nothing_else() -> None:
    keys = [m.group(1) for m in map(_KEY_LINE.fullmatch, DEFAULT_TOML.read_text().splitlines()) if m]
    assert keys == list(FIELDS), REGENERATE


def test_uncommented_file_is_valid_toml_holding_exactly_the_defaults(tmp_path: Path) -> None:
    values = commented_keys(DEFAULT_TOML.read_text())
    config = tmp_path / "all.toml"
    config.write_text("".join(f"{key} = {value}\n" for key, value in values.items()))
    parsed = tomllib.loads(config.read_text())
    assert set(parsed) == set(FIELDS)
    assert load_settings({}, None, str(config)) == Settings()


def test_every_help_text_precedes_its_key() -> None:
    text = DEFAULT_TOML.read_text()
    for name, spec in FIELDS.items():
        help_lines = "\n".join(f"# {line}" for line in textwrap.wrap(spec.metadata["help"], width=116))
        assert f"{help_lines}\n# {name} = " in text, (name, REGENERATE)


def test_lines_fit_the_line_length() -> None:
    assert max(len(line) for line in DEFAULT_TOML.read_text().splitlines()) <= 120
