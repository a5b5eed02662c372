"""The daemon contract: what a ``Daemon`` declares is what the runner does, and the registry
refuses what is not a daemon."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from dpps.core import daemon
from dpps.core.daemon import (
    REGISTRY,
    Daemon,
    DaemonContext,
    NoHeartbeats,
    RunOnce,
    WorkerSlot,
    register,
    run,
    run_registered,
    serve,
)
from dpps.core.errors import ConfigError, NotFound


@dataclass
class Deps:
    """What the registry hands to a daemon's constructor (the archive's is a CatalogContext)."""

    label: str
    made: list[Recorder] = field(default_factory=list)


class Recorder(Daemon):
    """Work for ``work`` passes, then idle; records everything the runner does to it."""

    sleep_s = 0.01
    max_sleep_s = 0.04

    def __init__(self, deps: Deps, work: int = 1) -> None:
        self.deps = deps
        self.work = work
        self.calls: list[str] = []
        self.waits: list[float] = []
        deps.made.append(self)

    def run_once(self, ctx: DaemonContext) -> int:
        self.calls.append("run_once")
        if self.work:
            self.work -= 1
            return 1
        if len(self.calls) > 6:
            ctx.stop.set()
        return 0

    def drain(self) -> None:
        self.calls.append("drain")

    def close(self) -> None:
        self.calls.append("close")


class Crashes(Recorder):
    def run_once(self, ctx: DaemonContext) -> int:
        raise KeyError("a bug")


def not_a_daemon(deps: Deps) -> RunOnce:
    return lambda ctx: 0


@pytest.fixture
def registry() -> Iterator[dict[str, daemon.DaemonSpec]]:
    """The registry with test daemons added, as it was afterwards."""
    before = dict(REGISTRY)
    register("t-recorder", f"{__name__}:Recorder", "records", package="tests")
    register("t-crashes", f"{__name__}:Crashes", "crashes", package="tests")
    register("t-function", f"{__name__}:not_a_daemon", "a bare run_once", package="tests")
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(before)


def test_once_runs_one_pass_then_drain_then_close() -> None:
    deps = Deps("x")
    recorder = Recorder(deps, work=5)
    ctx = run(recorder, "t", NoHeartbeats(), once=True)
    assert recorder.calls == ["run_once", "drain", "close"]
    assert ctx.name == "t"


def test_the_declared_cadence_wins_over_the_runners_and_close_ends_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder(Deps("x"), work=1)
    waits: list[float] = []
    stop = threading.Event()
    real_wait = stop.wait

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        return real_wait(0)

    monkeypatch.setattr(stop, "wait", wait)
    run(recorder, "t", NoHeartbeats(), sleep_s=5.0, max_sleep_s=60.0, stop=stop)
    # the runner's 5 s / 60 s were not used: the daemon's 0.01 s doubling up to 0.04 s were
    assert waits[:4] == [0.01, 0.02, 0.04, 0.04]
    assert "drain" not in recorder.calls  # only after --once
    assert recorder.calls[-1] == "close"


def test_a_daemon_without_a_cadence_gets_the_runners() -> None:
    class Plain(Daemon):
        def run_once(self, ctx: DaemonContext) -> int:
            ctx.stop.set()
            return 0

    plain = Plain()
    assert (plain.sleep_s, plain.max_sleep_s) == (None, None)
    run(plain, "plain", once=False)  # stops itself; defaults drain/close do nothing


def test_wrap_decorates_run_once_and_keeps_what_the_daemon_declares() -> None:
    seen: list[str] = []

    def wrap(inner: RunOnce) -> RunOnce:
        def counted(ctx: DaemonContext) -> int:
            seen.append(ctx.name)
            return inner(ctx)

        return counted

    recorder = Recorder(Deps("x"))
    run(recorder, "wrapped", once=True, wrap=wrap)
    assert seen == ["wrapped"]
    assert recorder.calls == ["run_once", "drain", "close"]


def test_a_bug_ends_the_daemon_and_it_is_still_closed() -> None:
    crashes = Crashes(Deps("x"))
    with pytest.raises(KeyError):
        run(crashes, "t", NoHeartbeats())
    assert crashes.calls == ["close"]


def test_a_registered_daemon_is_made_from_the_runners_dependencies(
    registry: dict[str, daemon.DaemonSpec],
) -> None:
    deps = Deps("catalog")
    run_registered("t-recorder", deps, once=True)
    [made] = deps.made
    assert made.deps is deps
    assert made.calls == ["run_once", "drain", "close"]
    assert registry["t-recorder"].package == "tests"


def test_wrong_registrations_are_refused(registry: dict[str, daemon.DaemonSpec]) -> None:
    with pytest.raises(ConfigError, match="registered twice"):
        register("t-recorder", f"{__name__}:Recorder", "again")
    with pytest.raises(ConfigError, match="module:attribute"):
        register("t-bad-target", "tests.core.test_daemon_contract.Recorder", "no colon")
    with pytest.raises(ConfigError, match="lower case"):
        register("Bad Name", f"{__name__}:Recorder", "not a command name")
    with pytest.raises(ConfigError, match=r"not a dpps\.core\.daemon\.Daemon"):
        run_registered("t-function", Deps("x"), once=True)
    register("t-missing", f"{__name__}:NoSuchDaemon", "a typo in the target")
    with pytest.raises(ConfigError, match="cannot load"):
        run_registered("t-missing", Deps("x"), once=True)
    with pytest.raises(NotFound, match="no daemon named"):
        run_registered("t-unknown", Deps("x"), once=True)
    with pytest.raises(TypeError):
        Daemon()  # type: ignore[abstract]  # run_once is the one thing a daemon must have


def test_the_package_defaults_to_the_targets_top_package(
    registry: dict[str, daemon.DaemonSpec],
) -> None:
    register("t-default-package", "dpps.wms.somewhere:Thing", "declared by wms")
    assert registry["t-default-package"].package == "wms"


def test_serve_stops_every_daemon_when_one_dies_and_closes_them_all(
    registry: dict[str, daemon.DaemonSpec],
) -> None:
    deps = Deps("x")
    with pytest.raises(KeyError):
        serve(deps, ["t-recorder", "t-crashes"], sleep_s=0.01)
    assert {type(d).__name__: d.calls[-1] for d in deps.made} == {
        "Recorder": "close",
        "Crashes": "close",
    }


def test_heartbeat_slot_reaches_the_daemon() -> None:
    class TwoInstances(NoHeartbeats):
        def beat(self, daemon: str, instance: str, details: Mapping[str, Any]) -> WorkerSlot:
            return WorkerSlot(1, 2)

    class SlotReader(Daemon):
        slot: WorkerSlot | None = None

        def run_once(self, ctx: DaemonContext) -> int:
            self.slot = ctx.slot
            return 0

    reader = SlotReader()
    run(reader, "t", TwoInstances(), once=True)
    assert reader.slot == WorkerSlot(1, 2)
