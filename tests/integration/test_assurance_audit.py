"""Tamper evidence beyond the database: signed checkpoints of the audit chain head catch a
truncated tail, rewritten and reordered rows even when every hash was recomputed; Merkle
inclusion proofs of invoices check with the standalone verifier. And the verbs and routes
a user drives it with: `assure run|list|show`, `audit checkpoint|verify|prove`,
`/v1/assurance/runs`."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from billing_oss.core.errors import NotFound
from billing_oss.server import config, jobs
from billing_oss.server.assurance import checkpoints
from billing_oss.server.assurance.jobs import AssuranceJobs
from billing_oss.server.store import audit
from tests.conftest import REPO
from tests.integration import assurance_seed
from tests.integration.api_harness import live_api


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[asyncpg.Pool]:
    await assurance_seed.seed(pool, tmp_path_factory.mktemp("cdr"))
    yield pool


def cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing_oss", *args,
                           "--database-url", database_url],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


async def chain(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    await audit.chain_pending(pool)
    rows = await pool.fetch("SELECT seq, pos, at, actor, action, entity, before::text,"
                            " after::text, prev_hash, hash FROM audit_log ORDER BY pos")
    return [dict(r) for r in rows]


async def rewrite(pool: asyncpg.Pool, rows: list[dict[str, Any]]) -> None:
    """Store ``rows`` as the log, in that order, every hash recomputed so the chain alone
    looks intact — what an administrator who knows the hashing would do."""
    prev = audit.GENESIS
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM audit_log")
        for pos, r in enumerate(rows, start=1):
            before = None if r["before"] is None else json.loads(r["before"])
            after = None if r["after"] is None else json.loads(r["after"])
            digest = audit.chain_hash(prev, r["actor"], r["action"], r["entity"], before,
                                      after, r["at"])
            await conn.execute(
                "INSERT INTO audit_log (seq, pos, at, actor, action, entity, before, after,"
                " prev_hash, hash)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10)",
                r["seq"], pos, r["at"], r["actor"], r["action"], r["entity"], r["before"],
                r["after"], prev, digest)
            prev = digest
        await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", len(rows), prev)


@pytest.fixture
async def original(seeded: asyncpg.Pool) -> AsyncIterator[list[dict[str, Any]]]:
    """The log as seeded, put back after each tampering test."""
    rows = await chain(seeded)
    yield rows
    await rewrite(seeded, rows)
    assert await chain(seeded) == rows


async def make_checkpoint(pool: asyncpg.Pool, directory: Path) -> Path:
    key = checkpoints.signing_key(directory.parent / "signing.key")
    async with pool.acquire() as conn:
        return await checkpoints.create(conn, directory, key)


async def problems_against(pool: asyncpg.Pool, path: Path) -> list[checkpoints.Problem]:
    async with pool.acquire() as conn:
        return await checkpoints.verify(conn, checkpoints.read(path))


async def test_an_intact_log_verifies_against_its_checkpoint(
    seeded: asyncpg.Pool, original: list[dict[str, Any]], tmp_path: Path, database_url: str
) -> None:
    path = await make_checkpoint(seeded, tmp_path / "cp")
    signed = checkpoints.read(path)
    assert signed.seq == original[-1]["pos"] and signed.hash == original[-1]["hash"]
    assert signed.leaves >= 4  # the January invoices at least
    assert await problems_against(seeded, path) == []
    out = await asyncio.to_thread(cli, "audit", "verify", "--checkpoint", str(path),
                                  database_url=database_url)
    assert out.returncode == 0 and "intact" in out.stdout, out.stdout + out.stderr


async def test_a_truncated_tail_with_a_rewritten_head(
    seeded: asyncpg.Pool, original: list[dict[str, Any]], tmp_path: Path, database_url: str
) -> None:
    path = await make_checkpoint(seeded, tmp_path / "cp")
    await rewrite(seeded, original[:-2])
    assert (await audit.verify(seeded)).ok  # the chain alone cannot tell
    found = await problems_against(seeded, path)
    assert [p.seq for p in found] == [original[-1]["pos"]]
    assert "tail was deleted" in found[0].reason
    out = await asyncio.to_thread(cli, "audit", "verify", "--checkpoint", str(path),
                                  database_url=database_url)
    assert out.returncode == 1 and "TAMPERED" in out.stdout


async def test_a_rewritten_row_with_every_hash_recomputed(
    seeded: asyncpg.Pool, original: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = await make_checkpoint(seeded, tmp_path / "cp")
    changed = [dict(r) for r in original]
    changed[2]["actor"] = "someone else"
    await rewrite(seeded, changed)
    assert (await audit.verify(seeded)).ok
    found = await problems_against(seeded, path)
    assert [p.seq for p in found] == [original[-1]["pos"]]
    assert "rewritten or reordered" in found[0].reason


async def test_reordered_rows(seeded: asyncpg.Pool, original: list[dict[str, Any]],
                              tmp_path: Path) -> None:
    path = await make_checkpoint(seeded, tmp_path / "cp")
    swapped = [dict(r) for r in original]
    swapped[1], swapped[2] = swapped[2], swapped[1]
    await rewrite(seeded, swapped)
    assert (await audit.verify(seeded)).ok
    assert [p.seq for p in await problems_against(seeded, path)] == [original[-1]["pos"]]


async def test_a_forged_checkpoint_is_refused(seeded: asyncpg.Pool, tmp_path: Path,
                                              database_url: str) -> None:
    path = await make_checkpoint(seeded, tmp_path / "cp")
    forged = json.loads(path.read_text())
    forged["seq"] -= 2  # pretend the head was earlier, to hide a truncation
    path.write_text(json.dumps(forged))
    with pytest.raises(ValueError, match="signature"):
        checkpoints.read(path)
    out = await asyncio.to_thread(cli, "audit", "verify", "--checkpoint", str(path),
                                  database_url=database_url)
    assert out.returncode == 1 and "REJECTED" in out.stdout


def standalone_verifier() -> Any:
    """verify_proof.py loaded from its file alone, as an auditor would."""
    spec = importlib.util.spec_from_file_location(
        "verify_proof", REPO / "server/assurance/verify_proof.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_an_invoice_inclusion_proof_checks_with_the_standalone_verifier(
    seeded: asyncpg.Pool, tmp_path: Path, database_url: str
) -> None:
    path = await make_checkpoint(seeded, tmp_path / "cp")
    invoice_id = await seeded.fetchval(
        "SELECT invoice_id FROM invoices WHERE status = 'finalised' ORDER BY invoice_id LIMIT 1")
    out = await asyncio.to_thread(cli, "audit", "prove", "--invoice", str(invoice_id),
                                  "--checkpoint", str(path), database_url=database_url)
    assert out.returncode == 0, out.stderr
    proof = json.loads(out.stdout)
    verifier = standalone_verifier()
    root = checkpoints.read(path).merkle_root
    assert proof["root"] == root and proof["leaf"]["invoice_id"] == invoice_id
    assert verifier.verify_proof(proof, root)
    # Any change to what the invoice says breaks the proof.
    proof["leaf"]["payable_micros"] += 1
    assert not verifier.verify_proof(proof, root)


async def test_an_invoice_changed_after_the_checkpoint_has_no_proof(
    seeded: asyncpg.Pool, tmp_path: Path
) -> None:
    path = await make_checkpoint(seeded, tmp_path / "cp")
    row = await seeded.fetchrow("SELECT account_id, invoice_id, line_no FROM invoice_lines"
                                " ORDER BY invoice_id, line_no LIMIT 1")
    key = f"invoice:{row['account_id']}/{row['invoice_id']}"
    with pytest.raises(Rollback):
        async with seeded.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE invoice_lines SET quantity = quantity + 1"
                               " WHERE account_id = $1 AND invoice_id = $2 AND line_no = $3",
                               row["account_id"], row["invoice_id"], row["line_no"])
            with pytest.raises(NotFound, match="changed since the checkpoint"):
                await checkpoints.prove(conn, path, key)
            raise Rollback


class Rollback(Exception):
    pass


async def test_assure_run_list_show_from_the_shell(seeded: asyncpg.Pool,
                                                   database_url: str) -> None:
    ok = await asyncio.to_thread(cli, "assure", "run", "--control", "billing",
                                 database_url=database_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  billing.invoice_totals v1: 0 offending" in ok.stdout
    await seeded.execute("UPDATE settlement_files SET total_charge = 2300")
    try:
        bad = await asyncio.to_thread(cli, "assure", "run", "--control", "settlement.tap_totals",
                                      "--json", database_url=database_url)
        assert bad.returncode == 1
        run = json.loads(bad.stdout)
        assert run["failed"] == 1 and run["results"][0]["at_stake"] == {"SDR": "0.55"}
        shown = await asyncio.to_thread(cli, "assure", "show", str(run["run_id"]),
                                        database_url=database_url)
        assert "settlement_file:" in shown.stdout and "all of them: SELECT" in shown.stdout
        listed = await asyncio.to_thread(cli, "assure", "list", database_url=database_url)
        assert f"run {run['run_id']} " in listed.stdout and "1 FAILED" in listed.stdout
    finally:
        await seeded.execute("UPDATE settlement_files SET total_charge = 1750")


async def test_runs_over_http(seeded: asyncpg.Pool, database_url: str) -> None:
    async with live_api(seeded, database_url) as api:
        async with api.http.post(api.url + "/v1/assurance/runs",
                                 headers=api.headers("operator"),
                                 json={"controls": ["ledger", "audit.chain"]}) as r:
            assert r.status == 202, await r.text()
            location = r.headers["Location"].removeprefix(api.url)
            queued = await r.json()
        run_id = queued["run_id"]
        assert location == f"/v1/assurance/runs/{run_id}"
        assert queued["state"] == "queued" and queued["controls"] == 6
        assert queued["controls_done"] == 0 and queued["results"] == []
        status, waiting = await api.call("GET", location, "viewer")
        assert status == 200 and waiting["state"] == "queued"
        # The background worker runs it; meanwhile the run shows how far it got.
        worker = asyncio.create_task(jobs.run_next(seeded, AssuranceJobs(
            seeded, config.load(env={}).assurance)))
        seen: list[tuple[str, int]] = []
        while not worker.done():
            status, now = await api.call("GET", location, "viewer")
            assert status == 200, now
            seen.append((now["state"], now["controls_done"]))
            await asyncio.sleep(0.005)
        assert await worker == run_id
        assert all(state in ("queued", "running", "done") for state, _ in seen)
        assert [done for _, done in seen] == sorted(done for _, done in seen)
        assert ("running", 0) in seen or any(s == "running" and 0 < d < 6 for s, d in seen)
        status, run = await api.call("GET", location, "viewer")
        assert status == 200 and run["state"] == "done", run
        assert run["run_id"] == run_id and run["controls_done"] == run["controls"] == 6
        assert {r["control"] for r in run["results"]} == {
            "ledger.documents_booked", "ledger.payments_booked", "ledger.aging_receivables",
            "ledger.journal_days",
            "ledger.gl_balanced", "audit.chain"}
        assert run["failed"] == 0 and run["actor"] == queued["actor"]
        job = await seeded.fetchrow("SELECT state, controls_done FROM assurance_jobs"
                                    " WHERE assurance_job_id = $1", run_id)
        assert tuple(job) == ("done", 6)
        status, page = await api.call("GET", "/v1/assurance/runs", "viewer",
                                      params={"limit": 1})
        assert status == 200 and page["items"][0]["run_id"] == run["run_id"]
        status, problem = await api.call("POST", "/v1/assurance/runs", "operator",
                                         json={"controls": ["no.such"]})
        assert status == 422, problem
        status, _ = await api.call("POST", "/v1/assurance/runs", "viewer", json={})
        assert status == 403
        status, _ = await api.call("GET", "/v1/assurance/runs/999999", "viewer")
        assert status == 404
