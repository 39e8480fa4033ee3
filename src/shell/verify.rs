//! `raftlite verify FILE [--etag TAG] [--url BACKUP_URL] [--user USER:PASS] [--insecure]`:
//! checks a downloaded backup, locally and, when told where it came from, against the node.
//!
//! Local checks, always: the file's SHA-256 (what `Repr-Digest` names); for a SQLite file
//! `PRAGMA integrity_check`; for SQL text, that it builds into a new database, through the
//! same runner and gate as a SQL load on a node (so a hostile file can do no more here than
//! there); then the content hash of the result (the one `GET /status?digest` reports: the
//! schema and every row, raftlite's state table left out). A gzip or zstd file is checked as
//! the file it decompresses to, the digest as downloaded.
//!
//! Against the node (`--url`, the URL the file was downloaded from): `HEAD` with
//! `Want-Repr-Digest` gives the current tag and, for a binary backup, its SHA-256; when the
//! tag is the file's (`--etag`), the digests must be equal. `GET /status?digest` gives the
//! node's content hash at its applied index; when that index is the file's (the number
//! that starts its tag), the content hashes must be equal. A check that cannot be made says
//! why and does not fail the run.
//!
//! Exit status: 0 every check made passed, 1 one failed, 2 wrong usage.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use raftlite_ffi::{Connection, OpenFlags};
use sha2::Digest as _;

use crate::db::digest::content_digest;
use crate::db::STATE_TABLE;

const USAGE: &str =
    "usage: raftlite verify FILE [--etag TAG] [--url BACKUP_URL] [--user USER:PASS] [--insecure]";

struct Args {
    file: PathBuf,
    etag: Option<String>,
    url: Option<String>,
    user: Option<String>,
    insecure: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut file = None;
    let (mut etag, mut url, mut user, mut insecure) = (None, None, None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--etag" => etag = Some(value("--etag")?),
            "--url" => url = Some(value("--url")?),
            "--user" => user = Some(value("--user")?),
            "--insecure" => insecure = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if file.is_none() => file = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok(Args {
        file: file.ok_or("no FILE")?,
        etag: etag.map(|t| quoted(&t)),
        url,
        user,
        insecure,
    })
}

/// A tag as HTTP spells it, quotes included (a shell often strips them).
fn quoted(tag: &str) -> String {
    let t = tag.trim();
    if t.starts_with('"') {
        t.to_owned()
    } else {
        format!("\"{t}\"")
    }
}

/// Runs `raftlite verify` with the arguments after `verify`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("raftlite verify: {e}\n{USAGE}");
            return 2;
        }
    };
    let mut report = Report::default();
    if let Err(e) = verify(&args, &mut report) {
        report.fail("verify", &format!("{e:#}"));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in &report.lines {
        let _ = writeln!(out, "{line}");
    }
    if report.failed {
        let _ = writeln!(out, "FAILED");
        1
    } else {
        let _ = writeln!(out, "OK");
        0
    }
}

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failed: bool,
}

impl Report {
    fn pass(&mut self, check: &str, detail: &str) {
        self.lines.push(format!("ok      {check}: {detail}"));
    }
    fn fail(&mut self, check: &str, detail: &str) {
        self.failed = true;
        self.lines.push(format!("FAILED  {check}: {detail}"));
    }
    fn skip(&mut self, check: &str, why: &str) {
        self.lines.push(format!("skipped {check}: {why}"));
    }
}

/// What the local checks found.
struct Local {
    sha256_b64: String,
    content_hash: String,
    binary: bool,
}

fn verify(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let local = check_local(&args.file, &scratch.0, report)?;
    let Some(url) = &args.url else {
        report.skip("node", "no --url: checked the file alone");
        return Ok(());
    };
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(args.insecure)
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .context("make the HTTP client")?;
    let with_auth = |rb: reqwest::blocking::RequestBuilder| match &args.user {
        Some(u) => {
            let (name, pass) = u.split_once(':').unwrap_or((u, ""));
            rb.basic_auth(name, Some(pass))
        }
        None => rb,
    };
    // The node's current tag, and for a binary backup the SHA-256 of its bytes.
    // A SQL or compressed backup is hashed by making it again (the same content makes the
    // same bytes): asked only when the tag says the node still has that content.
    let mut head = client.head(url);
    if local.binary || args.etag.is_some() {
        head = head.header("Want-Repr-Digest", "sha-256=10");
    }
    let head = with_auth(head)
        .send()
        .with_context(|| format!("HEAD {url}"))?;
    if !head.status().is_success() {
        bail!("HEAD {url}: {}", head.status());
    }
    let header = |name: &str| {
        head.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let node_tag = header("etag");
    match (&args.etag, &node_tag) {
        (None, _) => report.skip("digest", "no --etag: which backup the file is is unknown"),
        (Some(_), None) => report.skip("digest", "the node sends no tag"),
        (Some(file_tag), Some(now)) if file_tag != now => report.skip(
            "digest",
            &format!("the node's backup is now {now}, the file is {file_tag}"),
        ),
        (Some(_), _) => match header("repr-digest") {
            Some(d) if d == local.sha256_b64 => report.pass("digest", "equal to the node's"),
            Some(d) => report.fail(
                "digest",
                &format!("the node says {d}, the file is {}", local.sha256_b64),
            ),
            None => report.skip("digest", "the node gives no digest for this format"),
        },
    }
    // The content hash at the node's applied index.
    let index_of_file = args.etag.as_deref().and_then(tag_index);
    let base = url.split("/db/backup").next().unwrap_or(url);
    let status = with_auth(client.get(format!("{base}/status?digest")))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .with_context(|| format!("GET {base}/status?digest"))?;
    let status: serde_json::Value =
        serde_json::from_str(&status).context("the node's /status is not JSON")?;
    let node_digest = &status["store"]["db_digest"];
    let node_index = node_digest["applied_index"].as_u64();
    match (index_of_file, node_index, node_digest["digest"].as_str()) {
        (Some(f), Some(n), Some(hash)) if f == n => {
            if hash == local.content_hash {
                report.pass("content", &format!("equal to the node's at index {n}"));
            } else {
                report.fail(
                    "content",
                    &format!(
                        "the node has {hash} at index {n}, the file {}",
                        local.content_hash
                    ),
                );
            }
        }
        (Some(f), Some(n), Some(_)) => report.skip(
            "content",
            &format!("the node is at index {n}, the file at {f}"),
        ),
        (None, _, _) => report.skip("content", "no --etag: the file's index is unknown"),
        _ => report.skip("content", "the node reports no content hash"),
    }
    Ok(())
}

/// A private scratch directory, removed with what it holds.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "raftlite-verify-{}",
            crate::temp_file::unique_suffix()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Raft index a backup tag starts with (`"N-…"`).
fn tag_index(tag: &str) -> Option<u64> {
    tag.trim_matches('"').split('-').next()?.parse().ok()
}

fn check_local(file: &Path, scratch: &Path, report: &mut Report) -> anyhow::Result<Local> {
    let mut f = std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut f, &mut hasher).with_context(|| format!("read {}", file.display()))?;
    let sha256_b64 = crate::store::backup::repr_digest(&hasher.finalize());
    report.pass("read", &format!("{} ({sha256_b64})", file.display()));
    let mut magic = [0u8; 16];
    let n = read_prefix(file, &mut magic)?;
    // A gzip file (`compress`): checked as what it decompresses to.
    let plain = if magic[..n].starts_with(&[0x1f, 0x8b]) {
        let out = scratch.join("decompressed");
        let mut dec = flate2::read::GzDecoder::new(BufReader::new(std::fs::File::open(file)?));
        let mut w = std::fs::File::create(&out)?;
        std::io::copy(&mut dec, &mut w).context("decompress the gzip file")?;
        report.pass("gzip", "decompressed");
        out
    } else if magic[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let out = scratch.join("decompressed");
        let mut dec = zstd::stream::read::Decoder::new(std::fs::File::open(file)?)
            .context("read the zstd file")?;
        let mut w = std::fs::File::create(&out)?;
        std::io::copy(&mut dec, &mut w).context("decompress the zstd file")?;
        report.pass("zstd", "decompressed");
        out
    } else {
        file.to_path_buf()
    };
    let n = read_prefix(&plain, &mut magic)?;
    let binary = magic[..n] == *b"SQLite format 3\0";
    let db = if binary {
        let conn = Connection::open(&plain, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX)?;
        let check = conn
            .query_text("PRAGMA integrity_check")?
            .unwrap_or_default();
        if check == "ok" {
            report.pass("integrity", "PRAGMA integrity_check: ok");
        } else {
            report.fail("integrity", &format!("PRAGMA integrity_check: {check}"));
        }
        drop(conn);
        plain
    } else {
        let built = scratch.join("built.db");
        let layout = crate::store::types::BlankLayout {
            page_size: 4096,
            auto_vacuum: 0,
            encoding: "UTF-8".into(),
        };
        let outcome = crate::store::restore::build_once::build(
            &plain,
            &built,
            &layout,
            crate::db::request::ApplyEnv::default(),
            &crate::db::DbSettings::default(),
            u64::MAX / 2,
        )?;
        match outcome {
            crate::db::execute::ScriptOutcome::Done { statements, .. } => {
                report.pass("sql", &format!("{statements} statements build a database"));
            }
            other => bail!(
                "the SQL text does not build a database: {:?}",
                other.into_result()
            ),
        }
        built
    };
    let conn = Connection::open(&db, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX)?;
    conn.execute_batch("BEGIN")?;
    let digest = content_digest(&conn, STATE_TABLE)?;
    let _ = conn.execute_batch("ROLLBACK");
    report.pass(
        "content hash",
        &format!(
            "{} ({} tables, {} rows)",
            digest.digest, digest.tables, digest.rows
        ),
    );
    Ok(Local {
        sha256_b64,
        content_hash: digest.digest,
        binary,
    })
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_arguments() {
        assert_eq!(tag_index("\"12-00ff\""), Some(12));
        assert_eq!(tag_index("nope"), None);
        assert_eq!(quoted("12-ab"), "\"12-ab\"");
        assert_eq!(quoted("\"12-ab\""), "\"12-ab\"");
        let a = parse(&["f.db".into(), "--etag".into(), "3-x".into()]).unwrap();
        assert_eq!(a.etag.as_deref(), Some("\"3-x\""));
        assert!(parse(&[]).is_err());
        assert!(parse(&["f".into(), "--etag".into()]).is_err());
        assert!(parse(&["f".into(), "--bogus".into()]).is_err());
    }
}
