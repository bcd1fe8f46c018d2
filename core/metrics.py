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

# Mediation pipeline. stage: decode | validate | rate | write; outcome: a record status
# (charged, suspense, duplicate, filtered, pending) or "in".
PIPELINE_RECORDS = Counter(
    "billing_pipeline_records_total", "Usage records through the pipeline", ["stage", "outcome"]
)
PIPELINE_BATCH_SECONDS = Histogram(
    "billing_pipeline_batch_seconds", "Time to commit one batch (one transaction)", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PIPELINE_QUEUE_DEPTH = Gauge(
    "billing_pipeline_queue_depth", "Batches waiting between pipeline stages", ["queue"]
)
PIPELINE_WRITE_RETRIES = Counter(
    "billing_pipeline_write_retries_total", "Batches retried after a database failure"
)
RATING_COMPILES = Histogram(
    "billing_rating_compile_seconds",
    "Rebuilds of the pipeline's rater: the stored tariffs checked and compiled into the"
    " kernel's tables (when a tariff changes; never for an account change), and their duration",
    buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SUSPENSE_RECORDS = Counter(
    "billing_suspense_records_total", "Records put in suspense", ["reason"]
)
SUSPENSE_RESOLVED = Counter(
    "billing_suspense_resolved_total", "Suspense records charged on retry"
)

MQTT_CONNECTED = Gauge("billing_mqtt_connected", "1 while the MQTT source is connected", ["source"])
MQTT_RECONNECTS = Counter(
    "billing_mqtt_reconnects_total", "MQTT connections lost and retried", ["source"]
)
MQTT_ACKED = Counter(
    "billing_mqtt_messages_acked_total", "MQTT messages committed and acknowledged", ["source"]
)
MQTT_LATENCY = Histogram(
    "billing_mqtt_commit_seconds", "From an MQTT message's arrival to its commit", ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
SFTP_FILES = Counter(
    "billing_sftp_files_total", "Files collected over SFTP, by outcome", ["source", "outcome"]
)
HTTP_INGEST_SHED = Counter(
    "billing_http_ingest_shed_total",
    "POST /v1/usage requests refused at once (503 OVERLOADED): slots and queue were full",
)
FILE_ALARMS = Counter(
    "billing_source_file_alarms_total", "File alarms (gap, repeat, reused, incomplete, not_usage)",
    ["source", "kind"],
)

MONTHS_UNFOLDED = Gauge(
    "billing_partition_months_unfolded",
    "Closed months of a table still made of days after housekeeping's last fold (migration 1550)",
    ["table"],
)

# Revenue assurance: the last run of each control.
ASSURANCE_FAILING = Gauge(
    "billing_assurance_control_failing", "1 when the control's last run failed", ["control"]
)
ASSURANCE_OFFENDING = Gauge(
    "billing_assurance_control_offending", "Offenders found by the control's last run",
    ["control"],
)
ASSURANCE_AT_STAKE = Gauge(
    "billing_assurance_at_stake_micros",
    "Money at stake in the control's last run, micro-units of the currency",
    ["control", "currency"],
)
