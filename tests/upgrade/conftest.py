"""Fixtures for upgrade tests: the previous release in a venv of its own, a fast real etcd cluster."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.campus.etcd_cluster import EtcdCluster
from tests.upgrade.release import Release, install_release, latest_release_tag


@pytest.fixture(scope="session")
def installed_release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """The newest release of this repository, installed once per session (every test reuses it)."""
    release = install_release(latest_release_tag(), tmp_path_factory.getbasetemp() / "releases")
    print(f"\nprevious release {release.tag} ({release.version}) in {release.venv}, "
          f"installed in {release.install_s:.1f} s")
    return release


@pytest.fixture(scope="module")
def fast_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """Three members with a 50 ms heartbeat and a 500 ms election timeout (so a 2 s lease TTL is allowed)."""
    if shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists():
        pytest.fail("etcd is not installed (apt-get install etcd-server; .ci/run does it)")
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd-upgrade"), heartbeat_ms=50, election_ms=500)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
