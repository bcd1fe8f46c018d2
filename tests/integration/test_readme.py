"""The README's shell examples, run as written against a server this test starts.

The rule, for whoever writes the README:

- A fenced block opened with exactly ```` ```sh ```` is run; any other (```` ```text ````,
  ```` ```json ````, ```` ```console ````, a bare ```` ``` ````) is not.
- A ```` ```sh ```` block right after a line ``<!-- readme-test: skip -->`` is not run (for
  commands that install, start the server themselves, or take minutes: ``./run.sh serve``).
- Every block that runs runs in order, in one ``bash`` with ``set -euo pipefail``, so a
  variable set in one block is there for the next; an example that fails fails this test,
  naming the block's line in README.md.
- ``billing-oss`` is on ``PATH`` (as after ``source .venv/bin/activate``); ``localhost:8080``
  and ``127.0.0.1:8080`` mean the test's server; ``mosquitto_pub`` reaches the test's
  broker, which the server subscribes to; ``curl`` fails on an HTTP error status.
- The verbs use the server's database (``BILLING_OSS_DATABASE_URL``), whose demo catalog
  the server loaded at start; the working directory is a scratch one where ``config/`` is
  the project's, so ``config/demo/...`` paths work and written files land nowhere else.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from billing_oss.adapters.formats import csvcdr, decode_bytes
from tests.conftest import REPO, Broker, free_port, wait_for_port
from tests.generators import demo_files

SKIP_MARK = "<!-- readme-test: skip -->"
FENCE = re.compile(r"^```(?P<info>\S*)\s*$")


def sh_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, body) of every block the rule above runs, in order."""
    blocks: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        skipped = i > 0 and lines[i - 1].strip() == SKIP_MARK
        if opening["info"] == "sh" and not skipped:
            blocks.append((start + 1, "\n".join(lines[start:end])))
        i = end + 1
    return blocks


def test_the_extraction_rule() -> None:
    text = "\n".join([
        "```sh", "echo one", "```",
        "```text", "echo never", "```",
        SKIP_MARK, "```sh", "./run.sh serve", "```",
        "```", "echo bare", "```",
        "```sh", "echo two", "echo three", "```",
    ])
    assert sh_blocks(text) == [(2, "echo one"), (15, "echo two\necho three")]


def as_run_here(body: str, port: int, broker: Broker) -> str:
    body = re.sub(r"\b(localhost|127\.0\.0\.1):8080\b", f"127.0.0.1:{port}", body)
    return re.sub(r"\bmosquitto_pub\b", f"mosquitto_pub -h {broker.host} -p {broker.port}", body)


@pytest.fixture
def server(database_url: str, mqtt_broker: Broker, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    config = tmp_path / "server.toml"
    config.write_text(f'[sources.devices]\ntype = "mqtt"\nhost = "{mqtt_broker.host}"\n'
                      f'port = {mqtt_broker.port}\ntopics = ["usage/#"]\n'
                      '[webhooks]\nallow_http = true\nallow_private = true\n')
    env = {**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing_oss", "serve", "--database-url", database_url,
         "--port", str(port), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_port(port, timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as ready:
            assert ready.status == 200
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl")
def test_every_shell_example_runs(server: int, database_url: str, mqtt_broker: Broker,
                                  tmp_path: Path) -> None:
    blocks = sh_blocks((REPO / "README.md").read_text())
    assert len(blocks) >= 5, "the README lost its examples"
    work = tmp_path / "work"
    work.mkdir()
    (work / "config").symlink_to(REPO / "config")
    script = ["set -euo pipefail",
              "curl() { command curl --fail --show-error \"$@\"; }"]
    for line, body in blocks:
        script += [f"echo '>>> README.md line {line}' >&2",
                   as_run_here(body, server, mqtt_broker)]
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               BILLING_OSS_DATABASE_URL=database_url)
    out = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    where = [ln for ln in out.stderr.splitlines() if ln.startswith(">>> README.md line")]
    assert out.returncode == 0, (
        f"the example at {where[-1][4:] if where else 'the start'} failed "
        f"(exit {out.returncode}):\n{out.stderr[-3000:]}\n--- stdout ---\n{out.stdout[-2000:]}")
    assert "Traceback" not in out.stderr
    # the walk-through ends with an invoice in hand
    assert (work / "INV-000001.pdf").read_bytes()[:5] == b"%PDF-"
    # the settlement cycle sends the demo visitors' usage in a TAP file, takes the partner's
    # and returns its bad event, as the README shows
    assert "CDFRAF1DEUD100001: tap, 4 events, total 1.155 SDR" in out.stdout
    assert ("CDDEUD1FRAF100001: tap accepted, 3 events, 3 billed as roaming usage, "
            "1 returned by RAP RCFRAF1DEUD100001" in out.stdout)
    assert "DEUD1,2020-01-01T00:00:00Z,2100-01-01T00:00:00Z,net,,,-2.845,SDR" in out.stdout
    assert asyncio.run(_settlement_files(database_url)) == [
        ("CDFRAF1DEUD100001", "out", "tap", 4), ("CDFRAF1DEUD100002", "out", "notification", 0),
        ("CDDEUD1FRAF100001", "in", "tap", 4), ("RCFRAF1DEUD100001", "out", "rap", 1)]


async def _settlement_files(database_url: str) -> list[tuple[str, str, str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT name, direction, file_type, event_count "
                                "FROM settlement_files WHERE partner = 'DEUD1' ORDER BY file_id")
        roaming = await conn.fetch(
            "SELECT account_id, count(*) FROM usage_records WHERE source = 'roaming:DEUD1' "
            "GROUP BY 1")
        # the partner's accepted events are A1's roaming usage
        assert [tuple(r) for r in roaming] == [("A1", 3)]
        return [(r["name"], r["direction"], r["file_type"], r["event_count"]) for r in rows]
    finally:
        await conn.close()


def test_the_shipped_32297_demo_file_is_what_its_generator_writes() -> None:
    assert demo_files.PATH.read_bytes() == demo_files.demo_bytes(), (
        "config/demo/msc-2026-03.cdr differs from its source: "
        "python -m tests.generators.demo_files")


def test_the_shipped_partner_tap_file_is_what_its_generator_writes() -> None:
    assert demo_files.PARTNER_TAP.read_bytes() == demo_files.partner_tap_bytes(), (
        "config/demo/CDDEUD1FRAF100001 differs from its source: "
        "python -m tests.generators.demo_files")


def test_the_csv_layouts_the_readme_documents_are_the_decoders() -> None:
    """The README's Asterisk paragraph names both layouts' columns, in order, and the record
    key the decoder makes (never the ``uniqueid``, which Asterisk repeats across legs)."""
    text = (REPO / "README.md").read_text()
    start = text.index("**Asterisk CSV**")
    paragraph = " ".join(text[start:text.index("\n\n", start)].split())
    listed = [" ".join(m.split()) for m in re.findall(r"`([a-z]+(?:, [a-z]+)+)`", paragraph)]
    assert ", ".join(csvcdr.ASTERISK_COLUMNS) in listed
    assert ", ".join(csvcdr.ASTERISK12_COLUMNS[len(csvcdr.ASTERISK_COLUMNS):]) in listed
    assert "`uniqueid` the record key" not in paragraph
    legs = (REPO / "tests/vectors/asterisk/master_a13_forked.csv").read_bytes()
    keys = [r.record_key for r in decode_bytes("csv", legs, source="pbx").records]
    assert "`<linkedid>:<sequence>`" in paragraph and keys[0].count(":") == 1
    old = (REPO / "tests/vectors/asterisk/master_18_forked.csv").read_bytes()
    assert decode_bytes("csv", old, source="pbx").records[0].record_key.startswith("sha1:")
    assert "`sha1:`" in paragraph
