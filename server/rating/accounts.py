"""Account resolution: which account, and so which tariff, a record's identifier names.

Kept apart from the compiled tariffs on purpose. Accounts change all day (provisioning, plan
changes); tariffs rarely, and compiling a tariff's prefix tables costs seconds at a million
prefixes. So a rater holds its compiled tariffs and an ``Accounts`` directory, and a new
account or identifier changes only the directory, in place (``replace``), in time
proportional to the accounts changed: no recompile, no copy of the whole directory.

Raters read the directory from other threads while it changes; every step of ``replace`` is
one dict store or delete, and an identifier that stays is overwritten, never removed and
re-added, so a concurrent lookup sees the old account or the new one, never none.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog.model import Account
from billing_oss.server.rating.fields import IDENTIFIER_FIELDS

_EVENT_FIELDS = IDENTIFIER_FIELDS["event"]


class Accounts:
    """identifier -> ``Account`` (its id and tariff history)."""

    __slots__ = ("_by_identifier", "_identifiers_of")

    def __init__(self, by_identifier: Mapping[str, Account] | None = None) -> None:
        self._by_identifier: dict[str, Account] = dict(by_identifier or {})
        self._identifiers_of: dict[str, list[str]] = {}
        for identifier, account in self._by_identifier.items():
            self._identifiers_of.setdefault(account.id, []).append(identifier)

    def __len__(self) -> int:
        return len(self._by_identifier)

    def get(self, identifier: str) -> Account | None:
        return self._by_identifier.get(identifier)

    @property
    def by_identifier(self) -> dict[str, Account]:
        """The directory itself (identifier -> account), for lookups over columns
        (``native.columnar.resolve``); read it, never change it."""
        return self._by_identifier

    def find(self, record: UsageRecord) -> Account | None:
        """The account of the first of the record's identifier fields that is known
        (``server.rating.fields.IDENTIFIER_FIELDS`` gives the fields and their order)."""
        by_identifier = self._by_identifier
        for name in IDENTIFIER_FIELDS.get(record.kind, _EVENT_FIELDS):
            candidate = getattr(record, name)
            if candidate:
                account = by_identifier.get(candidate)
                if account is not None:
                    return account
        return None

    def replace(self, account_ids: Collection[str], current: Mapping[str, Account]) -> None:
        """These accounts changed: ``current`` is all their identifiers now (identifier ->
        account); any identifier they had before and is not in it is dropped."""
        by_identifier, identifiers_of = self._by_identifier, self._identifiers_of
        now: dict[str, list[str]] = {}
        for identifier, account in current.items():
            by_identifier[identifier] = account
            now.setdefault(account.id, []).append(identifier)
        for account_id in account_ids:
            for identifier in identifiers_of.pop(account_id, ()):
                if identifier not in current:
                    owner = by_identifier.get(identifier)
                    if owner is not None and owner.id == account_id:
                        del by_identifier[identifier]
        identifiers_of.update(now)
