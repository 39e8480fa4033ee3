//! Serving backups to fleets, end to end on real processes: entity tags that name a backup's
//! content, conditional requests that cost no copy, and `HEAD`; followers that serve their own
//! copy when it is fresh enough (`freshness`, `min_index`, `stale=forward`).

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
    // Nothing of raftlite's state table is left in the file, not even on free pages.
    let holds = |needle: &[u8]| from_leader.body.windows(needle.len()).any(|w| w == needle);
    assert!(
        !holds(b"_raftlite_state"),
        "the state table's name is in the backup"
    );
    assert!(
        !holds(leader.raft_addr.as_bytes()),
        "a member's address is in the backup"
    );
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
        let head = send(
            follower,
            reqwest::Method::HEAD,
            "/db/backup",
            &[("Want-Repr-Digest", "sha-256=10")],
        );
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("repr-digest"),
            Some(sha256_b64(&from_leader.body).as_str()),
            "Want-Repr-Digest travels with a forwarded HEAD"
        );
        assert_eq!(
            head.header("content-length"),
            Some(from_leader.body.len().to_string().as_str())
        );
    }
}

fn backup_files(node: &Node) -> Vec<String> {
    common::files_named(&node.data_dir, "backup-")
}

/// About 6 MB of rows, so that ranges and broken downloads have room.
fn fill_blobs(node: &Node) {
    node.execute(
        r#"["CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 6000) INSERT INTO b(v) SELECT randomblob(1000) FROM c"]"#,
    );
}

/// `HEAD /db/backup` asking for the representation's digest.
fn head_asking_digest(node: &Node) -> Answer {
    send(
        node,
        reqwest::Method::HEAD,
        "/db/backup",
        &[("Want-Repr-Digest", "sha-256=10")],
    )
}

/// A `HEAD` asking for the digest, then the download: the same tag, and the digest is the
/// download's SHA-256. Returns both answers.
fn digest_then_download(node: &Node) -> (Answer, Answer) {
    let head = head_asking_digest(node);
    assert_eq!(head.status, 200);
    let digest = head.header("repr-digest").expect("Repr-Digest").to_owned();
    let full = get(node, "/db/backup", &[]);
    assert_eq!(full.etag(), head.etag());
    assert_eq!(sha256_b64(&full.body), digest);
    (head, full)
}

fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
    )
}

#[test]
fn a_broken_download_resumes_byte_exact_from_the_kept_copy() {
    use std::io::Read as _;
    let node = Node::start(&[]);
    fill_blobs(&node);
    let whole = get(&node, "/db/backup", &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let tag = whole.etag();
    let len = whole.body.len();
    assert!(len > 5_000_000, "{len}");

    // A download that breaks after 1 MB…
    let mut broken = client().get(node.url("/db/backup")).send().expect("GET");
    assert_eq!(broken.headers()["etag"].to_str().unwrap(), tag);
    let mut first = vec![0u8; 1 << 20];
    broken.read_exact(&mut first).expect("first MB");
    drop(broken);
    // …while the database moves on.
    node.execute(r#"["INSERT INTO b(v) VALUES (x'00')"]"#);
    // The rest, from the copy the tag names (kept on the node), byte-exact.
    let rest = get(
        &node,
        "/db/backup",
        &[("Range", "bytes=1048576-"), ("If-Range", &tag)],
    );
    assert_eq!(rest.status, 206);
    assert_eq!(rest.etag(), tag);
    assert_eq!(
        rest.header("content-range"),
        Some(format!("bytes 1048576-{}/{len}", len - 1).as_str())
    );
    let mut resumed = first;
    resumed.extend_from_slice(&rest.body);
    assert!(
        resumed == whole.body,
        "the resumed file differs from the whole one"
    );

    // A tag the node has no copy of: the whole current backup (RFC 9110 If-Range).
    let stale = get(
        &node,
        "/db/backup",
        &[
            ("Range", "bytes=0-99"),
            ("If-Range", "\"1-0123456789abcdef\""),
        ],
    );
    assert_eq!(stale.status, 200);
    assert_ne!(stale.etag(), tag);
    // The largest last-byte-pos a client can send: the whole backup, no overflow.
    let all = get(
        &node,
        "/db/backup",
        &[("Range", "bytes=0-18446744073709551615")],
    );
    assert_eq!(all.status, 206);
    assert_eq!(all.body, stale.body);
    // A range without If-Range: of the current backup.
    let last = get(&node, "/db/backup", &[("Range", "bytes=-100")]);
    assert_eq!(last.status, 206);
    assert_eq!(last.body.len(), 100);
    assert_eq!(&last.body[..], &stale.body[stale.body.len() - 100..]);
    // Past the end: 416 with the length.
    let past = get(
        &node,
        "/db/backup",
        &[("Range", &format!("bytes={}-", stale.body.len()))],
    );
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{}", stale.body.len()).as_str())
    );
    // Compressed and SQL backups have no ranges: the whole thing.
    let sql = get(&node, "/db/backup?fmt=sql", &[("Range", "bytes=0-9")]);
    assert_eq!(sql.status, 200);
    assert_eq!(sql.header("accept-ranges"), Some("none"));
    assert!(sql.body.len() > 10);
}

/// A one-pass copy is handed out before its file is whole: a digest asked for then must wait
/// for the last byte (it once hashed the empty file). The crash point slows the copy so the
/// question always comes first.
#[cfg(feature = "failpoints")]
#[test]
fn repr_digest_of_a_copy_still_being_written_waits_for_the_whole_file() {
    let temp = tempfile::tempdir().expect("temp dir");
    let node = Node::start_in_with_env(
        &temp.path().join("data"),
        &[],
        &[("FAILPOINTS", "backup::one_pass_chunk_written=sleep(10)")],
    );
    fill_blobs(&node);
    let (_, full) = digest_then_download(&node);
    assert!(full.body.len() > 6_000_000, "{}", full.body.len());
    // New content, downloaded first: the stream follows the growing file and hashes it on
    // the way; the digest it records is that of the whole file.
    node.execute(r#"["INSERT INTO b(v) VALUES (x'01')"]"#);
    let growing = get(&node, "/db/backup", &[]);
    assert_ne!(growing.etag(), full.etag());
    let again = head_asking_digest(&node);
    assert_eq!(again.etag(), growing.etag());
    assert_eq!(
        again.header("repr-digest"),
        Some(sha256_b64(&growing.body).as_str())
    );
}

#[test]
fn repr_digest_names_the_bytes_of_a_binary_backup() {
    let node = Node::start(&[]);
    fill_blobs(&node);
    // Asked before any download: the node makes (and keeps) the copy and hashes it.
    let (head, full) = digest_then_download(&node);
    let digest = head.header("repr-digest").expect("Repr-Digest").to_owned();
    assert_eq!(full.header("repr-digest"), Some(digest.as_str()));
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    // New content: its first download hashes it on the way; later answers carry it.
    node.execute(r#"["INSERT INTO b(v) VALUES (x'01')"]"#);
    let next = get(&node, "/db/backup", &[]);
    assert_ne!(next.etag(), full.etag());
    // A SQL dump is not kept: asked for its digest, the node makes it again and hashes it.
    let sql = get(&node, "/db/backup?fmt=sql", &[]);
    let sql_head = send(
        &node,
        reqwest::Method::HEAD,
        "/db/backup?fmt=sql",
        &[("Want-Repr-Digest", "sha-256=10")],
    );
    assert_eq!(sql_head.etag(), sql.etag());
    assert_eq!(
        sql_head.header("repr-digest"),
        Some(sha256_b64(&sql.body).as_str())
    );
    let again = send(&node, reqwest::Method::HEAD, "/db/backup", &[]);
    assert_eq!(again.etag(), next.etag());
    assert_eq!(
        again.header("repr-digest"),
        None,
        "HEAD without Want-Repr-Digest reads nothing"
    );
    let with_digest = get(&node, "/db/backup", &[("Range", "bytes=0-9")]);
    assert_eq!(with_digest.status, 206);
    assert_eq!(
        with_digest.header("repr-digest"),
        Some(sha256_b64(&next.body).as_str()),
        "the digest of the whole representation, on a part of it too"
    );
}

#[test]
fn kept_copies_serve_the_same_content_again_and_go_when_their_time_is_up() {
    let node = Node::start(&["-backup-keep", "2s"]);
    fill_blobs(&node);
    let first = get(&node, "/db/backup", &[]);
    let made = copies_made(&node);
    assert_eq!(backup_files(&node).len(), 1, "the copy is kept");
    let second = get(&node, "/db/backup", &[]);
    assert_eq!(
        copies_made(&node),
        made,
        "the kept copy served the same content"
    );
    assert_eq!(second.body, first.body);
    assert!(
        wait_until(Duration::from_secs(15), || backup_files(&node).is_empty()),
        "kept past -backup-keep: {:?}",
        backup_files(&node)
    );

    // A load gives it the room at once (its content is being replaced).
    let keeper = Node::start(&[]);
    fill_blobs(&keeper);
    let kept = get(&keeper, "/db/backup", &[]);
    assert_eq!(backup_files(&keeper).len(), 1, "the copy is kept");
    let load = client()
        .post(keeper.url("/db/load"))
        .body(kept.body.clone())
        .send()
        .expect("load");
    assert_eq!(load.status().as_u16(), 200);
    assert!(
        wait_until(Duration::from_secs(5), || backup_files(&keeper).is_empty()),
        "a load left the kept copy: {:?}",
        backup_files(&keeper)
    );

    // -backup-keep 0, or a size budget smaller than the copy: nothing is kept.
    for flags in [["-backup-keep", "0s"], ["-backup-keep-size", "1000"]] {
        let node = Node::start(&flags);
        fill_blobs(&node);
        assert_eq!(get(&node, "/db/backup", &[]).status, 200);
        assert!(
            wait_until(Duration::from_secs(5), || backup_files(&node).is_empty()),
            "{flags:?}: {:?}",
            backup_files(&node)
        );
    }
}

#[test]
fn kept_copies_give_way_to_a_new_copy_that_needs_the_room() {
    use common::small_disk::SmallDisk;
    let scratch = tempfile::tempdir().expect("tempdir");
    let Some((_disk, tmp)) = SmallDisk::mount_or_skip(scratch.path(), "kept", 24, false) else {
        return;
    };
    let node = Node::start(&[
        "-backup-tmp-dir",
        &tmp.display().to_string(),
        "-disk-reserve",
        "1048576",
    ]);
    fill_blobs(&node); // ~6.2 MB
    node.execute(
        r#"["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 2000) INSERT INTO b(v) SELECT randomblob(1000) FROM c"]"#,
    ); // ~8.5 MB
    let own = std::fs::read_dir(&tmp)
        .expect("read -backup-tmp-dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("the node's own directory");
    let kept = || {
        std::fs::read_dir(&own)
            .map(|rd| rd.flatten().count())
            .unwrap_or(0)
    };
    // Two copies of two contents: both kept (17 MB of the 24).
    assert_eq!(get(&node, "/db/backup", &[]).status, 200);
    node.execute(r#"["INSERT INTO b(v) VALUES (x'01')"]"#);
    assert_eq!(get(&node, "/db/backup", &[]).status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || kept() == 2),
        "{}",
        kept()
    );
    // A third does not fit beside them: they give way, and it is made.
    node.execute(r#"["INSERT INTO b(v) VALUES (x'02')"]"#);
    let third = get(&node, "/db/backup", &[]);
    assert_eq!(
        third.status,
        200,
        "{}",
        String::from_utf8_lossy(&third.body)
    );
    assert!(
        wait_until(Duration::from_secs(5), || kept() == 1),
        "{}",
        kept()
    );
}

const SHELL: &str = env!("CARGO_BIN_EXE_raftlite");

/// Runs `raftlite verify ARGS`: its exit code and output.
fn verify(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(SHELL)
        .arg("verify")
        .args(args)
        .output()
        .expect("run raftlite verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn raftlite_verify_checks_a_download_against_the_node() {
    let node = Node::start(&[]);
    fill_blobs(&node);
    node.execute(WRITES);
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, name) in [
        ("/db/backup", "b.db"),
        ("/db/backup?fmt=sql", "b.sql"),
        ("/db/backup?compress", "b.db.gz"),
        ("/db/backup?fmt=sql&compress=zstd", "b.sql.zst"),
    ] {
        let answer = get(&node, path, &[]);
        assert_eq!(answer.status, 200);
        let file = dir.path().join(name);
        std::fs::write(&file, &answer.body).expect("save");
        let url = node.url(path);
        let (code, out) = verify(&[
            file.to_str().unwrap(),
            "--etag",
            &answer.etag(),
            "--url",
            &url,
        ]);
        assert_eq!(code, 0, "{path}:\n{out}");
        assert!(
            out.contains("ok      content: equal to the node's"),
            "{path}:\n{out}"
        );
        // Every format's digest: a SQL or compressed one is made again by the node and hashed.
        assert!(
            out.contains("ok      digest: equal to the node's"),
            "{path}:\n{out}"
        );
        if !path.contains("sql") {
            assert!(out.contains("ok      integrity"), "{out}");
        }
    }

    // One byte changed in the middle of the binary file: the digest says so.
    let good = std::fs::read(dir.path().join("b.db")).expect("read");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let bad_file = dir.path().join("bad.db");
    std::fs::write(&bad_file, &bad).expect("write");
    let tag = get(&node, "/db/backup", &[]).etag();
    let url = node.url("/db/backup");
    let (code, out) = verify(&[bad_file.to_str().unwrap(), "--etag", &tag, "--url", &url]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED  digest"), "{out}");
    // Cut short: not a database any more.
    std::fs::write(&bad_file, &good[..good.len() / 3]).expect("write");
    let (code, out) = verify(&[bad_file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");

    // The node moved on: the file still checks alone, the comparisons say why they were not made.
    node.execute(r#"["INSERT INTO t(v) VALUES ('later')"]"#);
    let (code, out) = verify(&[
        dir.path().join("b.db").to_str().unwrap(),
        "--etag",
        &tag,
        "--url",
        &url,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("skipped digest: the node's backup is now"),
        "{out}"
    );
    assert!(
        out.contains("skipped content: the node is at index"),
        "{out}"
    );
    // Usage errors: 2.
    assert_eq!(verify(&[]).0, 2);
}

/// The index a write was applied at (`raft_index` in the leader's answer).
fn write_at(leader: &Node, body: &str) -> u64 {
    let a = leader.post("/db/execute?raft_index", body).json();
    a["results"][0]["error"]
        .is_null()
        .then(|| a["raft_index"].as_u64())
        .flatten()
        .unwrap_or_else(|| panic!("write failed: {a}"))
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// A backup answered by the node asked, from its own copy: a SQLite file with its index and
/// tag, not proxied.
fn assert_served_here(a: &Answer, what: &str) {
    assert_eq!(a.status, 200, "{what}: {}", text(a));
    assert_eq!(a.header("x-rqlite-served-by"), None, "{what}: proxied");
    assert!(a.body.starts_with(b"SQLite format 3\0"), "{what}");
    assert!(a.header("etag").is_some(), "{what}: no ETag");
}

#[test]
fn a_fresh_follower_serves_its_own_copy_and_a_stale_one_refuses_or_forwards() {
    let c = Cluster::start(3, &[]);
    let leader = &c.nodes[c.leader()];
    let follower = &c.nodes[c.followers()[0]];
    let index = write_at(leader, WRITES);

    // Fresh enough: the follower's own copy (after waiting for `min_index` if need be).
    let (leader_made, follower_made) = (copies_made(leader), copies_made(follower));
    let own = get(
        follower,
        &format!("/db/backup?freshness=10s&min_index={index}&timeout=10s"),
        &[],
    );
    assert_served_here(&own, "fresh follower");
    assert!(own.index() >= index, "{} < {index}", own.index());
    assert_eq!(
        copies_made(follower),
        follower_made + 1,
        "no copy on the follower"
    );
    assert_eq!(copies_made(leader), leader_made, "the leader made the copy");
    // freshness alone is enough to ask for it.
    assert_served_here(&get(follower, "/db/backup?freshness=10s", &[]), "freshness");

    // A follower's last contact is always older than a nanosecond: stale.
    let stale = get(follower, "/db/backup?freshness=1ns", &[]);
    assert_eq!(stale.status, 503, "{}", text(&stale));
    assert!(
        text(&stale).starts_with("stale: last contact with the leader ")
            && text(&stale).contains("ago, more than freshness 1ns"),
        "{}",
        text(&stale)
    );
    assert_eq!(stale.header("x-rqlite-served-by"), None);
    // The client may ask for the leader's copy instead.
    let forwarded = get(follower, "/db/backup?freshness=1ns&stale=forward", &[]);
    assert_eq!(forwarded.status, 200, "{}", text(&forwarded));
    assert_eq!(
        forwarded.header("x-rqlite-served-by"),
        Some(leader.raft_addr.as_str())
    );
    assert!(forwarded.body.starts_with(b"SQLite format 3\0"));
    // `stale=error` is the default spelled out.
    assert_eq!(
        get(follower, "/db/backup?freshness=1ns&stale=error", &[]).status,
        503
    );
    // The leader is always fresh.
    assert_served_here(&get(leader, "/db/backup?freshness=1ns", &[]), "leader");

    // Malformed bounds are the caller's mistake.
    for (query, message) in [
        ("min_index=abc", "min_index is not a valid Raft index"),
        ("min_index=-1", "min_index is not a valid Raft index"),
        (
            "freshness=1s&stale=maybe",
            "stale must be \"error\" or \"forward\"",
        ),
        ("freshness=soon", "freshness is not a valid duration"),
    ] {
        let a = get(follower, &format!("/db/backup?{query}"), &[]);
        assert_eq!(a.status, 400, "{query}: {}", text(&a));
        assert!(text(&a).contains(message), "{query}: {}", text(&a));
    }
}

#[test]
fn min_index_waits_a_bounded_time_for_the_apply() {
    let c = Cluster::start(3, &[]);
    let leader = &c.nodes[c.leader()];
    let follower = &c.nodes[c.followers()[0]];
    let index = write_at(leader, WRITES);

    // Never reached: the wait ends at `timeout`, then the error names both indexes.
    let far = index + 1_000_000;
    for (node, who) in [(follower, "follower"), (leader, "leader")] {
        let started = std::time::Instant::now();
        let a = get(node, &format!("/db/backup?min_index={far}&timeout=1s"), &[]);
        let took = started.elapsed();
        assert_eq!(a.status, 503, "{who}: {}", text(&a));
        assert!(
            text(&a).starts_with("behind: applied index ")
                && text(&a).contains(&format!("is below min_index {far} after waiting 1")),
            "{who}: {}",
            text(&a)
        );
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(10),
            "{who}: answered after {took:?}"
        );
    }
    // Forwarding does not help when the leader has not applied it either: its refusal,
    // passed on.
    let a = get(
        follower,
        &format!("/db/backup?min_index={far}&timeout=1s&stale=forward"),
        &[],
    );
    assert_eq!(a.status, 503, "{}", text(&a));
    assert_eq!(
        a.header("x-rqlite-served-by"),
        Some(leader.raft_addr.as_str())
    );
    assert!(text(&a).contains("below min_index"), "{}", text(&a));

    // Reached during the wait: the follower's own copy, at or after that index.
    let next = index + 1;
    let url = follower.url(&format!("/db/backup?min_index={next}&timeout=20s"));
    let waiting = std::thread::spawn(move || {
        let r = client().get(url).send().expect("backup request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().expect("body").to_vec();
        Answer {
            status,
            headers,
            body,
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        !waiting.is_finished(),
        "the backup did not wait for min_index {next}"
    );
    let written = write_at(leader, r#"["INSERT INTO t(v) VALUES ('three')"]"#);
    assert!(written >= next);
    let a = waiting.join().expect("backup thread");
    assert_served_here(&a, "after the wait");
    assert!(a.index() >= next, "{} < {next}", a.index());
}

#[test]
fn a_follower_cut_off_from_the_leader_is_stale() {
    let mut c = Cluster::start(3, &[]);
    let leader_at = c.leader();
    let follower_at = c.followers()[0];
    let index = write_at(&c.nodes[leader_at], WRITES);
    assert!(wait_until(Duration::from_secs(10), || {
        get(&c.nodes[follower_at], "/db/backup?noleader", &[]).index() >= index
    }));
    // The other two gone: no leader, no contact.
    for i in 0..3 {
        if i != follower_at {
            c.nodes[i].kill();
        }
    }
    let s = &c.nodes[follower_at];
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let a = get(s, "/db/backup?freshness=1s", &[]);
            last = format!("{} {}", a.status, text(&a));
            a.status == 503 && text(&a).starts_with("stale: last contact with the leader ")
        }),
        "never stale: {last}"
    );
    assert!(last.contains("ago, more than freshness 1s"), "{last}");
    // The same notion of staleness as a `level=none` read's.
    let read = |freshness: &str| {
        s.get(&format!(
            "/db/query?level=none&freshness={freshness}&q=SELECT%20count(*)%20FROM%20t"
        ))
        .body
    };
    assert_eq!(read("1s"), r#"{"results":[],"error":"stale read"}"#);
    assert!(read("1h").contains(r#""values":[[2]]"#), "{}", read("1h"));
    // A generous freshness still accepts the survivor's own copy.
    let own = get(s, "/db/backup?freshness=1h", &[]);
    assert_served_here(&own, "survivor within 1h");
    assert!(own.index() >= index);
    // Forwarding instead fails as forwarding does without a leader.
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let a = get(s, "/db/backup?freshness=1s&stale=forward", &[]);
            last = format!("{} {}", a.status, text(&a));
            last == "503 leader not found\n"
        }),
        "forwarding answered {last}"
    );
}

#[test]
fn a_follower_that_installed_a_snapshot_makes_the_same_bytes_for_the_same_tag() {
    let snap = ["-raft-snap", "20", "-raft-trailing-logs", "5"];
    let c = Cluster::start(1, &snap);
    let leader = &c.nodes[0];
    leader.execute(WRITES);
    for i in 0..60 {
        leader.execute(&format!(r#"[["INSERT INTO t(v) VALUES(?)", "row {i}"]]"#));
    }
    assert!(wait_until(Duration::from_secs(20), || {
        leader.get("/status").json()["store"]["raft"]["last_snapshot_index"]
            .as_u64()
            .unwrap_or(0)
            > 0
    }));
    let join = leader.raft_addr.clone();
    let late = Node::start(
        &[
            common::FAST_RAFT,
            &snap,
            &["-node-id", "late", "-join", &join],
        ]
        .concat(),
    );
    assert!(
        wait_until(Duration::from_secs(30), || late.get("/status").json()
            ["store"]["num_restores"]
            == 1),
        "the late node installed no snapshot:\n{}",
        late.log()
    );
    let from_leader = get(leader, "/db/backup", &[]);
    let mut own = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let a = get(&late, "/db/backup?noleader", &[]);
        let done = a.status == 200 && a.index() == from_leader.index();
        own = Some(a);
        done
    }));
    let own = own.expect("answer");
    assert_eq!(own.etag(), from_leader.etag());
    let first_difference = own
        .body
        .iter()
        .zip(&from_leader.body)
        .position(|(a, b)| a != b);
    assert_eq!(
        (own.body.len(), first_difference),
        (from_leader.body.len(), None),
        "same tag, different bytes"
    );
}
