//! Running `raftlited`: start a node on free loopback ports in its own data directory, find
//! its address, wait until it is ready, read its memory, stop it.
//!
//! Starting, watching and stopping the process is the shared test kit's
//! (`raftlite_testkit::NodeProcess`, as in the end-to-end tests): a node binds port 0 and the
//! kit reads its addresses from its log, so runs never guess ports. Every wait is bounded. A
//! node is killed when its handle drops, so a failed scenario never leaves a server behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raftlite_testkit::{Launch, NodeProcess};

use crate::measure::proc_status_kib;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `raftlited`.
pub struct Node {
    process: NodeProcess,
    pub addr: String,
    pub raft_addr: String,
    pub data_dir: PathBuf,
    agent: ureq::Agent,
}

impl Node {
    /// Starts `BIN_DIR/raftlited` on `data_dir` (which may already hold a `db.sqlite`) and
    /// waits until `/readyz` answers 200.
    pub fn start(bin_dir: &Path, data_dir: &Path) -> Result<Node, String> {
        Node::start_with(bin_dir, data_dir, &[])
    }

    /// As [`Node::start`], with extra flags (before the data directory).
    pub fn start_with(bin_dir: &Path, data_dir: &Path, args: &[String]) -> Result<Node, String> {
        let bin = bin_dir.join("raftlited");
        if !bin.exists() {
            return Err(format!(
                "{} not found: build it (cargo build --release --workspace) or pass --bin-dir",
                bin.display()
            ));
        }
        let started = Instant::now();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = NodeProcess::spawn(&Launch {
            bin: &bin,
            data_dir,
            args: &args,
            log_filter: "info",
            // A long benchmark must not grow the kept log without bound.
            log_cap: Some(64 * 1024),
            env: &[],
            timeout: START_TIMEOUT,
        })?;
        let node = Node {
            addr: process.http_addr.clone(),
            raft_addr: process.raft_addr.clone(),
            process,
            data_dir: data_dir.to_path_buf(),
            agent: agent(),
        };
        node.wait_ready(START_TIMEOUT.saturating_sub(started.elapsed()))?;
        Ok(node)
    }

    fn wait_ready(&self, budget: Duration) -> Result<(), String> {
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            if let Ok(r) = self.agent.get(&self.url("/readyz")).call() {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("raftlited never became ready:\n{}", self.log()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Current RSS in KiB (the idle baseline when read before a scenario).
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS")
    }

    /// Peak RSS so far in KiB.
    pub fn hwm_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM")
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGTERM, then a bounded wait; an unclean exit is an error with the node's log.
    pub fn stop(mut self) -> Result<(), String> {
        let status = self.process.stop(STOP_TIMEOUT)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("raftlited exited with {status}:\n{}", self.log()))
        }
    }
}

/// A set of nodes that serve one database: `node1` bootstraps, the others join it through
/// its Raft address (as `tests/common` does), and `start` returns once every node lists all
/// members and answers `/readyz`.
pub struct Cluster {
    pub nodes: Vec<Node>,
    leader: usize,
}

/// How long a cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    pub fn start(bin_dir: &Path, work: &Path, n: usize) -> Result<Cluster, String> {
        Cluster::start_with(bin_dir, work, n, &[])
    }

    /// As [`Cluster::start`], each node with `extra` flags too.
    pub fn start_with(
        bin_dir: &Path,
        work: &Path,
        n: usize,
        extra: &[String],
    ) -> Result<Cluster, String> {
        let id_args = |i: usize| {
            let mut args = vec!["-node-id".to_string(), format!("node{i}")];
            args.extend_from_slice(extra);
            args
        };
        let first = Node::start_with(bin_dir, &work.join("node1"), &id_args(1))?;
        let join = first.raft_addr.clone();
        let mut nodes = vec![first];
        for i in 2..=n {
            let mut args = id_args(i);
            args.extend(["-join".to_string(), join.clone()]);
            nodes.push(Node::start_with(
                bin_dir,
                &work.join(format!("node{i}")),
                &args,
            )?);
        }
        let mut cluster = Cluster { nodes, leader: 0 };
        cluster.leader = cluster.wait_formed(n)?;
        Ok(cluster)
    }

    /// Stops every node; the first that did not exit cleanly is the error.
    pub fn stop(self) -> Result<(), String> {
        let mut first_error = None;
        for node in self.nodes {
            if let Err(e) = node.stop() {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits until every node lists `n` members and is ready; returns the leader's index.
    fn wait_formed(&self, n: usize) -> Result<usize, String> {
        let agent = agent();
        let get = |node: &Node, path: &str| -> Option<(u16, String)> {
            answer(agent.get(&node.url(path)).call(), path)
                .ok()
                .map(|a| (a.status, a.body))
        };
        let deadline = Instant::now() + FORM_TIMEOUT;
        while Instant::now() < deadline {
            let formed = self.nodes.iter().all(|node| {
                let members = get(node, "/nodes")
                    .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.as_object().map(|o| o.len()));
                members == Some(n) && get(node, "/readyz").is_some_and(|(s, _)| s == 200)
            });
            let leader = self.nodes.iter().position(|node| {
                get(node, "/status")
                    .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                    .is_some_and(|v| v["store"]["raft"]["state"] == "Leader")
            });
            if let (true, Some(l)) = (formed, leader) {
                return Ok(l);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: String = self
            .nodes
            .iter()
            .map(|node| format!("--- {} ---\n{}", node.data_dir.display(), node.log()))
            .collect();
        Err(format!(
            "the {n}-node cluster did not form in {FORM_TIMEOUT:?}:\n{logs}"
        ))
    }

    /// The node that led when the cluster formed (scenarios do not kill nodes).
    pub fn leader(&self) -> &Node {
        &self.nodes[self.leader]
    }

    /// Some node that is not the leader (None for a single node).
    pub fn follower(&self) -> Option<&Node> {
        (0..self.nodes.len())
            .find(|i| *i != self.leader)
            .map(|i| &self.nodes[i])
    }
}

/// The HTTP client every scenario uses: blocking, pooled, no TLS, bounded timeouts.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(3600))
        // Enough idle connections for the highest concurrency, so requests reuse them.
        .max_idle_connections_per_host(256)
        .max_idle_connections(256)
        .build()
}

/// A finished HTTP exchange.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// POSTs `body` and reads the whole answer; 4xx/5xx are answers, not errors.
pub fn post(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    body: &str,
) -> Result<Answer, String> {
    let r = agent
        .post(url)
        .set("Content-Type", content_type)
        .send_string(body);
    answer(r, url)
}

pub fn answer(r: Result<ureq::Response, ureq::Error>, url: &str) -> Result<Answer, String> {
    match r {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.into_string().map_err(|e| format!("read {url}: {e}"))?;
            Ok(Answer { status, body })
        }
        Err(ureq::Error::Status(status, resp)) => Ok(Answer {
            status,
            body: resp.into_string().unwrap_or_default(),
        }),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

/// A fresh, empty directory under the work dir (removed first if it exists).
pub fn scratch_dir(work_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let d = work_dir.join("scratch").join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).map_err(|e| format!("clear {}: {e}", d.display()))?;
    }
    std::fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    Ok(d)
}
