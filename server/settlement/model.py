"""The settlement package's records: partners, files of the ledger, their JSON views."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import msgspec

from billing_oss.core.money import format_scaled

Tadig = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{5}$")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
FileKind = Literal["chargeable", "test"]
_PREFIX = re.compile(r"^[0-9]{3,15}$")


class SftpEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str
    port: int = 22
    username: str
    password: str | None = None
    client_key: str | None = None      # path of a private key file
    known_hosts: str | None = None     # a known_hosts file path, or the host's public key line
    insecure_skip_host_key: bool = False  # no known_hosts: any server at the address is trusted
    outbound_dir: str = "in"           # where the partner collects our files
    inbound_dir: str = "out"           # where the partner leaves RAP files for us


class PartnerIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A roaming partner as an operator declares it (CLI file, HTTP body)."""

    tadig: Tadig
    our_tadig: Tadig
    local_currency: Currency
    wholesale_tariff: Annotated[str, msgspec.Meta(min_length=1)]
    imsi_prefixes: Annotated[list[str], msgspec.Meta(min_length=1)]
    name: str = ""
    tap_currency: Currency = "SDR"
    tap_decimal_places: Annotated[int, msgspec.Meta(ge=0, le=6)] = 3
    rate_source: str = "SDR"
    utc_offset: Annotated[str, msgspec.Meta(pattern=r"^[+-][0-9]{4}$")] = "+0000"
    file_kind: FileKind = "chargeable"
    sftp: SftpEndpoint | None = None
    # Our subscribers' roaming usage in this partner's network is billed at the partner's
    # charge plus this margin (``server.settlement.roaming``).
    retail_markup_percent: Annotated[str, msgspec.Meta(
        pattern=r"^[0-9]{1,4}(\.[0-9]{1,4})?$")] = "0"
    # An inbound call event that started longer than this before the partner's file was
    # created is returned severe (the roaming agreement's time limit).
    max_event_age_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30

    def __post_init__(self) -> None:
        for i, prefix in enumerate(self.imsi_prefixes):
            if not _PREFIX.match(prefix):
                raise ValueError(f"imsi_prefixes[{i}] {prefix!r} is not 3 to 15 digits "
                                 "(an MCC-MNC or a longer IMSI range)")


class Partner(msgspec.Struct, frozen=True, kw_only=True):
    tadig: str
    our_tadig: str
    name: str
    tap_currency: str
    local_currency: str
    tap_decimal_places: int
    rate_source: str
    wholesale_tariff: str
    imsi_prefixes: list[str]
    utc_offset: str
    file_kind: FileKind
    sftp: SftpEndpoint | None
    retail_markup_percent: str
    max_event_age_days: int
    created_at: dt.datetime
    updated_at: dt.datetime


class RateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source: str = "SDR"
    tap_currency: Currency = "SDR"
    local_currency: Currency
    valid_from: dt.date
    rate: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]{1,9})?$")]  # local per TAP unit


class SettlementFile(msgspec.Struct, frozen=True, kw_only=True):
    file_id: int
    partner: str
    direction: Literal["out", "in"]
    file_type: Literal["tap", "notification", "rap", "ack"]
    kind: FileKind
    name: str
    fsn: int
    cycle: int
    rap_fsn: int | None
    sha256: str
    event_count: int
    total_charge: int
    decimal_places: int
    tap_currency: str
    period_from: dt.datetime | None
    period_to: dt.datetime | None
    state: str
    supersedes: int | None
    answers: int | None
    detail: dict[str, Any]
    created_at: dt.datetime
    sent_at: dt.datetime | None
    closed_at: dt.datetime | None
    size: int = 0

    def total(self) -> str:
        return format_scaled(self.total_charge, self.decimal_places)


def file_view(f: SettlementFile) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(f)
    out["total_charge"] = f.total()
    return out


def partner_view(p: Partner) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(p)
    if p.sftp is not None and p.sftp.password is not None:
        out["sftp"]["password"] = "***"
    return out
