"""`./run.sh serve`'s MQTT broker: started beside the server when none listens, reused when
one does, and stopped with the script (its functions, sourced; no install, no server)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _bash(script: str, port: int, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"source ./run.sh\n{script}"], cwd=REPO, capture_output=True,
        text=True, timeout=60, check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
             "MQTT_PORT": str(port), "MQTT_DIR": str(workdir / "mosquitto")})


@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="the test command installs Mosquitto")
def test_serve_starts_a_broker_then_reuses_it_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    out = _bash('start_broker\nbroker_listening && echo "up"\nstart_broker\n'
                'echo "pid $BROKER_PID"', port, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "up" in out.stdout
    assert f"MQTT: Mosquitto started on 127.0.0.1:{port}" in out.stderr
    assert f"MQTT: using the broker on 127.0.0.1:{port}" in out.stderr  # the second call
    pid = int(out.stdout.split("pid ")[1])
    deadline = time.monotonic() + 10  # SIGTERM at the script's exit; Mosquitto then closes
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the broker outlived the script")
    assert not _listening(port)
    conf = (tmp_path / "mosquitto" / "mosquitto.conf").read_text()
    assert f"listener {port} 127.0.0.1" in conf


def test_sourcing_the_script_runs_nothing(tmp_path: Path) -> None:
    out = _bash("echo sourced", free_port(), tmp_path)
    assert out.returncode == 0 and out.stdout == "sourced\n" and out.stderr == ""
