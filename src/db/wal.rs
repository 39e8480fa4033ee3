//! How much of the WAL is in use, read from the wal-index header in the `-shm` file.
//!
//! The WAL file's length says little: SQLite reuses the file from its start after a
//! checkpoint and never shrinks it, so a 30 MB file may hold 10 live frames. What a long
//! reader pins is the frames appended after its snapshot began, and the wal-index header
//! counts them: `mxFrame` (frames in the WAL, u32 at offset 16, native byte order) and
//! `szPage` (u16 at offset 14; 1 means 65536). The layout is SQLite's documented WAL-index
//! format (<https://www.sqlite.org/walformat.html>); we only read it, as any other process
//! may.

use std::io::{self, Read};
use std::path::Path;

/// Bytes of a WAL frame header (before the page).
const FRAME_HEADER: u64 = 24;

/// The WAL's use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalUse {
    /// Valid frames in the WAL (`mxFrame`).
    pub frames: u32,
    /// Bytes per frame: the page plus its frame header.
    pub frame_bytes: u64,
}

/// Reads the wal-index header from `shm`; None when there is no `-shm` file or it is too
/// short to hold a header (no WAL in use).
pub fn wal_use(shm: &Path) -> io::Result<Option<WalUse>> {
    let Some(head) = read_header::<20>(shm)? else {
        return Ok(None);
    };
    let page = match u16::from_ne_bytes([head[14], head[15]]) {
        1 => 65536,
        n => u64::from(n),
    };
    Ok(Some(WalUse {
        frames: u32_at(&head, 16),
        frame_bytes: page + FRAME_HEADER,
    }))
}

/// The first `N` bytes of `shm`; None when there is no `-shm` file or it is shorter (no WAL
/// in use).
fn read_header<const N: usize>(shm: &Path) -> io::Result<Option<[u8; N]>> {
    let mut head = [0u8; N];
    let mut f = match std::fs::File::open(shm) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match f.read_exact(&mut head) {
        Ok(()) => Ok(Some(head)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The native-endian u32 at `at` (the wal-index is in the host's byte order).
fn u32_at(head: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]])
}

/// Frames in the WAL not yet copied into the database file (`mxFrame` minus the checkpoint
/// header's `nBackfill`, u32 at offset 96); 0 when there is no WAL in use.
pub fn frames_to_backfill(shm: &Path) -> io::Result<u32> {
    Ok(read_header::<100>(shm)?.map_or(0, |head| {
        u32_at(&head, 16).saturating_sub(u32_at(&head, 96))
    }))
}

/// WAL bytes appended since `start` was read: what a reader whose snapshot began at `start`
/// keeps from being checkpointed. If the WAL restarted since (fewer frames than at `start`),
/// everything in it came after.
pub fn grown_since(start: Option<WalUse>, now: Option<WalUse>) -> u64 {
    let Some(now) = now else { return 0 };
    let before = start.map_or(0, |s| s.frames);
    let frames = if now.frames >= before {
        now.frames - before
    } else {
        now.frames
    };
    u64::from(frames) * now.frame_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite_ffi::{Connection, OpenFlags};

    fn shm(db: &Path) -> std::path::PathBuf {
        crate::db::sibling(db, "-shm")
    }

    #[test]
    fn counts_frames_appended_while_a_reader_holds_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let w = Connection::open(&db, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
        w.execute_batch("PRAGMA journal_mode=WAL; PRAGMA page_size=4096; CREATE TABLE t(v BLOB)")
            .unwrap();
        // A big transaction, checkpointed: the WAL file is now large but reusable.
        for _ in 0..50 {
            w.execute_batch("INSERT INTO t VALUES(randomblob(100000))")
                .unwrap();
        }
        w.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
        w.execute_batch("INSERT INTO t VALUES(1)").unwrap();

        let r = Connection::open(&db, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
        r.execute_batch("BEGIN; SELECT count(*) FROM t").unwrap();
        let start = wal_use(&shm(&db)).unwrap();
        assert!(start.is_some());
        assert_eq!(start.unwrap().frame_bytes, 4096 + 24);
        for _ in 0..10 {
            w.execute_batch("INSERT INTO t VALUES(randomblob(40000))")
                .unwrap();
        }
        let grown = grown_since(start, wal_use(&shm(&db)).unwrap());
        // Ten rows of ~10 pages each, at least.
        assert!(grown >= 100 * 4120, "{grown}");
        r.execute_batch("COMMIT").unwrap();
        // Frames to backfill: everything since the checkpoint, then none after another one.
        let pending = frames_to_backfill(&shm(&db)).unwrap();
        assert!(pending >= 100, "{pending}");
        w.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
        assert_eq!(frames_to_backfill(&shm(&db)).unwrap(), 0);
        assert_eq!(grown_since(None, None), 0);
        assert!(wal_use(&dir.path().join("none-shm")).unwrap().is_none());
    }
}
