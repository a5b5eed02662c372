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

from dpps.core import priority as priority_scale
from dpps.core.errors import ConfigError, InvalidInput
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
        description="SQLAlchemy URL; a relative SQLite path is relative to the workspace. A "
        "site's transfer agent may name the central API instead (http(s)://host:port).",
    )
    token_file: str | None = Field(
        None,
        description="With an API URL: the file holding the agent's token (else $DPPS_TOKEN); "
        "a relative path is relative to the workspace.",
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


class StagingConfig(_Strict):
    """Tape staging: where staged copies land and how long they stay there."""

    buffer: str = Field(
        "staging",
        description="Disk buffer for staged tape files: the name of a configured disk RSE, or "
        "a directory or fsspec URL (a relative path is relative to the workspace).",
    )
    buffer_lifetime_s: float = Field(
        86400.0, gt=0, description="How long a staged copy stays in the buffer once ready."
    )
    wait_timeout_s: float = Field(
        3600.0, gt=0, description="How long 'dpps get' waits for staging unless told otherwise."
    )
    lease_s: float = Field(
        600.0, gt=0, description="How long a stager owns a request it is copying."
    )


class ReaperConfig(_Strict):
    """Deletion of replicas past their retention."""

    onsite_retention_days: float = Field(
        7.0,
        ge=0,
        description="Days an on-site copy is kept after ingest; it is deleted after that only "
        "once every rule on the file is OK and off-site copies exist.",
    )
    min_offsite_copies: int = Field(
        2, ge=1, description="AVAILABLE off-site copies required before an on-site deletion."
    )
    lifetimes: dict[str, float] = Field(
        default_factory=lambda: {"category=SIM and data_level=DL0": 3 * 365.25},
        description="Default lifetimes in days of the files matching a filter (the query "
        "language); the reaper sets expires_at = created_at + lifetime where none is set.",
    )
    batch_size: int = Field(500, ge=1, description="Replicas or files handled per transaction.")


class AuditorConfig(_Strict):
    """Fixity audits: re-reading replicas and comparing their checksums with the catalog."""

    interval_days: float = Field(
        30.0, ge=0, description="A replica is re-verified once its last check is this old."
    )
    files_per_pass: int = Field(100, ge=1, description="Replicas verified per daemon pass.")
    bytes_per_s: float | None = Field(
        None, gt=0, description="Read rate limit of the auditor in bytes/s (None: unlimited)."
    )
    include_tape: bool = Field(True, description="Also re-read replicas on tape RSEs.")


class TransferConfig(_Strict):
    """The transfer daemon: parallelism, link limits, retries (``transfers:`` section)."""

    threads: int = Field(
        8,
        ge=1,
        le=256,
        description="Copies in flight per daemon instance (raise it for high-latency storage; "
        "on local disks 8 measured best for small files, whose copies wait on fsync, and 16 "
        "lost to contention for the interpreter).",
    )
    batch: int = Field(200, ge=1, description="Transfers claimed per catalog transaction.")
    max_active_per_link: int = Field(
        64, ge=1, description="Copies at once from one source site to one destination site."
    )
    max_attempts: int = Field(5, ge=1, description="Attempts before a transfer is FAILED.")
    backoff_base_s: float = Field(
        30.0, ge=0, description="Delay after the first failed attempt; doubles each time."
    )
    backoff_max_s: float = Field(3600.0, ge=0, description="Longest delay between attempts.")
    source_wait_s: float = Field(
        60.0, ge=0, description="How long a transfer with no usable source waits to look again."
    )
    lease_s: float = Field(
        120.0, gt=0, description="Lease on a claimed transfer; renewed while it copies."
    )
    max_mb_s: float = Field(0.0, ge=0, description="Bandwidth cap per copy in MB/s (0: no cap).")


class RuleEvaluatorConfig(_Strict):
    """The rule evaluator (``rules:`` section)."""

    chunk_size: int = Field(2000, ge=1, description="Files evaluated per catalog transaction.")
    batch: int = Field(5, ge=1, description="Rules claimed per evaluator pass.")
    lease_s: float = Field(600.0, gt=0, description="Lease on a rule; renewed per chunk.")
    stuck_retry_s: float = Field(
        600.0, ge=0, description="A STUCK rule is evaluated again after this long."
    )
    recheck_s: float = Field(
        3600.0, ge=0, description="A REPLICATING rule is evaluated again at least this often."
    )
    min_distance_km: float = Field(
        300.0, ge=0, description="Copies of a file prefer sites at least this far apart."
    )


class RuleTemplate(_Strict):
    """One rule of a named replication policy."""

    copies: int = Field(1, ge=1, description="Replicas to keep on RSEs matching 'rses'.")
    rses: str = Field(description="RSE expression the copies must be on, e.g. offsite&type=tape.")
    source: str | None = Field(
        None, description="RSE expression transfers may read from (None: any replica)."
    )
    lifetime_days: float | None = Field(None, gt=0, description="Rule expires after this.")
    priority: int = Field(
        priority_scale.DEFAULT,
        ge=priority_scale.LOWEST,
        le=priority_scale.HIGHEST,
        description=priority_scale.HELP,
    )
    activity: str = Field("default", description="Transfer activity, for shares and accounting.")


class AcadaConfig(_Strict):
    """The ACADA ingestion queue: where telescope data land and how they are taken in."""

    landing: str = Field(
        "acada",
        description="Landing directory ACADA writes to; a relative path is relative to the "
        "on-site RSE's root. It must lie under that root: files are registered in place.",
    )
    quarantine: str = Field(
        "quarantine",
        description="Where rejected files go, one sub-directory per RSE; a relative path is "
        "relative to the workspace.",
    )
    rse: str = Field("CTAO-N", description="On-site RSE the landing area belongs to.")
    lfn_prefix: str = Field("/ctao", description="LFN = prefix + path relative to the landing.")
    policy: str = Field("acada", description="Replication policy given to each new dataset.")
    account: str = Field("acada", description="Account named in the queue's events.")
    workers: int = Field(2, ge=1, description="Processes verifying and checksumming files.")
    batch_size: int = Field(200, ge=1, description="Files registered per catalog transaction.")
    poll_interval_s: float = Field(0.5, gt=0, description="Seconds between trigger scans.")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus port on 127.0.0.1 (0: any free port)."
    )
    required_keys: tuple[str, ...] = Field(
        ("data_level", "product_type", "obs_id", "sb_id", "observing_night"),
        description="Metadata a file must carry (indexed columns or free metadata keys); a "
        "file missing one is quarantined.",
    )
    retry_attempts: int = Field(
        6, ge=1, description="Tries of a catalog write failing transiently before giving up."
    )
    retry_base_s: float = Field(0.2, gt=0, description="First backoff delay (doubles, jitter).")
    retry_max_s: float = Field(10.0, gt=0, description="Longest backoff delay.")


class WMSConfig(_Strict):
    """Workload management: which executor runs jobs, leases, sandboxes, activity ranks."""

    executor: str = Field("local", description="Default executor: local or dask.")
    local_workers: int = Field(2, ge=1, description="Processes of the local executor.")
    dask_scheduler: str | None = Field(
        None, description="Address of the Dask scheduler (tcp://127.0.0.1:8786) for 'dask'."
    )
    sandbox: str = Field(
        "wms/sandbox", description="Job sandboxes; a relative path is relative to the workspace."
    )
    lease_s: float = Field(
        120.0, gt=0, description="A job whose worker sent no heartbeat for this long is stalled."
    )
    max_attempts: int = Field(3, ge=1, description="Default attempts per job before FAILED.")
    output_lfn_prefix: str = Field("/wms", description="LFN prefix of outputs without an LFN.")
    keep_failed_sandboxes: bool = Field(True, description="Keep a failed job's sandbox.")
    activities: dict[str, int] = Field(
        default_factory=lambda: {
            "calibration": 90,
            "cat-b": 80,
            "reprocessing": 50,
            "default": 30,
            "simulation": 10,
        },
        description="Activity ranks: jobs of a higher-ranked activity are dispatched first.",
    )


class ApiConfig(_Strict):
    """The REST API and dashboard of ``dpps serve`` (``api:`` section). Every worker process
    of ``dpps serve --workers N`` reads it from the same file and environment."""

    threads: int = Field(
        40,
        ge=1,
        description="Threads running the (synchronous) request handlers per API process. Python "
        "runs one at a time per process, so more threads add hand-overs, not throughput; "
        "enough to overlap database waits.",
    )
    max_body_bytes: int = Field(
        8 * 2**20, ge=1, description="Largest request body in bytes, uploads excepted."
    )
    max_upload_bytes: int = Field(
        64 * 2**30, ge=1, description="Largest file uploaded to the ingest endpoint, in bytes."
    )
    touch_interval_s: float = Field(
        60.0,
        ge=0,
        description="A token's last use is written at most this often (writing it on every "
        "request would make every read a write).",
    )
    spool_dir: Path | None = Field(
        None,
        description="Where uploads wait before ingest; a relative path is relative to the "
        "workspace (None: <workspace>/spool).",
    )


class HealthConfig(_Strict):
    """``dpps health`` (``health:`` section): what makes it ring."""

    required_daemons: tuple[str, ...] = Field(
        ("evaluator", "transfer", "stager", "reaper", "auditor"),
        description="Daemons that must have a live instance somewhere (a recent heartbeat in "
        "the catalog); one without is an alarm. Add 'ingest' at a telescope site.",
    )
    stale_after_s: float = Field(
        120.0, gt=0, description="A heartbeat older than this is stale: not counted as running."
    )


class Config(_Strict):
    """The whole configuration of one dpps deployment."""

    workspace: Path = Field(description="Directory holding dpps.yaml (set when loading).")
    default_scope: str = Field("ctao", description="Scope used when a DID gives none.")
    checksums: tuple[str, ...] = Field(
        ("adler32", "blake3"), description="Checksum algorithms computed at ingest."
    )
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)  # type: ignore[arg-type]
    ingest: IngestConfig = Field(default_factory=IngestConfig)  # type: ignore[arg-type]
    transfers: TransferConfig = Field(default_factory=TransferConfig)  # type: ignore[arg-type]
    rules: RuleEvaluatorConfig = Field(default_factory=RuleEvaluatorConfig)  # type: ignore[arg-type]
    sites: dict[str, SiteConfig] = Field(default_factory=dict)
    rses: dict[str, RSEConfig] = Field(default_factory=dict)
    policies: dict[str, tuple[RuleTemplate, ...]] = Field(
        default_factory=dict, description="Named replication policies (lists of rules)."
    )
    wms: WMSConfig = Field(default_factory=WMSConfig)  # type: ignore[arg-type]
    staging: StagingConfig = Field(default_factory=StagingConfig)  # type: ignore[arg-type]
    reaper: ReaperConfig = Field(default_factory=ReaperConfig)  # type: ignore[arg-type]
    auditor: AuditorConfig = Field(default_factory=AuditorConfig)  # type: ignore[arg-type]
    acada: AcadaConfig = Field(default_factory=AcadaConfig)  # type: ignore[arg-type]
    api: ApiConfig = Field(default_factory=ApiConfig)  # type: ignore[arg-type]
    health: HealthConfig = Field(default_factory=HealthConfig)  # type: ignore[arg-type]

    @field_validator("default_scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        # A ValueError, not validate_scope's InvalidInput: a bad scope in dpps.yaml is a
        # configuration error (exit 4), reported with the file's other mistakes.
        try:
            return validate_scope(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping.

    PyYAML keeps the last of duplicate keys silently: an operator who adds a second ``PIC:``
    under ``rses:`` loses the first one without a word. Merge keys (``<<``) are left to
    PyYAML's own handling.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: construct_mapping says so below
                continue
            if first != line:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first given on line {first})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, name: str = "<text>") -> Any:
    """YAML as the configuration reads it: safe types only, duplicate keys refused; errors
    name ``name`` and the lines."""
    loader = _UniqueKeyLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_config(workspace: Path, environ: dict[str, str] | None = None) -> Config:
    """The workspace's configuration; ConfigError when it is unreadable, not a mapping, has a
    key twice, or has no topology (no RSEs).

    An empty ``dpps.yaml`` used to load as "no RSEs at all": every command then marked every
    RSE unavailable in the catalog and the transfer daemon failed the whole queue. A deployment
    without storage elements is never what an operator meant, so it stops here.
    """
    path = workspace / CONFIG_NAME
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"{path} is empty (run 'dpps init' to write a working default)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if "workspace" in data:
        raise ConfigError(f"{path}: 'workspace' is implied by the file's location")
    config = config_from_dict(data, workspace, environ)
    if not config.rses:
        raise ConfigError(
            f"{path}: no storage elements (the 'rses:' section is missing or empty); a "
            "workspace needs its topology (see 'dpps init' and docs/configuration.md)"
        )
    return config
