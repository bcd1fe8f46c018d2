"""A Merkle tree over the documents a checkpoint vouches for: finalised invoices, credit
notes and control results, each summarised by a small JSON object (its leaf).

The hashing is ``verify_proof``'s, so a proof built here checks there with no project code.
"""

from __future__ import annotations

from billing_oss.server.assurance.verify_proof import leaf_hash, node_hash


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
