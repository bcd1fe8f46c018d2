"""Every problem of a catalog at once (up to a limit), not only the first.

The checks stop at their first failure; an operator fixing a file wants the whole list. So
the file is checked again and again: after each failure inside one entry of a top-level list
(``tariffs[3]...``), that entry is set aside and the check runs on the rest, with the paths
mapped back to the file's own indexes. A failure that only follows from an entry set aside
(an account naming a tariff that failed) is not reported again. A failure outside any entry
(``currency``, the top level) ends the search: what follows would not mean much.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from billing_oss.core.errors import CatalogError

SECTIONS = ("tariffs", "accounts", "products", "tax_rates", "discounts")
KEYS = {"tariffs": "id", "accounts": "id", "products": "id", "discounts": "code"}
LIMIT = 20
_IN_ENTRY = re.compile(r"^(?P<section>[a-z_]+)\[(?P<index>\d+)\](?P<rest>.*)$")
_REFERENCE = re.compile(r"^(?P<kind>tariff|product) '(?P<name>[^']*)' is not defined$")


def catalog_problems(data: Mapping[str, Any], check: Callable[[dict[str, Any]], object],
                     limit: int = LIMIT) -> list[CatalogError]:
    """The problems ``check`` finds in ``data``, at most ``limit`` of them, in the order
    found; an empty list when the catalog is valid."""
    work = dict(data)
    origin: dict[str, list[int]] = {}
    for section in SECTIONS:
        if isinstance(work.get(section), list):
            work[section] = list(work[section])
            origin[section] = list(range(len(work[section])))
    set_aside: dict[str, set[str]] = {"tariff": set(), "product": set()}
    found: list[CatalogError] = []
    while len(found) < limit:
        try:
            check(work)
            return found
        except CatalogError as exc:
            where = _IN_ENTRY.match(exc.path)
            if where is None or where["section"] not in origin:
                found.append(exc)
                return found
            section, index = where["section"], int(where["index"])
            if index >= len(origin[section]):
                found.append(exc)
                return found
            entry = work[section].pop(index)
            file_index = origin[section].pop(index)
            reason = exc.message.removeprefix(f"{exc.path}: ")
            if not _follows_from_set_aside(reason, set_aside):
                found.append(CatalogError(f"{section}[{file_index}]{where['rest']}", reason))
            key = KEYS.get(section)
            if key and isinstance(entry, Mapping) and isinstance(entry.get(key), str):
                kind = section[:-1]
                if kind in set_aside:
                    set_aside[kind].add(entry[key])
    return found


def _follows_from_set_aside(message: str, set_aside: Mapping[str, set[str]]) -> bool:
    reference = _REFERENCE.match(message)
    return reference is not None and reference["name"] in set_aside[reference["kind"]]
