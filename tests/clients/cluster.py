"""Start real raftlited nodes on free loopback ports for the client tests.

Each node binds port 0 and the helper reads the bound addresses from the node's log lines
(`node HTTP API available at http://ADDR`, `raft listening on ADDR`), as tests/common/mod.rs
does, so runs in parallel never guess ports. Every wait is bounded in time. Nodes are stopped
with SIGTERM (then SIGKILL) and their data directories removed.

Used two ways:
  * as a module, by conftest.py (pytest fixtures);
  * as a program, to run another test program against a 1-node and a 3-node cluster:
        python3 cluster.py --bin PATH -- node --test js/
    The command sees RAFTLITE_SINGLE (one URL), RAFTLITE_CLUSTER (three comma-separated
    URLs, leader first), RAFTLITE_FRESH (URL of an extra, empty single node) and
    RAFTLITED (the binary).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HTTP_LINE = "node HTTP API available at http://"
RAFT_LINE = "raft listening on "
FAST_RAFT = ["-raft-election-timeout", "500ms"]


def find_binary(explicit=None):
    """The raftlited to test: an explicit path, $RAFTLITED, else target/release, else target/debug."""
    if explicit:
        return os.path.abspath(explicit)
    if os.environ.get("RAFTLITED"):
        return os.path.abspath(os.environ["RAFTLITED"])
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    for profile in ("release", "debug"):
        path = os.path.join(root, "target", profile, "raftlited")
        if os.access(path, os.X_OK):
            return path
    raise RuntimeError("no raftlited binary: build it (cargo build) or pass its path")


def http_get(url, timeout=5.0):
    """GET url; returns (status, body bytes). Never follows redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what, cond, timeout=30.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Node:
    """One raftlited process on loopback ports chosen by the kernel."""

    def __init__(self, binary, node_id, extra_args=()):
        self.node_id = node_id
        self._tmp = tempfile.mkdtemp(prefix=f"raftlite-client-{node_id}-")
        self.data_dir = os.path.join(self._tmp, "data")
        args = [binary, "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"]
        args += FAST_RAFT + ["-node-id", node_id] + list(extra_args) + [self.data_dir]
        env = dict(os.environ, RUST_LOG=os.environ.get("RAFTLITE_TEST_LOG", "info,openraft=warn"))
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env, text=True, errors="replace")
        self.log_lines = []
        self.http_addr = None
        self.raft_addr = None
        self._found = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._found.wait(30) or not (self.http_addr and self.raft_addr):
            self.stop()
            raise RuntimeError(f"node {node_id} did not start:\n{self.log()}")

    def _read_log(self):
        for line in self.proc.stderr:
            self.log_lines.append(line)
            if HTTP_LINE in line:
                self.http_addr = line.split(HTTP_LINE, 1)[1].strip()
            elif RAFT_LINE in line:
                self.raft_addr = line.split(RAFT_LINE, 1)[1].split()[0]
            if self.http_addr and self.raft_addr:
                self._found.set()
        self._found.set()

    @property
    def url(self):
        return f"http://{self.http_addr}"

    @property
    def host_port(self):
        return self.http_addr

    def log(self, last=60):
        """The node's last `last` log lines (enough to see why it failed)."""
        return "".join(self.log_lines[-last:])

    def get(self, path):
        return http_get(self.url + path)

    def status(self):
        code, body = self.get("/status")
        return json.loads(body) if code == 200 else {}

    def is_leader(self):
        return self.status().get("store", {}).get("raft", {}).get("state") == "Leader"

    def alive(self):
        """True while the process runs; raises (with its log) once it has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"node {self.node_id} exited ({self.proc.returncode}):\n{self.log()}")
        return True

    def wait_ready(self):
        wait_until(f"{self.node_id} /readyz",
                   lambda: self.alive() and self.get("/readyz")[0] == 200)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self._tmp, ignore_errors=True)


class Cluster:
    """n nodes: the first bootstraps, the others join it through its Raft address."""

    def __init__(self, binary, n, prefix="node"):
        self.nodes = []
        try:
            first = Node(binary, f"{prefix}1")
            self.nodes.append(first)
            first.wait_ready()
            # One join at a time, as an operator would: a node is ready once it has joined.
            for i in range(2, n + 1):
                node = Node(binary, f"{prefix}{i}", ["-join", first.raft_addr])
                self.nodes.append(node)
                node.wait_ready()
            for node in self.nodes:
                wait_until(f"{node.node_id} to see {n} members and be ready",
                           lambda node=node: node.alive()
                           and len(json.loads(node.get("/nodes")[1])) == n
                           and node.get("/readyz")[0] == 200)
        except BaseException:
            print(self.logs(), file=sys.stderr)
            self.stop()
            raise

    def leader(self):
        """The node that says it is the leader (bounded wait)."""
        found = None

        def has_leader():
            nonlocal found
            found = next((n for n in self.nodes if n.is_leader()), None)
            return found is not None

        wait_until("a leader", has_leader)
        return found

    def followers(self):
        leader = self.leader()
        return [n for n in self.nodes if n is not leader]

    def logs(self):
        return "".join(f"--- {n.node_id} ---\n{n.log()}" for n in self.nodes)

    def stop(self):
        for node in self.nodes:
            node.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", help="raftlited binary (default: target/{release,debug})")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is required")
    binary = find_binary(args.bin)
    single = cluster = fresh = None
    try:
        single = Cluster(binary, 1, prefix="single")
        cluster = Cluster(binary, 3, prefix="member")
        fresh = Cluster(binary, 1, prefix="fresh")
        leader = cluster.leader()
        urls = [leader.url] + [n.url for n in cluster.nodes if n is not leader]
        env = dict(os.environ, RAFTLITE_SINGLE=single.nodes[0].url,
                   RAFTLITE_CLUSTER=",".join(urls), RAFTLITE_FRESH=fresh.nodes[0].url,
                   RAFTLITED=binary)
        code = subprocess.call(command, env=env)
        if code != 0:
            for c in (single, cluster, fresh):
                print(c.logs(), file=sys.stderr)
        return code
    finally:
        for c in (single, cluster, fresh):
            if c is not None:
                c.stop()


if __name__ == "__main__":
    sys.exit(main())
