"""Configured collection sources: ``[sources.<name>]`` tables, one transport each, by ``type``.

Each table names its transport with ``type = "mqtt"`` or ``type = "sftp"``; the keys a table
leaves out take the defaults below (documented with examples in ``config/billing-oss.toml``).
No source is configured by default: HTTP ingest (``POST /v1/usage``) is always served.

A transport is its adapter module and its struct here: the struct's ``tag`` is its
``type``, ``check`` refuses bad values at load naming the key, and ``adapter`` names the
class ``adapters.sources.build`` starts (``module:Class``, imported only when configured).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from billing_oss.core.errors import ConfigError


def _check_port(where: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where}.port: {port} is not a TCP port (1-65535)")


DEFAULT_SHARED_GROUP = "billing-oss"  # the shared-subscription group of serve --workers N


class MqttSource(msgspec.Struct, tag="mqtt", tag_field="type", forbid_unknown_fields=True,
                 frozen=True, kw_only=True):
    adapter: ClassVar[str] = "billing_oss.adapters.mqtt:MqttAdapter"

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    # Topic filters subscribed at QoS 1; with shared_group set each becomes
    # "$share/<group>/<filter>" so several workers split the messages.
    topics: list[str] = msgspec.field(default_factory=lambda: ["usage/#"])
    shared_group: str = ""
    # Stable per worker: the broker keeps the session (unacknowledged messages) under it.
    client_id: str = ""
    session_expiry_s: int = 86400
    # Unacknowledged messages the broker may send ahead (MQTT v5 Receive Maximum).
    receive_maximum: int = 2000
    # A batch is committed when it holds batch_records records or flush_ms after its first.
    batch_records: int = 2000
    flush_ms: int = 20
    # Batches being committed at once (each its own transaction); acknowledgements still go
    # out in arrival order, a batch's only after every earlier one's.
    commits_in_flight: int = 3
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0
    enabled: bool = True

    def check(self, where: str) -> None:
        _check_port(where, self.port)
        if not self.topics:
            raise ConfigError(f"{where}.topics: subscribe to at least one topic filter")
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigError(f"{where}.receive_maximum: must be 1..65535")
        if self.batch_records < 1 or self.flush_ms < 0:
            raise ConfigError(f"{where}: batch_records >= 1 and flush_ms >= 0 are needed")
        if not 1 <= self.commits_in_flight <= 64:
            raise ConfigError(f"{where}.commits_in_flight: must be 1..64")


class SftpSource(msgspec.Struct, tag="sftp", tag_field="type", forbid_unknown_fields=True,
                 frozen=True, kw_only=True):
    adapter: ClassVar[str] = "billing_oss.adapters.sftp:SftpPoller"

    host: str
    username: str
    remote_dir: str
    format: str
    port: int = 22
    password: str = ""
    client_key: str = ""  # path of a private key file
    # The server's public host key ("ssh-ed25519 AAAA...") or a known_hosts file path.
    # Required: a source without one does not start, unless insecure_skip_host_key is set
    # (then any server is trusted, and each poll logs a warning saying so).
    known_host_key: str = ""
    insecure_skip_host_key: bool = False
    pattern: str = "*"
    # Regular expression whose first group, matched on the file name, is its sequence number.
    sequence_pattern: str = r"(\d+)(?!.*\d)"
    poll_interval_s: float = 30.0
    # A file modified less than this long ago may still be uploading: left for a later poll.
    min_age_s: float = 2.0
    # How a file is known to be whole (adapters/sftp_completion.py): "header" (its header's
    # declared length or count is on disk), "rename" (uploaded under a temporary name, then
    # renamed), "marker" (<name><marker_suffix> appears beside it), "stable" (size and mtime
    # unchanged across two polls). Empty: "header" for 3gpp and tap3, "stable" otherwise.
    completion: Literal["", "header", "rename", "marker", "stable"] = ""
    # Names an upload in progress goes under: never taken, whatever the mode.
    temporary_patterns: list[str] = msgspec.field(
        default_factory=lambda: [".*", "*.tmp", "*.part", "*.filepart"])
    marker_suffix: str = ".done"
    # A file still incomplete after this long raises an "incomplete" alarm (once).
    incomplete_alarm_s: float = 3600.0
    # Files ingested at once (each downloaded and checked in name order first).
    files_in_flight: int = 2
    partner: str = ""
    # The format's options (``billing-oss decode --list-options FORMAT``), e.g. a CSV's
    # ``{ delimiter = ";", columns = [...] }``: typed and checked at start.
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    enabled: bool = True

    def check(self, where: str) -> None:
        _check_port(where, self.port)
        if self.poll_interval_s <= 0:
            raise ConfigError(f"{where}.poll_interval_s: must be positive")
        if not 1 <= self.files_in_flight <= 16:
            raise ConfigError(f"{where}.files_in_flight: must be 1..16")
        if self.completion == "marker" and not self.marker_suffix:
            raise ConfigError(f"{where}.marker_suffix: required with completion = \"marker\"")
        if self.incomplete_alarm_s <= 0:
            raise ConfigError(f"{where}.incomplete_alarm_s: must be positive")
        if not self.known_host_key and not self.insecure_skip_host_key:
            raise ConfigError(f"{where}.known_host_key: the server's host key is required (a "
                              "public key line or a known_hosts file); to trust any server, "
                              "set insecure_skip_host_key = true")


SourceConfig = MqttSource | SftpSource
