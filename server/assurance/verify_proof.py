"""Check an inclusion proof printed by ``billing-oss audit prove`` — standalone: copy this
file anywhere; it needs only the Python standard library.

    import json
    from verify_proof import verify_proof
    proof = json.load(open("proof.json"))
    assert verify_proof(proof, root=proof["root"])  # compare root with the signed checkpoint

A leaf is ``sha256(0x00 || canonical JSON of the document's summary)`` (keys sorted, no
spaces, UTF-8); an inner node ``sha256(0x01 || left || right)``; a node without a sibling
moves up unchanged. ``path`` lists the siblings from the leaf up, each with its side.
"""

import hashlib
import json
from typing import Any


def leaf_hash(document: dict[str, Any]) -> bytes:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"\x00" + canonical.encode()).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_proof(proof: dict[str, Any], root: str) -> bool:
    """True when ``proof["leaf"]`` (the document summary) is in the tree whose root is
    ``root`` (hex), by the siblings in ``proof["path"]``."""
    digest = leaf_hash(proof["leaf"])
    for step in proof["path"]:
        sibling = bytes.fromhex(step["hash"])
        digest = node_hash(sibling, digest) if step["side"] == "left" else \
            node_hash(digest, sibling)
    return digest.hex() == root


def main(argv: list[str]) -> int:
    """``python verify_proof.py PROOF.json [ROOT]``: exit 0 when the proof holds."""
    with open(argv[0], encoding="utf-8") as f:
        proof = json.load(f)
    root = argv[1] if len(argv) > 1 else proof["root"]
    ok = verify_proof(proof, root)
    print(f"{proof['leaf'].get('type')} {proof['leaf'].get('number')}: "
          + ("recorded unchanged under root " + root if ok else "NOT under root " + root))
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
