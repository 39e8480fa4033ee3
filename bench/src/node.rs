//! Running `raftlited`: start a node on free loopback ports in its own data directory, find
//! its address, wait until it is ready, read its memory, stop it.
//!
//! A node binds port 0 and logs `node HTTP API available at http://ADDR`; the harness reads
//! that line from the node's stderr, as `tests/common` does, so runs never guess ports. Every
//! wait is bounded. A node is killed when its handle drops, so a failed scenario never leaves
//! a server behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::measure::proc_status_kib;

const ADDR_MARKER: &str = "node HTTP API available at http://";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `raftlited`.
pub struct Node {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Node {
    /// Starts `BIN_DIR/raftlited` on `data_dir` (which may already hold a `db.sqlite`) and
    /// waits until `/readyz` answers 200.
    pub fn start(bin_dir: &Path, data_dir: &Path) -> Result<Node, String> {
        let bin = bin_dir.join("raftlited");
        if !bin.exists() {
            return Err(format!(
                "{} not found: build it (cargo build --release --workspace) or pass --bin-dir",
                bin.display()
            ));
        }
        let mut child = Command::new(&bin)
            .args(["-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sink = Arc::clone(&log);
        // Keeps draining stderr for the node's whole life, so logging never blocks it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find(ADDR_MARKER) {
                    let _ = tx.send(line[i + ADDR_MARKER.len()..].trim().to_string());
                }
                if let Ok(mut l) = sink.lock() {
                    // Keep the tail only: a long benchmark must not grow this without bound.
                    if l.len() > 64 * 1024 {
                        l.drain(..32 * 1024);
                    }
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let started = Instant::now();
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                return Err(format!("raftlited did not report its address:\n{log}"));
            }
        };
        let node = Node {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
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
        self.child.as_ref().map(|c| c.id())
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
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM (through `kill(1)`, since this crate has no `unsafe`), then a bounded wait.
    pub fn stop(mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("raftlited exited with {status}:\n{}", self.log()))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "raftlited ignored SIGTERM for {STOP_TIMEOUT:?}; killed"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A set of nodes that serve one database.
///
/// TODO(cluster issue): only `n = 1` exists until raftlite has a Raft cluster. Start the
/// first node with `-bootstrap-expect n` (or `-join`), the others with `-join` to it, wait
/// until `/nodes` lists every node as reachable and one leader, and give scenarios
/// `leader()` / `followers()`. Scenarios already go through this type, so they gain
/// clusters without changes.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(bin_dir: &Path, work: &Path, n: usize) -> Result<Cluster, String> {
        if n != 1 {
            return Err(format!(
                "a {n}-node cluster is not available yet (single node only)"
            ));
        }
        Ok(Cluster {
            nodes: vec![Node::start(bin_dir, &work.join("node1"))?],
        })
    }

    pub fn leader(&self) -> &Node {
        &self.nodes[0]
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
