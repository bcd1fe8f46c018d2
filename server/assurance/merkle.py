"""A Merkle tree over the documents a checkpoint vouches for: finalised invoices, credit
notes and control results, each summarised by a small JSON object (its leaf).

The hashing is ``verify_proof``'s, so a proof built here checks there with no project code.
"""

from __future__ import annotations

from typing import Any

from billing_oss.server.assurance.verify_proof import leaf_hash, node_hash
from billing_oss.server.store.pool import Connection

# One summary per document, ordered by its key; amounts are integer micro-units.
LEAVES_SQL = """
SELECT key, doc::text FROM (
  SELECT 'invoice:' || i.account_id || '/' || i.invoice_id AS key,
         jsonb_build_object('type', 'invoice', 'account_id', i.account_id,
             'invoice_id', i.invoice_id, 'number', i.number_text, 'currency', trim(i.currency),
             'issue_date', i.issue_date::text, 'period', i.period, 'net_micros', i.net_micros,
             'tax_micros', i.tax_micros, 'payable_micros', i.payable_micros,
             'lines_sha256', (SELECT encode(sha256(convert_to(coalesce(string_agg(
                 concat_ws('|', l.line_no, l.kind, l.service, l.quantity, l.net_micros,
                           l.tax_category, l.tax_rate), E'\\n' ORDER BY l.line_no), ''),
                 'UTF8')), 'hex') FROM invoice_lines l
                 WHERE l.account_id = i.account_id AND l.invoice_id = i.invoice_id)) AS doc
  FROM invoices i WHERE i.status = 'finalised'
  UNION ALL
  SELECT 'credit_note:' || n.account_id || '/' || n.credit_note_id,
         jsonb_build_object('type', 'credit_note', 'account_id', n.account_id,
             'credit_note_id', n.credit_note_id, 'invoice_id', n.invoice_id,
             'number', n.number_text, 'currency', trim(n.currency),
             'issue_date', n.issue_date::text, 'net_micros', n.net_micros,
             'tax_micros', n.tax_micros, 'total_micros', n.total_micros)
  FROM credit_notes n
  UNION ALL
  SELECT 'assurance:' || r.run_id || '/' || r.control,
         jsonb_build_object('type', 'control_result', 'run_id', r.run_id,
             'control', r.control, 'version', r.version, 'status', r.status,
             'offending', r.offending, 'at_stake', r.at_stake)
  FROM assurance_results r) d
ORDER BY key COLLATE "C"
"""


async def leaves(conn: Connection) -> list[tuple[str, str]]:
    """(key, summary JSON) of every document, in tree order."""
    return [(r["key"], r["doc"]) for r in await conn.fetch(LEAVES_SQL)]


async def leaf(conn: Connection, key: str) -> dict[str, Any] | None:
    import json

    row = await conn.fetchrow(f"SELECT doc::text FROM ({LEAVES_SQL}) d WHERE key = $1", key)
    found: dict[str, Any] | None = None if row is None else json.loads(row["doc"])
    return found


def levels(hashes: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first; the root is ``levels[-1][0]``."""
    if not hashes:
        return [[leaf_hash({})]]
    tree = [hashes]
    while len(tree[-1]) > 1:
        below = tree[-1]
        tree.append([node_hash(below[i], below[i + 1]) if i + 1 < len(below) else below[i]
                     for i in range(0, len(below), 2)])
    return tree


def path(tree: list[list[bytes]], index: int) -> list[dict[str, str]]:
    """The siblings from leaf ``index`` up to the root."""
    steps = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            steps.append({"side": "left" if sibling < index else "right",
                          "hash": level[sibling].hex()})
        index //= 2
    return steps
