//! Temporary files: the one guard that owns a temporary file's life, and the one way to name
//! temporary files and unguessable ids.
//!
//! Invariant: a file created for a copy, an upload, a staged load or a received snapshot
//! belongs to a [`TempFile`] from the moment it is named until it is either renamed into
//! place by its owner ([`TempFile::persist`]) or dropped, which removes it (with the rollback
//! journal SQLite may have left beside it) on a thread of its own: the file may be a whole
//! database, and the one dropping it is usually an async worker serving other requests.

use std::path::{Path, PathBuf};

/// A file removed when dropped, unless persisted.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Takes charge of `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> TempFile {
        TempFile {
            path: path.into(),
            keep: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `dest`, which the guard then owns instead.
    pub fn rename_to(&mut self, dest: impl Into<PathBuf>) -> std::io::Result<()> {
        let dest = dest.into();
        std::fs::rename(&self.path, &dest)?;
        self.path = dest;
        Ok(())
    }

    /// Removes the file now, while the guard may still be shared (a failed copy frees its
    /// disk before the last of its waiters lets go); dropping the guard later does nothing more.
    pub fn remove_now(&self) {
        let journal = crate::db::sibling(&self.path, "-journal");
        crate::db::disk::remove_in_background(vec![self.path.clone(), journal]);
    }

    /// Keeps the file: its owner has put it where it belongs.
    pub fn persist(mut self) -> PathBuf {
        self.keep = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            self.remove_now();
        }
    }
}

/// A name part unique within this process and across its restarts: the process id, the
/// clock in nanoseconds and a counter. Only digits and dashes, so it is safe in a path and
/// checkable when a client names it back (`store::restore::files::valid_id`).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// 32 hex digits from SQLite's CSPRNG: an id that grants access to whoever holds it (a
/// console job), so it must not be guessable, unlike [`unique_suffix`].
pub fn unguessable_id() -> String {
    let mut b = [0u8; 16];
    raftlite_ffi::randomness(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_guard_removes_its_file_and_a_persisted_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let dropped = dir.path().join("a.db");
        std::fs::write(&dropped, b"x").unwrap();
        std::fs::write(crate::db::sibling(&dropped, "-journal"), b"j").unwrap();
        drop(TempFile::new(&dropped));
        let kept = dir.path().join("b.db");
        std::fs::write(&kept, b"x").unwrap();
        let mut guard = TempFile::new(&kept);
        let renamed = dir.path().join("c.db");
        guard.rename_to(&renamed).unwrap();
        assert_eq!(guard.persist(), renamed);
        // Removal runs on a thread of its own: wait for it, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while dropped.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!dropped.exists());
        assert!(!crate::db::sibling(&dropped, "-journal").exists());
        assert!(renamed.exists() && !kept.exists());
    }

    #[test]
    fn names_do_not_repeat() {
        let a: std::collections::HashSet<String> = (0..1000).map(|_| unique_suffix()).collect();
        assert_eq!(a.len(), 1000);
        assert_eq!(unguessable_id().len(), 32);
        assert_ne!(unguessable_id(), unguessable_id());
    }
}
