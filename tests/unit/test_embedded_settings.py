"""The embedded server's settings file and its include, written at every start."""

from __future__ import annotations

from pathlib import Path

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
    for name, value in embedded.settings().items():
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
