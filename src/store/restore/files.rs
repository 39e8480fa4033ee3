//! The restore's files in the data directory: their names, what each name means, and what
//! startup removes. Every other part of `store::restore` names its files through here.
//!
//! - `load-<id>.part`: being written (an upload being staged, a pull, a database being built
//!   from a SQL load; or a console upload, validated and waiting for its confirmation in
//!   [`super::pending`]). Its [`crate::temp_file::TempFile`] guard removes it if the work
//!   stops.
//! - `load-<id>.staged`: the source's content, complete, verified and fsynced; the entry
//!   names it, and other members pull it from here.
//! - `load-<id>.pulled`: a copy pulled by this process, complete and verified, maybe not on
//!   disk yet (see [`super::replicate`]).
//! - `load-<id>.install`: a database being prepared for the swap, moved (or copied) from the
//!   staged or pulled content; `load-<id>.install-journal` is its rollback journal while it
//!   is prepared. When it was moved it may be the only copy of the content there is, so a
//!   crash before the swap must not lose it: the entry's replay finds it again
//!   ([`super::replicate::recover_install`]).
//!
//! - `load-<id>.entry`: the log index of the entry that consumes `load-<id>.staged` on this
//!   node, written before it is applied, so that a node restarted after the entry was applied
//!   (the staged file not yet removed or retired) still retires it
//!   ([`super::replicate::resume_retirements`]).
//!
//! - `archive-load-<index>.content` and `archive-load-<index>.json`: the content of the load
//!   entry at `<index>` (20 digits), kept for the archiver (`archive`) on the leader while it
//!   archives: a hard link to the staged or pulled file, made before the apply, and its
//!   [`ArchivedLoad`] record, written after the link (a content file without its record is
//!   not one). The archiver removes both once the content is in storage, or when this node
//!   no longer leads; startup keeps them (the archiver ships them after a restart).
//!
//! Startup removes `.part` and `.pulled` files, and `.staged`, `.entry` and `.install` files
//! (with their journals) older than [`STAGED_MAX_AGE`]: a restarted source must still serve
//! its recent staged files, and a restarted node must still install its recent install file.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A staged file older than this is removed at startup and by the source's retirement task.
pub const STAGED_MAX_AGE: Duration = Duration::from_secs(3600);

const PREFIX: &str = "load-";

const ARCHIVED_PREFIX: &str = "archive-load-";

/// What the archiver needs to know of a load's content it was kept for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedLoad {
    /// The load entry's log id.
    pub log_id: crate::store::node_info::LogId,
    pub kind: crate::db::restore_file::LoadKind,
    /// The content's size and CRC-32C, as the entry records them.
    pub size: u64,
    pub crc32c: u32,
    /// The lineage a database file starts (the history whose first base it is).
    pub lineage: Option<String>,
    /// The lineage a database file ends (the history that gets its entries up to the load
    /// before the new one starts; `None`: a database no write had touched, or a record an
    /// older version kept).
    #[serde(default)]
    pub ends_lineage: Option<String>,
    /// When it was applied here, by this node's clock (Unix ms): the leader's, since only a
    /// leader keeps loads. A database file's load carries no clock of its own.
    pub kept_ms: i64,
}

impl ArchivedLoad {
    pub fn now(
        log_id: crate::store::node_info::LogId,
        cmd: &crate::store::types::LoadCommand,
        lineage: Option<String>,
        ends_lineage: Option<String>,
    ) -> ArchivedLoad {
        let kept_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        ArchivedLoad {
            log_id,
            kind: cmd.kind,
            size: cmd.size,
            crc32c: cmd.crc32c,
            lineage,
            ends_lineage,
            kept_ms,
        }
    }
}

/// `archive-load-<index>.content`: a load's content kept for the archiver.
pub fn archived_load_content(data_dir: &Path, index: u64) -> PathBuf {
    data_dir.join(format!("{ARCHIVED_PREFIX}{index:020}.content"))
}

fn archived_load_record(data_dir: &Path, index: u64) -> PathBuf {
    data_dir.join(format!("{ARCHIVED_PREFIX}{index:020}.json"))
}

/// Keeps `content` (a hard link, no copy) for the archiver, as the load `load` describes.
/// False, with a warning, when it could not: the archiver then takes a base after the load
/// instead, as it does for a load it finds no content for.
pub fn keep_load_for_archive(data_dir: &Path, content: &Path, load: &ArchivedLoad) -> bool {
    let index = load.log_id.index;
    let (link, record) = (
        archived_load_content(data_dir, index),
        archived_load_record(data_dir, index),
    );
    // A replay after a crash keeps it again.
    let _ = std::fs::remove_file(&record);
    let _ = std::fs::remove_file(&link);
    let kept = std::fs::hard_link(content, &link)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(std::fs::write(&record, serde_json::to_vec(load)?)?));
    match kept {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                index,
                "could not keep the load's content for the archive: {e}"
            );
            forget_archived_load(data_dir, index);
            false
        }
    }
}

/// The loads kept for the archiver of entries up to `applied` (the applied index, read
/// before: a load is kept before its entry counts as applied, so one past it may be half
/// made), by entry index. Up to `applied`, a record that cannot be read, or a content file
/// without its record (a crash between the two), is removed.
pub fn archived_loads(data_dir: &Path, applied: u64) -> Vec<ArchivedLoad> {
    let Ok(dir) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut loads: Vec<ArchivedLoad> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(ARCHIVED_PREFIX)?;
            if let Some(index) = rest.strip_suffix(".content") {
                // A crash between the link and its record.
                let index: u64 = index.parse().ok()?;
                if index <= applied && !archived_load_record(data_dir, index).exists() {
                    let _ = std::fs::remove_file(e.path());
                }
                return None;
            }
            let index: u64 = rest.strip_suffix(".json")?.parse().ok()?;
            if index > applied {
                return None;
            }
            let read = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<ArchivedLoad>(&b).ok())
                .filter(|l| l.log_id.index == index)
                .filter(|_| archived_load_content(data_dir, index).exists());
            if read.is_none() {
                forget_archived_load(data_dir, index);
            }
            read
        })
        .collect();
    loads.sort_by_key(|l| l.log_id.index);
    loads
}

/// Removes every load kept for the archiver (this node does not ship them).
pub fn forget_archived_loads(data_dir: &Path) {
    for load in archived_loads(data_dir, u64::MAX) {
        forget_archived_load(data_dir, load.log_id.index);
    }
}

/// Removes a kept load (its record first: without it the content is not one).
pub fn forget_archived_load(data_dir: &Path, index: u64) {
    let _ = std::fs::remove_file(archived_load_record(data_dir, index));
    let _ = std::fs::remove_file(archived_load_content(data_dir, index));
}

/// `load-<id>.staged`: complete, verified content.
pub fn staged_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(format!("{PREFIX}{id}.staged"))
}

/// `load-<id>.pulled`: content pulled from another member by this process (not fsynced).
pub fn pulled_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(format!("{PREFIX}{id}.pulled"))
}

/// The local copy of `id` that can be served to other members: staged here, or pulled.
pub fn local_copy(data_dir: &Path, id: &str) -> Option<PathBuf> {
    [staged_path(data_dir, id), pulled_path(data_dir, id)]
        .into_iter()
        .find(|p| p.exists())
}

/// `load-<id>.part`: content being received.
pub fn part_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(format!("{PREFIX}{id}.part"))
}

/// `load-<id>.install`: a database being prepared for the swap.
pub fn install_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(format!("{PREFIX}{id}.install"))
}

/// `load-<id>.entry`: the index of the entry that consumes `load-<id>.staged` here.
pub fn entry_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(format!("{PREFIX}{id}.entry"))
}

/// The ids and entry indexes of the `load-<id>.entry` records in `data_dir`.
pub fn entries(data_dir: &Path) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name
                .strip_prefix(PREFIX)?
                .strip_suffix(".entry")?
                .to_string();
            let index = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((id, index))
        })
        .collect()
}

/// A staged id is what [`crate::temp_file::unique_suffix`] makes: digits and dashes. The
/// check keeps a request for `/raft/staged/<id>` inside the data directory.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 80 && id.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// Removes what a crash left behind (see the invariants above).
pub fn clean_at_startup(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // An auto-restore download and the archiver's scratch files (`auto_backup::restore`,
        // `archive`) are only ever `.part` files of one run.
        if (name.starts_with("auto-restore-") || name.starts_with("archive-"))
            && name.ends_with(".part")
        {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        if !name.starts_with(PREFIX) {
            continue;
        }
        let kept_while_young = name.ends_with(".staged")
            || name.ends_with(".entry")
            || name.ends_with(".install")
            || name.ends_with(".install-journal");
        let stale = kept_while_young
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STAGED_MAX_AGE);
        if name.ends_with(".part") || name.ends_with(".pulled") || stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_keeps_recent_staged_files_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for p in [
            staged_path(d, "1"),
            pulled_path(d, "2"),
            part_path(d, "3"),
            install_path(d, "4"),
        ] {
            std::fs::write(&p, b"x").unwrap();
        }
        std::fs::write(d.join("auto-restore-5.part"), b"x").unwrap();
        std::fs::write(d.join("archive-6.part"), b"x").unwrap();
        std::fs::write(d.join("archive-notes.txt"), b"x").unwrap();
        clean_at_startup(d);
        assert!(!d.join("auto-restore-5.part").exists());
        assert!(!d.join("archive-6.part").exists());
        assert!(d.join("archive-notes.txt").exists(), "not ours");
        // The source's upload is durable and others may still pull it; a pulled copy was
        // never fsynced, so a crash may have cut it short: it is pulled again. An install
        // file may be the only copy of its load: the entry's replay decides.
        assert!(staged_path(d, "1").exists());
        assert!(!pulled_path(d, "2").exists());
        assert!(!part_path(d, "3").exists());
        assert!(install_path(d, "4").exists());
        assert_eq!(local_copy(d, "1"), Some(staged_path(d, "1")));
        assert_eq!(local_copy(d, "2"), None);
        std::fs::write(pulled_path(d, "2"), b"x").unwrap();
        assert_eq!(local_copy(d, "2"), Some(pulled_path(d, "2")));
    }
}
