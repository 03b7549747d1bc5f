"""Prometheus metrics (prometheus-client), one registry per process.

``serve`` exposes them on ``SWEEPER_METRICS_PORT``; ``sweep --once`` writes a
node-exporter textfile (``SWEEPER_METRICS_TEXTFILE``) or pushes to a
Pushgateway (``SWEEPER_METRICS_PUSHGATEWAY``) before it exits.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import push_to_gateway, write_to_textfile

log = logging.getLogger("sweeper.metrics")

JOB_NAME = "image-sweeper"


def reason_label(reason: str) -> str:
    """A failure reason folded into a few label values (labels must stay low-cardinality)."""
    head = reason.split(":", 1)[0].strip().lower()
    if reason.startswith("gave up after"):
        return "attempts_exhausted"
    if reason.startswith("no image in reply"):
        return "no_image"
    if head.startswith("api error"):
        return "api_" + head.removeprefix("api error").strip().split(" ")[0]
    if head in {"blocked", "stopped", "quarantined", "invalid record", "invalid job id"}:
        return head.replace(" ", "_")
    if head.startswith("record is"):
        return "bad_record"
    if head.startswith("model"):
        return "model_not_found"
    return "other"


class Metrics:
    """Every metric the sweeper keeps."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.images_generated = Counter(
            "sweeper_images_generated_total", "Images stored", ["model"], registry=r
        )
        self.images_failed = Counter(
            "sweeper_images_failed_total",
            "Image variations that failed for good",
            ["reason"],
            registry=r,
        )
        self.images_deferred = Counter(
            "sweeper_images_deferred_total", "Image variations left for a later sweep", registry=r
        )
        self.api_latency = Histogram(
            "sweeper_api_call_seconds",
            "Duration of one image call",
            ["outcome"],
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
            registry=r,
        )
        self.retries = Counter("sweeper_retries_total", "Retries scheduled", ["reason"], registry=r)
        self.jobs_finished = Counter(
            "sweeper_jobs_finished_total", "Jobs ended", ["status"], registry=r
        )
        self.jobs_quarantined = Counter(
            "sweeper_jobs_quarantined_total", "Records quarantined", ["reason"], registry=r
        )
        self.lease_takeovers = Counter(
            "sweeper_lease_takeovers_total", "Jobs taken over from a sweep that died", registry=r
        )
        self.sweeps = Counter("sweeper_sweeps_total", "Sweeps run", ["outcome"], registry=r)
        self.sweep_duration = Histogram(
            "sweeper_sweep_duration_seconds",
            "Duration of one sweep",
            buckets=(1, 5, 10, 30, 60, 120, 180, 240, 300, 600),
            registry=r,
        )
        self.jobs_pending = Gauge("sweeper_jobs_pending", "Ids in the pending set", registry=r)
        self.oldest_pending_age = Gauge(
            "sweeper_oldest_pending_age_seconds",
            "Age of the oldest pending job (sampled)",
            registry=r,
        )
        self.last_sweep = Gauge(
            "sweeper_last_sweep_timestamp_seconds", "When the last sweep ended", registry=r
        )

        self._children: dict[tuple[int, str], Any] = {}

    def child(self, metric: Counter | Histogram, label: str) -> Any:
        """``metric.labels(label)``, looked up once: labels() locks and hashes on every call."""
        key = (id(metric), label)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(label)
        return found

    def sweep_ended(self, duration: float, outcome: str) -> None:
        """Record one sweep."""
        self.sweeps.labels(outcome).inc()
        self.sweep_duration.observe(duration)
        self.last_sweep.set(time.time())

    def write_textfile(self, path: str) -> None:
        """Atomically write the node-exporter textfile; failures are logged, not raised."""
        try:
            write_to_textfile(path, self.registry)
        except OSError as e:
            log.warning(
                "could not write the metrics textfile",
                extra={"event": "metrics_error", "reason": str(e)},
            )

    def push(self, gateway: str, timeout: float = 5.0) -> None:
        """Push to a Pushgateway; failures are logged, not raised."""
        try:
            push_to_gateway(gateway, job=JOB_NAME, registry=self.registry, timeout=timeout)
        except OSError as e:
            log.warning(
                "could not push metrics", extra={"event": "metrics_error", "reason": str(e)}
            )
