"""Peering priorities: derived per pod, distinct between pods, stable for one pod."""

from __future__ import annotations

import random
import socket
import string

from pinsync import peering


def deployment_pod_names(count: int, seed: int = 7) -> list[str]:
    """Names the way a Deployment makes them: <name>-<replicaset hash>-<5 random characters>."""
    rnd = random.Random(seed)
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # what the API server's name generator draws from
    hashes = ["".join(rnd.choices(string.hexdigits.lower(), k=10)) for _ in range(5)]
    names = {
        f"pinsync-{rnd.choice(hashes)}-{''.join(rnd.choices(alphabet, k=5))}" for _ in range(count)
    }
    return sorted(names)


def test_pods_of_one_deployment_get_distinct_priorities() -> None:
    names = deployment_pod_names(5000)
    priorities = {peering.priority_of(name) for name in names}
    assert len(priorities) == len(names)


def test_a_priority_is_stable_for_a_name_and_within_the_derived_range() -> None:
    for name in deployment_pod_names(200):
        priority = peering.priority_of(name)
        assert priority == peering.priority_of(name)
        assert 1 <= priority <= peering.MAX_DERIVED


def test_names_differing_in_one_character_differ_in_priority() -> None:
    assert peering.priority_of("pinsync-7d9f8c6b5-abcde") != peering.priority_of(
        "pinsync-7d9f8c6b5-abcdf"
    )


def test_the_pod_name_comes_from_the_downward_api_else_the_hostname() -> None:
    assert peering.pod_name({"POD_NAME": "pinsync-1"}) == "pinsync-1"
    assert peering.pod_name({}) == socket.gethostname()
    assert peering.pod_name({"POD_NAME": ""}) == socket.gethostname()


def test_the_identity_is_the_pod_name_or_left_to_kopf() -> None:
    assert peering.identity({"POD_NAME": "pinsync-1"}) == "pinsync-1"
    assert peering.identity({}) is None


def test_peering_objects_are_made_for_literal_namespaces_only() -> None:
    served = ["team-a", "team-*", "!kube-system", "team-[bc]", "ns?", "team-b"]
    assert peering.served_names(served) == ["team-a", "team-b"]
