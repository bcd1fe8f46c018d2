"""ISO 11649 structured creditor references (``RF18 INV0 0012 3``) for invoice numbers.

An invoice's reference is ``RF`` + two check digits + its number without separators
(``INV-000123`` -> ``RF..INV000123``); the check digits make a mistyped reference fail the
mod-97 test instead of paying the wrong invoice.
"""

from __future__ import annotations

import re

_BODY = re.compile(r"^[A-Z0-9]{1,21}$")


def _numeric(text: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in text))


def for_invoice(number_text: str) -> str:
    """The RF reference of an invoice number (``ValueError`` when it cannot carry one)."""
    body = body_of_number(number_text)
    if not _BODY.match(body):
        raise ValueError(f"invoice number {number_text!r} does not fit an RF reference")
    check = 98 - _numeric(body + "RF00") % 97
    return f"RF{check:02d}{body}"


def body_of_number(number_text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", number_text).upper()


def parse(text: str) -> str | None:
    """The body of a valid RF reference (spaces allowed, any case), else None."""
    ref = re.sub(r"\s", "", text).upper()
    if not (ref.startswith("RF") and 5 <= len(ref) <= 25 and ref[2:4].isdigit()
            and _BODY.match(ref[4:])):
        return None
    if _numeric(ref[4:] + ref[:4]) % 97 != 1:
        return None
    return ref[4:]
