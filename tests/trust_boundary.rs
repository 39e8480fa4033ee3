//! The trust boundary, tried as an attacker would, against real nodes with `-auth`: every
//! route of the HTTP API, the console and the Raft port, taken from the route tables the
//! servers register (so a new route is covered the day it is added), refuses anonymous callers
//! and callers without its perm, whatever the spelling of its path; forwarded requests are
//! decided again on the leader; the Raft port needs a member and bounds what it reads.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::{wait_until, Node, FAST_RAFT};
use raftlite::auth::gate::{Access, DeclaredRoute};

/// One user per perm (password `pw-<name>`), `joiner` (join, remove), `reader`
/// (join-read-only), `nobody` (no perms), `root` (all); `*` grants nothing.
fn auth_file(dir: &std::path::Path, anyone: &[&str]) -> String {
    let mut users: Vec<String> = raftlite::auth::PERMS
        .iter()
        .map(|p| format!(r#"{{"username": "{p}", "password": "pw-{p}", "perms": ["{p}"]}}"#))
        .collect();
    users.push(
        r#"{"username": "joiner", "password": "pw-joiner", "perms": ["join", "remove"]}"#.into(),
    );
    users.push(
        r#"{"username": "reader", "password": "pw-reader", "perms": ["join-read-only"]}"#.into(),
    );
    users.push(r#"{"username": "nobody", "password": "pw-nobody", "perms": []}"#.into());
    users.push(r#"{"username": "root", "password": "pw-root", "perms": ["all"]}"#.into());
    let anyone: Vec<String> = anyone.iter().map(|p| format!("\"{p}\"")).collect();
    users.push(format!(
        r#"{{"username": "*", "perms": [{}]}}"#,
        anyone.join(", ")
    ));
    let path = dir.join(format!("auth-{}.json", anyone.len()));
    std::fs::write(&path, format!("[\n{}\n]\n", users.join(",\n"))).unwrap();
    path.display().to_string()
}

/// A raw HTTP/1.1 request, so the path reaches the server exactly as written (an HTTP client
/// library would normalise dot segments and encodings). Returns the status code.
fn raw_status(addr: &str, method: &str, path: &str, user: Option<&str>, extra: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = user.map_or(String::new(), |u| {
        format!(
            "Authorization: {}\r\n",
            raftlite::auth::basic_header(u, &format!("pw-{u}"))
        )
    });
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {method} {path}: {text:?}"))
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{id}", "0123456789abcdef0123456789abcdef")
        .replace("{file}", "console.js")
}

/// The method to try a route with (a route for any method is tried with GET).
fn method_of(route: &DeclaredRoute) -> String {
    route
        .method
        .as_ref()
        .map_or("GET".to_string(), |m| m.as_str().to_string())
}

/// How the route list names a route's method.
fn declared_method(route: &DeclaredRoute) -> String {
    route
        .method
        .as_ref()
        .map_or("ANY".to_string(), |m| m.as_str().to_string())
}

/// Spellings of `path` that must land on the same decision as `path` itself.
fn variants(path: &str) -> Vec<(String, bool)> {
    // (spelling, routes to the same route in actix: then it must be refused the same way;
    // otherwise it must route nowhere)
    let mut out = Vec::new();
    let letters: Vec<(usize, char)> = path
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphabetic())
        .collect();
    // One letter percent-encoded, in each segment; every letter encoded.
    for &(i, c) in letters.iter().step_by(3) {
        out.push((
            format!("{}%{:02X}{}", &path[..i], c as u8, &path[i + 1..]),
            true,
        ));
    }
    out.push((
        path.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("%{:02x}", c as u8)
                } else {
                    c.to_string()
                }
            })
            .collect(),
        true,
    ));
    out.push((format!("{path}/"), false));
    out.push((format!("/{path}"), false));
    out.push((path.replacen('/', "/./", 2), false));
    out.push((format!("/x/..{path}"), false));
    out.push((path.to_ascii_uppercase(), false));
    out.push((path.replace('/', "%2F"), false));
    out.push((format!("{path}%00"), false));
    out.push((format!("{path};x"), false));
    out
}

#[test]
fn every_protected_route_refuses_anonymous_and_unprivileged_callers_on_every_spelling() {
    let files = tempfile::tempdir().unwrap();
    let auth = auth_file(files.path(), &[]);
    let node = Node::spawn(
        &files.path().join("data"),
        &["-auth", &auth, "-join-as", "joiner"],
    )
    .unwrap_or_else(|log| panic!("node did not start:\n{log}"));
    let ready = wait_until(Duration::from_secs(30), || {
        raw_status(&node.http_addr, "GET", "/readyz", Some("ready"), "") == 200
    });
    assert!(ready, "{}", node.log());

    let http = raftlite::http::routes();
    let raft = raftlite::cluster::rpc::routes();
    let ports = [
        ("HTTP", &node.http_addr, http.table().routes()),
        ("Raft", &node.raft_addr, raft.table().routes()),
    ];
    let mut public = Vec::new();
    let mut checked = 0;
    for (port, addr, routes) in ports {
        assert!(!routes.is_empty());
        for route in routes {
            let path = concrete(route.pattern);
            let method = method_of(route);
            if route.access == Access::Public {
                public.push(format!(
                    "{port} {} {}",
                    declared_method(route),
                    route.pattern
                ));
                continue;
            }
            checked += 1;
            // A user holding some other perm: `ready`, or `status` where `ready` is the perm.
            let other = match route.access {
                Access::AllOf(p) | Access::AnyOf(p) | Access::Member(p) if p.contains(&"ready") => {
                    "status"
                }
                _ => "ready",
            };
            for user in [None, Some("nobody"), Some(other)] {
                let got = raw_status(addr, &method, &path, user, "");
                assert_eq!(
                    got, 401,
                    "{port} {method} {path} as {user:?}: a protected route answered {got}"
                );
            }
            // Wrong credentials of a user who would hold the perm.
            let got = raw_status(
                addr,
                &method,
                &path,
                None,
                &format!(
                    "Authorization: {}\r\n",
                    raftlite::auth::basic_header("root", "wrong")
                ),
            );
            assert_eq!(got, 401, "{port} {method} {path} with a wrong password");
            if method == "GET" {
                assert_eq!(
                    raw_status(addr, "HEAD", &path, None, ""),
                    401,
                    "HEAD {path}"
                );
            }
            for (spelling, routes_here) in variants(&path) {
                let got = raw_status(addr, &method, &spelling, None, "");
                if routes_here {
                    assert_eq!(got, 401, "{port} {method} {spelling} (spelling of {path})");
                } else {
                    assert!(
                        matches!(got, 400 | 401 | 404),
                        "{port} {method} {spelling} (spelling of {path}) answered {got}"
                    );
                }
            }
        }
    }
    assert!(checked >= 30, "only {checked} protected routes");
    // Routes open to anyone are a short, deliberate list.
    public.sort();
    assert_eq!(
        public,
        [
            "HTTP ANY /",
            "HTTP GET /console",
            "HTTP GET /console/api/backup-jobs/{id}/download",
            "HTTP HEAD /console",
        ]
    );
    // And each protected route lets its perm through (not 401), so the walk above did not
    // pass only because everything is refused.
    for route in http.table().routes() {
        let Access::AllOf(perms) = route.access else {
            continue;
        };
        let user = if perms.len() == 1 { perms[0] } else { "root" };
        let got = raw_status(
            &node.http_addr,
            &method_of(route),
            &concrete(route.pattern),
            Some(user),
            "",
        );
        assert_ne!(got, 401, "{} {} as {user}", method_of(route), route.pattern);
    }
}

#[test]
fn the_raft_port_needs_a_member_and_bounds_what_it_reads() {
    let files = tempfile::tempdir().unwrap();
    let auth = auth_file(files.path(), &["ready"]);
    let node = Node::start(&["-auth", &auth, "-join-as", "joiner"]);
    let raft = node.raft_addr.clone();
    // A non-voter's credentials: enough to pull staged loads and report, not to act as a
    // voter (append, vote, snapshot, elect).
    assert_eq!(
        raw_status(&raft, "GET", "/cluster/node", Some("reader"), ""),
        200
    );
    assert_eq!(
        raw_status(&raft, "GET", "/raft/staged/123-456", Some("reader"), ""),
        404
    );
    for path in [
        "/raft/append",
        "/raft/vote",
        "/raft/snapshot",
        "/cluster/elect",
    ] {
        assert_eq!(
            raw_status(&raft, "POST", path, Some("reader"), ""),
            401,
            "{path}"
        );
        // A member gets past the gate (and then an error about the empty body).
        let got = raw_status(&raft, "POST", path, Some("joiner"), "");
        assert!(matches!(got, 400 | 411), "{path} as a member: {got}");
    }
    // An anonymous election is refused (it used to start one).
    assert_eq!(
        raw_status(
            &raft,
            "POST",
            "/cluster/elect",
            None,
            "Content-Type: application/json\r\n"
        ),
        401
    );

    // Bodies: never decompressed, capped as they stream, snapshots declared and bounded.
    let client = reqwest::blocking::Client::new();
    let url = |p: &str| format!("http://{raft}{p}");
    let as_joiner =
        |r: reqwest::blocking::RequestBuilder| r.basic_auth("joiner", Some("pw-joiner"));
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 8 << 20]).unwrap();
        e.finish().unwrap()
    };
    let r = as_joiner(client.post(url("/raft/append")))
        .header("Content-Encoding", "gzip")
        .body(gz)
        .send()
        .unwrap();
    assert_eq!(r.status(), 415, "a gzip Raft body must not be inflated");
    // A body past the cap is refused from its declared length, before it is read.
    let mut s = TcpStream::connect(&raft).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /raft/append HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        raftlite::auth::basic_header("joiner", "pw-joiner"),
        raftlite::cluster::protocol::MAX_RPC_BODY + 1
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&head));
    // Snapshot uploads: a length is required and must fit above the disk reserve.
    let vote = r#"{"leader_id":{"term":1,"node_id":1},"committed":true}"#;
    let meta = r#"{"last_log_id":null,"last_membership":{"log_id":null,"membership":{"configs":[],"nodes":{}}},"snapshot_id":"x"}"#;
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(vec![0u8; 1024]));
    let r = as_joiner(client.post(url("/raft/snapshot")))
        .header("X-Raftlite-Vote", vote)
        .header("X-Raftlite-Snapshot-Meta", meta)
        .body(chunked)
        .send()
        .unwrap();
    assert_eq!(r.status(), 411, "{}", r.text().unwrap_or_default());
    let mut s = TcpStream::connect(&raft).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /raft/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nX-Raftlite-Vote: {vote}\r\nX-Raftlite-Snapshot-Meta: {meta}\r\nContent-Length: {}\r\n\r\n",
        raftlite::auth::basic_header("joiner", "pw-joiner"),
        u64::MAX / 2
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 507", "{}", String::from_utf8_lossy(&head));
    assert!(node.get("/readyz").status == 200, "{}", node.log());
}

/// Sends `body` to `path` on `node` as `user` (password `pw-<user>`), or anonymously.
fn send(node: &Node, user: Option<&str>, method: &str, path: &str, body: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::new();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client
        .request(m, format!("http://{}{path}", node.http_addr))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(u) = user {
        req = req.basic_auth(u, Some(format!("pw-{u}")));
    }
    let r = req.send().expect("send");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn row_count(node: &Node) -> String {
    let (status, body) = send(
        node,
        Some("root"),
        "GET",
        "/db/query?q=SELECT%20count(*)%20FROM%20t&level=strong",
        "",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["results"][0]["values"][0][0]
        .to_string()
}

#[test]
fn forwarded_requests_are_decided_again_on_the_leader_and_joins_cannot_take_over_voters() {
    let files = tempfile::tempdir().unwrap();
    let strict = auth_file(files.path(), &["ready", "status"]);
    // A follower whose file lets anyone write: forwarding must not widen anyone's rights.
    let lenient = auth_file(files.path(), &["ready", "status", "execute"]);
    let common: Vec<&str> = [FAST_RAFT, &["-join-as", "joiner"]].concat();
    let leader = Node::start(&[&common[..], &["-auth", &strict, "-node-id", "n1"]].concat());
    assert!(
        leader
            .log()
            .contains("node-to-node traffic is not encrypted"),
        "start-up must warn about plain node traffic with -auth:\n{}",
        leader.log()
    );
    let join = leader.raft_addr.clone();
    let follower = Node::start(
        &[
            &common[..],
            &["-auth", &lenient, "-node-id", "n2", "-join", &join],
        ]
        .concat(),
    );
    let third = Node::start(
        &[
            &common[..],
            &["-auth", &strict, "-node-id", "n3", "-join", &join],
        ]
        .concat(),
    );
    let formed = wait_until(Duration::from_secs(30), || {
        [&leader, &follower, &third].iter().all(|n| {
            n.get("/nodes")
                .json()
                .as_object()
                .is_some_and(|o| o.len() == 3 && o.values().all(|m| m["reachable"] == true))
        })
    });
    assert!(formed, "{}\n{}", leader.log(), follower.log());
    let (status, body) = send(
        &leader,
        Some("root"),
        "POST",
        "/db/execute",
        r#"["CREATE TABLE t(x)"]"#,
    );
    assert_eq!(status, 200, "{body}");

    // Anonymous writes through the lenient follower, plainly and with an encoded path: the
    // follower lets them through, the leader refuses them, nothing is written.
    for path in ["/db/execute", "/db/%65xecute", "/db/exec%75te"] {
        let (status, body) = send(
            &follower,
            None,
            "POST",
            path,
            r#"["INSERT INTO t VALUES(1)"]"#,
        );
        assert_eq!(status, 401, "{path} through the follower: {body}");
    }
    assert_eq!(row_count(&leader), "0");
    // A caller with the perm gets through the follower, encoded path included.
    let (status, body) = send(
        &follower,
        Some("execute"),
        "POST",
        "/db/%65xecute",
        r#"["INSERT INTO t VALUES(1)"]"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(row_count(&leader), "1");

    // Joins: a non-voter's credentials cannot move a voter to another address, and no join
    // turns a member into a voter.
    let cluster_join = |user: &str, node: serde_json::Value| -> (u16, String) {
        let r = reqwest::blocking::Client::new()
            .post(format!("http://{join}/cluster/join"))
            .basic_auth(user, Some(format!("pw-{user}")))
            .json(&serde_json::json!({ "node": node }))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    let nodes = leader.get("/nodes").json();
    let n3 = &nodes["n3"];
    let hijack = serde_json::json!({
        "id": "n3", "api_addr": "127.0.0.1:1", "raft_addr": "127.0.0.1:2", "voter": true,
    });
    assert_eq!(
        cluster_join("reader", hijack.clone()).0,
        401,
        "join as a voter needs join"
    );
    let as_non_voter = serde_json::json!({
        "id": "n3", "api_addr": "127.0.0.1:1", "raft_addr": "127.0.0.1:2", "voter": false,
    });
    let (status, body) = cluster_join("reader", as_non_voter);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Refused") && body.contains("voter"), "{body}");
    let after = leader.get("/nodes").json();
    assert!(n3["addr"].is_string(), "{nodes}");
    assert_eq!(
        after["n3"]["addr"], n3["addr"],
        "the voter must not move: {after}"
    );
    assert_eq!(third.get("/readyz").status, 200);

    // A non-voter (joined with join-read-only) asks to become a voter: refused, even with
    // the join perm.
    let non_voter = Node::start(
        &[
            FAST_RAFT,
            &[
                "-auth",
                &strict,
                "-node-id",
                "n4",
                "-join",
                &join,
                "-join-as",
                "reader",
                "-raft-non-voter",
            ],
        ]
        .concat(),
    );
    let joined = wait_until(Duration::from_secs(30), || {
        leader.get("/nodes?nonvoters").json()["n4"]["addr"].is_string()
    });
    assert!(joined, "{}", non_voter.log());
    let promote = serde_json::json!({
        "id": "n4", "api_addr": non_voter.http_addr, "raft_addr": non_voter.raft_addr,
        "voter": true,
    });
    let (status, body) = cluster_join("joiner", promote);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Refused") && body.contains("non-voter"),
        "{body}"
    );
    let voters = leader.get("/nodes").json();
    assert!(voters["n4"].is_null(), "n4 must stay a non-voter: {voters}");
}

/// A query's rows are capped in bytes (`-max-query-result-size`): over it, that statement
/// answers an error in rqlite's per-statement form and the others in the request still run.
#[test]
fn a_query_over_the_result_cap_is_refused_as_a_statement_error() {
    let node = Node::start(&["-max-query-result-size", "20000"]);
    let created = node.execute(
        r#"["CREATE TABLE t(v)", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO t SELECT randomblob(200) FROM n"]"#,
    );
    assert!(!created.contains("error"), "{created}");
    let answer = node
        .post(
            "/db/query",
            r#"["SELECT v FROM t", "SELECT v FROM t LIMIT 10", "SELECT count(*) FROM t"]"#,
        )
        .json();
    let results = &answer["results"];
    let refused = results[0]["error"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("query result too large") && refused.contains("-max-query-result-size"),
        "{answer}"
    );
    assert_eq!(
        results[1]["values"].as_array().map(Vec::len),
        Some(10),
        "{answer}"
    );
    assert_eq!(results[2]["values"][0][0], 100, "{answer}");
    // The same read through /db/request, and writes with RETURNING are not capped.
    let via_request = node.post("/db/request", r#"["SELECT v FROM t"]"#).json();
    assert!(
        via_request["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("query result too large")),
        "{via_request}"
    );
    let returning = node
        .post("/db/execute", r#"["UPDATE t SET v = v RETURNING v"]"#)
        .json();
    assert_eq!(
        returning["results"][0]["values"].as_array().map(Vec::len),
        Some(100),
        "{returning}"
    );
}

#[test]
fn allow_origin_is_sent_on_every_answer() {
    let node = Node::start(&["-http-allow-origin", "https://app.example"]);
    for (method, path) in [
        ("GET", "/status"),
        ("OPTIONS", "/db/query"),
        ("GET", "/nope"),
    ] {
        let a = node.request(method, path, None, "");
        assert_eq!(
            a.header("access-control-allow-origin"),
            Some("https://app.example"),
            "{method} {path}"
        );
    }
    let plain = Node::start(&[]);
    assert_eq!(
        plain.get("/status").header("access-control-allow-origin"),
        None
    );
}

#[test]
fn the_data_directory_and_backup_copies_are_private_to_the_node() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let top = tempfile::tempdir().unwrap();
    let data = top.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("notes.txt"), "x").unwrap();
    std::fs::set_permissions(
        data.join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // A shared temporary directory holding someone else's file named like our copies.
    let shared = top.path().join("shared-tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("backup-not-ours.db"), "theirs").unwrap();
    let shared_arg = shared.display().to_string();
    let mut node = Node::start_in(&data, &["-backup-tmp-dir", &shared_arg]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    assert_eq!(node.get("/db/backup").status, 200);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("notes.txt")), 0o600);
    let mut checked = 0;
    for entry in walk(&data) {
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&entry), want, "{}", entry.display());
        checked += 1;
    }
    assert!(checked >= 4, "the database, its log and WAL were checked");
    // The node's copies live in a private directory of its own inside the shared one.
    let own: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(mode(&own[0]), 0o700);
    // A restart clears leftovers in its own directory only.
    std::fs::write(own[0].join("backup-leftover.db"), "ours").unwrap();
    node.stop();
    let _restarted = Node::start_in(&data, &["-backup-tmp-dir", &shared_arg]);
    assert!(!own[0].join("backup-leftover.db").exists());
    assert_eq!(
        std::fs::read_to_string(shared.join("backup-not-ours.db")).unwrap(),
        "theirs"
    );
}

/// Every file and directory below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
