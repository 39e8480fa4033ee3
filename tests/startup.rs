//! The node's command line and start-up failures: clear messages and non-zero exits.

mod common;

use std::time::Duration;

use common::run_binary;

#[test]
fn bad_flag_is_refused_with_go_style_message() {
    let (code, out) = run_binary(&["-no-such-flag", "/tmp/x"], Duration::from_secs(10));
    assert_eq!(code, Some(2));
    assert!(
        out.contains("flag provided but not defined: -no-such-flag"),
        "{out}"
    );
}

/// `raftlited` with no data directory starts in `./raftlite-data` and says, on stdout, what
/// it serves and where (the first five minutes of a new user).
#[test]
fn without_a_data_directory_the_node_starts_in_raftlite_data_and_says_where_it_serves() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .args(["-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut banner = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("Shell") {
                let _ = tx.send(banner.clone());
            }
        }
    });
    let banner = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let banner = banner.expect("no serving banner on stdout");
    let data = cwd.path().join("raftlite-data");
    assert!(data.is_dir(), "{banner}");
    for want in [
        "HTTP API  http://127.0.0.1:",
        "Console   http://127.0.0.1:",
        "/console/",
        "Raft      127.0.0.1:",
        &format!(
            "Data      {}",
            std::fs::canonicalize(&data)
                .unwrap_or(data.clone())
                .display()
        ),
        "Shell     raftlite -H 127.0.0.1 -p ",
    ] {
        assert!(banner.contains(want), "missing {want:?} in:\n{banner}");
    }
}

#[test]
fn an_empty_data_directory_is_an_error() {
    let (code, out) = run_binary(&["-fk", " "], Duration::from_secs(10));
    assert_eq!(code, Some(1));
    assert!(out.contains("no data directory set"), "{out}");
}

#[test]
fn arguments_after_data_dir_are_refused() {
    let (code, out) = run_binary(&["/tmp/x", "extra"], Duration::from_secs(10));
    assert_eq!(code, Some(1));
    assert!(out.contains("arguments after data directory"), "{out}");
}

#[test]
fn unusable_data_directory_exits_with_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let path = file.to_str().unwrap();
    let (code, out) = run_binary(
        &[
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            path,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1));
    assert!(
        out.contains("data directory") && out.contains("a-file"),
        "{out}"
    );
}

#[test]
fn port_in_use_exits_with_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (code, out) = run_binary(
        &[
            "-http-addr",
            &addr,
            "-raft-addr",
            "127.0.0.1:0",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!("listen on the HTTP address {addr}")),
        "{out}"
    );
}

#[test]
fn version_and_help() {
    let (code, out) = run_binary(&["-version"], Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(out.contains(raftlite::VERSION));
    let (code, out) = run_binary(&["-h"], Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(out.contains("-http-addr"), "{out}");
}

/// SIGTERM sent right after start-up stops the node cleanly. A restarted node on new
/// addresses is still updating its membership then: the node used to listen for signals
/// while forming the cluster and again, with new listeners, while serving, and a SIGTERM
/// that came between the two was lost (the node ran until killed). The race is narrow, so
/// this repeats the restart.
#[test]
fn sigterm_right_after_a_restart_on_new_addresses_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["-node-id", "n1"];
    let mut node = common::Node::start_in(dir.path(), &args);
    assert!(node.stop().success());
    for round in 0..8 {
        // Port 0 gives new addresses each time, so each start updates the membership.
        let mut node = common::Node::start_in(dir.path(), &args);
        let status = node.stop();
        assert!(
            status.success(),
            "round {round}: {status:?}\n{}",
            node.log()
        );
    }
}
