"""What each of several worker processes subscribes as, and the worker command line."""

import argparse
import os
import socket
from pathlib import Path

import pytest

from billing_oss.adapters.mqtt import MqttAdapter
from billing_oss.core.errors import ConfigError, StartupError
from billing_oss.core.sources_config import MqttSource, SftpSource
from billing_oss.server.commands.options import load_config
from billing_oss.server.config import load
from billing_oss.server.supervisor import (
    listen_socket,
    restart_pause,
    worker_command,
    worker_env,
)
from billing_oss.server.workers import WorkerSlot, sources_for, supervised

SOURCES = {"m": MqttSource(topics=["usage/#"], client_id="edge"),
           "n": MqttSource(topics=["a/#"], shared_group="mine"),
           "f": SftpSource(host="h", username="u", remote_dir="/out", format="jsonl",
                           insecure_skip_host_key=True)}


def adapter(config: MqttSource, name: str = "m") -> MqttAdapter:
    return MqttAdapter(name, config, None, None)  # type: ignore[arg-type]


def test_one_worker_subscribes_as_configured() -> None:
    mine = sources_for(SOURCES, WorkerSlot())
    assert mine == SOURCES
    m = adapter(mine["m"])  # type: ignore[arg-type]
    assert (m.client_id, m.filters()) == ("edge", ["usage/#"])
    assert m.stale_filters() == ["$share/billing-oss/usage/#"]


def test_each_worker_shares_the_subscription_under_its_own_client_id() -> None:
    ids, filters = [], set()
    for index in range(3):
        mine = sources_for(SOURCES, WorkerSlot(index, 3))
        m, n = adapter(mine["m"]), adapter(mine["n"], "n")  # type: ignore[arg-type]
        ids += [m.client_id, n.client_id]
        filters |= {*m.filters(), *n.filters()}
        assert m.stale_filters() == ["usage/#"] and n.stale_filters() == ["a/#"]
        assert mine["f"] == SOURCES["f"]
    # worker 0 keeps the single process's session (what it left unacknowledged)
    assert ids == ["edge", "billing-oss-n", "edge-w1", "billing-oss-n-w1", "edge-w2",
                   "billing-oss-n-w2"]
    assert filters == {"$share/billing-oss/usage/#", "$share/mine/a/#"}


def test_a_worker_is_started_with_its_index_and_socket() -> None:
    command = worker_command(["serve", "--workers", "3"], 2, 7, 4242)
    assert command[-9:] == ["serve", "--workers", "3", "--worker-index", "2",
                            "--listen-fd", "7", "--supervisor-pid", "4242"]
    assert worker_command([], 0, 7)[-1] == str(os.getpid())


def test_the_database_url_reaches_a_worker_by_its_environment_not_its_command_line() -> None:
    dsn = "postgresql://billing:pa55word@db/x"
    command = worker_command(["serve", "--workers", "3"], 2, 7)
    assert not any("pa55word" in part for part in command)
    env = worker_env(dsn, {"PATH": "/bin", "BILLING_OSS_DATABASE_URL": "postgresql://old/y"})
    assert env == {"PATH": "/bin", "BILLING_OSS_DATABASE_URL": "postgresql://old/y",
                   "BILLING_OSS_SUPERVISED_DATABASE_URL": dsn}
    assert supervised(load(None, env=env), env).database.url == dsn


def test_a_worker_of_the_quickstart_runs_the_demo_configuration_as_its_supervisor() -> None:
    # no configuration file, no database URL: the supervisor runs the embedded database
    # with the demo configuration, and hands its workers that database's URL
    supervisor = load(None, env={})
    env = worker_env("postgresql://billing@127.0.0.1:5999/billing", {})
    worker = supervised(load(None, env=env), env)
    assert worker.billing == supervisor.billing and worker.webhooks == supervisor.webhooks
    assert worker.billing.seller_name == "Demo Telecom SAS"
    assert worker.database.url == "postgresql://billing@127.0.0.1:5999/billing"


def test_a_worker_without_a_supervisors_database_is_refused() -> None:
    with pytest.raises(ConfigError, match="BILLING_OSS_SUPERVISED_DATABASE_URL"):
        supervised(load(None, env={}), {})


def test_a_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}: the port"
                                               " is already in use"):
            listen_socket("127.0.0.1", port)


def test_a_dying_worker_waits_half_a_second_then_longer_while_it_keeps_dying_young() -> None:
    pauses, previous = [], None
    for _ in range(8):  # dies one second after each start
        previous = restart_pause(previous, 1.0)
        pauses.append(previous)
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert restart_pause(30.0, 60.0) == 0.5  # it ran a while: back to the shortest wait


def test_a_worker_does_not_announce_a_database_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The supervisor keeps the database URL off the workers' command lines; reading its
    options, a worker must not say it creates an embedded database where it was started."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("BILLING_OSS")]:
        monkeypatch.delenv(name)
    load_config(argparse.Namespace(worker_index=None))
    assert "creating a new database" in capsys.readouterr().err
    load_config(argparse.Namespace(worker_index=1))
    assert "creating a new database" not in capsys.readouterr().err
