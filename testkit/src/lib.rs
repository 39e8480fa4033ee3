//! The one place that starts a real `raftlited` for a test or a benchmark: spawn it on free
//! loopback ports, learn the addresses it bound from its log, keep its log, and stop or kill
//! it. The end-to-end tests (`tests/common`) and the benchmark (`bench/src/node.rs`) wrap a
//! [`NodeProcess`] with their own HTTP client.
//!
//! Invariants: a node binds port 0 for both ports and the addresses come from its own log
//! lines ([`HTTP_ADDR_LINE`], [`RAFT_ADDR_LINE`]), so tests running in parallel never guess a
//! port; every wait is bounded; a process is killed when its handle drops; after a kill or a
//! stop, the log holds every line the process wrote.
//!
//! Scripts in other languages (the Python clients' `tests/clients/cluster.py`, the console's
//! browser tests) read the same log line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The log line a node writes once its HTTP API listens (then `http://` or `https://ADDR`).
pub const HTTP_ADDR_LINE: &str = "node HTTP API available at ";
/// The log line a node writes once its Raft port listens (then `ADDR`).
pub const RAFT_ADDR_LINE: &str = "raft listening on ";

/// How to start a node.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The `raftlited` binary.
    pub bin: &'a Path,
    pub data_dir: &'a Path,
    /// Flags before the data directory (the ports are set to 0 first; later flags win).
    pub args: &'a [&'a str],
    /// `RUST_LOG` for the node.
    pub log_filter: &'a str,
    /// Keep only the last this many bytes of the log (a long benchmark must not grow it
    /// without bound); `None` keeps all of it.
    pub log_cap: Option<usize>,
    /// How long the node may take to report both addresses.
    pub timeout: Duration,
    /// Environment variables for the node beyond `RUST_LOG` (the crash suite's `FAILPOINTS`).
    pub env: &'a [(&'a str, &'a str)],
}

/// A running `raftlited`.
pub struct NodeProcess {
    child: Option<Child>,
    /// The bound HTTP address, `host:port`.
    pub http_addr: String,
    /// The bound Raft address, `host:port`.
    pub raft_addr: String,
    log: Arc<Mutex<String>>,
    /// Copies the node's stderr into `log`; ends when the process does.
    log_reader: Option<JoinHandle<()>>,
}

impl NodeProcess {
    /// Spawns a node and waits until it has reported both addresses; on failure, kills it
    /// and returns its log.
    pub fn spawn(launch: &Launch<'_>) -> Result<NodeProcess, String> {
        let mut child = Command::new(launch.bin)
            .args(["-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"])
            .args(launch.args)
            .arg(launch.data_dir)
            .env("RUST_LOG", launch.log_filter)
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", launch.bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
        let sink = Arc::clone(&log);
        let cap = launch.log_cap;
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find(HTTP_ADDR_LINE) {
                    let url = line[i + HTTP_ADDR_LINE.len()..].trim();
                    let addr = url.split_once("://").map_or(url, |(_, a)| a);
                    let _ = tx.send((true, addr.to_string()));
                } else if let Some(i) = line.find(RAFT_ADDR_LINE) {
                    let rest = &line[i + RAFT_ADDR_LINE.len()..];
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let _ = tx.send((false, addr.to_string()));
                }
                if let Ok(mut l) = sink.lock() {
                    if let Some(cap) = cap {
                        if l.len() > cap {
                            let cut = l.len() - cap / 2;
                            let cut = (cut..l.len()).find(|&i| l.is_char_boundary(i));
                            l.drain(..cut.unwrap_or(0));
                        }
                    }
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let mut node = NodeProcess {
            child: Some(child),
            http_addr: String::new(),
            raft_addr: String::new(),
            log,
            log_reader: Some(log_reader),
        };
        let deadline = Instant::now() + launch.timeout;
        let (mut http, mut raft) = (None, None);
        while http.is_none() || raft.is_none() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((true, a)) => http = Some(a),
                Ok((false, a)) => raft = Some(a),
                Err(_) => {
                    node.kill();
                    return Err(format!(
                        "raftlited did not report its addresses within {:?}:\n{}",
                        launch.timeout,
                        node.log()
                    ));
                }
            }
        }
        node.http_addr = http.unwrap_or_default();
        node.raft_addr = raft.unwrap_or_default();
        Ok(node)
    }

    /// Everything the node has logged so far (the tail only, with a log cap).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status of a process that ended by itself (it is reaped then); `None` while it
    /// runs, or once the test stopped it. ([`NodeProcess::is_running`] only says the test has
    /// not stopped it.)
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM (through `kill(1)`: no `unsafe` here), then a bounded wait for the exit; on
    /// timeout the node is killed and the error holds its log.
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("the node was already stopped".into());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.drain_log();
                    return Ok(status);
                }
                Ok(None) if Instant::now() <= deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.drain_log();
                    return Err(format!(
                        "raftlited did not stop within {timeout:?} of SIGTERM; killed. Its log:\n{}",
                        self.log()
                    ));
                }
            }
        }
    }

    /// Waits (bounded by `timeout`) until the node exits by itself, as it does at an armed crash
    /// point; `None` if it is still running then (it keeps running).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    self.drain_log();
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return None,
            }
        }
    }

    /// SIGKILL, as a crash. Afterwards [`NodeProcess::log`] holds every line the process
    /// wrote, so a caller can tell how far it got.
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
        if wait_until(Duration::from_secs(10), || reader.is_finished()) {
            let _ = reader.join();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_never_reports_its_addresses_is_killed_with_its_log() {
        // `sh -c` stands in for a node that logs and hangs.
        let dir = std::env::temp_dir();
        let script = dir.join(format!("testkit-hang-{}.sh", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\necho starting >&2\nexec sleep 30\n").unwrap();
        let _ = Command::new("chmod").arg("+x").arg(&script).status();
        let started = Instant::now();
        let err = NodeProcess::spawn(&Launch {
            bin: &script,
            data_dir: &dir,
            args: &[],
            log_filter: "info",
            log_cap: None,
            env: &[],
            timeout: Duration::from_millis(300),
        })
        .err()
        .expect("no addresses: an error");
        let _ = std::fs::remove_file(&script);
        assert!(err.contains("starting"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
    }

    #[test]
    fn addresses_come_from_the_log_lines() {
        let dir = std::env::temp_dir();
        let script = dir.join(format!("testkit-addr-{}.sh", std::process::id()));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"x {RAFT_ADDR_LINE}127.0.0.1:7 node_id=1\" >&2\n\
                 echo \"y {HTTP_ADDR_LINE}https://127.0.0.1:8\" >&2\nexec sleep 30\n"
            ),
        )
        .unwrap();
        let _ = Command::new("chmod").arg("+x").arg(&script).status();
        let mut node = NodeProcess::spawn(&Launch {
            bin: &script,
            data_dir: &dir,
            args: &[],
            log_filter: "info",
            log_cap: Some(64),
            env: &[],
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        let _ = std::fs::remove_file(&script);
        assert_eq!(
            (node.http_addr.as_str(), node.raft_addr.as_str()),
            ("127.0.0.1:8", "127.0.0.1:7")
        );
        node.kill();
        assert!(node.log().contains("https://127.0.0.1:8"));
        assert!(!node.is_running());
    }
}
