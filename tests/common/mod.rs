//! Test harness: start the real `raftlited` binary on free loopback ports and talk HTTP to it.
//!
//! Starting, watching and stopping the process is the shared test kit's
//! (`raftlite_testkit::NodeProcess`, which the benchmark uses too): nodes bind port 0 and the
//! kit reads the bound addresses from the node's log, so tests running in parallel never
//! guess ports. A node is killed when its handle drops; its stderr is kept and printed if a
//! test fails while waiting for it. A test whose prerequisite is missing (a tool, a kernel feature) calls
//! [`prerequisite_missing`]: CI fails it, a developer's run says loudly that it was skipped.

#![allow(dead_code)]

pub mod reference_shell;
pub mod s3;
pub mod small_disk;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raftlite_testkit::{Launch, NodeProcess};

pub const BIN: &str = env!("CARGO_BIN_EXE_raftlited");

/// A running node: the shared test kit's process, with an HTTP client.
pub struct Node {
    process: NodeProcess,
    pub http_addr: String,
    pub raft_addr: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    client: reqwest::blocking::Client,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Node {
    /// Starts a single node in a fresh temporary data directory.
    pub fn start(extra_args: &[&str]) -> Node {
        let temp = tempfile::tempdir().expect("create temp dir");
        let dir = temp.path().join("data");
        let mut node = Node::start_in(&dir, extra_args);
        node._temp = Some(temp);
        node
    }

    /// Starts a node on `data_dir` (which may hold a previous node's data).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Node {
        let node = Node::spawn(data_dir, extra_args)
            .unwrap_or_else(|log| panic!("node did not start:\n{log}"));
        node.wait_ready();
        node
    }

    /// Spawns a node and waits for its addresses; on failure returns its log.
    pub fn spawn(data_dir: &Path, extra_args: &[&str]) -> Result<Node, String> {
        Node::spawn_with_env(data_dir, extra_args, &[])
    }

    /// [`Node::start_in`] with environment variables for the process (the crash suite's
    /// `FAILPOINTS`).
    pub fn start_in_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Node {
        let node = Node::spawn_with_env(data_dir, extra_args, env)
            .unwrap_or_else(|log| panic!("node did not start:\n{log}"));
        node.wait_ready();
        node
    }

    /// [`Node::spawn`] with environment variables for the process.
    pub fn spawn_with_env(
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Node, String> {
        Node::spawn_program(Path::new(BIN), data_dir, extra_args, env)
    }

    /// [`Node::spawn_with_env`] through `program`, which runs [`BIN`] with the arguments it
    /// is given (the discovery tests' `ip netns exec` wrapper).
    pub fn spawn_program(
        program: &Path,
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Node, String> {
        let log_filter = std::env::var("RAFTLITE_TEST_LOG").unwrap_or_else(|_| "info".into());
        let process = NodeProcess::spawn(&Launch {
            bin: program,
            data_dir,
            args: extra_args,
            log_filter: &log_filter,
            log_cap: None,
            env,
            timeout: Duration::from_secs(30),
        })?;
        Ok(Node {
            http_addr: process.http_addr.clone(),
            raft_addr: process.raft_addr.clone(),
            process,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            client: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        })
    }

    /// Waits until `/readyz` answers 200 (bounded: 20 s).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(self.url("/readyz")).send() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node never became ready:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr, path)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    fn answer(r: reqwest::blocking::Response) -> Answer {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        Node::answer(self.client.get(self.url(path)).send().expect("GET"))
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, self.url(path)).body(body.into());
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        Node::answer(req.send().expect("request"))
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        self.request("POST", path, Some("application/json"), body)
    }

    /// POSTs to `/db/execute` and returns the raw body after checking for 200.
    pub fn execute(&self, body: &str) -> String {
        let a = self.post("/db/execute", body);
        assert_eq!(a.status, 200, "execute {body}: {}", a.body);
        a.body
    }

    /// GET `/db/query?q=...` and returns the raw body after checking for 200.
    pub fn query(&self, sql: &str) -> String {
        self.query_with(sql, None)
    }

    /// [`Node::query`] at a read consistency `level` (`strong` waits until the node has
    /// applied everything committed when the read started).
    pub fn query_at(&self, sql: &str, level: &str) -> String {
        self.query_with(sql, Some(level))
    }

    fn query_with(&self, sql: &str, level: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("q", sql);
        if let Some(level) = level {
            q.append_pair("level", level);
        }
        let a = self.get(&format!("/db/query?{}", q.finish()));
        assert_eq!(a.status, 200, "query {sql}: {}", a.body);
        a.body
    }

    /// Sends SIGTERM and waits for a clean exit (bounded); returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.process
            .stop(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// The exit status if the process ended by itself; `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exit_status()
    }

    /// Waits (bounded) until the process exits by itself (an armed crash point); `None` if it
    /// is still running after `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_for_exit(timeout)
    }

    /// SIGKILL, as a crash. Afterwards [`Node::log`] holds every line the process wrote, so a
    /// test can tell how far it got before the kill.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Takes ownership of the temp dir so a restarted node can reuse the data directory.
    pub fn take_temp(&mut self) -> Option<tempfile::TempDir> {
        self._temp.take()
    }
}

/// Runs the binary to completion with `args` (for flag and start-up error tests).
pub fn run_binary(args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            return (status.code(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            return (None, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(unused_imports)] // each test crate uses some of them
pub use raftlite_testkit::{prerequisite_missing, wait_until};

/// Runs `sqlite3 FILE SQL` (the reference shell) and returns its stdout; a failure fails the
/// test with its stderr.
pub fn sqlite3(file: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(file)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Arguments that make elections fast enough for tests.
pub const FAST_RAFT: &[&str] = &["-raft-election-timeout", "500ms"];

/// A cluster of real nodes on loopback: the first bootstraps, the others join it.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(n: usize, extra_args: &[&str]) -> Cluster {
        let mut args: Vec<&str> = FAST_RAFT.to_vec();
        args.extend_from_slice(extra_args);
        let first = Node::start(&[&args[..], &["-node-id", "node1"]].concat());
        let join = first.raft_addr.clone();
        let mut nodes = vec![first];
        for i in 2..=n {
            let id = format!("node{i}");
            let node = Node::start(&[&args[..], &["-node-id", &id, "-join", &join]].concat());
            nodes.push(node);
        }
        let cluster = Cluster { nodes };
        cluster.wait_for_members(n);
        cluster
    }

    /// Waits until every running node reports `n` voters and a leader.
    pub fn wait_for_members(&self, n: usize) {
        let ok = wait_until(Duration::from_secs(30), || {
            self.nodes
                .iter()
                .filter(|node| node.is_running())
                .all(|node| {
                    let nodes = node.get("/nodes").json();
                    nodes.as_object().is_some_and(|o| o.len() == n)
                        && node.get("/readyz").status == 200
                })
        });
        assert!(ok, "cluster did not reach {n} members:\n{}", self.logs());
    }

    /// The index of the node that says it is the leader (bounded wait).
    pub fn leader(&self) -> usize {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(30), || {
            found = self.nodes.iter().position(|node| {
                node.is_running()
                    && node.get("/status").json()["store"]["raft"]["state"] == "Leader"
            });
            found.is_some()
        });
        assert!(ok, "no leader:\n{}", self.logs());
        found.unwrap_or(0)
    }

    pub fn followers(&self) -> Vec<usize> {
        let l = self.leader();
        (0..self.nodes.len())
            .filter(|i| *i != l && self.nodes[*i].is_running())
            .collect()
    }

    pub fn logs(&self) -> String {
        logs_of(&self.nodes)
    }
}

/// Every node's log, one after another, each under a header naming it.
pub fn logs_of(nodes: &[Node]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("--- node {} ---\n{}", i + 1, n.log()))
        .collect()
}

/// The names of the files in `dir` that start with `prefix` (none if `dir` cannot be read): a
/// node's backup copies (`backup-`) or staged loads (`load-`).
pub fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
