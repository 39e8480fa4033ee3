//! Free disk space, and a writer that keeps `-disk-reserve` bytes free while it writes.
//!
//! The reserve protects the Raft log and the WAL: a node whose disk fills at apply time must
//! stop, so bulk files that are ours to refuse (backup copies, staged loads) stop first. The
//! check is a `statvfs` every [`CHECK_EVERY`] bytes, so a file never eats more than that
//! into the reserve; the refusal is an [`io::ErrorKind::StorageFull`] error, the same kind
//! the OS reports for a full disk (ENOSPC), so callers treat both alike.
//!
//! Bulk files are also removed off the caller's thread ([`remove_in_background`]): unlinking
//! a 1 GiB file takes 0.1 s with its pages still dirty and up to 0.8 s once written back, and
//! on an HTTP worker or a Raft task that time stalls every request the thread serves.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Files at least this large are removed by a thread of their own (see the module doc);
/// smaller ones unlink in well under a millisecond and go at once.
pub const BACKGROUND_REMOVE_FROM: u64 = 64 << 20;

/// Removes `paths`, ignoring files already gone. When one of them is at least
/// [`BACKGROUND_REMOVE_FROM`] bytes, all are removed on a short-lived thread and this returns
/// at once (or here, if no thread can be started).
pub fn remove_in_background(paths: Vec<PathBuf>) {
    let remove = |paths: &[PathBuf]| {
        for p in paths {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("remove {}: {e}", p.display()),
            }
        }
    };
    let large = paths
        .iter()
        .any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.len() >= BACKGROUND_REMOVE_FROM));
    if !large {
        return remove(&paths);
    }
    let mine = paths.clone();
    let spawned = std::thread::Builder::new()
        .name("remove-file".into())
        .spawn(move || remove(&mine));
    if spawned.is_err() {
        remove(&paths);
    }
}

/// Bytes written between two free-space checks.
pub const CHECK_EVERY: u64 = 16 << 20;

/// Bytes available to this (unprivileged) process on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Ok when `dir`'s file system has room for `needed` more bytes above `reserve`; otherwise a
/// `StorageFull` error that says how much is free and needed.
pub fn check_room(dir: &Path, needed: u64, reserve: u64, what: &str) -> io::Result<()> {
    let free = free_bytes(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("check free space in {}: {e}", dir.display()),
        )
    })?;
    if free < needed.saturating_add(reserve) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "not enough disk space for {what} in {}: {free} bytes free, {needed} needed \
                 and {reserve} must stay free (-disk-reserve)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// A writer that fails with `StorageFull` once free space in `dir` falls below `reserve`.
pub struct ReserveWriter<W: Write> {
    inner: W,
    dir: PathBuf,
    reserve: u64,
    since_check: u64,
}

impl<W: Write> ReserveWriter<W> {
    pub fn new(inner: W, dir: impl Into<PathBuf>, reserve: u64) -> ReserveWriter<W> {
        ReserveWriter {
            inner,
            dir: dir.into(),
            reserve,
            // Check before the first byte too.
            since_check: CHECK_EVERY,
        }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for ReserveWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.since_check >= CHECK_EVERY {
            check_room(&self.dir, 0, self.reserve, "more load data")?;
            self.since_check = 0;
        }
        let n = self.inner.write(buf)?;
        self.since_check += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_small_files_at_once_and_large_ones_soon() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        let large = dir.path().join("large");
        std::fs::write(&small, b"x").unwrap();
        // Sparse: the size decides, not the blocks.
        std::fs::File::create(&large)
            .unwrap()
            .set_len(BACKGROUND_REMOVE_FROM)
            .unwrap();
        remove_in_background(vec![small.clone(), dir.path().join("never-there")]);
        assert!(!small.exists());
        remove_in_background(vec![large.clone()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while large.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!large.exists());
    }

    #[test]
    fn refuses_when_the_reserve_is_larger_than_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert!(check_room(dir.path(), 1, 0, "x").is_ok());
        let e = check_room(dir.path(), 0, free.saturating_mul(2).max(1 << 60), "x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(e.to_string().contains("-disk-reserve"), "{e}");

        let mut w = ReserveWriter::new(Vec::new(), dir.path(), 1 << 60);
        let e = w.write(b"abc").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        let mut w = ReserveWriter::new(Vec::new(), dir.path(), 0);
        w.write_all(b"abc").unwrap();
        assert_eq!(w.into_inner(), b"abc");
    }
}
