"""Partner configuration and exchange rates: stored and audited in the caller's
transaction. The wholesale tariff must exist and be in the partner's local currency."""

from __future__ import annotations

from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.settlement import repo
from billing_oss.server.settlement.model import Partner, PartnerIn, RateIn, partner_view
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection


async def put(conn: Connection, actor: str, p: PartnerIn) -> tuple[Partner | None, Partner]:
    tariff = await repo.tariff_versions(conn, p.wholesale_tariff)
    if tariff is None:
        raise InvalidRequest(f"partner {p.tadig}: wholesale_tariff {p.wholesale_tariff!r} is "
                             "no tariff of the catalog", errors=[
                                 {"location": "body", "path": "wholesale_tariff",
                                  "message": "unknown tariff"}])
    if tariff[0] != p.local_currency:
        raise InvalidRequest(f"partner {p.tadig}: wholesale_tariff {p.wholesale_tariff!r} is "
                             f"in {tariff[0]}, not the local currency {p.local_currency}",
                             errors=[{"location": "body", "path": "local_currency",
                                      "message": "not the tariff's currency"}])
    before, after = await repo.upsert_partner(conn, p)
    await audit.record(conn, actor, "settlement.partner.put", f"partner:{p.tadig}",
                       _plain(before), _plain(after))
    return before, after


async def put_rate(conn: Connection, actor: str, r: RateIn) -> None:
    before = await repo.put_rate(conn, r)
    await audit.record(
        conn, actor, "settlement.rate.put",
        f"exchange_rate:{r.source}:{r.tap_currency}:{r.local_currency}:{r.valid_from}",
        None if before is None else str(before), r.rate)


def _plain(p: Partner | None) -> Any:
    if p is None:
        return None
    out = partner_view(p)
    return msgspec.json.decode(msgspec.json.encode(out))


def parse_partners(data: bytes) -> tuple[list[PartnerIn], list[RateIn]]:
    """A partners file: ``{"partners": [...], "exchange_rates": [...]}`` (JSON)."""

    class PartnersFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        partners: list[PartnerIn] = []
        exchange_rates: list[RateIn] = []

    try:
        parsed = msgspec.json.decode(data, type=PartnersFile)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"partners file: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"partners file: not JSON ({exc})") from None
    return parsed.partners, parsed.exchange_rates
