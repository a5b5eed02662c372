"""Configurations that must not load: empty, without topology, with a key given twice.

An empty dpps.yaml used to load as "no RSEs": every command then marked every RSE unavailable
in the catalog. A key given twice used to keep the last value without a word.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dpps.core.config import load_config, parse_yaml
from dpps.core.defaults import default_config
from dpps.core.errors import ConfigError
from dpps.core.workspace import CONFIG_NAME

DPPS = str(Path(sys.executable).with_name("dpps"))


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "~\n", "{}\n"])
def test_an_empty_configuration_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / CONFIG_NAME).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"empty|no storage elements"):
        load_config(tmp_path, environ={})


def test_a_configuration_without_rses_is_refused(tmp_path: Path) -> None:
    data = default_config()
    del data["rses"]
    (tmp_path / CONFIG_NAME).write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="no storage elements"):
        load_config(tmp_path, environ={})
    data["rses"] = {}
    (tmp_path / CONFIG_NAME).write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="no storage elements"):
        load_config(tmp_path, environ={})


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path: Path) -> None:
    text = yaml.safe_dump(default_config(), sort_keys=False)
    lines = text.splitlines()
    at = lines.index("rses:") + 1  # a second "PIC:" right below "rses:" (first is further)
    pic = lines.index("  PIC:", at) + 1
    lines[at:at] = ["  PIC:", "    url: /mnt/elsewhere", "    site: PIC"]
    (tmp_path / CONFIG_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"duplicate key 'PIC'") as caught:
        load_config(tmp_path, environ={})
    message = str(caught.value)
    assert f"line {at + 1}" in message  # the first PIC, now on line at + 1
    assert f'dpps.yaml", line {pic + 3}' in message  # the original, three lines down


def test_duplicate_keys_are_found_at_any_depth_and_merges_still_work() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key 'a'"):
        parse_yaml("x:\n  y:\n    a: 1\n    a: 2\n")
    merged = parse_yaml("base: &b {a: 1, b: 2}\nother:\n  <<: *b\n  b: 3\n")
    assert merged["other"] == {"a": 1, "b": 3}
    assert parse_yaml("a: 1\nb: {a: 2}\n") == {"a": 1, "b": {"a": 2}}


def test_the_cli_refuses_an_empty_configuration_and_leaves_the_catalog_alone(
    tmp_path: Path,
) -> None:
    """``dpps ls`` on an empty dpps.yaml used to mark every RSE unavailable."""
    ws = tmp_path / "ws"
    subprocess.run([DPPS, "init", str(ws)], check=True, capture_output=True)
    original = (ws / CONFIG_NAME).read_text()
    (ws / CONFIG_NAME).write_text("")
    result = subprocess.run([DPPS, "-w", str(ws), "ls"], capture_output=True, text=True)
    assert result.returncode == 4, result.stderr  # configuration error
    assert "empty" in result.stdout + result.stderr
    with sqlite3.connect(ws / "catalog.db") as db:
        assert db.execute("SELECT count(*) FROM rses WHERE NOT available").fetchone() == (0,)
    (ws / CONFIG_NAME).write_text(original)
