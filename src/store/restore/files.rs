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
//! Startup removes `.part` and `.pulled` files, and `.staged`, `.entry` and `.install` files
//! (with their journals) older than [`STAGED_MAX_AGE`]: a restarted source must still serve
//! its recent staged files, and a restarted node must still install its recent install file.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A staged file older than this is removed at startup and by the source's retirement task.
pub const STAGED_MAX_AGE: Duration = Duration::from_secs(3600);

const PREFIX: &str = "load-";

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
