"""The multi-host cluster: one per test module (starting it is most of the wall time), healed
and checked after each scenario, always taken down (namespaces, veths, processes)."""

from __future__ import annotations

import os

import pytest

from tests.multihost import netns
from tests.multihost.harness import Cluster


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns)")
    try:
        netns.probe()
    except netns.NamespacesUnavailable as exc:
        pytest.skip(f"this machine cannot run the multi-host tests: {exc}")
    from django.conf import settings

    cluster = Cluster(
        {"TOKEN_ENCRYPTION_KEYS": settings.TOKEN_ENCRYPTION_KEYS, "DJANGO_SECRET_KEY": settings.SECRET_KEY}
    )
    try:
        cluster.start()
    except BaseException:
        print(cluster.tails())
        cluster.close()
        raise
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def hosts(cluster, request):
    """The cluster for one scenario: every link up again afterwards, the logs shown if it failed."""
    failed_before = request.session.testsfailed
    yield cluster
    cluster.net.heal_all()
    if cluster.world:
        cluster.call("faults", latency_ms=0)
    if request.session.testsfailed > failed_before:
        print(cluster.tails())
