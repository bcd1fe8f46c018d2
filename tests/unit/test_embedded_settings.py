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
    for name, value in embedded.SETTINGS.items():
        assert f"{name} = '{value}'" in ours
    assert "'1MB'" not in ours
