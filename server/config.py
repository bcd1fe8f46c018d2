"""Configuration: shipped defaults, then an optional file, then environment, then CLI flags.

The defaults live in one documented file, ``config/billing-oss.toml``. The merged result is
validated once, at start, into typed structs; a bad value fails with the key's name.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from billing_oss.core.errors import ConfigError
from billing_oss.core.sources_config import SourceConfig

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "billing-oss.toml"
# Added to the defaults when no file is given and the database is the embedded one.
DEMO_FILE = DEFAULTS_FILE.parent / "demo.toml"
ENV_PREFIX = "BILLING_OSS_"


class DatabaseConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    url: str
    data_dir: str
    name: str
    pool_min: int
    pool_max: int
    connect_timeout_s: float
    init: bool = False  # migrate a database that holds other tables (--init)


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str
    port: int
    max_body_bytes: int
    request_timeout_s: float
    # POST /v1/usage: batches at work at once, requests waiting for one; the rest get 503.
    ingest_concurrency: int = 16
    ingest_queue: int = 16
    # Bind with SO_REUSEPORT, so processes started by hand can share the port
    # (serve --workers shares one socket instead).
    reuse_port: bool = False


class LogConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    level: Literal["debug", "info", "warning", "error"]
    format: Literal["json", "text"]


class CatalogConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    demo: str
    load_demo: bool


class BillingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    invoice_series: str
    credit_note_series: str
    rounding: Literal["half-up", "half-even", "up", "down"]
    payment_terms_days: int
    grace_days: int
    batch_size: int
    seller_name: str
    seller_country: str
    seller_vat_id: str
    seller_address: str
    seller_postcode: str
    seller_city: str
    seller_iban: str

    def seller(self) -> dict[str, str]:
        return {"name": self.seller_name, "country": self.seller_country,
                "vat_id": self.seller_vat_id, "address": self.seller_address,
                "postcode": self.seller_postcode, "city": self.seller_city,
                "iban": self.seller_iban}

    def einvoice_gaps(self) -> list[str]:
        """Seller keys an EN 16931 invoice needs but this configuration leaves empty: the
        name (BR-6), the country (BR-9) and a VAT identifier (BR-CO-26)."""
        required = {"seller_name": self.seller_name, "seller_country": self.seller_country,
                    "seller_vat_id": self.seller_vat_id}
        return [f"billing.{key}" for key, value in required.items() if not value.strip()]

    def printed_gaps(self) -> list[str]:
        """Seller keys an invoice prints but this configuration leaves empty: the address a
        customer writes to and the account it pays into."""
        printed = {"seller_address": self.seller_address, "seller_postcode": self.seller_postcode,
                   "seller_city": self.seller_city, "seller_iban": self.seller_iban}
        return [f"billing.{key}" for key, value in printed.items() if not value.strip()]


class CollectionsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sepa_creditor_id: str = ""
    sepa_iban: str = ""  # empty: billing.seller_iban
    sepa_bic: str = ""  # empty: derived from the IBAN
    psp_webhook_secret: str = ""


class ProvisioningConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Provisioning commands over MQTT: the broker that network elements listen on."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    client_id: str = "billing-oss-provisioning"
    topic_prefix: str = "provisioning"
    poll_interval_s: float = 0.5
    batch: int = 500
    publish_timeout_s: float = 10.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0


class LedgerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The general-ledger export (``billing-oss ledger export``): chart of accounts, journal
    codes and the FEC's issuer. Defaults follow the French PCG."""

    currency: str = "EUR"  # the books' currency: the export takes entries in it
    siren: str = ""  # 9 digits: the FEC file's name <SIREN>FEC<YYYYMMDD>
    receivables: str = "411"
    revenue: str = "706"
    vat_collected: str = "44571"
    bank: str = "512"
    write_off: str = "654"
    fees: str = "708"
    rounding: str = "758"
    sales_journal: str = "VE"
    bank_journal: str = "BQ"
    misc_journal: str = "OD"


class WebhooksConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    allow_http: bool = False
    allow_private: bool = False
    retry_schedule_s: list[float] = msgspec.field(
        default_factory=lambda: [15.0, 60.0, 300.0, 1800.0, 7200.0, 43200.0, 86400.0])
    timeout_s: float = 10.0
    max_concurrency: int = 16
    concurrency: int = 256
    disable_after_dead_letters: int = 5
    rotation_grace_s: float = 86400.0
    rescan_s: float = 10.0
    in_memory: int = 100_000
class CheckpointSftp(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An SFTP partner every checkpoint is also uploaded to (``[assurance.checkpoint_sftp]``)."""

    host: str
    known_host_key: str  # the server's public key line, or a known_hosts path: required
    username: str
    port: int = 22
    password: str = ""
    client_key: str = ""  # path of a private key
    remote_dir: str = "."


class AssuranceConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    interval_s: float = 3600.0  # 0: serve runs no controls on its own
    checkpoint_dir: str = ""  # empty: no checkpoints
    checkpoint_webhook: bool = False  # also emit each checkpoint as an audit.checkpoint event
    checkpoint_sftp: CheckpointSftp | None = None  # also upload each checkpoint there
    signing_key: str = "var/assurance-signing.key"
    evidence_limit: int = 20
    duplicate_tolerance_s: int = 2
    suspense_age_days: int = 7
    silent_factor: int = 3
    silent_min_s: int = 3600
    late_after_h: int = 24
    rerate_sample: int = 500
    rollup_days: int = 2  # 0: the rollup levels control reads every day still stored
    parallel: int = 2


class RetentionConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    interval_s: float = 3600.0  # 0: serve does no housekeeping of its own
    partitions_ahead_months: int = 3
    archive_after_months: int = 0  # 0: nothing is ever archived
    archive_dir: str = "var/archive"
    pseudonymise_after_days: int = 0  # 0: numbers stay in the clear
    pseudonym_key: str = ""


class AnalyticsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    compact_interval_s: float = 60.0  # 0: the rollups are compacted on demand only


class ConsoleConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    timezone: str = "UTC"  # the operator's: every time the console shows is in it
    session_minutes: int = 480  # a console sign-in lasts this long, then asks again
    summary_seconds: float = 30.0  # the home page's revenue and aging are kept this long


class PipelineConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    batch_size: int
    queue_depth: int
    partial_timeout_s: float
    partial_sweep_s: float
    write_attempts: int
    retry_backoff_s: float
    write_lanes: int
    # open suspense records of one source that raise suspense.threshold_crossed (0: never)
    suspense_alarm_records: int = 1000
    suspense_check_s: float = 60.0


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    database: DatabaseConfig
    http: HttpConfig
    log: LogConfig
    catalog: CatalogConfig
    billing: BillingConfig
    pipeline: PipelineConfig
    # Collection sources by name (MQTT subscriptions, SFTP pollers); see sources_config.
    sources: dict[str, SourceConfig]
    collections: CollectionsConfig = msgspec.field(default_factory=CollectionsConfig)
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    provisioning: ProvisioningConfig = msgspec.field(default_factory=ProvisioningConfig)
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    assurance: AssuranceConfig = msgspec.field(default_factory=AssuranceConfig)
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)
    analytics: AnalyticsConfig = msgspec.field(default_factory=AnalyticsConfig)

    def demo_catalog_path(self) -> Path:
        path = Path(self.catalog.demo)
        return path if path.is_absolute() else DEFAULTS_FILE.parent / path


def load(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge defaults, ``path``, environment and ``overrides`` ({"http.port": 8081}); validate."""
    merged = _read_toml(DEFAULTS_FILE)
    if path is not None:
        _merge(merged, _read_toml(Path(path)), where=str(path))
    elif _is_demo(os.environ if env is None else env, overrides or {}):
        _merge(merged, _read_toml(DEMO_FILE), where=str(DEMO_FILE))
    _merge(merged, _from_env(os.environ if env is None else env, merged), where="environment")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            merged[section][key] = value
    try:
        config = msgspec.convert(merged, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_name_key(str(exc))}") from None
    _check(config)
    return config


def _is_demo(env: Mapping[str, str], overrides: Mapping[str, Any]) -> bool:
    """The quickstart: no configuration file and no database URL (the embedded server)."""
    return not (overrides.get("database.url") or env.get(f"{ENV_PREFIX}DATABASE_URL"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], extra: Mapping[str, Any], *, where: str) -> None:
    for section, values in extra.items():
        if section not in base:
            raise ConfigError(f"unknown configuration section [{section}] in {where}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"configuration key {section} in {where} must be a table")
        base[section].update(values)


def _from_env(env: Mapping[str, str], known: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``BILLING_OSS_HTTP_PORT=9000`` → ``{"http": {"port": "9000"}}`` (converted later)."""
    found: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in known:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                if key not in known[section]:
                    raise ConfigError(f"{name}: no configuration key {section}.{key}")
                found.setdefault(section, {})[key] = value
                break
    return found


def _name_key(message: str) -> str:
    """msgspec says "... - at `$.http.port`"; operators want "http.port: ..."."""
    text, sep, where = message.rpartition(" - at `$.")
    if not sep:
        return message
    return f"{where.rstrip('`')}: {text}"


def _check_console(console: ConsoleConfig) -> None:
    try:
        ZoneInfo(console.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"console.timezone: unknown timezone {console.timezone!r}") from None
    if not 1 <= console.session_minutes <= 60 * 24 * 31:
        raise ConfigError("console.session_minutes: must be in 1..44640 (31 days)")
    if not 0 <= console.summary_seconds <= 3600:
        raise ConfigError("console.summary_seconds: must be in 0..3600")


def _check(config: Config) -> None:
    _check_sources(config)
    db, http = config.database, config.http
    if not 1 <= http.port <= 65535:
        raise ConfigError(f"http.port: {http.port} is not a TCP port (1-65535)")
    if db.pool_min < 1 or db.pool_max < db.pool_min:
        raise ConfigError(
            f"database.pool_min/pool_max: need 1 <= pool_min <= pool_max, "
            f"got {db.pool_min}/{db.pool_max}"
        )
    if db.connect_timeout_s <= 0:
        raise ConfigError("database.connect_timeout_s: must be positive")
    if http.request_timeout_s <= 0:
        raise ConfigError("http.request_timeout_s: must be positive")
    if http.ingest_concurrency < 1 or http.ingest_queue < 0:
        raise ConfigError("http.ingest_concurrency >= 1 and http.ingest_queue >= 0 are needed")
    if http.max_body_bytes < 1024:
        raise ConfigError("http.max_body_bytes: must be at least 1024")
    _check_console(config.console)
    prov = config.provisioning
    if prov.enabled and not (1 <= prov.port <= 65535 and prov.poll_interval_s > 0
                             and prov.batch >= 1 and prov.publish_timeout_s > 0):
        raise ConfigError("provisioning: port 1-65535, poll_interval_s > 0, batch >= 1 and "
                          "publish_timeout_s > 0 are needed")
    pipe = config.pipeline
    if not 1 <= pipe.batch_size <= 1_000_000:
        raise ConfigError("pipeline.batch_size: must be in 1..1000000")
    if pipe.queue_depth < 1 or pipe.write_attempts < 1:
        raise ConfigError("pipeline.queue_depth and pipeline.write_attempts: must be >= 1")
    if not 1 <= pipe.write_lanes <= 8:
        raise ConfigError("pipeline.write_lanes: must be in 1..8")
    _check_webhooks(config.webhooks)
    ra = config.assurance
    if ra.interval_s < 0 or min(ra.evidence_limit, ra.rerate_sample, ra.silent_factor,
                                ra.parallel) < 1:
        raise ConfigError("assurance: interval_s >= 0; evidence_limit, rerate_sample,"
                          " silent_factor and parallel >= 1")
    if ra.rollup_days < 0:
        raise ConfigError("assurance.rollup_days must be >= 0 (0: every day still stored)")
    _check_retention(config.retention)
    if config.analytics.compact_interval_s < 0:
        raise ConfigError("analytics.compact_interval_s must be >= 0")


def _check_retention(ret: RetentionConfig) -> None:
    if ret.interval_s < 0 or min(ret.partitions_ahead_months, ret.archive_after_months,
                                 ret.pseudonymise_after_days) < 0:
        raise ConfigError("retention: interval_s, partitions_ahead_months, "
                          "archive_after_months and pseudonymise_after_days must be >= 0")
    if ret.pseudonymise_after_days and not ret.pseudonym_key:
        raise ConfigError("retention.pseudonym_key: needed when pseudonymise_after_days > 0 "
                          "(env BILLING_OSS_RETENTION_PSEUDONYM_KEY)")


def _check_webhooks(hooks: WebhooksConfig) -> None:
    if any(s < 0 for s in hooks.retry_schedule_s):
        raise ConfigError("webhooks.retry_schedule_s: pauses must be >= 0 seconds")
    if hooks.timeout_s <= 0 or hooks.rescan_s <= 0 or hooks.rotation_grace_s < 0:
        raise ConfigError("webhooks.timeout_s and rescan_s must be positive, "
                          "rotation_grace_s >= 0")
    if min(hooks.max_concurrency, hooks.concurrency, hooks.disable_after_dead_letters,
           hooks.in_memory) < 1:
        raise ConfigError("webhooks.max_concurrency, concurrency, disable_after_dead_letters "
                          "and in_memory: must be >= 1")


def _check_sources(config: Config) -> None:
    for name, source in config.sources.items():
        source.check(f"sources.{name}")
