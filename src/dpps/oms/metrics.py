"""Prometheus metrics: the API's requests, each daemon's work and errors, the catalog's state.

Three sources, one exposition:
- ``HttpMetrics``: requests by method, route template and status, latency, errors by kind;
- ``DaemonMetrics`` + ``instrument``: items handled, runs and errors by kind of any daemon's
  ``run_once`` (the CLI wraps each daemon with it; ``serve_metrics`` exposes a standalone
  daemon's registry on 127.0.0.1);
- ``CatalogCollector``: gauges read from the catalog at scrape time (files per data level,
  replicas per RSE and state, rules and transfers per state, how long the oldest rule has been
  in each state other than OK, lost files, daemon heartbeats and whether each daemon runs,
  jobs once the workload manager has its table) and counters of events by action (ingestion,
  transfers, audits ... every state change is an event) and of copy attempts per link. Its
  answer is cached for a few seconds so aggressive scrapers cannot load the catalog; events
  are read incrementally (only new ones).

The alert rules and the Grafana dashboard under ``deploy/monitoring/`` use these names;
tests/oms/test_monitoring_files.py fails when one of them is renamed here.

Registries are per app / per process, never the global default, so tests and several apps in
one process do not collide.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import stats
from dpps.bdms.preservation import health
from dpps.core.clock import utcnow
from dpps.core.config import HealthConfig
from dpps.core.daemon import DaemonContext, RunOnce
from dpps.wms import stats as wms_stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dpps_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "dpps_http_request_duration_seconds",
            "Time to answer a request, by route template",
            ["route"],
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 10.0),
            registry=registry,
        )
        self.errors = Counter(
            "dpps_api_errors", "Errors answered by the API, by kind", ["kind"], registry=registry
        )

    def observe(
        self, method: str, route: str, status: int, seconds: float, kind: str | None
    ) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if kind is not None:
            self.errors.labels(kind).inc()


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.items = Counter(
            "dpps_daemon_items", "Items handled by a daemon", ["daemon"], registry=registry
        )
        self.runs = Counter(
            "dpps_daemon_runs", "run_once calls of a daemon", ["daemon"], registry=registry
        )
        self.errors = Counter(
            "dpps_daemon_errors",
            "Exceptions raised by a daemon's run_once, by kind",
            ["daemon", "kind"],
            registry=registry,
        )
        self.last_run = Gauge(
            "dpps_daemon_last_run_timestamp_seconds",
            "Unix time of the end of a daemon's last run_once",
            ["daemon"],
            registry=registry,
        )


def instrument(run_once: RunOnce, metrics: DaemonMetrics) -> RunOnce:
    """Wrap a daemon's ``run_once`` so its work and failures are counted, then re-raised."""

    def wrapped(ctx: DaemonContext) -> int:
        try:
            done = run_once(ctx)
        except Exception as exc:
            metrics.errors.labels(ctx.name, type(exc).__name__).inc()
            raise
        finally:
            metrics.runs.labels(ctx.name).inc()
            metrics.last_run.labels(ctx.name).set(time.time())
        metrics.items.labels(ctx.name).inc(done)
        return done

    return wrapped


def serve_metrics(
    port: int, registry: CollectorRegistry, host: str = "127.0.0.1"
) -> tuple[Any, threading.Thread]:
    """Expose ``registry`` on http://host:port/metrics for a standalone daemon; returns the
    server (call ``shutdown()`` on it) and its thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread


class CatalogCollector(Collector):
    """Catalog state at scrape time, cached ``min_interval_s``; ``health`` says which daemons
    must run and when a heartbeat is stale, as for ``dpps health`` (defaults otherwise)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        min_interval_s: float = 5.0,
        health: HealthConfig | None = None,
    ) -> None:
        self.sessions = sessions
        self.min_interval_s = min_interval_s
        self.health = health or HealthConfig.model_validate({})
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._at = float("-inf")
        self._event_id = 0
        self._events: dict[str, int] = {}
        self._link_event_id = 0
        self._links: dict[tuple[str, str, str], int] = {}

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: registering must not query the catalog

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._at >= self.min_interval_s:
                with self.sessions() as session:
                    self._cached = self._read(session)
                self._at = time.monotonic()
            yield from self._cached

    def _read(self, session: Session) -> list[Metric]:
        files = GaugeMetricFamily(
            "dpps_files", "Files in the catalog by data level", labels=["data_level"]
        )
        file_bytes = GaugeMetricFamily(
            "dpps_file_bytes",
            "Bytes of the files in the catalog by data level",
            labels=["data_level"],
        )
        for v in stats.files_by_level(session):
            files.add_metric([v.key], v.files)
            file_bytes.add_metric([v.key], v.bytes)
        replicas = GaugeMetricFamily(
            "dpps_replicas", "Replicas by RSE and state", labels=["rse", "state"]
        )
        replica_bytes = GaugeMetricFamily(
            "dpps_replica_bytes", "Bytes of replicas by RSE and state", labels=["rse", "state"]
        )
        for rse, state, n, b in stats.replicas_by_rse_state(session):
            replicas.add_metric([rse, state], n)
            replica_bytes.add_metric([rse, state], b)
        out: list[Metric] = [files, file_bytes, replicas, replica_bytes]
        for name, text, counts in (
            ("dpps_rules", "Replication rules by state", stats.rules_by_state(session)),
            ("dpps_transfers", "Transfers by state", stats.transfers_by_state(session)),
            ("dpps_jobs", "Jobs by state", wms_stats.jobs_by_state(session)),
        ):
            family = GaugeMetricFamily(name, text, labels=["state"])
            for state, n in counts.items():
                family.add_metric([state], n)
            out.append(family)
        out.append(self._rule_ages(session))
        lost = GaugeMetricFamily(
            "dpps_files_lost",
            "Live files without any AVAILABLE replica (dpps health's lost_files; must stay 0)",
        )
        lost.add_metric([], health.lost_count(session))
        out.append(lost)
        out.append(self._heartbeats(session))
        out.append(self._daemons_up(session))
        out.append(self._event_counts(session))
        out.append(self._link_counts(session))
        return out

    def _rule_ages(self, session: Session) -> Metric:
        family = GaugeMetricFamily(
            "dpps_rules_oldest_in_state_seconds",
            "Seconds since the rule longest in each state other than OK entered it",
            labels=["state"],
        )
        for state, seconds in stats.rule_state_ages(session).items():
            family.add_metric([state], seconds)
        return family

    def _daemons_up(self, session: Session) -> Metric:
        """1 when a daemon has an instance that beat within ``stale_after_s``, as ``dpps
        health`` decides it; every required daemon is listed, beating or not, so a daemon
        that never started (no heartbeat row at all) still shows up as 0."""
        found = health.daemons(session, utcnow(), self.health.stale_after_s)
        running = health.running_names(found)
        required = set(self.health.required_daemons)
        family = GaugeMetricFamily(
            "dpps_daemon_up",
            "Whether a daemon has a live instance (1) or not (0); required: dpps health "
            "wants it running",
            labels=["daemon", "required"],
        )
        for name in sorted({d.name for d in found} | required):
            up = health.is_running(name, running) if name in required else name in running
            family.add_metric([name, "true" if name in required else "false"], float(up))
        return family

    def _heartbeats(self, session: Session) -> Metric:
        family = GaugeMetricFamily(
            "dpps_daemon_heartbeat_age_seconds",
            "Seconds since each daemon instance last beat",
            labels=["daemon", "daemon_instance"],
        )
        for h in stats.heartbeat_ages(session):
            family.add_metric([h.daemon, h.instance], h.seconds)
        return family

    def _link_counts(self, session: Session) -> Metric:
        """Copy attempts by link and outcome since the catalog began, read incrementally."""
        for outcome, source, dest, n, top in stats.transfer_outcomes_after(
            session, self._link_event_id
        ):
            key = (source, dest, outcome)
            self._links[key] = self._links.get(key, 0) + n
            self._link_event_id = max(self._link_event_id, top)
        family = CounterMetricFamily(
            "dpps_transfer_attempts",
            "Ended copy attempts by link (source RSE, destination RSE) and outcome: done, "
            "retry (failed, to be tried again), failed (given up)",
            labels=["source", "destination", "outcome"],
        )
        for (source, dest, outcome), n in sorted(self._links.items()):
            family.add_metric([source, dest, outcome], n)
        return family

    def _event_counts(self, session: Session) -> Metric:
        """Events by action since the catalog began; only events newer than the last scrape
        are read."""
        for action, n, top in stats.events_after(session, self._event_id):
            self._events[action] = self._events.get(action, 0) + n
            self._event_id = max(self._event_id, top)
        family = CounterMetricFamily(
            "dpps_events",
            "Catalog events by action (ingest, transfers, audits, errors ...)",
            labels=["action"],
        )
        for action, n in sorted(self._events.items()):
            family.add_metric([action], n)
        return family


def exposition(*registries: CollectorRegistry) -> bytes:
    return b"".join(generate_latest(r) for r in registries)


#: Metrics of the daemons running in this process (``dpps serve`` exposes them with the API's).
DAEMON_REGISTRY = CollectorRegistry()
DAEMONS = DaemonMetrics(DAEMON_REGISTRY)
