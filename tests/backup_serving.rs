//! Serving backups to fleets, end to end on real processes: entity tags that name a backup's
//! content, conditional requests that cost no copy, and `HEAD`.

mod common;

use std::time::Duration;

use common::{wait_until, Cluster, Node};

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn etag(&self) -> String {
        self.header("etag")
            .unwrap_or_else(|| panic!("no ETag (status {})", self.status))
            .to_owned()
    }

    fn index(&self) -> u64 {
        self.header("x-raftlite-raft-index")
            .and_then(|v| v.parse().ok())
            .expect("X-Raftlite-Raft-Index")
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn send(node: &Node, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client().request(method, node.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().expect("backup request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().expect("body").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn get(node: &Node, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(node, reqwest::Method::GET, path, headers)
}

fn copies_made(node: &Node) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&node.get("/status").body).expect("status JSON");
    status["store"]["backup_copies"]["made"]
        .as_u64()
        .expect("backup_copies.made")
}

const WRITES: &str = r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
    "INSERT INTO t(v) VALUES ('one'), ('two')"]"#;

#[test]
fn an_unchanged_backup_answers_304_without_a_copy_and_any_write_changes_its_tag() {
    let node = Node::start(&[]);
    node.execute(WRITES);

    let first = get(&node, "/db/backup", &[]);
    assert_eq!(first.status, 200);
    let tag = first.etag();
    assert!(tag.starts_with(&format!("\"{}-", first.index())), "{tag}");
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    // The same content again: the same tag.
    assert_eq!(get(&node, "/db/backup", &[]).etag(), tag);

    let made = copies_made(&node);
    for inm in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"nope\", {tag}"),
        "*".to_owned(),
    ] {
        let again = get(&node, "/db/backup", &[("If-None-Match", &inm)]);
        assert_eq!(again.status, 304, "If-None-Match: {inm}");
        assert!(again.body.is_empty());
        assert_eq!(again.etag(), tag);
        assert_eq!(again.index(), first.index());
    }
    assert_eq!(copies_made(&node), made, "a 304 made a copy");
    // A tag of something else is no match.
    let other = get(
        &node,
        "/db/backup",
        &[("If-None-Match", "\"1-0000000000000000\"")],
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.body, first.body);

    // Every option that changes the bytes changes the tag.
    let sql = get(&node, "/db/backup?fmt=sql", &[]);
    let variants = [
        tag.clone(),
        sql.etag(),
        get(&node, "/db/backup?fmt=sql&tables=t", &[]).etag(),
        get(&node, "/db/backup?vacuum", &[]).etag(),
        get(&node, "/db/backup?compress", &[]).etag(),
    ];
    let distinct: std::collections::HashSet<_> = variants.iter().collect();
    assert_eq!(distinct.len(), variants.len(), "{variants:?}");
    let sql_again = get(
        &node,
        "/db/backup?fmt=sql",
        &[("If-None-Match", &sql.etag())],
    );
    assert_eq!(sql_again.status, 304);

    // A write: the old tag no longer matches, the new backup has a new one.
    node.execute(r#"["INSERT INTO t(v) VALUES ('three')"]"#);
    let changed = get(&node, "/db/backup", &[("If-None-Match", &tag)]);
    assert_eq!(changed.status, 200);
    assert_ne!(changed.etag(), tag);
    assert!(changed.index() > first.index());
    let sql_changed = get(
        &node,
        "/db/backup?fmt=sql",
        &[("If-None-Match", &sql.etag())],
    );
    assert_eq!(sql_changed.status, 200);
    assert!(String::from_utf8_lossy(&sql_changed.body).contains("three"));
}

#[test]
fn head_answers_what_a_get_would_without_a_body() {
    let node = Node::start(&[]);
    node.execute(WRITES);
    let made = copies_made(&node);
    let head = send(&node, reqwest::Method::HEAD, "/db/backup", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(copies_made(&node), made, "HEAD made a copy");
    let full = get(&node, "/db/backup", &[]);
    assert_eq!(head.etag(), full.etag());
    assert_eq!(head.index(), full.index());
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str()),
        "HEAD's length is the backup's"
    );
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );
    let head_sql = send(&node, reqwest::Method::HEAD, "/db/backup?fmt=sql", &[]);
    assert_eq!(head_sql.status, 200);
    assert_eq!(head_sql.header("content-type"), Some("application/sql"));
    assert_eq!(
        head_sql.etag(),
        get(&node, "/db/backup?fmt=sql", &[]).etag()
    );
    let cond = send(
        &node,
        reqwest::Method::HEAD,
        "/db/backup",
        &[("If-None-Match", &full.etag())],
    );
    assert_eq!(cond.status, 304);
}

#[test]
fn two_clusters_with_the_same_history_have_different_tags() {
    // The same statements at the same indexes on two separate clusters: the tags differ,
    // because the lineage comes from each leader's random seed.
    let a = Node::start(&[]);
    let b = Node::start(&[]);
    a.execute(WRITES);
    b.execute(WRITES);
    let (ta, tb) = (get(&a, "/db/backup", &[]), get(&b, "/db/backup", &[]));
    assert_eq!(ta.index(), tb.index(), "the test wants equal indexes");
    assert_ne!(ta.etag(), tb.etag());
}

#[test]
fn every_node_names_the_same_content_alike_and_a_follower_forwards_conditions() {
    let c = Cluster::start(3, &[]);
    let leader = &c.nodes[c.leader()];
    leader.execute(WRITES);
    let from_leader = get(leader, "/db/backup", &[]);
    assert_eq!(from_leader.status, 200);
    for &f in &c.followers() {
        let follower = &c.nodes[f];
        // Its own copy, once it has applied the same entries: the same tag.
        let mut own = None;
        let same = wait_until(Duration::from_secs(10), || {
            let a = get(follower, "/db/backup?noleader", &[]);
            let done = a.status == 200 && a.index() == from_leader.index();
            own = Some(a);
            done
        });
        assert!(same, "the follower did not catch up");
        let own = own.expect("answer");
        assert_eq!(own.etag(), from_leader.etag());
        assert_eq!(own.body, from_leader.body, "same tag, same bytes");
        // Through the follower to the leader: the condition travels with the request.
        let cond = get(
            follower,
            "/db/backup",
            &[("If-None-Match", &from_leader.etag())],
        );
        assert_eq!(cond.status, 304);
        assert_eq!(cond.etag(), from_leader.etag());
        let head = send(follower, reqwest::Method::HEAD, "/db/backup", &[]);
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(from_leader.body.len().to_string().as_str())
        );
    }
}
