"""A process that ingests files with the pipeline, for the crash tests to SIGKILL.

Usage: python -m tests.ingest_worker DSN BATCH_SIZE FILE...   (prints "ready" once connected)
It uses the storage-oriented test rater so only the pipeline's own behaviour is under test.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import msgspec

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.server import config
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store.migrate import migrate
from tests.pipeline_doubles import FlatRater


async def main(dsn: str, batch_size: int, files: list[Path]) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    assert pool is not None
    await migrate(pool)
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, batch_size=batch_size)
    pipeline = Pipeline(pool, cfg, rater_factory=FlatRater,
                        decoders={"jsonl": FormatDecoder("jsonl")})
    print("ready", flush=True)
    for path in files:
        await pipeline.ingest_file(path, source="msc1", format="jsonl")
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), [Path(p) for p in sys.argv[3:]]))
