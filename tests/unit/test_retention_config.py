"""`[retention]`: checked at load, the key from the environment; UTC month arithmetic; the
HMAC pads the database hashes with are RFC 2104's."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest

from billing_oss.core.errors import ConfigError
from billing_oss.server import config
from billing_oss.server.retention import months, pseudonyms


def test_a_period_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"retention\.pseudonym_key: needed"):
        config.load(env={"BILLING_OSS_RETENTION_PSEUDONYMISE_AFTER_DAYS": "90"})
    with pytest.raises(ConfigError, match="must be >= 0"):
        config.load(env={"BILLING_OSS_RETENTION_ARCHIVE_AFTER_MONTHS": "-1"})


def test_the_key_comes_from_the_environment() -> None:
    cfg = config.load(env={"BILLING_OSS_RETENTION_PSEUDONYMISE_AFTER_DAYS": "90",
                           "BILLING_OSS_RETENTION_PSEUDONYM_KEY": "s3cret"})
    assert (cfg.retention.pseudonymise_after_days, cfg.retention.pseudonym_key) == (90, "s3cret")
    assert config.load(env={}).retention.partitions_ahead_months == 3


def test_months() -> None:
    assert months.add(dt.date(2025, 11, 1), 3) == dt.date(2026, 2, 1)
    assert months.add(dt.date(2025, 1, 1), -1) == dt.date(2024, 12, 1)
    # 00:30 in Paris on 1 March is still February in UTC: partitions are UTC months
    paris = dt.timezone(dt.timedelta(hours=1))
    assert months.first_of(dt.datetime(2026, 3, 1, 0, 30, tzinfo=paris)) == dt.date(2026, 2, 1)
    assert months.parse("2026-02") == dt.date(2026, 2, 1)
    with pytest.raises(ValueError, match="not a month"):
        months.parse("2026-13")


@pytest.mark.parametrize("key", ["k", "x" * 64, "long key " * 20])
def test_pads_make_the_same_hmac(key: str) -> None:
    inner, outer = pseudonyms.pads(key)
    number = b"33611111111"
    by_pads = hashlib.sha256(outer + hashlib.sha256(inner + number).digest()).hexdigest()
    assert by_pads == hmac.new(key.encode(), number, hashlib.sha256).hexdigest()
    assert pseudonyms.pseudonym(key, "33611111111") == "p:" + by_pads
