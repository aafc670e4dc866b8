"""What the real node's teardown writes back into iptables (pure: no root, no iptables)."""

from __future__ import annotations

from pinsync.devenv.hoststate import restore_script

BEFORE = {
    "filter": [":INPUT ACCEPT", ":FORWARD DROP", ":OUTPUT ACCEPT", ":DOCKER -",
               "-A FORWARD -j DOCKER", "-A DOCKER -d 172.17.0.2/32 -j ACCEPT"],
}  # fmt: skip


def test_the_chains_the_node_added_go_with_the_rules_in_and_into_them_and_nothing_else() -> None:
    now = {
        "filter": [
            *BEFORE["filter"],
            ":KUBE-FORWARD -",
            ":KUBE-FIREWALL -",
            "-A INPUT -j KUBE-FIREWALL",
            "-A FORWARD -m comment --comment kubernetes -j KUBE-FORWARD",
            "-A KUBE-FORWARD -s 10.244.0.0/24 -j ACCEPT",
            "-A INPUT -p tcp --dport 22 -j ACCEPT",  # not the node's: made by another program
        ],
        "nat": [  # a table the node made
            ":PREROUTING ACCEPT",
            ":POSTROUTING ACCEPT",
            ":CNI-0a1b -",
            "-A POSTROUTING -s 10.244.0.5/32 -j CNI-0a1b",
            "-A CNI-0a1b -d 10.244.0.0/24 -j ACCEPT",
        ],
    }
    assert restore_script(now, BEFORE) == [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":DOCKER - [0:0]",
        "-A FORWARD -j DOCKER",
        "-A DOCKER -d 172.17.0.2/32 -j ACCEPT",
        "-A INPUT -p tcp --dport 22 -j ACCEPT",
        "COMMIT",
        "*nat",  # emptied, built-in chains and all
        "COMMIT",
    ]


def test_tables_without_added_chains_are_left_alone() -> None:
    assert restore_script({"filter": [*BEFORE["filter"], "-A INPUT -j ACCEPT"]}, BEFORE) == []
