"""Pure decisions behind the local cluster's failure messages (issue 11: "first time, every time").

Design notes: no processes and no sockets here; the faults themselves (a component that dies, a
port in use, a second `up`, a state folder moved to other addresses) run against the real
binaries in tests/integration/test_cluster.py. What is pinned down here is what those paths
decide from plain inputs: which pid file names which process, how an exit is said, which log
lines are quoted, who holds a state folder, which socket listens on a port, and when the API
server's certificate must be issued again. The real node's own paths (the bridge address
10.244.0.1) are covered only through these decisions; the real node is not started here.
"""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from modelapp_devcluster import node_config, node_host, pki, processes
from modelapp_devcluster.local import lock_holder
from modelapp_devcluster.node_config import NodeSettings
from modelapp_devcluster.ports import listening_inodes
from modelapp_devcluster.processes import PidFile

NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


# -- pid files ---------------------------------------------------------------------------------------------------
def test_a_pid_file_keeps_the_start_time_that_names_the_process() -> None:
    record = PidFile(4242, 987654)
    assert record.render() == "4242 987654\n"
    assert PidFile.parse(record.render()) == record


def test_an_older_pid_file_without_a_start_time_still_reads() -> None:
    assert PidFile.parse("4242\n") == PidFile(4242, None)


@pytest.mark.parametrize("text", ["", "\n", "abc", "1 2 3", "12 x"])
def test_a_damaged_pid_file_reads_as_no_process(text: str) -> None:
    assert PidFile.parse(text) is None


# -- how a component ended ---------------------------------------------------------------------------------------
def test_an_exit_is_said_with_its_code_or_its_signal() -> None:
    assert processes.describe_exit(1) == "exit code 1"
    assert processes.describe_exit(0) == "exit code 0"
    assert processes.describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert processes.describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert processes.describe_exit(None) == "exit code unknown (not started by this command)"


def test_the_log_tail_quotes_the_last_non_empty_lines(tmp_path: Path) -> None:
    log = tmp_path / "kube-scheduler.log"
    log.write_text("one\ntwo\n\nthree\n  \nfour\nfive\nsix\n\n")
    assert processes.log_tail(log, lines=3) == f"last lines of {log}: four | five | six"


def test_an_empty_or_missing_log_is_said_as_such_never_as_nothing(tmp_path: Path) -> None:
    """The false 'kube-scheduler exited:' ended in nothing at all: an empty log must be named."""
    empty = tmp_path / "kwok.log"
    empty.write_text("\n\n")
    assert processes.log_tail(empty) == f"its log {empty} is empty"
    assert processes.log_tail(tmp_path / "absent.log") == f"no log at {tmp_path / 'absent.log'}"


# -- who holds a state folder ------------------------------------------------------------------------------------
def test_the_lock_names_the_holder_and_its_command() -> None:
    assert lock_holder("31337 up --real-node\n") == "another `modelapp-cluster up --real-node` (pid 31337)"
    assert lock_holder("31337 down\n") == "another `modelapp-cluster down` (pid 31337)"
    assert lock_holder("31337\n") == "another `modelapp-cluster up` (pid 31337)"


def test_a_lock_whose_holder_has_not_written_yet_still_gives_a_message() -> None:
    assert lock_holder("") == "another `modelapp-cluster` command (pid unknown)"


# -- which socket holds a port -----------------------------------------------------------------------------------
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1A0B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:1A0B 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 010010AC:1A0C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0
"""


def test_only_listening_sockets_on_that_port_are_owners() -> None:
    assert listening_inodes(PROC_NET_TCP, 0x1A0B) == {111}  # 222 is an established connection to it
    assert listening_inodes(PROC_NET_TCP, 0x1A0C) == {333}
    assert listening_inodes(PROC_NET_TCP, 80) == set()


# -- the API server's certificate --------------------------------------------------------------------------------
CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@pytest.fixture(scope="module")
def ca() -> CA:
    return pki.make_ca("test-ca", now=NOW)


def _server(ca: CA, advertise: str, *, now: dt.datetime = NOW) -> x509.Certificate:
    dns, ips = pki.apiserver_names("10.96.0.1", advertise)
    server, _ = pki.issue(ca[0], ca[1], common_name="kube-apiserver", now=now, dns_names=dns, ips=ips, server=True)
    return server


def test_a_loopback_certificate_does_not_serve_the_real_nodes_bridge_address(ca: CA) -> None:
    """Issue 11: a folder first used on loopback, then with --real-node (API server on 10.244.0.1)."""
    loopback = _server(ca, "127.0.0.1")
    dns, ips = pki.apiserver_names("10.96.0.1", "10.244.0.1")
    assert pki.missing_names(loopback, dns=dns, ips=ips) == ["10.244.0.1"]
    reason = pki.reissue_reason(loopback, ca[0], dns=dns, ips=ips, now=NOW)
    assert reason == "it does not cover 10.244.0.1"


def test_a_certificate_that_covers_everything_is_kept(ca: CA) -> None:
    bridge = _server(ca, "10.244.0.1")
    dns, ips = pki.apiserver_names("10.96.0.1", "10.244.0.1")
    assert pki.reissue_reason(bridge, ca[0], dns=dns, ips=ips, now=NOW) is None
    # And going back to loopback needs nothing new: 127.0.0.1 is always in it.
    dns, ips = pki.apiserver_names("10.96.0.1", "127.0.0.1")
    assert pki.reissue_reason(bridge, ca[0], dns=dns, ips=ips, now=NOW) is None


def test_a_certificate_from_another_ca_with_the_same_name_is_replaced(ca: CA) -> None:
    other = pki.make_ca("test-ca", now=NOW)  # same subject, other key: only the signature tells them apart
    foreign = _server(other, "127.0.0.1")
    dns, ips = pki.apiserver_names("10.96.0.1", "127.0.0.1")
    reason = pki.reissue_reason(foreign, ca[0], dns=dns, ips=ips, now=NOW)
    assert reason == "the cluster CA's signature on it does not verify"


def test_a_certificate_about_to_expire_is_replaced(ca: CA) -> None:
    old = _server(ca, "127.0.0.1", now=NOW - pki.LEAF_VALIDITY + dt.timedelta(days=3))
    dns, ips = pki.apiserver_names("10.96.0.1", "127.0.0.1")
    reason = pki.reissue_reason(old, ca[0], dns=dns, ips=ips, now=NOW)
    assert reason is not None and reason.startswith("it expires on ")


# -- the real node: what must be free before it starts (decision logic only; the node is not run here) ----------
def test_a_port_held_by_something_else_is_named_with_its_holder() -> None:
    settings = NodeSettings()
    held = {("127.0.0.1", 5001): "in use by pid 77 (nginx)", ("10.244.0.1", 10250): "in use by pid 78 (kubelet)"}
    found = node_config.port_conflicts(
        node_config.listeners(settings), set(), lambda host, port: held.get((host, port))
    )
    assert found == [
        "127.0.0.1:5001 (registry) is in use by pid 77 (nginx)",
        "10.244.0.1:10250 (kubelet API) is in use by pid 78 (kubelet)",
    ]


def test_ports_of_our_own_running_parts_are_not_conflicts() -> None:
    """`up` keeps a part that runs (a re-run after a killed `up`): its own ports are not in the way."""
    asked: list[tuple[str, int]] = []

    def problem(host: str, port: int) -> str | None:
        asked.append((host, port))
        return "in use by pid 1 (whatever)"

    found = node_config.port_conflicts(
        node_config.listeners(NodeSettings()), {"registry", "kubelet", "kube-proxy"}, problem
    )
    assert found == []
    assert asked == []


IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 172.17.0.5/16 brd 172.17.255.255 scope global eth0\\       valid_lft forever preferred_lft forever
5: modelapp0    inet 10.244.0.1/24 brd 10.244.0.255 scope global modelapp0\\       valid_lft forever
7: tun0    inet 10.244.0.130/25 scope global tun0\\       valid_lft forever preferred_lft forever
"""


def test_interfaces_are_read_from_ip_addr() -> None:
    assert node_config.parse_ip_addr(IP_ADDR) == [
        ("lo", "127.0.0.1/8"),
        ("eth0", "172.17.0.5/16"),
        ("modelapp0", "10.244.0.1/24"),
        ("tun0", "10.244.0.130/25"),
    ]


def test_another_network_over_the_pod_subnet_is_a_conflict_but_our_own_bridge_is_not() -> None:
    interfaces = node_config.parse_ip_addr(IP_ADDR)
    assert node_config.subnet_conflicts(NodeSettings(), interfaces) == ["tun0 (10.244.0.130/25)"]
    assert node_config.subnet_conflicts(NodeSettings(), interfaces[:3]) == []  # a stale bridge of ours is reused


def test_node_parts_left_running_against_another_api_server_are_restarted() -> None:
    """A killed run, then a control plane on another port: kubelet must not keep talking to the old one."""
    servers = {"kubelet": "https://10.244.0.1:41000", "kube-proxy": "https://10.244.0.1:42000"}
    assert node_config.stale_parts(servers, "https://10.244.0.1:42000", {"kubelet", "kube-proxy"}) == ["kubelet"]
    assert node_config.stale_parts(servers, "https://10.244.0.1:42000", {"kube-proxy"}) == []  # starts fresh anyway
    assert node_config.stale_parts({"kubelet": None}, "https://10.244.0.1:42000", {"kubelet"}) == ["kubelet"]


def test_down_puts_back_the_host_settings_kubelet_and_kube_proxy_change(tmp_path: Path) -> None:
    """kubelet writes its kernel tunables on the host (overcommit, panic, panic_on_oops): `down` undoes it."""
    sysctl, record = tmp_path / "sys", tmp_path / "node" / "host-settings.json"
    for key, value in (("vm/overcommit_memory", "0"), ("kernel/panic", "1"), ("kernel/panic_on_oops", "0")):
        (sysctl / key).parent.mkdir(parents=True, exist_ok=True)
        (sysctl / key).write_text(value + "\n")
    node_host.save_host_settings(record, sysctl=sysctl)
    (sysctl / "kernel/panic").write_text("10\n")  # what kubelet does
    (sysctl / "vm/overcommit_memory").write_text("1\n")
    node_host.save_host_settings(record, sysctl=sysctl)  # a second `up` (after a killed one) keeps the first values
    assert node_host.restore_host_settings(record, sysctl=sysctl) == ["vm.overcommit_memory 1 -> 0",
                                                                      "kernel.panic 10 -> 1"]
    assert (sysctl / "kernel/panic").read_text().strip() == "1" and not record.exists()
    assert node_host.restore_host_settings(record, sysctl=sysctl) == []  # nothing kept: nothing to do
