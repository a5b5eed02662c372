"""Settings of one ACADA ingestion queue, checked once when the queue is made.

Built from the ``acada`` configuration section with the command line's overrides. The checks
that matter for safety happen here, before any file is touched: the landing area must lie
under the on-site RSE's root (files are registered in place, never copied), the quarantine
must lie outside it (the queue would otherwise scan its own rejects), and the replication
policy must exist (a dataset without its rules must never be created).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dpps.bdms.replication.rules import policy_templates
from dpps.core.config import Config
from dpps.core.errors import ConfigError, NotFound
from dpps.core.identifiers import validate_lfn


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Where one queue works and how; built from the ``acada`` configuration section."""

    landing: Path
    rse: str
    quarantine: Path
    lfn_prefix: str
    scope: str
    policy: str
    account: str
    workers: int
    batch_size: int
    poll_interval_s: float
    metrics_port: int | None
    required_keys: tuple[str, ...]
    retry_attempts: int
    retry_base_s: float
    retry_max_s: float
    executor: str = "process"  # process | inline | dask

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        rse: str | None = None,
        landing: Path | None = None,
        workers: int | None = None,
        metrics_port: int | None = None,
        executor: str | None = None,
    ) -> QueueSettings:
        acada = config.acada
        rse = rse or acada.rse
        if rse not in config.rses:
            raise NotFound(f"unknown RSE {rse!r} (known: {', '.join(sorted(config.rses))})")
        root_url = config.rse_url(rse)
        if "://" in root_url:
            raise ConfigError(f"RSE {rse} is not a local directory: in-place ingest needs one")
        root = Path(os.path.realpath(root_url))
        raw = Path(landing) if landing is not None else Path(acada.landing)
        land = Path(
            os.path.realpath(raw if raw.is_absolute() or landing is not None else root / raw)
        )
        if land != root and root not in land.parents:
            raise ConfigError(
                f"landing directory {land} is not under the root {root} of RSE {rse}: files "
                "are registered in place, so they must already lie on the RSE"
            )
        qbase = Path(acada.quarantine)
        quarantine = (
            Path(os.path.realpath(qbase if qbase.is_absolute() else config.workspace / qbase))
            / rse
        )
        if quarantine == land or land in quarantine.parents:
            raise ConfigError(f"quarantine {quarantine} must not lie inside the landing area")
        prefix = "/" + acada.lfn_prefix.strip("/")
        validate_lfn(prefix)
        policy_templates(config, acada.policy)  # an unknown policy fails now, not per dataset
        kind = executor or "process"
        if kind not in ("process", "inline", "dask"):
            raise ConfigError(f"unknown executor {kind!r}: use process, inline or dask")
        return cls(
            landing=land,
            rse=rse,
            quarantine=quarantine,
            lfn_prefix=prefix,
            scope=config.default_scope,
            policy=acada.policy,
            account=acada.account,
            workers=workers or acada.workers,
            batch_size=acada.batch_size,
            poll_interval_s=acada.poll_interval_s,
            metrics_port=acada.metrics_port if metrics_port is None else metrics_port,
            required_keys=tuple(acada.required_keys),
            retry_attempts=acada.retry_attempts,
            retry_base_s=acada.retry_base_s,
            retry_max_s=acada.retry_max_s,
            executor=kind,
        )
