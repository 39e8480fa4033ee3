//! The `raftlite` shell end to end: the real binary driven through pipes and through a
//! pseudo-terminal (`script`), against real `raftlited` nodes. Where the server cannot
//! produce a case (a 401, a stream cut mid-way, a 301 on a plain request, `/db/load` and
//! `/boot` while those endpoints are not in this branch), a small stub HTTP server on
//! loopback answers instead, and the test checks what the shell sent and printed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{sqlite3, Cluster, Node};

const SHELL: &str = env!("CARGO_BIN_EXE_raftlite");

/// What a shell run printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout without the three banner lines and the final `bye~`.
    fn body(&self) -> String {
        let mut lines: Vec<&str> = self.stdout.lines().collect();
        assert!(
            lines
                .first()
                .is_some_and(|l| l.starts_with("Welcome to the rqlite CLI.")),
            "no banner:\n{}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        lines.drain(..3);
        assert_eq!(lines.pop(), Some("bye~"), "no bye~:\n{}", self.stdout);
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

fn host_args(addr: &str) -> Vec<String> {
    let (h, p) = addr.rsplit_once(':').expect("host:port");
    vec!["-H".into(), h.into(), "-p".into(), p.into()]
}

/// Runs the shell with `--exit-status` and `args`, `input` on stdin (a pipe), bounded by
/// 60 s: the exit status tells whether every command succeeded.
fn shell_with(args: &[String], input: &str, env: &[(&str, &str)]) -> Run {
    let mut with_status = vec!["--exit-status".to_string()];
    with_status.extend_from_slice(args);
    shell_as_invoked(&with_status, input, env)
}

/// Runs the shell with exactly `args` (rqlite's exit status unless they ask otherwise).
fn shell_as_invoked(args: &[String], input: &str, env: &[(&str, &str)]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(SHELL);
    cmd.args(args)
        .env("HOME", home.path())
        .env_remove("RQLITE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn raftlite");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = wait_output(child, Duration::from_secs(60));
    writer.join().unwrap();
    out
}

fn wait_output(mut child: Child, timeout: Duration) -> Run {
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

fn shell(node: &Node, input: &str) -> Run {
    shell_with(&host_args(&node.http_addr), input, &[])
}

/// Files in `dir` (names), to check nothing partial is left behind.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// A stub HTTP server for the cases a real node cannot produce.

/// A request as the stub saw it.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
}

struct Stub {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Handler = dyn Fn(&Seen) -> Vec<u8> + Send + Sync;

impl Stub {
    /// Serves one request per connection; `handler` returns the raw response bytes.
    fn start(handler: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (sink, handler) = (Arc::clone(&sink), Arc::clone(&handler));
                std::thread::spawn(move || serve_one(conn, &sink, &*handler));
            }
        });
        Stub { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(conn: TcpStream, sink: &Mutex<Vec<Seen>>, handler: &Handler) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut seen = Seen {
        head,
        body: Vec::new(),
    };
    if let Some(n) = seen
        .header("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let mut body = vec![0; n];
        let _ = reader.read_exact(&mut body);
        seen.body = body;
    } else if seen
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            let _ = reader.read_line(&mut size);
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            let _ = reader.read_exact(&mut chunk);
            if n == 0 {
                break;
            }
            seen.body.extend_from_slice(&chunk[..n]);
        }
    }
    let resp = handler(&seen);
    sink.lock().unwrap().push(seen);
    let mut conn = conn;
    let _ = conn.write_all(&resp);
    let _ = conn.flush();
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nX-RQLITE-VERSION: stub\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const STUB_STATUS: &str = r#"{"store":{"sqlite3":{}}}"#;

// ---------------------------------------------------------------------------------------------
// SQL through a pipe.

#[test]
fn sql_results_print_as_rqlite_tables_and_counts() {
    let node = Node::start(&[]);
    let run = shell(
        &node,
        "CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT);\n\
         INSERT INTO foo(name) VALUES('fiona');\n\
         INSERT INTO foo(name) VALUES('declan'), (NULL);\n\
         SELECT *\n  FROM foo\n  ORDER BY id;\n\
         SELECT * FROM foo WHERE id > 10;\n",
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(
        run.body(),
        "0 row affected\n\
         1 row affected\n\
         2 rows affected\n\
         +----+--------+\n\
         | id | name   |\n\
         +----+--------+\n\
         | 1  | fiona  |\n\
         +----+--------+\n\
         | 2  | declan |\n\
         +----+--------+\n\
         | 3  | <nil>  |\n\
         +----+--------+\n\
         +----+------+\n\
         | id | name |\n\
         +----+------+\n"
    );
    assert!(
        run.stdout.starts_with(&format!(
            "Welcome to the rqlite CLI.\nEnter \".help\" for usage hints.\nConnected to http://{} running version {}\n",
            node.http_addr,
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        run.stdout
    );
    // Piped: no prompt, no progress, nothing on stderr.
    assert_eq!(run.stderr, "");
}

/// rqlite's shell exits 0 whatever failed, and scripts written for it rely on that: so does
/// ours unless `--exit-status` is given. The errors print the same either way, on stdout.
#[test]
fn without_exit_status_failures_exit_0_as_rqlites_shell_does() {
    let node = Node::start(&[]);
    let run = shell_as_invoked(
        &host_args(&node.http_addr),
        "SELECT * FROM nope;\nSELECT 1 AS one;\n",
        &[],
    );
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.body(),
        "Error: no such table: nope\n+-----+\n| one |\n+-----+\n| 1   |\n+-----+\n"
    );
    assert_eq!(run.stderr, "");
    let port = free_port();
    let run = shell_as_invoked(&["-p".into(), port.to_string()], "SELECT 1;\n", &[]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stdout,
        format!("ERR! Unable to connect to rqlited at http://127.0.0.1:{port} - is it running?\n")
    );
    // A bad command line is still one (before anything ran).
    let run = shell_as_invoked(&["--bogus".into()], "", &[]);
    assert_eq!(run.code, Some(2));
}

#[test]
fn sql_errors_print_error_lines_and_fail_the_exit_status() {
    let node = Node::start(&[]);
    let run = shell(&node, "SELECT * FROM nope;\nSELECT 1 AS one;\n");
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.body(),
        "Error: no such table: nope\n+-----+\n| one |\n+-----+\n| 1   |\n+-----+\n"
    );
}

#[test]
fn a_statement_without_semicolon_runs_at_end_of_input() {
    let node = Node::start(&[]);
    let run = shell(&node, "SELECT 'a;b' AS x");
    assert_eq!(run.code, Some(0));
    assert_eq!(run.body(), "+-----+\n| x   |\n+-----+\n| a;b |\n+-----+\n");
}

#[test]
fn modes_timer_changes_and_forcewrites() {
    let node = Node::start(&[]);
    let run = shell(
        &node,
        "CREATE TABLE t (a INTEGER, b TEXT);\n\
         .changes on\n\
         INSERT INTO t VALUES (1, 'x,y');\n\
         .changes off\n\
         .mode csv\nSELECT * FROM t;\n\
         .mode json\nSELECT * FROM t;\n\
         .mode line\nSELECT * FROM t;\n\
         .mode\n.mode column\n\
         .forcewrites on\nINSERT INTO t VALUES (2, NULL);\n.forcewrites\n.forcewrites off\n\
         .timer on\nSELECT count(*) AS n FROM t;\nINSERT INTO t VALUES (3, 'z');\n.timer\n",
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let body = run.body();
    let expected_start = "0 row affected\n\
         1 row affected\n\
         last insert ID: 1\n\
         a,b\n1,\"x,y\"\n\
         [\n  {\n    \"a\": 1,\n    \"b\": \"x,y\"\n  }\n]\n\
         a = 1\nb = x,y\n\
         line\n\
         1 row affected\n\
         on\n\
         +---+\n| n |\n+---+\n| 2 |\n+---+\n";
    assert!(body.starts_with(expected_start), "{body}");
    let rest = &body[expected_start.len()..];
    let lines: Vec<&str> = rest.lines().collect();
    assert!(
        lines[0].starts_with("Run Time: ") && lines[0].ends_with(" seconds"),
        "{rest}"
    );
    assert!(
        lines[1].starts_with("1 row affected (") && lines[1].ends_with(" sec)"),
        "{rest}"
    );
    assert_eq!(lines[2], "on");
}

#[test]
fn tables_schema_and_indexes() {
    let node = Node::start(&[]);
    let run = shell(
        &node,
        "CREATE TABLE b (x);\nCREATE TABLE a (y);\nCREATE INDEX ix ON a(y);\n\
         .tables\n.schema\n.indexes\n",
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(
        run.body(),
        "0 row affected\n0 row affected\n0 row affected\n\
         +------+\n| name |\n+------+\n| a    |\n+------+\n| b    |\n+------+\n\
         +-------------------------+\n| sql                     |\n+-------------------------+\n\
         | CREATE TABLE b (x)      |\n+-------------------------+\n\
         | CREATE TABLE a (y)      |\n+-------------------------+\n\
         | CREATE INDEX ix ON a(y) |\n+-------------------------+\n\
         +-------------------------+\n| sql                     |\n+-------------------------+\n\
         | CREATE INDEX ix ON a(y) |\n+-------------------------+\n"
    );
}

#[test]
fn consistency_setting_is_shown_set_checked_and_sent() {
    let node = Node::start(&[]);
    let run = shell(
        &node,
        ".consistency\n.consistency strong\n.consistency\n.consistency eventual\n.tables\n.show\n",
    );
    assert_eq!(run.code, Some(1), "an invalid level is a failed command");
    assert_eq!(
        run.body(),
        "weak\nstrong\n\
         ERR! invalid consistency 'eventual'. Use 'none', 'weak', 'linearizable', or 'strong'\n\
         +------+\n| name |\n+------+\n\
         \x20 blobarray: off\n  changes: off\n  consistency: strong\n  forcewrites: off\n  mode: column\n  output: stdout\n  timer: off\n"
    );
    // The level travels with .tables: a stub records the query string.
    let stub = Stub::start(|s| {
        if s.request_line().contains("/status") {
            http("200 OK", STUB_STATUS)
        } else {
            http(
                "200 OK",
                r#"{"results":[{"columns":["name"],"types":["text"]}]}"#,
            )
        }
    });
    let run = shell_with(&host_args(&stub.addr), ".consistency none\n.tables\n", &[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let q = stub.seen().last().unwrap().request_line().to_string();
    assert!(
        q.starts_with("GET /db/query?level=none&q=SELECT+name"),
        "{q}"
    );
}

#[test]
fn toggles_and_help() {
    let node = Node::start(&[]);
    let run = shell(&node, ".timer maybe\n.blobarray on\n.blobarray\n.help\n");
    assert_eq!(run.code, Some(1));
    let body = run.body();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines[0],
        "ERR! invalid option 'maybe'. Use 'on' or 'off' (default)"
    );
    assert_eq!(lines[1], "on");
    assert!(lines[2].starts_with(".backup FILE "), "{body}");
    assert!(
        lines.last().unwrap().starts_with(".timer [on|off] "),
        "{body}"
    );
    assert_eq!(lines.len(), 3 + 29, "{body}");
}

#[test]
fn unknown_commands_and_missing_arguments_are_one_line_each() {
    let node = Node::start(&[]);
    let run = shell(
        &node,
        ".frob\n.backup\n.dump\n.restore\n.boot\n.read\n.sysdump\n.remove\nSELECT 1;\n",
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.body(),
        "ERR! unknown command '.frob'. Enter \".help\" for usage hints\n\
         ERR! please specify an output file for the backup\n\
         ERR! please specify an output file for the SQL text\n\
         ERR! please specify an input file to restore from\n\
         ERR! please specify an input file to boot with\n\
         ERR! please specify an input file to read from\n\
         ERR! please specify an output file for the sysdump\n\
         ERR! please specify a node ID to remove\n\
         +---+\n| 1 |\n+---+\n| 1 |\n+---+\n"
    );
}

#[test]
fn quit_exit_and_eof_say_bye() {
    let node = Node::start(&[]);
    for input in [".quit\nSELECT 1;\n", ".exit\n", "quit\n", "EXIT\n", ""] {
        let run = shell(&node, input);
        assert_eq!(run.code, Some(0), "{input:?}");
        assert_eq!(run.body(), "", "{input:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster and diagnostics commands.

#[test]
fn status_nodes_leader_ready_and_unsupported_endpoints() {
    let node = Node::start(&["-node-id", "n1"]);
    let run = shell(
        &node,
        ".status store\n.ready\n.nodes\n.nodes all\n.leader\n.extensions\n.expvar\n",
    );
    let full = run.body();
    // The `.expvar` tree comes last; the rest is `.status` … `.extensions`.
    let (body, expvar) = full.split_at(full.find("\ncmdline: ").expect("expvar output"));
    assert!(body.starts_with("store:\n"), "{body}");
    assert!(body.contains("\n  node_id: n1\n"), "{body}");
    assert!(
        !body.contains("\nhttp:"),
        ".status KEY shows only that key: {body}"
    );
    assert!(body.contains("\nready\n"), "{body}");
    let api = format!("  api_addr: http://{}\n", node.http_addr);
    assert_eq!(body.matches("\nn1:\n").count(), 3, "{body}");
    assert_eq!(body.matches(&api).count(), 3, "{body}");
    assert!(body.contains("  leader: true\n"), "{body}");
    // `/debug/vars` as a key/value tree.
    assert!(expvar.contains("\nstore:\n"), "{expvar}");
    assert!(expvar.contains("\n  num_snapshots: 0\n"), "{expvar}");
    assert!(expvar.contains("\nhttp:\n"), "{expvar}");
    assert_eq!(run.code, Some(0), "{full}");
}

#[test]
fn stepdown_reap_and_snapshot_report_the_servers_answer() {
    let node = Node::start(&[]);
    // A write leaves WAL frames for the first reap to checkpoint; the second finds none.
    node.execute(r#"["CREATE TABLE t(x)"]"#);
    let run = shell(&node, ".stepdown\n.reap\n.reap\n.snapshot\n.snapshot x\n");
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.body(),
        "ERR! server responded with 503 Service Unavailable: cannot step down: no other voter in the cluster\n\
         snapshots reaped: 0, WALs checkpointed: 1\n\
         snapshots reaped: 0, WALs checkpointed: 0\n\
         ERR! invalid trailing logs value: x\n"
    );
}

#[test]
fn remove_takes_a_node_out_of_the_cluster() {
    let cluster = Cluster::start(3, &[]);
    let leader = &cluster.nodes[cluster.leader()];
    let gone = cluster
        .nodes
        .iter()
        .position(|n| !std::ptr::eq(n, leader))
        .unwrap();
    let id = format!("node{}", gone + 1);
    let run = shell(leader, &format!(".remove {id}\n.nodes\n"));
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let body = run.body();
    assert!(!body.contains(&format!("{id}:")), "{body}");
    assert_eq!(body.matches("  leader: ").count(), 2, "{body}");
}

#[test]
fn a_follower_serves_the_shell_through_the_leader() {
    let cluster = Cluster::start(3, &[]);
    let follower = &cluster.nodes[cluster.followers()[0]];
    let dir = tempfile::tempdir().unwrap();
    let bak = dir.path().join("f.sqlite3");
    let run = shell(
        follower,
        &format!(
            "CREATE TABLE t (x);\nINSERT INTO t VALUES (7);\n.leader\n.backup {}\n",
            bak.display()
        ),
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(run.body().ends_with("backup file written successfully\n"));
    assert_eq!(sqlite3(&bak, "SELECT x FROM t"), "7\n");
}

#[test]
fn sysdump_writes_every_nodes_diagnostics() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sys.txt");
    let run = shell(&node, &format!(".sysdump {}\n", out.display()));
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let text = std::fs::read_to_string(&out).unwrap();
    let base = format!("http://{}", node.http_addr);
    assert!(
        text.contains(&format!("URL: {base}/status?pretty\nStatus: 200 OK\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("URL: {base}/readyz\nStatus: 200 OK\n\n[+]node ok")),
        "{text}"
    );
    assert!(
        text.contains(&format!("URL: {base}/debug/vars\nStatus: 200 OK\n")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Files: .backup, .dump, .restore, .boot, .read, .output.

#[test]
fn backup_and_dump_write_files_with_rqlites_messages() {
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE a (x)", "INSERT INTO a VALUES (1)", "CREATE TABLE b (y)", "INSERT INTO b VALUES ('q')"]"#);
    let dir = tempfile::tempdir().unwrap();
    let (bak, all, sub) = (
        dir.path().join("bak.sqlite3"),
        dir.path().join("all.sql"),
        dir.path().join("b.sql"),
    );
    // An existing, longer file is replaced, not overwritten in place.
    std::fs::write(&bak, vec![b'z'; 1 << 20]).unwrap();
    let run = shell(
        &node,
        &format!(
            ".backup {}\n.dump {}\n.dump {} b\n",
            bak.display(),
            all.display(),
            sub.display()
        ),
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(
        run.body(),
        "backup file written successfully\nSQL text file written successfully\nSQL text file written successfully\n"
    );
    assert_eq!(sqlite3(&bak, "PRAGMA integrity_check"), "ok\n");
    assert_eq!(sqlite3(&bak, "SELECT x FROM a"), "1\n");
    assert_eq!(
        std::fs::read_to_string(&all).unwrap(),
        node.get("/db/backup?fmt=sql").body
    );
    let sub_text = std::fs::read_to_string(&sub).unwrap();
    assert_eq!(sub_text, node.get("/db/backup?fmt=sql&tables=b").body);
    assert!(sub_text.contains("INSERT INTO b VALUES('q');") && !sub_text.contains("TABLE a"));
    assert_eq!(
        names_in(dir.path()),
        vec!["all.sql", "b.sql", "bak.sqlite3"]
    );
}

#[test]
fn unwritable_and_unreadable_paths_are_one_line_and_leave_nothing() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/x.db");
    let is_dir = dir.path();
    let missing = dir.path().join("missing.sql");
    let run = shell(
        &node,
        &format!(
            ".backup {}\n.dump {}\n.restore {}\n.boot {}\n.read {}\n",
            missing_dir.display(),
            is_dir.display(),
            missing.display(),
            missing.display(),
            missing.display()
        ),
    );
    assert_eq!(run.code, Some(1));
    let body = run.body();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 5, "{body}");
    assert!(
        lines[0].starts_with(&format!("ERR! cannot write {}: ", missing_dir.display())),
        "{body}"
    );
    assert_eq!(
        lines[1],
        format!("ERR! {} is a directory", is_dir.display())
    );
    for l in &lines[2..] {
        assert!(
            l.starts_with(&format!(
                "ERR! cannot read {}: No such file",
                missing.display()
            )),
            "{body}"
        );
    }
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn read_runs_a_files_statements_and_output_redirects_results() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("in.sql");
    std::fs::write(
        &script,
        "-- a comment\nCREATE TABLE t (x);\n\nINSERT INTO t\n  VALUES (1);\nSELECT * FROM nope;\nINSERT INTO t VALUES (2);\n",
    )
    .unwrap();
    let out = dir.path().join("out.txt");
    let run = shell(
        &node,
        &format!(
            ".read {}\n.output {}\nSELECT count(*) AS n FROM t;\n.output stdout\n.output\nSELECT 5 AS five;\n",
            script.display(),
            out.display()
        ),
    );
    assert_eq!(run.code, Some(1), "the failed statement in the file counts");
    assert_eq!(
        run.body(),
        "0 row affected\n1 row affected\nError: no such table: nope\n1 row affected\n\
         +------+\n| five |\n+------+\n| 5    |\n+------+\n"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "+---+\n| n |\n+---+\n| 2 |\n+---+\n"
    );
}

/// `.backup` on one node, `.restore` into a fresh one, compared by content.
#[test]
fn backup_restore_round_trip_into_a_fresh_node() {
    let a = Node::start(&[]);
    a.execute(r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t(v) VALUES ('one'), ('two')"]"#);
    let dir = tempfile::tempdir().unwrap();
    let (bak, sql) = (dir.path().join("a.sqlite3"), dir.path().join("a.sql"));
    let run = shell(
        &a,
        &format!(".backup {}\n.dump {}\n", bak.display(), sql.display()),
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let want = a.query("SELECT * FROM t ORDER BY id");

    let b = Node::start(&[]);
    let run = shell(&b, &format!(".restore {}\n", bak.display()));
    assert_eq!(run.body(), "Database restored successfully.\n");
    assert_eq!(b.query("SELECT * FROM t ORDER BY id"), want);

    let c = Node::start(&[]);
    let run = shell(&c, &format!(".restore {}\n", sql.display()));
    assert!(
        run.body().ends_with("Database restored successfully.\n"),
        "{}",
        run.stdout
    );
    assert_eq!(c.query("SELECT * FROM t ORDER BY id"), want);
}

/// `.restore` and `.boot` of compressed files: the shell tells the kind from the decompressed
/// content and sends the file as it is; the server decompresses. A zstd dump still gets the
/// foreign-key pragma after it, as a second zstd frame.
#[test]
fn restore_and_boot_of_zstd_and_gzip_files() {
    let a = Node::start(&[]);
    a.execute(r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t(v) VALUES ('one'), ('two')"]"#);
    let dir = tempfile::tempdir().unwrap();
    let (bak, sql) = (dir.path().join("a.sqlite3"), dir.path().join("a.sql"));
    let run = shell(
        &a,
        &format!(".backup {}\n.dump {}\n", bak.display(), sql.display()),
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let want = a.query("SELECT * FROM t ORDER BY id");
    let compressed = |from: &Path, ext: &str| {
        let plain = std::fs::read(from).unwrap();
        let bytes = if ext == "zst" {
            zstd::encode_all(&plain[..], 3).unwrap()
        } else {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let to = dir.path().join(format!(
            "{}.{ext}",
            from.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&to, bytes).unwrap();
        to
    };
    for ext in ["zst", "gz"] {
        let b = Node::start(&[]);
        let run = shell(
            &b,
            &format!(".restore {}\n", compressed(&bak, ext).display()),
        );
        assert_eq!(run.body(), "Database restored successfully.\n", "{ext}");
        assert_eq!(b.query("SELECT * FROM t ORDER BY id"), want, "{ext}");

        let c = Node::start(&[]);
        let run = shell(
            &c,
            &format!(".restore {}\n", compressed(&sql, ext).display()),
        );
        assert!(
            run.body().ends_with("Database restored successfully.\n"),
            "{ext}: {}",
            run.stdout
        );
        assert_eq!(c.query("SELECT * FROM t ORDER BY id"), want, "{ext}");

        let d = Node::start(&[]);
        let run = shell(&d, &format!(".boot {}\n", compressed(&bak, ext).display()));
        assert_eq!(run.body(), "Node booted successfully.\n", "{ext}");
        assert_eq!(d.query("SELECT * FROM t ORDER BY id"), want, "{ext}");
    }
}

#[test]
fn boot_loads_a_sqlite_file_into_a_single_node() {
    let a = Node::start(&[]);
    a.execute(r#"["CREATE TABLE t (v)", "INSERT INTO t VALUES ('booted')"]"#);
    let dir = tempfile::tempdir().unwrap();
    let bak = dir.path().join("a.sqlite3");
    shell(&a, &format!(".backup {}\n", bak.display()));
    let b = Node::start(&[]);
    let run = shell(&b, &format!(".boot {}\n", bak.display()));
    assert_eq!(run.body(), "Node booted successfully.\n");
    assert_eq!(b.query("SELECT v FROM t"), a.query("SELECT v FROM t"));
}

#[test]
fn restore_streams_sqlite_and_sql_files_with_rqlites_content_types() {
    let stub = Stub::start(|s| match s.request_line() {
        l if l.starts_with("GET /status") => http("200 OK", STUB_STATUS),
        l if l.starts_with("POST /db/load") && s.body.starts_with(b"SQLite format 3") => {
            http("200 OK", r#"{"results":[]}"#)
        }
        l if l.starts_with("POST /db/load") && s.body.starts_with(b"BAD") => http(
            "200 OK",
            r#"{"results":[{"error":"near \"BAD\": syntax error"}]}"#,
        ),
        l if l.starts_with("POST /db/load") => http(
            "200 OK",
            r#"{"results":[{"last_insert_id":3,"rows_affected":2}]}"#,
        ),
        _ => http("404 Not Found", ""),
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.sqlite3");
    sqlite3(&db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);");
    let sql = dir.path().join("x.sql");
    std::fs::write(&sql, "CREATE TABLE t (x);\nINSERT INTO t VALUES (1);").unwrap();
    let bad = dir.path().join("bad.sql");
    std::fs::write(&bad, "BAD SQL").unwrap();
    let run = shell_with(
        &host_args(&stub.addr),
        &format!(
            ".restore {}\n.restore {}\n.restore {}\n",
            db.display(),
            sql.display(),
            bad.display()
        ),
        &[],
    );
    assert_eq!(run.code, Some(1), "the SQL error counts as a failure");
    assert_eq!(
        run.body(),
        "Database restored successfully.\n\
         last inserted ID: 3\nrows affected: 2\nDatabase restored successfully.\n\
         Error: near \"BAD\": syntax error\n"
    );
    let loads: Vec<Seen> = stub
        .seen()
        .into_iter()
        .filter(|s| s.request_line().starts_with("POST /db/load"))
        .collect();
    assert_eq!(loads.len(), 3);
    assert_eq!(
        loads[0].header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(loads[0].body, std::fs::read(&db).unwrap());
    assert_eq!(
        loads[1].header("content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(
        loads[1].body,
        b"CREATE TABLE t (x);\nINSERT INTO t VALUES (1);\nPRAGMA foreign_keys=OFF;"
    );
}

#[test]
fn boot_checks_the_file_and_reports_the_servers_answer() {
    let stub = Stub::start(|s| match s.request_line() {
        l if l.starts_with("GET /status") => http("200 OK", STUB_STATUS),
        l if l.starts_with("POST /boot") && s.body.len() > 50_000 => http("200 OK", ""),
        l if l.starts_with("POST /boot") => http("503 Service Unavailable", "not single-node\n"),
        _ => http("404 Not Found", ""),
    });
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.sqlite3");
    sqlite3(&small, "CREATE TABLE t (x);");
    let big = dir.path().join("big.sqlite3");
    sqlite3(
        &big,
        "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(100000));",
    );
    let text = dir.path().join("x.sql");
    std::fs::write(&text, "CREATE TABLE t (x);").unwrap();
    let run = shell_with(
        &host_args(&stub.addr),
        &format!(
            ".boot {}\n.boot {}\n.boot {}\n",
            text.display(),
            small.display(),
            big.display()
        ),
        &[],
    );
    assert_eq!(
        run.body(),
        format!(
            "ERR! {} is not a valid SQLite file\n\
             ERR! boot failed, status code: 503 Service Unavailable, not single-node\n\
             Node booted successfully.\n",
            text.display()
        )
    );
    let boots: Vec<Seen> = stub
        .seen()
        .into_iter()
        .filter(|s| s.request_line().starts_with("POST /boot"))
        .collect();
    assert_eq!(boots.len(), 2, "the text file never went up");
    assert_eq!(boots[1].body, std::fs::read(&big).unwrap());
}

#[test]
fn a_backup_stream_cut_off_leaves_no_file() {
    let stub = Stub::start(|s| {
        if s.request_line().starts_with("GET /status") {
            http("200 OK", STUB_STATUS)
        } else {
            // Promise 1 MiB, send 100 bytes, hang up.
            let mut r =
                b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n".to_vec();
            r.extend_from_slice(&[b'S'; 100]);
            r
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bak.sqlite3");
    std::fs::write(&target, "previous backup").unwrap();
    let run = shell_with(
        &host_args(&stub.addr),
        &format!(".backup {}\n.dump {}\n", target.display(), target.display()),
        &[],
    );
    assert_eq!(run.code, Some(1));
    let body = run.body();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    for l in lines {
        assert!(
            l.starts_with("ERR! transfer cut off after 100 bytes ("),
            "{body}"
        );
        assert!(
            l.ends_with(&format!("); {} not written", target.display())),
            "{body}"
        );
    }
    assert_eq!(names_in(dir.path()), vec!["bak.sqlite3"]);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "previous backup");
}

#[test]
fn unauthorized_is_one_clear_line() {
    let stub = Stub::start(|s| {
        if s.request_line().starts_with("GET /status") {
            http("200 OK", STUB_STATUS)
        } else {
            http("401 Unauthorized", "")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bak.sqlite3");
    let run = shell_with(
        &host_args(&stub.addr),
        &format!(
            ".backup {}\n.nodes\n.remove n2\nSELECT 1;\n",
            target.display()
        ),
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.body(),
        "ERR! unauthorized\nERR! unauthorized\nERR! unauthorized\nERR! unauthorized\n"
    );
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn user_flag_sends_basic_auth_and_prefix_prepends_paths() {
    let stub = Stub::start(|s| {
        if s.request_line().contains("/status") {
            http("200 OK", STUB_STATUS)
        } else {
            http(
                "200 OK",
                r#"{"results":[{"last_insert_id":1,"rows_affected":1}]}"#,
            )
        }
    });
    let mut args = host_args(&stub.addr);
    args.extend([
        "-u".into(),
        "bob:secret".into(),
        "--prefix".into(),
        "/rq".into(),
    ]);
    let run = shell_with(&args, "INSERT INTO t VALUES (1);\n", &[]);
    assert_eq!(run.body(), "1 row affected\n");
    let seen = stub.seen();
    let last = seen.last().unwrap();
    assert!(
        last.request_line().starts_with("POST /rq/db/request "),
        "{:?}",
        last.head
    );
    // base64("bob:secret")
    assert_eq!(
        last.header("authorization").as_deref(),
        Some("Basic Ym9iOnNlY3JldA==")
    );
    assert_eq!(last.body, br#"["INSERT INTO t VALUES (1);"]"#);
}

#[test]
fn settings_change_what_is_sent_and_ready_reports_503() {
    let stub = Stub::start(|s| match s.request_line() {
        l if l.starts_with("GET /status") => http("200 OK", STUB_STATUS),
        l if l.starts_with("GET /readyz") => http(
            "503 Service Unavailable",
            "[+]node ok\n[+]leader does not exist",
        ),
        l if l.starts_with("GET /db/query") => http(
            "200 OK",
            r#"{"results":[{"columns":["name"],"types":["text"]}]}"#,
        ),
        _ => http("200 OK", r#"{"results":[{"rows_affected":1,"time":0.5}]}"#),
    });
    let run = shell_with(
        &host_args(&stub.addr),
        ".ready
.forcewrites on
INSERT INTO t VALUES (1);
.forcewrites off
         .timer on
INSERT INTO t VALUES (2);
.timer off
.blobarray on
.tables
",
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(
        run.body(),
        "not ready\n1 row affected\n1 row affected (0.500000 sec)\n+------+\n| name |\n+------+\n"
    );
    let lines: Vec<String> = stub
        .seen()
        .iter()
        .map(|s| s.request_line().to_string())
        .filter(|l| !l.starts_with("GET /status"))
        .collect();
    assert!(lines[1].starts_with("POST /db/execute HTTP"), "{lines:?}");
    assert!(
        lines[2].starts_with("POST /db/request?timings HTTP"),
        "{lines:?}"
    );
    assert!(
        lines[3].starts_with("GET /db/query?level=weak&q=")
            && lines[3].contains("&blob_array= HTTP"),
        "{lines:?}"
    );
}

#[test]
fn http_timeout_bounds_ordinary_requests() {
    let stub = Stub::start(|s| {
        if s.request_line().starts_with("GET /status") {
            http("200 OK", STUB_STATUS)
        } else {
            std::thread::sleep(Duration::from_secs(3));
            http("200 OK", r#"{"results":[{}]}"#)
        }
    });
    let mut args = host_args(&stub.addr);
    args.extend(["-t".into(), "300ms".into()]);
    let started = Instant::now();
    let run = shell_with(&args, "SELECT 1;\n", &[]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout did not apply"
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.body(),
        format!(
            "ERR! cannot reach http://{}/db/request: timed out\n",
            stub.addr
        )
    );
}

#[test]
fn redirects_are_followed_with_method_and_body() {
    let node = Node::start(&[]);
    let target = format!("http://{}", node.http_addr);
    let stub = Stub::start(move |s| {
        if s.request_line().starts_with("GET /status") {
            return http("200 OK", STUB_STATUS);
        }
        let path = s
            .request_line()
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .to_string();
        format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    });
    let run = shell_with(
        &host_args(&stub.addr),
        "CREATE TABLE t (x);\nINSERT INTO t VALUES (42);\n",
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.body(), "0 row affected\n1 row affected\n");
    assert!(node.query("SELECT x FROM t").contains("[[42]]"));
}

// ---------------------------------------------------------------------------------------------
// Connecting.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_node_is_one_line_and_exit_1() {
    let port = free_port();
    let run = shell_with(&["-p".into(), port.to_string()], "SELECT 1;\n", &[]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stdout,
        format!("ERR! Unable to connect to rqlited at http://127.0.0.1:{port} - is it running?\n")
    );
}

#[test]
fn a_node_that_goes_away_mid_session_is_one_line() {
    let mut node = Node::start(&[]);
    let mut child = Command::new(SHELL)
        .arg("--exit-status")
        .args(host_args(&node.http_addr))
        .env_remove("RQLITE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SELECT 1;\n").unwrap();
    stdin.flush().unwrap();
    // Wait until the first answer is printed, then stop the node.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("| 1 |") {
        let mut l = String::new();
        assert!(
            stdout.read_line(&mut l).unwrap() > 0,
            "shell ended early: {seen}"
        );
        seen.push_str(&l);
    }
    node.kill();
    stdin.write_all(b"SELECT 2;\n.status\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let lines: Vec<&str> = rest
        .lines()
        .filter(|l| !l.starts_with('+') && !l.starts_with('|'))
        .collect();
    assert_eq!(lines.len(), 3, "{rest}");
    for l in &lines[..2] {
        assert!(
            l.starts_with(&format!("ERR! cannot reach http://{}/", node.http_addr)),
            "{rest}"
        );
        assert!(l.contains("refused"), "{rest}");
    }
    assert_eq!(lines[2], "bye~");
}

#[test]
fn alternatives_take_over_when_the_first_host_is_down() {
    let node = Node::start(&[]);
    let port = free_port();
    let run = shell_with(
        &[
            "-p".into(),
            port.to_string(),
            "--alternatives".into(),
            format!("127.0.0.1:1,{}", node.http_addr),
        ],
        "SELECT 3 AS three;\n",
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("Connected to http://{} running", node.http_addr)),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.body(),
        "+-------+\n| three |\n+-------+\n| 3     |\n+-------+\n"
    );
}

#[test]
fn rqlite_host_env_names_the_node_unless_flags_do() {
    let node = Node::start(&[]);
    let env = format!("http://{}", node.http_addr);
    let run = shell_with(&[], "SELECT 1 AS a;\n", &[("RQLITE_HOST", &env)]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let port = free_port();
    let run = shell_with(
        &["-p".into(), port.to_string()],
        "",
        &[("RQLITE_HOST", &env)],
    );
    assert_eq!(
        run.code,
        Some(1),
        "-p wins over RQLITE_HOST: {}",
        run.stdout
    );
}

#[test]
fn version_help_and_bad_flags() {
    let run = shell_with(&["-v".into()], "", &[]);
    assert_eq!(run.code, Some(0));
    assert!(run
        .stdout
        .starts_with(&format!("Version {}, commit ", env!("CARGO_PKG_VERSION"))));
    let run = shell_with(&["--help".into()], "", &[]);
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.contains("--alternatives") && run.stdout.contains("RQLITE_HOST"));
    let run = shell_with(&["--bogus".into()], "", &[]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "raftlite: unknown argument: --bogus (see --help)\n"
    );
    // https is supported; an unreadable CA file is a clear error naming it.
    let run = shell_with(
        &[
            "-s".into(),
            "https".into(),
            "-c".into(),
            "/nonexistent/ca.pem".into(),
        ],
        "",
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.starts_with("ERR! ") && run.stdout.contains("/nonexistent/ca.pem"),
        "{}",
        run.stdout
    );
}

#[test]
fn offline_dump_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    sqlite3(&db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);");
    let out = Command::new(SHELL).arg("dump").arg(&db).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t (x);\nINSERT INTO t VALUES(1);\nCOMMIT;\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Through a pseudo-terminal: `script` gives the shell a tty, the test types and reads.

/// A shell running on a pty; its screen output accumulates in `screen`.
struct Terminal {
    child: Child,
    stdin: std::process::ChildStdin,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    /// Whether `script` (util-linux; Debian's bsdutils) can run here.
    fn available() -> bool {
        Command::new("script")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn start(args: &[String], home: &Path) -> Terminal {
        let cmdline = std::iter::once(SHELL.to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new("script")
            .args(["-qfec", &cmdline, "/dev/null"])
            .env("HOME", home)
            .env("TERM", "xterm")
            .env_remove("RQLITE_HOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the shell under `script`");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal {
            child,
            stdin,
            screen,
        }
    }

    /// Waits until the screen, from `from` on, shows `text`; returns the end of the match.
    fn expect(&self, from: usize, text: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let s = self.screen.lock().unwrap();
                if let Some(i) = s.get(from..).and_then(|t| t.find(text)) {
                    return from + i + text.len();
                }
                if Instant::now() > deadline {
                    panic!("screen never showed {text:?}; it shows:\n{}", &*s);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn screen_len(&self) -> usize {
        self.screen.lock().unwrap().len()
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    fn type_keys(&mut self, keys: &str) {
        self.stdin.write_all(keys.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn wait(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("shell did not exit; screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn interactive_session_on_a_terminal() {
    if !Terminal::available() {
        common::prerequisite_missing(
            "`script` (util-linux; Debian: apt-get install bsdutils) is not installed",
        );
        return;
    }
    let node = Node::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let mut term = Terminal::start(&host_args(&node.http_addr), home.path());
    let prompt = format!("{}> ", node.http_addr);
    let mut at = term.expect(0, "Welcome to the rqlite CLI.");
    at = term.expect(at, &prompt);
    term.type_keys("CREATE TABLE t (x INTEGER, y TEXT);\r");
    at = term.expect(at, "0 row affected");
    at = term.expect(at, &prompt);
    // One statement over two lines: the continuation prompt, then the result.
    term.type_keys("INSERT INTO t\r");
    at = term.expect(at, "   ...> ");
    term.type_keys("VALUES (1, 'tty');\r");
    at = term.expect(at, "1 row affected");
    at = term.expect(at, &prompt);
    term.type_keys("SELECT * FROM t;\r");
    at = term.expect(at, "| 1 | tty |");
    at = term.expect(at, &prompt);
    let bak = home.path().join("tty.sqlite3");
    term.type_keys(&format!(".backup {}\r", bak.display()));
    let done = term.expect(at, "backup file written successfully");
    // On a terminal the progress bar shows the bytes moved and the rate.
    let shown = &term.screen()[at..done];
    assert!(
        shown.contains("download") && shown.contains("/s"),
        "{shown:?}"
    );
    at = term.expect(done, &prompt);
    term.type_keys(".nope\r");
    at = term.expect(at, "ERR! unknown command '.nope'");
    at = term.expect(at, &prompt);
    term.type_keys(".quit\r");
    term.expect(at, "bye~");
    assert_eq!(
        term.wait(),
        Some(0),
        "interactive errors do not change the exit status"
    );
    assert_eq!(sqlite3(&bak, "SELECT y FROM t"), "tty\n");

    // History survives the session: the up arrow brings back the last line.
    let history = std::fs::read_to_string(home.path().join(".raftlite_history")).unwrap();
    assert!(history.contains("SELECT * FROM t;"), "{history}");
    let mut term = Terminal::start(&host_args(&node.http_addr), home.path());
    let mut at = term.expect(0, &prompt);
    term.type_keys("\x1b[A\x1b[A\r"); // up twice: past ".quit" to ".nope"
    at = term.expect(at, "ERR! unknown command '.nope'");
    at = term.expect(at, &prompt);
    let before = term.screen_len();
    term.type_keys("\x04"); // Ctrl-D
    term.expect(before.max(at), "bye~");
    assert_eq!(term.wait(), Some(0));
}
