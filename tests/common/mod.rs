//! Test harness: start the real `raftlited` binary on free loopback ports and talk HTTP to it.
//!
//! Nodes bind port 0 and the harness reads the bound address from the node's log line
//! (`node HTTP API available at http://ADDR`), so tests running in parallel never guess ports.
//! A node is killed when its handle drops; its stderr is kept and printed if a test fails
//! while waiting for it. A test whose prerequisite is missing (a tool, a kernel feature) calls
//! [`prerequisite_missing`]: CI fails it, a developer's run says loudly that it was skipped.

#![allow(dead_code)]

pub mod reference_shell;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_raftlited");

/// A running node.
pub struct Node {
    child: Option<Child>,
    pub http_addr: String,
    pub raft_addr: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
    /// The thread that copies the node's stderr into `log`; it ends when the process does.
    log_reader: Option<std::thread::JoinHandle<()>>,
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

    /// Spawns a node and waits for its HTTP address; on failure returns its log.
    pub fn spawn(data_dir: &Path, extra_args: &[&str]) -> Result<Node, String> {
        let mut cmd = Command::new(BIN);
        cmd.args(["-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"]);
        cmd.args(extra_args);
        cmd.arg(data_dir);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env(
            "RUST_LOG",
            std::env::var("RAFTLITE_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut child = cmd.spawn().expect("spawn raftlited");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
        let sink = Arc::clone(&log);
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                const HTTP: &str = "node HTTP API available at ";
                const RAFT: &str = "raft listening on ";
                if let Some(i) = line.find(HTTP) {
                    // http:// or, with -http-cert, https://
                    let url = line[i + HTTP.len()..].trim();
                    let addr = url.split_once("://").map_or(url, |(_, a)| a);
                    let _ = tx.send((true, addr.to_string()));
                } else if let Some(i) = line.find(RAFT) {
                    let addr = line[i + RAFT.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("");
                    let _ = tx.send((false, addr.to_string()));
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut http, mut raft) = (None, None);
        while http.is_none() || raft.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, a)) => http = Some(a),
                Ok((false, a)) => raft = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(log.lock().unwrap().clone());
                }
            }
        }
        let (addr, raft_addr) = (http.unwrap_or_default(), raft.unwrap_or_default());
        Ok(Node {
            child: Some(child),
            http_addr: addr,
            raft_addr,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            log,
            log_reader: Some(log_reader),
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
        self.log.lock().unwrap().clone()
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
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", sql)
            .finish();
        let a = self.get(&format!("/db/query?{q}"));
        assert_eq!(a.status, 200, "query {sql}: {}", a.body);
        a.body
    }

    /// Sends SIGTERM and waits for a clean exit (bounded); returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node already stopped");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as a crash. Afterwards [`Node::log`] holds every line the process wrote, so a
    /// test can tell how far it got before the kill.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.drain_log();
    }

    /// Waits (bounded) until the reader of the node's stderr has reached its end.
    fn drain_log(&mut self) {
        let Some(reader) = self.log_reader.take() else {
            return;
        };
        // The pipe closes when the process is gone; 10 s is far more than reading what is
        // buffered takes.
        let ended = wait_until(Duration::from_secs(10), || reader.is_finished());
        if ended {
            let _ = reader.join();
        }
    }

    /// Takes ownership of the temp dir so a restarted node can reuse the data directory.
    pub fn take_temp(&mut self) -> Option<tempfile::TempDir> {
        self._temp.take()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
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

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`, as CI services
/// set it): there every prerequisite of every test must be present.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Reports that a prerequisite of the running test is missing (`why`: what, and how to get
/// it); the test then returns. Under CI ([`under_ci`]) it fails the test instead: a skip that
/// CI cannot see lets a test stop testing unnoticed. Elsewhere it prints
/// `SKIPPED: <test>: <why>` on stderr and on the terminal, if there is one (test runners show
/// a passing test's stderr only on request). The test's name is its thread's, as both
/// libtest and nextest name it.
#[track_caller]
pub fn prerequisite_missing(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    assert!(
        !under_ci(),
        "{test}: prerequisite missing under CI=true: {why}"
    );
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    // Best effort: no terminal (CI, a pipe) is not an error.
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        use std::io::Write as _;
        let _ = writeln!(tty, "{line}");
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {} ---\n{}", i + 1, n.log()))
            .collect()
    }
}
