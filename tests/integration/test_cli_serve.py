"""`billing-oss serve` as a process: clean start and stop, one-line errors with status 2."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_port

CLI = [sys.executable, "-m", "billing_oss"]


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_help_lists_verbs(tmp_path: Path) -> None:
    out = _run(["--help"], tmp_path)
    assert out.returncode == 0 and "serve" in out.stdout
    serve_help = _run(["serve", "--help"], tmp_path)
    assert "--database-url" in serve_help.stdout and "--config" in serve_help.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--config", "absent.toml"], {}, "configuration file not found"),
        ([], {"BILLING_OSS_HTTP_PORT": "http"}, "http.port"),
        (["--database-url", "postgresql://nobody@127.0.0.1:1/none"], {},
         "cannot connect to PostgreSQL"),
    ],
)
def test_start_failures_are_one_line_and_status_2(tmp_path: Path, args: list[str],
                                                  env: dict[str, str], message: str) -> None:
    out = _run(["serve", *args], tmp_path, **env)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_is_one_line_and_status_2(tmp_path: Path, database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _run(["serve", "--database-url", database_url, "--port", str(port)], tmp_path)
    assert out.returncode == 2
    assert f"127.0.0.1:{port}: the port is already in use" in out.stderr
    assert "Traceback" not in out.stderr
    # a deployment (its own database) that names no seller is told so, once, at start
    assert out.stderr.count("e-invoices will not be EN 16931 valid") == 1
    assert "billing.seller_vat_id" in out.stderr
    assert out.stderr.count("invoices will print without the seller's") == 1


def test_embedded_postgres_start_serve_and_clean_stop(tmp_path: Path) -> None:
    """No database URL: the embedded server starts under ./var and stops with the process."""
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("BILLING_OSS_")})
    try:
        wait_for_port(port, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            assert r.status == 200
        pgdata = tmp_path / "var" / "pgdata"
        assert (pgdata / "PG_VERSION").exists()
        assert "max_wal_size = '4GB'" in (pgdata / "billing-oss.conf").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "embedded postgresql stopped" in err
    # the demo configuration names a complete (fictional) seller: nothing to warn about
    assert "e-invoices will not be EN 16931 valid" not in err
    assert "invoices will print without the seller's" not in err
    deadline = time.monotonic() + 10
    while (tmp_path / "var" / "pgdata" / "postmaster.pid").exists():
        assert time.monotonic() < deadline, "embedded PostgreSQL still running"
        time.sleep(0.1)


def test_api_key_verb_creates_lists_and_revokes(tmp_path: Path, database_url: str) -> None:
    db = ["--database-url", database_url]
    created = _run(["api-key", "create", "--role", "operator", "--name", "ops", "--json", *db],
                   tmp_path)
    assert created.returncode == 0, created.stderr
    import json

    new = json.loads(created.stdout)
    assert new["token"].startswith("bok_") and new["key"]["role"] == "operator"
    listed = _run(["api-key", "list", *db], tmp_path)
    assert new["key"]["key_id"] in listed.stdout and new["token"] not in listed.stdout
    assert _run(["api-key", "revoke", new["key"]["key_id"], *db], tmp_path).returncode == 0
    again = _run(["api-key", "revoke", new["key"]["key_id"], *db], tmp_path)
    assert again.returncode == 1 and "no active key" in again.stderr


def test_api_key_verb_creates_customer_keys_for_an_account(tmp_path: Path,
                                                          database_url: str) -> None:
    import asyncio
    import json

    import asyncpg

    db = ["--database-url", database_url]
    missing = _run(["api-key", "create", "--role", "customer", *db], tmp_path)
    assert missing.returncode == 1 and "needs an account" in missing.stderr
    unknown = _run(["api-key", "create", "--role", "customer", "--account", "C9", *db], tmp_path)
    assert unknown.returncode == 1 and "no account C9" in unknown.stderr

    async def add_account() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute("INSERT INTO accounts (account_id) VALUES ('C9')")
        await conn.close()

    asyncio.run(add_account())
    created = _run(["api-key", "create", "--role", "customer", "--account", "C9", "--json", *db],
                   tmp_path)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    assert key["role"] == "customer" and key["account_id"] == "C9"
    listed = _run(["api-key", "list", *db], tmp_path)
    assert f"{key['key_id']}  customer" in listed.stdout and "account C9" in listed.stdout
