"""Configuration: the default topology, strictness, environment overrides, workspace lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dpps.core.config import config_from_dict, load_config
from dpps.core.defaults import default_config
from dpps.core.errors import ConfigError, NotFound
from dpps.core.states import RSEKind
from dpps.core.workspace import CONFIG_NAME, find_workspace


def test_default_topology_is_the_reference_observatory(tmp_path: Path) -> None:
    cfg = config_from_dict(default_config(), tmp_path, environ={})
    onsite = {n for n, r in cfg.rses.items() if r.onsite}
    tape = {n for n, r in cfg.rses.items() if r.kind == RSEKind.TAPE}
    assert onsite == {"CTAO-N", "CTAO-S"}
    assert tape == {"DESY-TAPE", "PIC-TAPE"}
    assert {r.site for n, r in cfg.rses.items() if not r.onsite} == {
        "CSCS",
        "DESY",
        "FRASCATI",
        "PIC",
    }
    assert cfg.rse_url("PIC") == str(tmp_path / "rse" / "PIC")
    assert cfg.catalog_url() == f"sqlite:///{tmp_path / 'catalog.db'}"


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    data = default_config()
    data["catalog"]["ulr"] = "typo"
    with pytest.raises(ConfigError, match=r"catalog\.ulr"):
        config_from_dict(data, tmp_path, environ={})
    data = default_config()
    data["rses"]["PIC"]["site"] = "Atlantis"
    with pytest.raises(ConfigError, match="unknown site"):
        config_from_dict(data, tmp_path, environ={})
    data = default_config()
    data["checksums"] = ["blake3"]
    with pytest.raises(ConfigError, match="adler32 is required"):
        config_from_dict(data, tmp_path, environ={})


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "DPPS_CATALOG__URL": "postgresql+psycopg://db/dpps",
        "DPPS_INGEST__WORKERS": "8",
        "DPPS_WORKSPACE": "/ignored",
        "HOME": "/root",
    }
    cfg = config_from_dict(default_config(), tmp_path, environ=env)
    assert cfg.catalog_url() == "postgresql+psycopg://db/dpps"
    assert cfg.ingest.workers == 8
    with pytest.raises(ConfigError, match="ingest"):
        config_from_dict(default_config(), tmp_path, environ={"DPPS_INGEST__WORKERS": "0"})
    with pytest.raises(ConfigError, match="nosuch"):
        config_from_dict(default_config(), tmp_path, environ={"DPPS_NOSUCH__KEY": "1"})


def test_api_section_from_file_and_environment(tmp_path: Path) -> None:
    """The API server's limits live in the one tree: defaults, YAML, ``DPPS_API__*``."""
    cfg = config_from_dict(default_config(), tmp_path, environ={})
    assert cfg.api.threads == 40
    assert cfg.api.spool_dir is None
    data = {**default_config(), "api": {"threads": 8, "spool_dir": "uploads"}}
    env = {"DPPS_API__MAX_BODY_BYTES": "1000"}
    cfg = config_from_dict(data, tmp_path, environ=env)
    assert (cfg.api.threads, cfg.api.max_body_bytes) == (8, 1000)
    assert cfg.api.spool_dir == Path("uploads")
    with pytest.raises(ConfigError, match=r"api\.threads"):
        config_from_dict(default_config(), tmp_path, environ={"DPPS_API__THREADS": "0"})
    with pytest.raises(ConfigError, match=r"api\.nosuch"):
        config_from_dict({**default_config(), "api": {"nosuch": 1}}, tmp_path, environ={})


def test_load_config_errors(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text("catalog: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("- a list", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(yaml.safe_dump(default_config()), encoding="utf-8")
    assert load_config(tmp_path, environ={}).default_scope == "ctao"


def test_find_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / CONFIG_NAME).write_text("{}", encoding="utf-8")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.delenv("DPPS_WORKSPACE", raising=False)
    monkeypatch.chdir(deep)
    assert find_workspace() == tmp_path
    assert find_workspace(str(tmp_path)) == tmp_path
    monkeypatch.setenv("DPPS_WORKSPACE", str(tmp_path))
    monkeypatch.chdir("/")
    assert find_workspace() == tmp_path
    with pytest.raises(NotFound, match="no dpps workspace"):
        find_workspace(deep)
