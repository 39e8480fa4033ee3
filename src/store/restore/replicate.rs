//! Replication of a load: staged content that takes effect at one log position on every
//! node. This is what each node does when it applies a load entry (the state machine calls
//! it; see [`super`] for how the leader stages and proposes).
//!
//! The bytes of a `/db/load` never travel through the Raft log. The leader stages the body
//! as `load-<id>.staged` in its data directory, then proposes one small entry,
//! [`LoadCommand`]: id, kind, size, CRC-32C, and the source's Raft address. Applying that
//! entry on any node:
//!
//! 1. finds `load-<id>.staged` (or `.pulled`) locally, or pulls it from the source (`GET
//!    /raft/staged/<id>` on the Raft port) into `load-<id>.part`, checks size and CRC, and
//!    renames it to `.pulled`, without an fsync: a pulled copy only feeds this node's apply,
//!    whose own result is made durable (the entry's commit, or the installed file's fsync),
//!    and startup removes `.pulled` files, so a crash means pulling again, never running a
//!    copy the crash cut short. Forcing 1.5 GB to disk before the apply could start cost the
//!    followers of a 1 GiB SQL load 11 s. When the source is unreachable it tries the other
//!    members, then retries with a backoff, for as long as it takes: the entry is committed,
//!    so applying it is the only way forward, and nothing has changed yet.
//! 2. **SQL text** runs statement by statement from the staged file, in the entry's one
//!    write transaction (`db::execute::run_sql_script`): all of it or nothing. (A SQL load
//!    into a blank database may instead install a database the leader built from the
//!    script: see [`super::build_once`]; that is step 3 with the built file.)
//! 3. **A database file** is moved (or, on a source whose file others may still pull,
//!    copied) to `load-<id>.install`. The source first waits, while every other member
//!    answers and for a bounded time, until they have all applied the entry
//!    ([`wait_for_members_to_apply`]); then nobody needs its file and it moves it too, which
//!    spares the disk a full extra write. In the new file the state table is replaced by one
//!    that records this entry's log id and the current membership, the file is fsynced, and
//!    it is swapped in with the written swap protocol
//!    ([`crate::db::Database::replace_with_file`]). A restart therefore sees either the old
//!    file (the entry replays) or the new one, which says it reflects the load entry. A moved
//!    file may be the only copy of the content left anywhere (a single node; a source whose
//!    members have all applied the entry), so a crash between the move and the swap keeps
//!    it: start-up leaves `.install` files, and the replay takes the content or the prepared
//!    database from there ([`recover_install`]) instead of pulling what nobody has.
//!
//! Invariants:
//! - Nothing changes before the content is local, complete and matches its digest.
//! - File names and what startup removes: [`super::files`].
//! - The source keeps its staged file until every member reports an applied index at or
//!   past the entry ([`retire_when_applied`]), at most [`STAGED_MAX_AGE`]. Before the entry
//!   is applied, `load-<id>.entry` records its index ([`record_entry`]), so a restart after
//!   the apply still removes or retires the file ([`resume_retirements`]).
//! - After a load, the node snapshots and purges its log up to the entry, so a node that
//!   joins later receives the new database as a snapshot, not the entry.
//!
//! IMPLEMENTATION CAVEATS: if the source dies for good before any other node has pulled
//! the content, the followers wait (retrying) and apply nothing after the entry; restarting
//! the source (its staged file survives) or restoring the member from a snapshot ends that.
//! The digest (CRC-32C) detects damage in transit, not a malicious peer: peers are trusted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::files::{
    entry_path, install_path, local_copy, part_path, pulled_path, staged_path, STAGED_MAX_AGE,
};
use crate::store::types::LoadCommand;
use crate::temp_file::TempFile;

/// Makes the content of `cmd` present and verified locally (`load-<id>.staged`, or
/// `load-<id>.pulled` from the source or another member), and returns its path. Retries until
/// it succeeds.
pub async fn obtain(
    client: &reqwest::Client,
    data_dir: &Path,
    cmd: &LoadCommand,
    shared: &crate::store::SharedState,
    own_addr: Option<&str>,
) -> PathBuf {
    let mut backoff = Duration::from_millis(200);
    let started = Instant::now();
    loop {
        if let Some(local) = local_copy(data_dir, &cmd.id) {
            return local;
        }
        // Re-read every round: the source may come back on a new address.
        let mut candidates = vec![cmd.source.clone()];
        for m in shared.member_addrs.lock().iter() {
            if !candidates.contains(m) && Some(m.as_str()) != own_addr {
                candidates.push(m.clone());
            }
        }
        for addr in &candidates {
            match pull(client, addr, data_dir, cmd).await {
                Ok(()) => {
                    tracing::info!(
                        id = %cmd.id,
                        bytes = cmd.size,
                        from = %addr,
                        secs = started.elapsed().as_secs_f64(),
                        "pulled staged load content"
                    );
                    return pulled_path(data_dir, &cmd.id);
                }
                Err(e) => tracing::warn!(id = %cmd.id, from = %addr, "pull staged load: {e:#}"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn pull(
    client: &reqwest::Client,
    addr: &str,
    data_dir: &Path,
    cmd: &LoadCommand,
) -> anyhow::Result<()> {
    let part = part_path(data_dir, &cmd.id);
    let guard = TempFile::new(part.clone());
    let resp = client
        .get(crate::tls::node().url(addr, &format!("/raft/staged/{}", cmd.id)))
        .send()
        .await
        .context("request")?;
    anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
    let file = tokio::fs::File::create(&part)
        .await
        .with_context(|| format!("create {}", part.display()))?;
    // The body arrives in chunks of a few KiB; each write to a tokio file is a round trip to
    // the blocking pool, so they are gathered into 1 MiB writes.
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let (mut size, mut crc) = (0u64, 0u32);
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("receive")?;
        size += chunk.len() as u64;
        anyhow::ensure!(
            size <= cmd.size,
            "more than the {} bytes announced",
            cmd.size
        );
        crc = crc32c::crc32c_append(crc, &chunk);
        file.write_all(&chunk).await.context("write")?;
    }
    anyhow::ensure!(
        size == cmd.size && crc == cmd.crc32c,
        "content does not match: {size} bytes crc {crc:08x}, expected {} bytes crc {:08x}",
        cmd.size,
        cmd.crc32c
    );
    file.flush().await.context("write")?;
    drop(file);
    // No fsync: see the module doc (a `.pulled` file does not survive a restart).
    tokio::fs::rename(&part, pulled_path(data_dir, &cmd.id))
        .await
        .context("rename into place")?;
    guard.persist();
    Ok(())
}

/// Why preparing a database for the swap failed.
pub enum PrepareError {
    /// The same on every node (the content is identical): the entry fails, nothing changes.
    Deterministic(String),
    /// This node's fault (I/O, disk full): the node must stop.
    Local(String),
}

/// Moves (or copies, when `keep` is set) the staged database to `install`, and records the
/// entry's log id and the membership in it, replacing any state table the upload carried.
/// `staged` may already be `install` (content found there after a crash, see
/// [`recover_install`]).
///
/// The change runs in one transaction with a rollback journal (`load-<id>.install-journal`)
/// and full syncs: a crash while preparing leaves the content as staged (SQLite rolls the
/// journal back when the file is next opened), and once the transaction commits the prepared
/// file is on disk. A moved file may be the only copy of the load there is, so neither state
/// may be lost.
pub fn prepare_install(
    staged: &Path,
    install: &Path,
    keep: bool,
    log_id: &crate::store::types::LogId,
    membership: &crate::store::types::StoredMembership,
    lineage: &str,
) -> Result<(), PrepareError> {
    let local = |what: &str, e: &dyn std::fmt::Display| PrepareError::Local(format!("{what}: {e}"));
    if staged != install {
        if keep {
            std::fs::copy(staged, install).map_err(|e| local("copy the staged database", &e))?;
        } else {
            std::fs::rename(staged, install).map_err(|e| local("move the staged database", &e))?;
        }
    }
    crate::failpoint::crash_point("restore::after_move_to_install");
    let sql = |e: raftlite_ffi::Error| {
        if crate::db::error::is_local_fault(&e) {
            PrepareError::Local(format!("prepare the loaded database: {e}"))
        } else {
            PrepareError::Deterministic(format!("prepare the loaded database: {e}"))
        }
    };
    let mut conn = raftlite_ffi::Connection::open(
        install,
        raftlite_ffi::OpenFlags::READ_WRITE | raftlite_ffi::OpenFlags::NO_MUTEX,
    )
    .map_err(sql)?;
    conn.set_trusted_schema(false).map_err(sql)?;
    conn.set_load_extension(false).map_err(sql)?;
    conn.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; BEGIN IMMEDIATE")
        .map_err(sql)?;
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", crate::db::STATE_TABLE))
        .map_err(sql)?;
    crate::store::applied_state::ensure_table(&conn).map_err(sql)?;
    crate::store::applied_state::write(&conn, log_id, Some(membership), Some(lineage))
        .map_err(|e| PrepareError::Deterministic(format!("record the applied index: {e:#}")))?;
    crate::failpoint::crash_point("restore::mid_prepare");
    conn.execute_batch("COMMIT").map_err(sql)?;
    conn.close().map_err(sql)?;
    std::fs::File::open(install)
        .and_then(|f| f.sync_all())
        .map_err(|e| local("fsync the loaded database", &e))?;
    crate::failpoint::crash_point("restore::after_prepare");
    Ok(())
}

/// What a `load-<id>.install` left by a crash holds ([`recover_install`]).
pub enum LeftInstall {
    /// The load's content as staged (its size and CRC-32C match the entry): prepare it again.
    Content(PathBuf),
    /// The database already prepared for this very entry: swap it in.
    Prepared(PathBuf),
}

/// Before a database load is applied: a `load-<id>.install` that a crash left between moving
/// the staged content there and the swap may be the only copy of the content anywhere (the
/// node was the only one to hold it, or the others have all applied the load and dropped
/// theirs). Opening it rolls back a preparation the crash cut short; then it is the content
/// (size and CRC-32C match the entry) or the prepared database (its state table records
/// `log_id`), and either is used. Anything else (a copy cut short while `.staged` still
/// exists, a pulled copy that did not reach the disk) is removed, and the content is found
/// again as usual.
pub fn recover_install(
    data_dir: &Path,
    cmd: &LoadCommand,
    log_id: &crate::store::types::LogId,
) -> Option<LeftInstall> {
    let install = install_path(data_dir, &cmd.id);
    let journal = crate::db::sibling(&install, "-journal");
    let discard = || {
        let _ = std::fs::remove_file(&install);
        let _ = std::fs::remove_file(&journal);
        None
    };
    if !install.exists() {
        return discard();
    }
    if local_copy(data_dir, &cmd.id).is_some() {
        // The staged content is still here (this was a copy of it): start again from there.
        return discard();
    }
    let recorded = (|| -> anyhow::Result<Option<crate::store::types::LogId>> {
        let mut conn = raftlite_ffi::Connection::open(
            &install,
            raftlite_ffi::OpenFlags::READ_WRITE | raftlite_ffi::OpenFlags::NO_MUTEX,
        )?;
        // The first read rolls back a hot journal.
        conn.query_text("PRAGMA schema_version")?;
        let recorded = crate::store::applied_state::read(&conn).map(|s| s.log_id);
        conn.close()?;
        recorded
    })();
    if super::build_once::size_and_crc(&install).ok() == Some((cmd.size, cmd.crc32c)) {
        tracing::info!(id = %cmd.id, "load content found in its install file after a restart");
        return Some(LeftInstall::Content(install));
    }
    match recorded {
        Ok(Some(recorded)) if recorded == *log_id => {
            tracing::info!(id = %cmd.id, "prepared load found after a restart");
            Some(LeftInstall::Prepared(install))
        }
        _ => discard(),
    }
}

/// Records, before the entry at `index` is applied, that it consumes `load-<id>.staged`
/// here (see [`resume_retirements`]). Not synced: losing it only leaves the staged file to
/// start-up's age limit.
pub fn record_entry(data_dir: &Path, id: &str, index: u64) {
    if let Err(e) = std::fs::write(entry_path(data_dir, id), index.to_string()) {
        tracing::warn!(id, "record the load entry of a staged file: {e}");
    }
}

/// At start-up: the staged files whose entry this node had applied when it stopped (a crash
/// between the apply and the file's removal, or while the source waited for the members) are
/// retired now, as the apply would have ([`retire_when_applied`]). The others wait for their
/// entry's replay.
pub fn resume_retirements(
    client: &reqwest::Client,
    data_dir: &Path,
    applied_index: u64,
    shared: &std::sync::Arc<crate::store::SharedState>,
    own_addr: Option<&str>,
) {
    for (id, index) in super::files::entries(data_dir) {
        if index > applied_index {
            continue;
        }
        tracing::info!(
            id,
            index,
            "retiring the staged content of a load applied before a restart"
        );
        tokio::spawn(retire_when_applied(
            client.clone(),
            data_dir.to_path_buf(),
            id,
            index,
            std::sync::Arc::clone(shared),
            own_addr.map(str::to_string),
        ));
    }
}

/// On the source: removes its staged file `load-<id>.staged` (and its entry record) once
/// every member has applied the load entry (asked over `GET /cluster/node`; the membership is
/// re-read every round, as members may move to new addresses), or after [`STAGED_MAX_AGE`].
pub async fn retire_when_applied(
    client: reqwest::Client,
    data_dir: PathBuf,
    id: String,
    index: u64,
    shared: std::sync::Arc<crate::store::SharedState>,
    own_addr: Option<String>,
) {
    let staged = staged_path(&data_dir, &id);
    let started = Instant::now();
    while started.elapsed() < STAGED_MAX_AGE {
        if members_applied(&client, &shared, own_addr.as_deref(), index).await == Members::Applied {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!(file = %staged.display(), "retiring staged load content");
    crate::db::disk::remove_in_background(vec![staged, entry_path(&data_dir, &id)]);
}

/// On the source of a database load, before it applies the entry itself: waits until every
/// other member has applied it (so each has pulled its own copy), while all of them answer and
/// for at most `limit`. True means nobody needs the source's staged file any more, so the
/// source may move it into place instead of copying it (a full extra write of the database on
/// the disk the followers are pulling to).
pub async fn wait_for_members_to_apply(
    client: &reqwest::Client,
    shared: &crate::store::SharedState,
    own_addr: Option<&str>,
    index: u64,
    limit: Duration,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        match members_applied(client, shared, own_addr, index).await {
            Members::Applied => return true,
            Members::Unreachable => return false,
            Members::Behind => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

#[derive(Debug, PartialEq, Eq)]
enum Members {
    /// Every other member reports an applied index at or past the entry.
    Applied,
    /// Some member answers with an older index.
    Behind,
    /// Some member does not answer.
    Unreachable,
}

async fn members_applied(
    client: &reqwest::Client,
    shared: &crate::store::SharedState,
    own_addr: Option<&str>,
    index: u64,
) -> Members {
    let members: Vec<String> = shared
        .applied
        .lock()
        .membership
        .membership()
        .nodes()
        .map(|(_, n)| n.raft_addr.clone())
        .filter(|a| Some(a.as_str()) != own_addr)
        .collect();
    let mut verdict = Members::Applied;
    for addr in &members {
        let applied = async {
            let r = client
                .get(crate::tls::node().url(addr, "/cluster/node"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            let bytes = r.bytes().await.ok()?;
            let report: crate::store::NodeReport = serde_json::from_slice(&bytes).ok()?;
            Some(report.applied_index)
        }
        .await;
        match applied {
            None => return Members::Unreachable,
            Some(a) if a < index => verdict = Members::Behind,
            Some(_) => {}
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{LogId, StoredMembership};

    fn log_id(index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(1, 1), index)
    }

    /// A database file at `path` with one table, and the load entry that names it.
    fn content(path: &Path, id: &str) -> LoadCommand {
        let conn = raftlite_ffi::Connection::open(
            path,
            raftlite_ffi::OpenFlags::READ_WRITE | raftlite_ffi::OpenFlags::CREATE,
        )
        .unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        drop(conn);
        let (size, crc32c) = super::super::build_once::size_and_crc(path).unwrap();
        LoadCommand {
            id: id.into(),
            kind: crate::db::restore_file::LoadKind::Sqlite,
            size,
            crc32c,
            source: "127.0.0.1:1".into(),
            shared: false,
        }
    }

    fn verdict(left: Option<LeftInstall>) -> &'static str {
        match left {
            None => "none",
            Some(LeftInstall::Content(_)) => "content",
            Some(LeftInstall::Prepared(_)) => "prepared",
        }
    }

    /// What a crash may leave in `load-<id>.install`, and what the replay of the entry makes
    /// of it: the content as staged, the database prepared for this entry, or (a copy whose
    /// staged original is still there, a file that is neither) nothing, removed.
    #[test]
    fn an_install_file_left_by_a_crash_is_used_only_when_it_is_the_content_or_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let install = install_path(d, "7");
        let cmd = content(&install, "7");
        assert_eq!(verdict(recover_install(d, &cmd, &log_id(5))), "content");
        assert!(install.exists());

        let membership = StoredMembership::default();
        prepare_install(&install, &install, false, &log_id(5), &membership, "test")
            .unwrap_or_else(|_| panic!("prepare"));
        assert!(!crate::db::sibling(&install, "-journal").exists());
        assert_eq!(verdict(recover_install(d, &cmd, &log_id(5))), "prepared");
        // Prepared for another entry: of no use to this one.
        assert_eq!(verdict(recover_install(d, &cmd, &log_id(6))), "none");
        assert!(!install.exists());

        // The staged original is still here: the install file was a copy, maybe cut short.
        content(&install, "7");
        std::fs::write(staged_path(d, "7"), b"the staged original").unwrap();
        assert_eq!(verdict(recover_install(d, &cmd, &log_id(5))), "none");
        assert!(!install.exists());
        std::fs::remove_file(staged_path(d, "7")).unwrap();

        // Neither the content nor a prepared database: a pulled copy that did not reach the
        // disk whole.
        std::fs::write(&install, b"not what was staged").unwrap();
        assert_eq!(verdict(recover_install(d, &cmd, &log_id(5))), "none");
        assert!(!install.exists());
        assert_eq!(verdict(recover_install(d, &cmd, &log_id(5))), "none");
    }
}
