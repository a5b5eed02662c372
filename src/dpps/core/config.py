"""One typed configuration tree, read from ``dpps.yaml`` with environment overrides.

Unknown keys are errors (a misspelled option silently ignored is worse than a crash). An
environment variable ``DPPS_<SECTION>__<KEY>`` (e.g. ``DPPS_CATALOG__URL``) overrides the value
at that path; values are parsed as YAML scalars so numbers and booleans keep their types.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dpps.core.errors import ConfigError
from dpps.core.identifiers import validate_scope
from dpps.core.states import RSEKind
from dpps.core.workspace import CONFIG_NAME

ENV_PREFIX = "DPPS_"
SUPPORTED_CHECKSUMS = ("adler32", "blake3", "sha256", "md5")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Strict):
    description: str = Field("", description="Human-readable name and place of the site.")
    onsite: bool = Field(False, description="True for a telescope site (on-site data center).")
    latitude: float | None = Field(None, description="Degrees north, for distance checks.")
    longitude: float | None = Field(None, description="Degrees east, for distance checks.")


class RSEConfig(_Strict):
    url: str = Field(
        description="fsspec URL of the RSE root; a plain path is relative to the workspace."
    )
    site: str = Field(description="Name of the site (data center) that hosts this RSE.")
    kind: RSEKind = Field(RSEKind.DISK, description="disk or tape (nearline, needs staging).")
    onsite: bool = Field(False, description="True for storage at a telescope site.")
    attributes: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Free attributes usable in RSE expressions."
    )
    bandwidth_mb_s: float = Field(
        100.0, gt=0, description="Expected read bandwidth in MB/s, for retrieval estimates."
    )
    latency_ms: float = Field(20.0, ge=0, description="Expected access latency in ms.")
    staging_delay_s: float = Field(
        0.0, ge=0, description="Tape only: time for a stage request to complete."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra options passed to the fsspec filesystem."
    )


class CatalogConfig(_Strict):
    url: str = Field(
        "sqlite:///catalog.db",
        description="SQLAlchemy URL; a relative SQLite path is relative to the workspace.",
    )
    busy_timeout_s: float = Field(
        30.0, gt=0, description="How long a SQLite writer waits for the lock before failing."
    )
    echo: bool = Field(False, description="Log every SQL statement (debugging only).")


class IngestConfig(_Strict):
    workers: int = Field(4, ge=1, description="Threads reading and checksumming files.")
    chunk_size: int = Field(
        500, ge=1, description="Files registered per catalog transaction during bulk ingest."
    )


class RuleTemplate(_Strict):
    """One rule of a named replication policy."""

    copies: int = Field(1, ge=1, description="Replicas to keep on RSEs matching 'rses'.")
    rses: str = Field(description="RSE expression the copies must be on, e.g. offsite&type=tape.")
    source: str | None = Field(
        None, description="RSE expression transfers may read from (None: any replica)."
    )
    lifetime_days: float | None = Field(None, gt=0, description="Rule expires after this.")
    priority: int = Field(3, ge=0, le=5, description="0 lowest .. 5 highest.")
    activity: str = Field("default", description="Transfer activity, for shares and accounting.")


class Config(_Strict):
    """The whole configuration of one dpps deployment."""

    workspace: Path = Field(description="Directory holding dpps.yaml (set when loading).")
    default_scope: str = Field("ctao", description="Scope used when a DID gives none.")
    checksums: tuple[str, ...] = Field(
        ("adler32", "blake3"), description="Checksum algorithms computed at ingest."
    )
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)  # type: ignore[arg-type]
    ingest: IngestConfig = Field(default_factory=IngestConfig)  # type: ignore[arg-type]
    sites: dict[str, SiteConfig] = Field(default_factory=dict)
    rses: dict[str, RSEConfig] = Field(default_factory=dict)
    policies: dict[str, tuple[RuleTemplate, ...]] = Field(
        default_factory=dict, description="Named replication policies (lists of rules)."
    )

    @field_validator("default_scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        return validate_scope(value)

    @field_validator("checksums")
    @classmethod
    def _checksums(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in SUPPORTED_CHECKSUMS]
        if unknown:
            raise ValueError(f"unknown checksum algorithm(s) {unknown}; use {SUPPORTED_CHECKSUMS}")
        if "adler32" not in value:
            raise ValueError("adler32 is required: transfer tools compare it")
        return value

    def model_post_init(self, __context: Any) -> None:
        for name, rse in self.rses.items():
            if rse.site not in self.sites:
                raise ConfigError(f"RSE {name!r} names unknown site {rse.site!r}")

    def rse_url(self, name: str) -> str:
        """The absolute fsspec URL (or local path) of the RSE root."""
        url = self.rses[name].url
        if "://" in url:
            return url
        path = Path(url)
        return str(path if path.is_absolute() else (self.workspace / path))

    def catalog_url(self) -> str:
        url = self.catalog.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
            return prefix + str(self.workspace / url[len(prefix) :])
        return url


def _apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for key, raw in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: {part!r} is not a section")
            node = child
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from None
    return data


def config_from_dict(
    data: dict[str, Any], workspace: Path, environ: dict[str, str] | None = None
) -> Config:
    data = _apply_env_overrides(dict(data), dict(os.environ if environ is None else environ))
    data["workspace"] = workspace
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


def load_config(workspace: Path, environ: dict[str, str] | None = None) -> Config:
    path = workspace / CONFIG_NAME
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if "workspace" in data:
        raise ConfigError(f"{path}: 'workspace' is implied by the file's location")
    return config_from_dict(data, workspace, environ)
