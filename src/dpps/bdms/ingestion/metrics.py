"""Prometheus metrics of the ACADA ingestion queue, served on 127.0.0.1 only.

Each queue has its own registry (not prometheus_client's global one), so two queues in one
process (tests, ``dpps serve``) never clash, and what a scrape shows is exactly this queue.
The HTTP endpoint binds to the loopback address: metrics reach the outside world only through
a deliberate proxy or scraper on the same host.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

#: Outcomes counted per file.
OUTCOMES = ("succeeded", "skipped", "quarantined", "failed")

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class QueueMetrics:
    """The queue's counters; ``serve`` exposes them over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.files = Counter(
            "dpps_acada_files",
            "Files handled by the ingestion queue, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.files.labels(outcome)  # exported as 0 before the first file
        self.bytes = Counter(
            "dpps_acada_bytes", "Bytes of the files registered.", registry=self.registry
        )
        self.queue_length = Gauge(
            "dpps_acada_queue_length",
            "Trigger files waiting in the landing area at the last scan.",
            registry=self.registry,
        )
        self.latency = Histogram(
            "dpps_acada_trigger_to_registered_seconds",
            "Time from a trigger file's creation to its file's registration in the catalog.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.transient = Counter(
            "dpps_acada_transient_errors",
            "Transient failures (database or storage) that were retried.",
            registry=self.registry,
        )
        self._server: WSGIServer | None = None

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.files.labels(outcome).inc(n)

    def value(self, outcome: str) -> float:
        """The current count of an outcome (for reports and tests)."""
        return float(self.files.labels(outcome)._value.get())

    def serve(self, port: int) -> int:
        """Start the HTTP endpoint on 127.0.0.1:``port`` (0: any free port); returns the port."""
        if self._server is None:
            self._server, _thread = start_http_server(
                port, addr="127.0.0.1", registry=self.registry
            )
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
