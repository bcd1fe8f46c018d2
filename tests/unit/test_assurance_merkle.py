"""The Merkle tree of checkpoints against the standalone verifier, and money as text."""

from __future__ import annotations

import pytest

from billing_oss.server.assurance import merkle
from billing_oss.server.assurance.model import decimal_text
from billing_oss.server.assurance.verify_proof import leaf_hash, verify_proof


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_leaf_proves_against_the_root_and_nothing_else_does(size: int) -> None:
    docs = [{"type": "invoice", "invoice_id": i, "payable_micros": 1_000_000 * i}
            for i in range(size)]
    tree = merkle.levels([leaf_hash(d) for d in docs])
    root = tree[-1][0].hex()
    for index, doc in enumerate(docs):
        proof = {"leaf": doc, "path": merkle.path(tree, index)}
        assert verify_proof(proof, root)
        assert not verify_proof({**proof, "leaf": {**doc, "payable_micros": 1}}, root)
        if size > 1:  # a proof of one leaf does not prove its neighbour
            other = docs[(index + 1) % size]
            assert not verify_proof({**proof, "leaf": other}, root)


def test_a_leaf_is_not_an_inner_node() -> None:
    # Domain separation: two leaves' node hash is not the hash of a leaf of those bytes.
    a, b = leaf_hash({"x": 1}), leaf_hash({"x": 2})
    assert merkle.levels([a, b])[-1][0] != merkle.levels([a + b])[-1][0]


@pytest.mark.parametrize(("micros", "text"), [
    (0, "0.00"), (1_230_000, "1.23"), (1_234_500, "1.2345"), (-50_000, "-0.05"),
    (1, "0.000001"), (12_000_000_000, "12000.00"),
])
def test_money_is_exact_with_at_least_the_cents(micros: int, text: str) -> None:
    assert decimal_text(micros) == text
