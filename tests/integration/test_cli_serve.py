"""`billing-oss serve` as a process: clean start and stop, one-line errors with status 2."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
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
        # the supervisor meets the database first: it says so and starts no worker
        (["--workers", "2", "--database-url", "postgresql://nobody@127.0.0.1:1/none"], {},
         "cannot connect to PostgreSQL"),
        (["--workers", "0"], {}, "--workers: must be 1..64, not 0"),
    ],
)
def test_start_failures_are_one_line_and_status_2(tmp_path: Path, args: list[str],
                                                  env: dict[str, str], message: str) -> None:
    out = _run(["serve", *args], tmp_path, **env)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert "worker started" not in out.stderr


def test_port_in_use_under_a_supervisor_is_one_line_and_status_2(tmp_path: Path,
                                                                 database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _run(["serve", "--workers", "2", "--database-url", database_url,
                    "--port", str(port)], tmp_path)
    assert out.returncode == 2
    assert f"127.0.0.1:{port}: the port is already in use" in out.stderr
    assert "Traceback" not in out.stderr and "worker started" not in out.stderr


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
        # the settings written at start: checkpoints spaced by time and by the disk free
        conf = (pgdata / "billing-oss.conf").read_text()
        assert "checkpoint_timeout = '30min'" in conf
        assert re.search(r"^max_wal_size = '([1-9]|1[0-6])GB'$", conf, re.M), conf
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


def _workers_of(supervisor: int) -> list[int]:
    """The pids of ``supervisor``'s live worker processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if int(ppid) == supervisor and state != "Z" and b"--worker-index" in argv:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _until(predicate: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    supervisor = subprocess.Popen(
        [*CLI, "serve", "--workers", "2", "--database-url", database_url, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        assert _until(lambda: len(_workers_of(supervisor.pid)) == 2, 120)
        workers = _workers_of(supervisor.pid)
        wait_for_port(port, 120)
        supervisor.kill()
        supervisor.wait(30)
        assert _until(lambda: not any(_alive(pid) for pid in workers), 60), "orphaned workers"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(30)
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_started_after_its_supervisor_died_stops(tmp_path: Path,
                                                          database_url: str) -> None:
    # Its parent is this test, not the supervisor it was told of (gone before it looked).
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    # No configuration file and no database URL: the quickstart's supervisor, whose workers
    # run the demo configuration too (a complete seller: no warning about it).
    out = subprocess.run(
        [*CLI, "serve", "--workers", "2", "--worker-index", "1", "--supervisor-pid",
         str(gone.pid), "--port", str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")},
             "BILLING_OSS_SUPERVISED_DATABASE_URL": database_url})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "supervisor gone" in out.stderr
    assert "billing.seller_vat_id" not in out.stderr, out.stderr[-2000:]


def test_a_worker_is_refused_without_its_supervisors_database(tmp_path: Path) -> None:
    out = _run(["serve", "--workers", "2", "--worker-index", "1", "--supervisor-pid", "1"],
               tmp_path)
    assert out.returncode == 2 and "BILLING_OSS_SUPERVISED_DATABASE_URL" in out.stderr
    assert "Traceback" not in out.stderr


def _status(port: int, path: str, token: str, method: str = "GET") -> int:
    """One request on a connection of its own: the kernel spreads connections over the
    workers sharing the port."""
    import urllib.error

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _statuses(port: int, token: str, n: int) -> list[int]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as spread:
        return list(spread.map(lambda _: _status(port, "/v1/accounts", token), range(n)))


def test_a_key_revoked_through_one_worker_is_refused_by_all_at_once(
        tmp_path: Path, database_url: str) -> None:
    import json

    db = ["--database-url", database_url]
    admin = _run(["api-key", "create", "--role", "admin", "--json", *db], tmp_path)
    assert admin.returncode == 0, admin.stderr
    victim = _run(["api-key", "create", "--role", "viewer", "--json", *db], tmp_path)
    admin_token, victim_key = json.loads(admin.stdout)["token"], json.loads(victim.stdout)
    port = free_port()
    supervisor = subprocess.Popen(
        [*CLI, "serve", "--workers", "2", "--database-url", database_url, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _until(lambda: len(_workers_of(supervisor.pid)) == 2, 120)
        wait_for_port(port, 120)
        time.sleep(2)  # both workers listening
        # Both workers cache the key as valid: many connections at once keep both accepting.
        assert set(_statuses(port, victim_key["token"], 120)) == {200}
        revoked = _status(port, f"/v1/api-keys/{victim_key['key']['key_id']}", admin_token,
                          "DELETE")
        assert revoked == 200
        time.sleep(0.3)
        # Well within the cache's 5 s: every worker refuses it.
        seen = _statuses(port, victim_key["token"], 120)
        assert set(seen) == {401}, seen
    finally:
        supervisor.terminate()
        try:
            supervisor.wait(60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
