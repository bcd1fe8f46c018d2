"""The msgspec building blocks the catalog's wire types share: ``schema``'s and those the
pricing rules (``server.catalog.rules``) add to a rate."""

from __future__ import annotations

from typing import Annotated

import msgspec

DecimalText = Annotated[str, msgspec.Meta(max_length=40, examples=["0.10"])]


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Mirrors its JSON/TOML text one to one and refuses unknown keys."""
