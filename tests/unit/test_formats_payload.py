"""Message payloads (``adapters.formats.payload``): how deep a payload may nest. Flat attrs
are told apart from nested ones for a whole batch at once; a deep one among them is still
found and named."""

from __future__ import annotations

import msgspec
import pytest

from billing_oss.adapters.formats import payload
from billing_oss.core.errors import DecodeError


def nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("flat", [True, False])
def test_attrs_nesting_past_the_bound_is_refused_beside_flat_attrs(flat: bool) -> None:
    """A batch whose other records' attrs are flat still has its deep one found."""
    attrs = [{"sent": 1.5}, {"n": "x"}] if flat else [{"a": {"b": 1}}, {"n": [1]}]
    entries = [{"record_key": f"k{i}", "kind": "voice", "event_time": "2026-03-02T10:00:00Z",
                "attrs": a} for i, a in enumerate(attrs)]
    body = msgspec.json.encode({"records": entries})
    assert len(payload.decode(body).records) == 2
    entries.append({**entries[0], "record_key": "deep", "attrs": {"a": nested(29)}})
    with pytest.raises(DecodeError, match=r"records\[2\]\.attrs nests"):
        payload.decode(msgspec.json.encode({"records": entries}))
    entries[-1]["attrs"] = {"a": nested(28)}  # 3 (envelope) + 1 (attrs) + 28 = 32: allowed
    assert len(payload.decode(msgspec.json.encode({"records": entries})).records) == 3
