"""A database as an earlier release left it: the migrations before a given one applied, for
tests of what that migration does to data already there."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from billing_oss.server.store import migrate as migrate_module


async def migrate_before(pool: asyncpg.Pool, first: str) -> None:
    """Apply every migration whose file name sorts before ``first`` (e.g. ``"1511"``); the
    next ``migrate`` applies ``first`` and those after it."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        for path in sorted(migrate_module.MIGRATIONS_DIR.glob("*.sql")):
            if path.name < first:
                shutil.copy(path, Path(folder) / path.name)
        patch.setattr(migrate_module, "MIGRATIONS_DIR", Path(folder))
        await migrate_module.migrate(pool)
