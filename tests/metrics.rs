//! `GET /metrics` end to end on real processes: every scrape is parsed by the Prometheus
//! project's own OpenMetrics parser (the Python `prometheus_client`, through
//! `tests/openmetrics_parse.py`), which refuses any text the format does not allow, so each
//! test also checks that the exposition is valid. On top of that: backup, load and Raft
//! numbers move as the node works, each node of a cluster reports its own state, and the
//! endpoint is gated like `/status`.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{prerequisite_missing, wait_until, Cluster, Node};

/// One parsed sample: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    /// Family name -> (type, unit).
    families: BTreeMap<String, (String, String)>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include `labels`; `None` if absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// [`Scrape::get`], 0 when absent (a labelled counter appears at its first increment).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    fn value(&self, name: &str) -> f64 {
        self.get(name, &[])
            .unwrap_or_else(|| panic!("no sample {name} in {:#?}", self.samples))
    }
}

/// An interpreter that has the `prometheus_client` parser (Debian's
/// `python3-prometheus-client`, which scripts/test-all.sh installs), or `None` after
/// reporting it missing (a failure under CI).
fn parser_python() -> Option<String> {
    let candidates = std::env::var("RAFTLITE_TEST_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(python);
        }
    }
    prerequisite_missing(
        "no python3 with prometheus_client (apt-get install python3-prometheus-client)",
    );
    None
}

/// Parses `text` with the official parser; an invalid exposition fails the test.
fn parse(python: &str, text: &str) -> Scrape {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openmetrics_parse.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parser JSON");
    let mut scrape = Scrape {
        samples: Vec::new(),
        families: BTreeMap::new(),
    };
    for family in families.as_array().expect("families") {
        let name = family["name"].as_str().expect("name").to_string();
        let kind = family["type"].as_str().unwrap_or_default().to_string();
        let unit = family["unit"].as_str().unwrap_or_default().to_string();
        scrape.families.insert(name, (kind, unit));
        for s in family["samples"].as_array().expect("samples") {
            let labels = s["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            scrape.samples.push(Sample {
                name: s["name"].as_str().expect("sample name").to_string(),
                labels,
                value: s["value"]
                    .as_str()
                    .expect("value")
                    .parse()
                    .expect("a number"),
            });
        }
    }
    scrape
}

/// Scrapes `node` and parses the answer (200, OpenMetrics content type).
fn scrape(python: &str, node: &Node) -> Scrape {
    let a = node.get("/metrics");
    assert_eq!(a.status, 200, "GET /metrics: {}", a.body);
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        a.headers
    );
    parse(python, &a.body)
}

/// Scrapes until `done` holds (bounded: 10 s) and returns that scrape, or fails with the last.
fn scrape_until(python: &str, node: &Node, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    let ok = wait_until(Duration::from_secs(10), || {
        let s = scrape(python, node);
        let hit = done(&s);
        last = Some(s);
        hit
    });
    let last = last.expect("at least one scrape");
    assert!(ok, "{what}: {:#?}", last.samples);
    last
}

fn get_bytes(node: &Node, path: &str) -> Vec<u8> {
    let r = reqwest::blocking::get(node.url(path)).expect("GET");
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.bytes().expect("body").to_vec()
}

const BACKUPS: &str = "raftlite_backups_total";
const SENT: &str = "raftlite_backup_sent_bytes_total";
const BACKUP_SECONDS: &str = "raftlite_backup_duration_seconds_count";

#[test]
fn backups_loads_and_raft_progress_move_the_metrics() {
    let Some(python) = parser_python() else {
        return;
    };
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"]"#);
    let before = scrape(&python, &node);
    // Declared with their type and unit.
    for (family, kind, unit) in [
        ("raftlite_backups", "counter", ""),
        ("raftlite_backup_sent_bytes", "counter", "bytes"),
        ("raftlite_backup_duration_seconds", "histogram", "seconds"),
        ("raftlite_raft_state", "gauge", ""),
        ("raftlite_raft_log_size_bytes", "gauge", "bytes"),
        (
            "raftlite_raft_apply_duration_seconds",
            "histogram",
            "seconds",
        ),
        (
            "raftlite_raft_commit_duration_seconds",
            "histogram",
            "seconds",
        ),
        ("raftlite_backup_copies_made", "counter", ""),
    ] {
        assert_eq!(
            before.families.get(family),
            Some(&(kind.to_string(), unit.to_string())),
            "{family}: {:?}",
            before.families
        );
    }
    assert_eq!(
        before.count("raftlite_raft_state", &[("state", "leader")]),
        1.0
    );
    assert_eq!(
        before.count("raftlite_raft_state", &[("state", "follower")]),
        0.0
    );
    assert!(before.value("raftlite_raft_log_size_bytes") > 0.0);
    assert!(
        before
            .get("raftlite_backup_newest_age_seconds", &[])
            .is_none(),
        "no backup yet, no age"
    );

    // A write: the indexes advance, and its commit and its entry's apply are timed.
    node.execute(r#"["INSERT INTO t(name) VALUES('fiona')"]"#);
    let after_write = scrape(&python, &node);
    for index in ["raftlite_raft_applied_index", "raftlite_raft_commit_index"] {
        assert!(
            after_write.value(index) > before.value(index),
            "{index}: {} then {}",
            before.value(index),
            after_write.value(index)
        );
    }
    assert!(
        after_write.value("raftlite_raft_last_log_index")
            >= after_write.value("raftlite_raft_applied_index")
    );
    for histogram in [
        "raftlite_raft_apply_duration_seconds_count",
        "raftlite_raft_commit_duration_seconds_count",
    ] {
        assert!(
            after_write.value(histogram) > before.value(histogram),
            "{histogram}"
        );
    }

    // One binary and one SQL backup.
    let binary = get_bytes(&node, "/db/backup");
    let sql = get_bytes(&node, "/db/backup?fmt=sql");
    let moved = |s: &Scrape, format: &str, n: usize| {
        s.count(BACKUPS, &[("format", format), ("outcome", "ok")])
            == before.count(BACKUPS, &[("format", format), ("outcome", "ok")]) + 1.0
            && s.count(SENT, &[("format", format)])
                == before.count(SENT, &[("format", format)]) + n as f64
            && s.count(BACKUP_SECONDS, &[("format", format)])
                == before.count(BACKUP_SECONDS, &[("format", format)]) + 1.0
    };
    // A one-pass copy's stream can end a moment before the copy reports its outcome (its
    // last bytes are in the file before the copy task finishes): wait for that too.
    let after = scrape_until(&python, &node, "both backups counted", |s| {
        moved(s, "binary", binary.len())
            && moved(s, "sql", sql.len())
            && s.value("raftlite_backup_copies_in_progress") == 0.0
    });
    for outcome in ["error", "too_many_copies", "insufficient_storage"] {
        for format in ["binary", "sql"] {
            assert_eq!(
                after.count(BACKUPS, &[("format", format), ("outcome", outcome)]),
                0.0,
                "{format} {outcome}"
            );
        }
    }
    assert_eq!(
        after.value("raftlite_backup_copies_made_total"),
        before.value("raftlite_backup_copies_made_total") + 1.0
    );
    assert_eq!(after.value("raftlite_backup_copies_in_progress"), 0.0);
    let age = after.value("raftlite_backup_newest_age_seconds");
    assert!((0.0..60.0).contains(&age), "age {age}");

    // A conditional backup of unchanged content: counted as not modified.
    let tag = reqwest::blocking::Client::new()
        .head(node.url("/db/backup"))
        .send()
        .expect("HEAD")
        .headers()
        .get("etag")
        .expect("ETag")
        .clone();
    let cond = reqwest::blocking::Client::new()
        .get(node.url("/db/backup"))
        .header("If-None-Match", tag)
        .send()
        .expect("conditional GET");
    assert_eq!(cond.status().as_u16(), 304);
    scrape_until(&python, &node, "the 304 counted", |s| {
        s.count(
            BACKUPS,
            &[("format", "binary"), ("outcome", "not_modified")],
        ) == after.count(
            BACKUPS,
            &[("format", "binary"), ("outcome", "not_modified")],
        ) + 1.0
    });

    // Loads: one applied, one rejected (an empty body: 400).
    let load = |body: &str| {
        reqwest::blocking::Client::new()
            .post(node.url("/db/load"))
            .header("Content-Type", "application/octet-stream")
            .body(body.to_string())
            .send()
            .expect("POST /db/load")
            .status()
            .as_u16()
    };
    assert_eq!(
        load("CREATE TABLE loaded (x);\nINSERT INTO loaded VALUES (1);\n"),
        200
    );
    assert_eq!(load(""), 400);
    let loads = scrape(&python, &node);
    assert_eq!(
        loads.count(
            "raftlite_loads_total",
            &[("kind", "load"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        loads.count(
            "raftlite_loads_total",
            &[("kind", "load"), ("outcome", "rejected")]
        ),
        1.0
    );
}

#[test]
fn each_node_of_a_cluster_reports_its_own_state() {
    let Some(python) = parser_python() else {
        return;
    };
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let followers = cluster.followers();
    assert_eq!(followers.len(), 2);
    let l = scrape(&python, &cluster.nodes[leader]);
    assert_eq!(l.count("raftlite_raft_state", &[("state", "leader")]), 1.0);
    assert_eq!(
        l.count("raftlite_raft_state", &[("state", "follower")]),
        0.0
    );
    let term = l.value("raftlite_raft_term");
    assert!(term >= 1.0);
    for &f in &followers {
        let node = &cluster.nodes[f];
        // Answered by the follower itself, never forwarded to the leader.
        let a = node.get("/metrics");
        assert_eq!(a.status, 200);
        assert!(a.header("x-rqlite-served-by").is_none(), "{:?}", a.headers);
        let s = parse(&python, &a.body);
        assert_eq!(
            s.count("raftlite_raft_state", &[("state", "follower")]),
            1.0
        );
        assert_eq!(s.count("raftlite_raft_state", &[("state", "leader")]), 0.0);
        assert_eq!(s.value("raftlite_raft_term"), term);
    }
    // A write through the leader reaches every follower's applied index.
    let before = l.value("raftlite_raft_applied_index");
    cluster.nodes[leader].execute(r#"["CREATE TABLE t (x)"]"#);
    for &f in &followers {
        scrape_until(
            &python,
            &cluster.nodes[f],
            "the follower applied the write",
            |s| s.value("raftlite_raft_applied_index") > before,
        );
    }
}

#[test]
fn the_metrics_need_the_status_perm() {
    let Some(python) = parser_python() else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let auth = files.path().join("auth.json");
    std::fs::write(
        &auth,
        r#"[
            {"username": "watcher", "password": "pw-watcher", "perms": ["status"]},
            {"username": "saver", "password": "pw-saver", "perms": ["backup"]},
            {"username": "*", "perms": ["ready"]}
        ]"#,
    )
    .unwrap();
    let node = Node::start(&["-auth", &auth.display().to_string()]);
    let client = reqwest::blocking::Client::new();
    let ask = |path: &str, user: Option<(&str, &str)>| {
        let mut req = client.get(node.url(path));
        if let Some((u, pw)) = user {
            req = req.basic_auth(u, Some(pw));
        }
        let r = req.send().expect("GET");
        let status = r.status().as_u16();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, challenge, r.text().unwrap_or_default())
    };
    // Refused exactly as /status is: without credentials, and without the perm.
    for user in [
        None,
        Some(("saver", "pw-saver")),
        Some(("watcher", "wrong")),
    ] {
        let metrics = ask("/metrics", user);
        let status = ask("/status", user);
        assert_eq!(metrics.0, 401, "{user:?}");
        assert_eq!(metrics.0, status.0, "{user:?}");
        assert_eq!(metrics.1, status.1, "{user:?}");
        assert!(metrics.2.is_empty(), "a refusal has an empty body");
    }
    let (status, _, body) = ask("/metrics", Some(("watcher", "pw-watcher")));
    assert_eq!(status, 200, "{body}");
    let s = parse(&python, &body);
    assert_eq!(s.count("raftlite_raft_state", &[("state", "leader")]), 1.0);
}

/// Automatic backups and continuous archiving are counted in `/metrics` too, parsed by the
/// Prometheus project's own parser: the uploads, the archived index and chunks move with a
/// write, and the archive's lag (the recovery point) falls back to 0 once it is shipped.
#[test]
fn automatic_backups_and_archiving_are_in_the_metrics() {
    let Some(python) = parser_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("auto-backup.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"version":1,"type":"file","interval":"200ms","archive":{{"max_delay":"100ms","base_interval":"1h"}},
                "sub":{{"dir":"{}","name":"backup.sqlite"}}}}"#,
            tmp.path().join("backups").display()
        ),
    )
    .unwrap();
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    let before = scrape(&python, &node);
    for (family, kind, unit) in [
        ("raftlite_auto_backup_uploads", "counter", ""),
        ("raftlite_auto_backup_upload_bytes", "counter", "bytes"),
        ("raftlite_archive_chunks", "counter", ""),
        ("raftlite_archive_bases", "counter", ""),
        ("raftlite_archive_index", "gauge", ""),
        ("raftlite_archive_lag_seconds", "gauge", "seconds"),
    ] {
        assert_eq!(
            before.families.get(family),
            Some(&(kind.to_string(), unit.to_string())),
            "{family}: {:?}",
            before.families
        );
    }
    assert_eq!(before.value("raftlite_auto_backup_uploads_total"), 0.0);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    node.execute(r#"["INSERT INTO t VALUES(2)"]"#);
    let applied = scrape(&python, &node).value("raftlite_raft_applied_index");
    assert!(
        wait_until(Duration::from_secs(20), || {
            let m = scrape(&python, &node);
            m.value("raftlite_auto_backup_uploads_total") >= 1.0
                && m.value("raftlite_archive_index") >= applied
                && m.value("raftlite_archive_bases_total") >= 1.0
                && m.value("raftlite_archive_lag_seconds") == 0.0
        }),
        "{}",
        node.get("/metrics").body
    );
    assert!(scrape(&python, &node).value("raftlite_auto_backup_upload_bytes_total") > 0.0);
    // After the first base, a write goes out as a chunk.
    node.execute(r#"["INSERT INTO t VALUES(3)"]"#);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let m = scrape(&python, &node);
            m.value("raftlite_archive_chunks_total") >= 1.0
                && m.value("raftlite_archive_lag_seconds") == 0.0
        }),
        "{}",
        node.get("/metrics").body
    );
}
