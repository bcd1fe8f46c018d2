"""Files the commands write: each whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def whole_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` written through a hidden temporary file beside it, renamed over it when the
    block ends and removed when it raises: readers (and a command stopped half-way) see the
    old file or the new one, never part of one. The temporary name is the run's own, so two
    commands writing one path neither clobber nor remove each other's."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with temp.open("xb") as f:  # the umask's mode
            yield f
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
