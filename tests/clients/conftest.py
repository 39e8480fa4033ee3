"""pytest fixtures: a 1-node and a 3-node raftlited cluster per session, and fresh nodes."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import cluster as harness  # noqa: E402


@pytest.fixture(scope="session")
def binary():
    return harness.find_binary()


@pytest.fixture(scope="session")
def single(binary):
    """One node, shared by the whole session: tests use their own table names."""
    c = harness.Cluster(binary, 1, prefix="single")
    yield c.nodes[0]
    c.stop()


@pytest.fixture(scope="session")
def three(binary):
    """A 3-node cluster shared by the whole session."""
    c = harness.Cluster(binary, 3, prefix="member")
    yield c
    c.stop()


@pytest.fixture
def fresh_node(binary):
    """Starts empty single nodes on demand; all are stopped at the end of the test."""
    started = []

    def start():
        c = harness.Cluster(binary, 1, prefix=f"fresh{len(started)}-")
        started.append(c)
        return c.nodes[0]

    yield start
    for c in started:
        c.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the last lines of every node's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("single", "three"):
            node_or_cluster = item.funcargs.get(name)
            if node_or_cluster is not None:
                logs = getattr(node_or_cluster, "logs", None)
                text = logs() if logs else node_or_cluster.log()
                report.sections.append((f"raftlited log ({name})", text))
