"""What each of several worker processes subscribes as, and the worker command line."""

import socket

import pytest

from billing_oss.adapters.mqtt import MqttAdapter
from billing_oss.core.errors import StartupError
from billing_oss.core.sources_config import MqttSource, SftpSource
from billing_oss.server.supervisor import listen_socket, worker_command
from billing_oss.server.workers import WorkerSlot, sources_for

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


def test_a_worker_is_started_with_its_index_database_and_socket() -> None:
    command = worker_command(["serve", "--workers", "3"], 2, "postgresql://db/x", 7)
    assert command[-9:] == ["serve", "--workers", "3", "--worker-index", "2",
                            "--database-url", "postgresql://db/x", "--listen-fd", "7"]


def test_a_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}: the port"
                                               " is already in use"):
            listen_socket("127.0.0.1", port)
