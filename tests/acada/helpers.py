"""Shared helpers of the ingestion-queue tests: small simulated nights and catalog checks."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from dpps.acada.simulate import SimulationConfig, simulate, write_trigger
from dpps.bdms.archive import Archive
from dpps.catalog.models import AttachmentRow, DIDRow, EventRow, ReplicaRow, RuleRow


def small(obs_id: int = 1, **changes: object) -> SimulationConfig:
    """One telescope, about a dozen small files per observation block."""
    base: dict[str, object] = {
        "telescopes": (1,),
        "duration_s": 1.0,
        "event_rate_hz": 4.0,
        "events_per_chunk": 2,
        "first_obs_id": obs_id,
        "muon_fraction": 0.2,
        "calibration_fraction": 0.2,
        "start": dt.datetime(2026, 11, 21, 22, 0) + dt.timedelta(minutes=obs_id),
    }
    return SimulationConfig(**{**base, **changes})  # type: ignore[arg-type]


def simulate_untriggered(landing: Path, config: SimulationConfig) -> list[Path]:
    """Files without triggers: the test decides when (and whether) they are announced."""
    return simulate(landing, SimulationConfig(**{**config.__dict__, "triggers": False}))


def trigger(path: Path) -> Path:
    return write_trigger(path)


def triggers_left(landing: Path) -> list[Path]:
    return sorted(p for p in landing.rglob("*.trigger"))


def lfn_of(landing: Path, path: Path) -> str:
    return "/ctao/" + path.relative_to(landing).as_posix()


def catalog_state(archive: Archive) -> dict[str, object]:
    """Per LFN: DIDs, replicas and file.register events; plus the structural invariants."""
    with archive.sessions() as s:
        files = s.execute(select(DIDRow.id, DIDRow.name).where(DIDRow.did_type == "FILE")).all()
        replicas = Counter(s.scalars(select(ReplicaRow.did_id)))
        registers = Counter(
            s.scalars(select(EventRow.did_id).where(EventRow.action == "file.register"))
        )
        names = Counter(name for _, name in files)
        datasets = s.scalars(select(DIDRow.id).where(DIDRow.did_type == "DATASET")).all()
        rules = Counter(s.scalars(select(RuleRow.did_id).where(RuleRow.policy == "acada")))
        parents = {c for c in s.scalars(select(AttachmentRow.child_id))}
        containers = s.execute(
            select(DIDRow.id, DIDRow.name).where(DIDRow.did_type == "CONTAINER")
        ).all()
        quarantine_events = s.scalar(
            select(func.count()).where(EventRow.action == "acada.quarantine")
        )
    return {
        "names": names,
        "replicas": {name: replicas[i] for i, name in files},
        "registers": {name: registers[i] for i, name in files},
        "files_without_dataset": sorted(n for i, n in files if i not in parents),
        "datasets_without_rules": [d for d in datasets if rules[d] != 2],
        "orphan_containers": sorted(
            n for i, n in containers if i not in parents and n != "/ctao/dl0"
        ),
        "datasets_without_parent": [d for d in datasets if d not in parents],
        "quarantine_events": quarantine_events,
    }


def assert_exactly_once(archive: Archive, lfns: list[str]) -> dict[str, object]:
    state = catalog_state(archive)
    names = state["names"]
    assert isinstance(names, Counter)
    assert sorted(names) == sorted(lfns), "registered files differ from the expected ones"
    assert all(n == 1 for n in names.values()), "a file was registered twice"
    assert state["replicas"] == dict.fromkeys(lfns, 1)
    assert state["registers"] == dict.fromkeys(lfns, 1)
    for key in (
        "files_without_dataset",
        "datasets_without_rules",
        "orphan_containers",
        "datasets_without_parent",
    ):
        assert state[key] == [], key
    return state


def remove_if_exists(path: Path) -> None:
    if os.path.lexists(path):
        os.unlink(path)
