"""Prometheus metrics, defined once per process on the default registry.

Modules import the metric they update from here, so every name and label set is in one place.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "billing_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "billing_http_request_seconds", "HTTP request latency", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
DB_POOL_SIZE = Gauge("billing_db_pool_connections", "Connections open in the pool")
