//! `-auto-backup` and `-auto-restore` with rqlite's `s3` storage, on real nodes against a real
//! S3-compatible server (moto, `tests/common/s3.rs`): a gzipped upload carrying its id as
//! `x-rqlite-auto-backup-id`, replaced on change and skipped without one (also across a
//! restart, by the id read back from the object); timestamped keys, one per change; a large
//! database sent as a multipart upload equal to the node's own backup; a storage that refuses
//! connections, cuts an upload mid-part (the multipart upload is aborted, nothing appears) or
//! stalls (before the upload or mid-part: the upload waits in the background, and a stop is
//! not held up by it), and one that rejects the credentials: uploads fail and are counted, the
//! node keeps serving, and the next tick after the fault uploads. An empty node starts from
//! the S3 backup; a missing object stops the start unless `continue_on_failure`; a stalled
//! download stops it at the configuration's timeout. (File storage: tests/auto_backup.rs.)

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::s3::{Fault, FaultyProxy, Moto};
use common::{run_binary, sqlite3, wait_until, Node};
use sha2::Digest as _;

/// The object every test backs up to (and restores from).
const KEY: &str = "backups/db.sqlite.gz";
/// The user metadata an upload carries its id in, as moto answers it.
const ID_HEADER: &str = "x-amz-meta-x-rqlite-auto-backup-id";
/// The node's multipart part size.
const PART_SIZE: usize = 8 << 20;

/// The `sub` object of an s3 configuration for `key` in `bucket` at `endpoint`.
fn sub(endpoint: &str, bucket: &str, key: &str) -> String {
    format!(
        r#"{{"access_key_id":"AK","secret_access_key":"SK","endpoint":"{endpoint}",
            "region":"us-east-1","bucket":"{bucket}","path":"{key}","force_path_style":true}}"#
    )
}

/// Writes an `-auto-backup` configuration that uploads to `KEY` in `bucket` every 200 ms.
fn config(at: &Path, endpoint: &str, bucket: &str, extra: &str) -> PathBuf {
    let path = at.join("auto-backup.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"type":"s3","interval":"200ms",{extra}"sub":{}}}"#,
            sub(endpoint, bucket, KEY)
        ),
    )
    .unwrap();
    path
}

/// Writes an `-auto-restore` configuration that reads `key` in `bucket`.
fn restore_config(at: &Path, endpoint: &str, bucket: &str, key: &str, extra: &str) -> PathBuf {
    let path = at.join("auto-restore.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"type":"s3",{extra}"sub":{}}}"#,
            sub(endpoint, bucket, key)
        ),
    )
    .unwrap();
    path
}

fn vars(node: &Node) -> serde_json::Value {
    node.get("/debug/vars").json()
}

fn uploader(node: &Node) -> serde_json::Value {
    vars(node)["uploader"].clone()
}

fn count(node: &Node, key: &str) -> u64 {
    let u = uploader(node);
    u[key].as_u64().unwrap_or_else(|| panic!("{key}: {u}"))
}

/// `downloader.num_downloads_ok`, `num_downloads_fail`, and `store.num_auto_restores`,
/// `num_auto_restores_skipped`, `num_auto_restores_failed`.
fn restore_counts(node: &Node) -> (u64, u64, u64, u64, u64) {
    let v = vars(node);
    let n = |m: &str, k: &str| v[m][k].as_u64().unwrap_or_else(|| panic!("{m}.{k}: {v}"));
    (
        n("downloader", "num_downloads_ok"),
        n("downloader", "num_downloads_fail"),
        n("store", "num_auto_restores"),
        n("store", "num_auto_restores_skipped"),
        n("store", "num_auto_restores_failed"),
    )
}

/// Waits (bounded) until the uploader's counter `key` is at least `n`; fails with the
/// counters and the node's log.
fn wait_count(node: &Node, key: &str, n: u64, within: Duration) {
    assert!(
        wait_until(within, || count(node, key) >= n),
        "{key} did not reach {n}: {}\n{}",
        uploader(node),
        node.log()
    );
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    assert_eq!(gz[..2], [0x1f, 0x8b], "not gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut plain)
        .expect("gunzip the backup");
    plain
}

/// Runs `sql` on a copy of the SQLite file `bytes` with the reference shell.
fn sqlite_of(bytes: &[u8], sql: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("copy.sqlite");
    std::fs::write(&file, bytes).unwrap();
    assert_eq!(sqlite3(&file, "PRAGMA integrity_check").trim(), "ok");
    sqlite3(&file, sql).trim().to_string()
}

/// The rows of `t` in the SQLite file `bytes`, as `1,2,3`.
fn rows(bytes: &[u8]) -> String {
    sqlite_of(bytes, "SELECT group_concat(x) FROM t")
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The id the object at `key` carries.
fn id_of(moto: &Moto, bucket: &str, key: &str) -> String {
    let meta = moto
        .head_metadata(bucket, key)
        .unwrap_or_else(|| panic!("no object at {key}: {:?}", moto.keys(bucket, "")));
    let ids: Vec<&String> = meta
        .iter()
        .filter(|(name, _)| name == ID_HEADER)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ids.len(), 1, "{meta:?}");
    ids[0].clone()
}

/// The node's own binary backup, `GET /db/backup`, as bytes.
fn node_backup(node: &Node) -> Vec<u8> {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = client
        .get(node.url("/db/backup"))
        .send()
        .expect("GET /db/backup");
    assert_eq!(r.status().as_u16(), 200);
    r.bytes().expect("read the backup").to_vec()
}

/// Creates `t(x)` with about 20 MiB of incompressible rows: 20 000 blobs of 1000 bytes.
const BIG_TABLE: &str = r#"["CREATE TABLE t(x)",
    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<20000) INSERT INTO t SELECT randomblob(1000) FROM c"]"#;
const BIG_ROWS: u64 = 20_000;

/// Waits (bounded) until the object at `KEY` in `bucket` is one `done` accepts (a tick that
/// began before the last write may upload an older backup first), and returns it.
fn wait_object(
    moto: &Moto,
    bucket: &str,
    within: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut last = None;
    let ok = wait_until(within, || {
        last = moto.get(bucket, KEY);
        last.as_deref().is_some_and(&done)
    });
    assert!(
        ok,
        "the object at {KEY} is not the expected one ({:?} bytes)",
        last.map(|o| o.len())
    );
    last.unwrap()
}

/// Asserts the node answers a write and a read, each within `within`.
fn assert_serves(node: &Node, value: u32, within: Duration) {
    let started = Instant::now();
    let w = node.execute(&format!(r#"["INSERT INTO u VALUES({value})"]"#));
    assert!(w.contains("rows_affected\":1"), "{w}");
    let r = node.query(&format!("SELECT count(*) FROM u WHERE y = {value}"));
    assert!(r.contains("[[1]]"), "{r}");
    assert!(
        started.elapsed() < within,
        "a write and a read took {:?}",
        started.elapsed()
    );
}

#[test]
fn uploads_a_gzipped_backup_with_its_id_replaced_on_change_and_skipped_without_one() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("plain");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &moto.endpoint, "plain", "");
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "INSERT INTO t VALUES(2)"]"#);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(20));
    assert_eq!(moto.keys("plain", ""), [KEY]);
    let gz = moto.get("plain", KEY).unwrap();
    assert_eq!(count(&node, "last_upload_bytes"), gz.len() as u64);
    let plain = gunzip(&gz);
    assert_eq!(rows(&plain), "1,2");
    // The id is the SHA-256 of the uncompressed backup.
    let first_id = id_of(&moto, "plain", KEY);
    assert_eq!(first_id, sha256_hex(&plain));
    assert!(
        node.log().contains(KEY),
        "the upload is not logged:\n{}",
        node.log()
    );

    // Nothing changes: intervals pass, nothing is uploaded.
    let skipped = count(&node, "num_uploads_skipped");
    wait_count(
        &node,
        "num_uploads_skipped",
        skipped + 3,
        Duration::from_secs(10),
    );
    let u = uploader(&node);
    assert_eq!(u["num_uploads_ok"], 1, "{u}");
    assert_eq!(u["num_uploads_fail"], 0, "{u}");
    assert_eq!(moto.keys("plain", ""), [KEY]);

    // A write replaces the one object, with a new id.
    node.execute(r#"["INSERT INTO t VALUES(3)"]"#);
    wait_count(&node, "num_uploads_ok", 2, Duration::from_secs(20));
    assert_eq!(moto.keys("plain", ""), [KEY]);
    let plain = gunzip(&moto.get("plain", KEY).unwrap());
    assert_eq!(rows(&plain), "1,2,3");
    let second_id = id_of(&moto, "plain", KEY);
    assert_ne!(second_id, first_id);
    assert_eq!(second_id, sha256_hex(&plain));
    assert_eq!(moto.multipart_uploads("plain"), Vec::<String>::new());
}

#[test]
fn timestamped_uploads_add_a_key_per_change() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("stamped");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &moto.endpoint,
        "stamped",
        r#""timestamp":true,"no_compress":true,"#,
    );
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(20));
    assert_eq!(moto.keys("stamped", "").len(), 1);
    // Timestamps have a one-second resolution: the next upload must get another key.
    std::thread::sleep(Duration::from_millis(1100));
    node.execute(r#"["INSERT INTO t VALUES(2)"]"#);
    wait_count(&node, "num_uploads_ok", 2, Duration::from_secs(20));
    let keys = moto.keys("stamped", "");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let name = key
            .strip_prefix("backups/")
            .unwrap_or_else(|| panic!("{key}"));
        assert!(
            name.len() == "YYYYMMDDHHMMSS_db.sqlite.gz".len()
                && name[..14].bytes().all(|b| b.is_ascii_digit())
                && name[14..] == *"_db.sqlite.gz",
            "{key}"
        );
        assert!(name.starts_with("20"), "{key}");
    }
    // Keys sort by time: the older holds the first change only. Not compressed.
    assert_eq!(rows(&moto.get("stamped", &keys[0]).unwrap()), "1");
    assert_eq!(rows(&moto.get("stamped", &keys[1]).unwrap()), "1,2");
    for key in &keys {
        id_of(&moto, "stamped", key);
    }
    // Nothing changes: no third key.
    let skipped = count(&node, "num_uploads_skipped");
    wait_count(
        &node,
        "num_uploads_skipped",
        skipped + 3,
        Duration::from_secs(10),
    );
    assert_eq!(moto.keys("stamped", "").len(), 2);
    assert_eq!(count(&node, "num_uploads_ok"), 2);
}

#[test]
fn a_restart_does_not_upload_an_unchanged_database_again() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("restart");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &moto.endpoint, "restart", "");
    let data = tmp.path().join("data");
    let args = ["-auto-backup", cfg.to_str().unwrap()];
    let mut node = Node::start_in(&data, &args);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(20));
    let id = id_of(&moto, "restart", KEY);
    node.stop();

    // Restarted, the node reads the object's id and finds its content already uploaded.
    let node = Node::start_in(&data, &args);
    wait_count(&node, "num_uploads_skipped_id", 1, Duration::from_secs(20));
    let u = uploader(&node);
    assert_eq!(u["num_uploads_ok"], 0, "{u}");
    assert_eq!(u["num_uploads_skipped_id"], 1, "{u}");
    assert_eq!(u["num_sum_get_fail"], 0, "{u}");
    assert_eq!(id_of(&moto, "restart", KEY), id);
    // A change after the restart is uploaded.
    node.execute(r#"["INSERT INTO t VALUES(2)"]"#);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(20));
    assert_eq!(rows(&gunzip(&moto.get("restart", KEY).unwrap())), "1,2");
    assert_ne!(id_of(&moto, "restart", KEY), id);
}

#[test]
fn a_large_backup_goes_up_in_parts_and_equals_the_nodes_backup() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("large");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &moto.endpoint,
        "large",
        r#""no_compress":true,"#,
    );
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(BIG_TABLE);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(40));
    let object = moto.get("large", KEY).unwrap();
    let backup = node_backup(&node);
    assert!(backup.len() > 2 * PART_SIZE, "{} bytes", backup.len());
    assert_eq!(object.len(), backup.len());
    assert!(
        object == backup,
        "the uploaded object is not the node's backup"
    );
    assert_eq!(
        sqlite_of(&object, "SELECT count(*), sum(length(x)) FROM t"),
        format!("{BIG_ROWS}|{}", BIG_ROWS * 1000)
    );
    assert_eq!(count(&node, "last_upload_bytes"), object.len() as u64);
    // A multipart upload's ETag ends with its number of parts.
    let etag = moto.etag("large", KEY).unwrap();
    let parts = object.len().div_ceil(PART_SIZE);
    assert!(
        etag.trim_matches('"').ends_with(&format!("-{parts}")),
        "{etag}, {} bytes",
        object.len()
    );
    assert_eq!(id_of(&moto, "large", KEY), sha256_hex(&object));
    assert_eq!(moto.multipart_uploads("large"), Vec::<String>::new());
}

#[test]
fn a_storage_that_refuses_connections_fails_uploads_and_the_node_keeps_serving() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("refused");
    let proxy = FaultyProxy::start(moto.address());
    proxy.set(Fault::Refuse);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &proxy.endpoint, "refused", "");
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "CREATE TABLE u(y)"]"#);
    wait_count(&node, "num_uploads_fail", 2, Duration::from_secs(30));
    assert!(proxy.connections() > 0);
    assert_serves(&node, 1, Duration::from_secs(5));
    assert_eq!(count(&node, "num_uploads_ok"), 0);
    assert!(
        node.log().contains("automatic backup to"),
        "no failure logged:\n{}",
        node.log()
    );
    assert_eq!(moto.keys("refused", ""), Vec::<String>::new());

    proxy.set(Fault::Pass);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(30));
    let gz = wait_object(&moto, "refused", Duration::from_secs(20), |gz| {
        sqlite_of(&gunzip(gz), "SELECT y FROM u") == "1"
    });
    assert_eq!(rows(&gunzip(&gz)), "1");
}

#[test]
fn an_upload_cut_mid_part_is_aborted_and_the_next_tick_uploads() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("cut");
    let proxy = FaultyProxy::start(moto.address());
    // Small requests pass; every connection is cut once it has carried 2 MiB, a quarter of a
    // part: every attempt at a part fails in the middle of its body.
    let limit = 2 << 20;
    proxy.set(Fault::CutRequestsAfter(limit));
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &proxy.endpoint, "cut", r#""no_compress":true,"#);
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(BIG_TABLE);
    node.execute(r#"["CREATE TABLE u(y)"]"#);
    wait_count(&node, "num_uploads_fail", 2, Duration::from_secs(60));
    assert!(
        proxy.bytes_to_server() > limit,
        "the upload never reached a part's body ({} bytes sent)",
        proxy.bytes_to_server()
    );
    assert_eq!(count(&node, "num_uploads_ok"), 0);
    assert_eq!(moto.keys("cut", ""), Vec::<String>::new());
    // Each failed upload was aborted: at most the one being tried now is open.
    let open = moto.multipart_uploads("cut");
    assert!(open.len() <= 1, "multipart uploads left open: {open:?}");
    assert_serves(&node, 1, Duration::from_secs(5));

    proxy.set(Fault::Pass);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(60));
    let object = wait_object(&moto, "cut", Duration::from_secs(60), |o| {
        sqlite_of(o, "SELECT y FROM u") == "1"
    });
    assert_eq!(
        sqlite_of(&object, "SELECT count(*) FROM t"),
        BIG_ROWS.to_string()
    );
    assert!(
        object == node_backup(&node),
        "the uploaded object is not the node's backup"
    );
    assert_eq!(moto.keys("cut", ""), [KEY]);
    assert!(
        wait_until(Duration::from_secs(10), || moto
            .multipart_uploads("cut")
            .is_empty()),
        "multipart uploads left open: {:?}",
        moto.multipart_uploads("cut")
    );
}

#[test]
fn a_stalled_storage_does_not_hold_up_the_node_and_the_upload_resumes_after_it() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("stalled");
    let proxy = FaultyProxy::start(moto.address());
    proxy.set(Fault::Stall);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &proxy.endpoint, "stalled", "");
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "CREATE TABLE u(y)"]"#);
    assert!(
        wait_until(Duration::from_secs(20), || proxy.connections() > 0),
        "the node never contacted the storage:\n{}",
        node.log()
    );
    // The upload hangs on the stalled server; the node answers as usual meanwhile.
    let stalled_until = Instant::now() + Duration::from_secs(3);
    let mut value = 0;
    while Instant::now() < stalled_until {
        value += 1;
        assert_serves(&node, value, Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(100));
    }
    let u = uploader(&node);
    assert_eq!(u["num_uploads_ok"], 0, "{u}");
    assert_eq!(moto.keys("stalled", ""), Vec::<String>::new());

    // The stall ends (the stalled connection is closed): the upload gets through.
    proxy.set(Fault::Pass);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(60));
    // The backup that waited may predate the writes made during the stall; the next tick
    // uploads them.
    let all = value.to_string();
    let gz = wait_object(&moto, "stalled", Duration::from_secs(20), |gz| {
        sqlite_of(&gunzip(gz), "SELECT count(*) FROM u") == all
    });
    assert_eq!(rows(&gunzip(&gz)), "1");
}

#[test]
fn credentials_the_storage_rejects_fail_uploads_with_its_error() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("creds");
    moto.check_credentials(true);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &moto.endpoint, "creds", "");
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "CREATE TABLE u(y)"]"#);
    wait_count(&node, "num_uploads_fail", 2, Duration::from_secs(20));
    let log = node.log();
    let failure = log
        .lines()
        .find(|l| l.contains("automatic backup to") && l.contains("failed"))
        .unwrap_or_else(|| panic!("no failure logged:\n{log}"));
    // The storage's answer: its status, and its error code (in the XML body, which the log
    // entry carries on its following lines).
    assert!(failure.contains("403"), "no status in the error: {failure}");
    assert!(failure.contains("/creds/"), "{failure}");
    assert!(log.contains("InvalidAccessKeyId"), "no error code:\n{log}");
    assert_serves(&node, 1, Duration::from_secs(5));
    assert_eq!(count(&node, "num_uploads_ok"), 0);

    moto.check_credentials(false);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(20));
    assert_eq!(rows(&gunzip(&moto.get("creds", KEY).unwrap())), "1");
    id_of(&moto, "creds", KEY);
}

/// A gzipped backup of `t` with the rows 1, 2, 3 at `KEY` in `bucket`, made by a node's
/// uploader.
fn make_backup(tmp: &Path, moto: &Moto, bucket: &str) {
    moto.create_bucket(bucket);
    let cfg = config(tmp, &moto.endpoint, bucket, "");
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "INSERT INTO t VALUES(2)", "INSERT INTO t VALUES(3)"]"#);
    wait_count(&node, "num_uploads_ok", 1, Duration::from_secs(20));
}

#[test]
fn an_empty_node_starts_from_the_s3_backup() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    make_backup(tmp.path(), &moto, "restore");
    let size = moto.get("restore", KEY).unwrap().len() as u64;
    let cfg = restore_config(
        tmp.path(),
        &moto.endpoint,
        "restore",
        KEY,
        r#""timeout":"10s","continue_on_failure":false,"#,
    );
    let data = tmp.path().join("restored");
    let node = Node::start_in(&data, &["-auto-restore", cfg.to_str().unwrap()]);
    assert!(
        wait_until(Duration::from_secs(20), || restore_counts(&node).2 == 1),
        "{}\n{}",
        vars(&node),
        node.log()
    );
    let q = node.query("SELECT group_concat(x) FROM t");
    assert!(q.contains("1,2,3"), "{q}");
    assert_eq!(restore_counts(&node), (1, 0, 1, 0, 0));
    assert_eq!(vars(&node)["downloader"]["download_bytes"], size);
    assert!(
        node.log().contains("auto-restored successfully"),
        "{}",
        node.log()
    );
    assert!(
        common::files_named(&data, "auto-restore").is_empty(),
        "{:?}",
        common::files_named(&data, "auto-restore")
    );
}

/// Runs `raftlited -auto-restore CFG DATA` on free ports until it exits (bounded): its exit
/// code and output.
fn start_restoring(cfg: &Path, data: &Path) -> (Option<i32>, String) {
    run_binary(
        &[
            "-auto-restore",
            cfg.to_str().unwrap(),
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    )
}

#[test]
fn a_missing_object_stops_the_start_unless_continue_on_failure() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    make_backup(tmp.path(), &moto, "missing");
    let wrong = "backups/nothing-here.sqlite.gz";
    let cfg = restore_config(tmp.path(), &moto.endpoint, "missing", wrong, "");
    let (code, out) = start_restoring(&cfg, &tmp.path().join("d1"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("auto-restore") && out.contains(wrong),
        "the error does not say what was missing: {out}"
    );

    let cfg = restore_config(
        tmp.path(),
        &moto.endpoint,
        "missing",
        wrong,
        r#""continue_on_failure":true,"#,
    );
    let node = Node::start_in(
        &tmp.path().join("d2"),
        &["-auto-restore", cfg.to_str().unwrap()],
    );
    assert_eq!(restore_counts(&node), (0, 1, 0, 0, 0));
    assert!(node.query("SELECT * FROM t").contains("no such table"));
    let created = node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(9)"]"#);
    assert!(created.contains("rows_affected\":1"), "{created}");
    assert!(
        node.log().contains("continuing with node startup anyway"),
        "{}",
        node.log()
    );
}

#[test]
fn a_stalled_download_stops_the_start_at_the_timeout() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    make_backup(tmp.path(), &moto, "slow");
    let proxy = FaultyProxy::start(moto.address());
    proxy.set(Fault::Stall);
    let cfg = restore_config(
        tmp.path(),
        &proxy.endpoint,
        "slow",
        KEY,
        r#""timeout":"2s","#,
    );
    let started = Instant::now();
    let (code, out) = start_restoring(&cfg, &tmp.path().join("d1"));
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {out}");
    assert!(took >= Duration::from_secs(2), "took {took:?}: {out}");
    assert!(proxy.connections() > 0, "the node never asked: {out}");
    assert!(
        out.contains("auto-restore") && out.contains("timed out"),
        "the error does not say it timed out: {out}"
    );
}

/// A storage that stops answering in the middle of a part: the upload waits in the
/// background (neither done nor failed), the node serves, and a stop is not held up by it.
#[test]
fn a_node_whose_upload_hangs_mid_part_serves_and_stops_promptly() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("hanging");
    let proxy = FaultyProxy::start(moto.address());
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &proxy.endpoint,
        "hanging",
        r#""no_compress":true,"#,
    );
    let mut node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(BIG_TABLE);
    node.execute(r#"["CREATE TABLE u(y)"]"#);
    // Polled without a pause, so the stall starts a few bytes into the first part's body.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.bytes_to_server() < 1 << 20 {
        assert!(
            Instant::now() < deadline,
            "the upload never started:\n{}",
            node.log()
        );
        std::hint::spin_loop();
    }
    proxy.set(Fault::Stall);
    let stalled_until = Instant::now() + Duration::from_secs(2);
    let mut value = 0;
    while Instant::now() < stalled_until {
        value += 1;
        assert_serves(&node, value, Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(100));
    }
    let u = uploader(&node);
    assert_eq!(u["num_uploads_ok"], 0, "{u}");
    assert_eq!(u["num_uploads_fail"], 0, "still waiting, not failed: {u}");
    // The stop gives the upload a short grace to abort cleanly (it cannot: the server is
    // stalled), then cuts it off.
    let started = Instant::now();
    let status = node.stop();
    assert!(status.success(), "{status:?}\n{}", node.log());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the stop took {:?}",
        started.elapsed()
    );
    assert_eq!(moto.keys("hanging", ""), Vec::<String>::new());
}

/// A node stopped while an upload is on its way (the server answering) aborts the multipart
/// upload: no parts are left in the bucket, where S3 would keep (and bill) them.
#[test]
fn a_stop_during_an_upload_aborts_it_and_leaves_no_parts() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("stopping");
    let proxy = FaultyProxy::start(moto.address());
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &proxy.endpoint,
        "stopping",
        r#""no_compress":true,"#,
    );
    let mut node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(BIG_TABLE);
    // Polled, not spun (nothing here needs the first bytes): a spinning test takes one of
    // the machine's two cores from the node. Bounded generously: a busy machine is slow.
    let deadline = Instant::now() + Duration::from_secs(90);
    while proxy.bytes_to_server() < 1 << 20 {
        assert!(
            Instant::now() < deadline,
            "the upload never started:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = node.stop();
    assert!(status.success(), "{status:?}\n{}", node.log());
    assert_eq!(
        moto.multipart_uploads("stopping"),
        Vec::<String>::new(),
        "an upload left open:\n{}",
        node.log()
    );
}

/// Continuous archiving to S3 and a point-in-time restore from it: the node archives its
/// entries and bases into the bucket (under `KEY.archive/`), is lost, and `raftlite restore`
/// rebuilds the database at two indexes with the digests the node reported there.
#[test]
fn archiving_to_s3_restores_to_an_index_with_the_same_digest() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("archive");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &moto.endpoint,
        "archive",
        r#""archive":{"max_delay":"100ms","base_interval":"1h"},"#,
    );
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    let digest = |node: &Node| {
        let d = node.get("/status?digest").json()["store"]["db_digest"].clone();
        (
            d["applied_index"].as_u64().unwrap(),
            d["digest"].as_str().unwrap().to_string(),
        )
    };
    let shipped = |node: &Node| {
        vars(node)["archiver"]["shipped_index"]
            .as_u64()
            .unwrap_or(0)
    };
    node.execute(r#"["CREATE TABLE t(x, r)", "INSERT INTO t VALUES(1, random())"]"#);
    let first = digest(&node);
    assert!(wait_until(Duration::from_secs(20), || shipped(&node) >= first.0));
    for i in 2..=5 {
        node.execute(&format!(r#"["INSERT INTO t VALUES({i}, random())"]"#));
    }
    let last = digest(&node);
    assert!(
        wait_until(Duration::from_secs(20), || shipped(&node) >= last.0),
        "{}",
        vars(&node)["archiver"]
    );
    drop(node);
    let keys = moto.keys("archive", &format!("{KEY}.archive/"));
    assert!(
        keys.iter().any(|k| k.contains("/bases/")) && keys.iter().any(|k| k.contains("/log/")),
        "{keys:?}"
    );
    for (index, want) in [&first, &last] {
        let report = restore_to_index(&cfg, *index, &tmp.path().join(format!("at-{index}.db")));
        assert_eq!(report["digest"], *want, "{report}");
    }
}

/// Runs `raftlite restore --from CFG --to-index INDEX OUT`, which must succeed; its report.
fn restore_to_index(cfg: &Path, index: u64, out: &Path) -> serde_json::Value {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_raftlite"))
        .args(["restore", "--from", cfg.to_str().unwrap(), "--to-index"])
        .arg(index.to_string())
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// Retention and loads against a real S3 server: with one base kept and a base every
/// 200 ms, the bucket keeps the newest base's objects and the chunks and load scripts after
/// it, deletes the rest (list, delete), and a restore to the end still matches the node.
#[test]
fn archive_retention_in_s3_keeps_what_the_newest_base_needs() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("kept");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &moto.endpoint,
        "kept",
        r#""archive":{"max_delay":"100ms","base_interval":"200ms","keep_bases":1},"#,
    );
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    let archiver = |node: &Node| vars(node)["archiver"].clone();
    let shipped = |node: &Node| archiver(node)["shipped_index"].as_u64().unwrap_or(0);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    let first = node.get("/status?digest").json()["store"]["db_digest"]["applied_index"]
        .as_u64()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || shipped(&node) >= first));
    // A SQL load after the first base: its script goes up, then goes with a later base.
    let r = reqwest::blocking::Client::new()
        .post(node.url("/db/load"))
        .header("Content-Type", "text/plain")
        .body("INSERT INTO t VALUES('loaded');\n")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let loads_key = |keys: &[String]| keys.iter().any(|k| k.contains("/loads/"));
    // Told by the node's log: the next base may delete the object before a poll sees it.
    assert!(
        wait_until(Duration::from_secs(20), || node
            .log()
            .contains("archived the SQL script of the load entry")),
        "the load's script is uploaded: {}",
        archiver(&node)
    );
    for i in 2..=6 {
        node.execute(&format!(r#"["INSERT INTO t VALUES({i})"]"#));
        std::thread::sleep(Duration::from_millis(300));
    }
    let last = node.get("/status?digest").json()["store"]["db_digest"].clone();
    let last_index = last["applied_index"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(20), || shipped(&node) >= last_index));
    // The newest base covers everything: wait until one has been taken at the end.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let keys = moto.keys("kept", &format!("{KEY}.archive/"));
            keys.iter()
                .any(|k| k.ends_with(&format!("/bases/{last_index:020}.json")))
        }),
        "{}",
        archiver(&node)
    );
    let keys = moto.keys("kept", &format!("{KEY}.archive/"));
    let bases: Vec<&String> = keys.iter().filter(|k| k.ends_with(".json")).collect();
    assert_eq!(bases.len(), 1, "one base kept: {keys:?}");
    assert!(
        !loads_key(&keys),
        "the script before the base went: {keys:?}"
    );
    let chunk_last = |k: &str| -> u64 {
        let name = k.rsplit('/').next().unwrap();
        let last = name
            .strip_suffix(".rlog.zst")
            .unwrap()
            .split_once('-')
            .unwrap()
            .1;
        last.parse().unwrap()
    };
    assert!(
        keys.iter()
            .filter(|k| k.contains("/log/"))
            .all(|k| chunk_last(k) > last_index),
        "no chunk the kept base covers: {keys:?}"
    );
    assert!(archiver(&node)["objects_deleted"].as_u64().unwrap() > 0);
    drop(node);
    let report = restore_to_index(&cfg, last_index, &tmp.path().join("end.db"));
    assert_eq!(report["digest"], last["digest"], "{report}");
}
