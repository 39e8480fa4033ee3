//! A staged file read while it is still being written: the staging thread announces each
//! stretch it has written ([`Announcing`]) and how staging ended ([`StagingEnd`]); a reader on
//! another thread ([`GrowingReader`]) reads up to what has been announced and waits for more.
//! It lets a SQL load into a blank cluster be built while its body is still arriving
//! ([`super::build_once::EarlyBuild`]).
//!
//! Invariants:
//! - A reader never reads past the announced length, and every announced byte is in the file
//!   (announced after the write to the file returned, below any buffering).
//! - The reader sees the end of the file only when staging finished *complete*: the stager
//!   accepted the whole body (size limit, compressed stream's end, UTF-8). A staging that
//!   fails or is abandoned (the guard dropped without [`StagingEnd::complete`]) makes the
//!   reader fail, never end early: a cut-off body must not read as a shorter script.
//! - [`Growth::abandon`] makes the reader fail at its next read, so a build nobody will use
//!   stops at once.

use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

const ABANDONED: &str = "the load was abandoned";

/// How often the reader checks the disk reserve, in bytes read: as often as the staging writer.
const CHECK_ROOM_EVERY: u64 = 16 << 20;

/// How far the file has grown, and how its staging ended; shared by writer and reader.
#[derive(Default)]
pub struct Growth {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    written: u64,
    end: Option<End>,
    abandoned: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Complete,
    Failed,
}

impl Growth {
    pub fn new() -> Arc<Growth> {
        Arc::new(Growth::default())
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        self.changed.notify_all();
    }

    /// The reader's work is not wanted any more: its next read fails.
    pub fn abandon(&self) {
        self.update(|s| s.abandoned = true);
    }

    /// Waits until the file has grown beyond `pos` (the new length) or staging has ended
    /// complete (`None`: the end of the file).
    fn wait_beyond(&self, pos: u64) -> io::Result<Option<u64>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.abandoned {
                // Not `Interrupted`: readers retry on that kind.
                return Err(io::Error::other(ABANDONED));
            }
            if state.written > pos {
                return Ok(Some(state.written));
            }
            match state.end {
                Some(End::Complete) => return Ok(None),
                Some(End::Failed) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upload of the load failed",
                    ))
                }
                None => {}
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A writer that announces every byte its inner writer has taken.
pub struct Announcing<W: Write> {
    inner: W,
    growth: Arc<Growth>,
}

impl<W: Write> Announcing<W> {
    pub fn new(inner: W, growth: Arc<Growth>) -> Announcing<W> {
        Announcing { inner, growth }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Announcing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.growth.update(|s| s.written += n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Held by the staging thread: dropped without [`StagingEnd::complete`], staging failed.
pub struct StagingEnd {
    growth: Arc<Growth>,
    complete: bool,
}

impl StagingEnd {
    pub fn new(growth: Arc<Growth>) -> StagingEnd {
        StagingEnd {
            growth,
            complete: false,
        }
    }

    /// The whole body is staged and accepted: a reader reaching the announced length is at
    /// the end.
    pub fn complete(mut self) {
        self.complete = true;
        self.growth.update(|s| s.end = Some(End::Complete));
    }
}

impl Drop for StagingEnd {
    fn drop(&mut self) {
        if !self.complete {
            self.growth.update(|s| s.end = Some(End::Failed));
        }
    }
}

/// Reads a growing file from its start, waiting for the writer; fails with `StorageFull` when
/// free space in `room_dir` falls below `reserve` (checked every 16 MiB read: what is read
/// is about to be written into the build).
pub struct GrowingReader {
    file: std::fs::File,
    growth: Arc<Growth>,
    pos: u64,
    room_dir: PathBuf,
    reserve: u64,
    since_check: u64,
}

impl GrowingReader {
    pub fn new(
        file: std::fs::File,
        growth: Arc<Growth>,
        room_dir: PathBuf,
        reserve: u64,
    ) -> GrowingReader {
        GrowingReader {
            file,
            growth,
            pos: 0,
            room_dir,
            reserve,
            since_check: 0,
        }
    }
}

impl Read for GrowingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(written) = self.growth.wait_beyond(self.pos)? else {
            return Ok(0);
        };
        if self.since_check >= CHECK_ROOM_EVERY {
            crate::db::disk::check_room(
                &self.room_dir,
                0,
                self.reserve,
                "the database built from the load",
            )?;
            self.since_check = 0;
        }
        let want = usize::try_from(written - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            // Announced bytes are in the file; a shorter file was changed behind our back.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the staged load is shorter than announced",
            ));
        }
        self.pos += n as u64;
        self.since_check += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Setup {
        _dir: tempfile::TempDir,
        writer: Announcing<std::fs::File>,
        end: StagingEnd,
        growth: Arc<Growth>,
        reader: GrowingReader,
    }

    fn setup(reserve: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("load.part");
        let growth = Growth::new();
        let writer = Announcing::new(std::fs::File::create(&path).unwrap(), growth.clone());
        let reader = GrowingReader::new(
            std::fs::File::open(&path).unwrap(),
            growth.clone(),
            dir.path().to_path_buf(),
            reserve,
        );
        Setup {
            _dir: dir,
            writer,
            end: StagingEnd::new(growth.clone()),
            growth,
            reader,
        }
    }

    /// Reads on another thread, as the build does; the result after `wait`.
    fn read_all_on_thread(
        mut reader: GrowingReader,
    ) -> std::sync::mpsc::Receiver<io::Result<Vec<u8>>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let r = reader.read_to_end(&mut out).map(|_| out);
            let _ = tx.send(r);
        });
        rx
    }

    #[test]
    fn reads_what_is_written_waits_for_more_and_ends_only_when_complete() {
        let mut s = setup(0);
        s.writer.write_all(b"INSERT INTO t VALUES(1);\n").unwrap();
        let mut first = [0u8; 64];
        let n = s.reader.read(&mut first).unwrap();
        assert_eq!(&first[..n], b"INSERT INTO t VALUES(1);\n");
        let rx = read_all_on_thread(s.reader);
        // Caught up and not complete: the reader waits rather than ending the script early.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        s.writer.write_all(b"INSERT INTO t VALUES(2);\n").unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        s.end.complete();
        let rest = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(rest, b"INSERT INTO t VALUES(2);\n");
    }

    #[test]
    fn a_failed_staging_is_an_error_not_an_early_end() {
        let mut s = setup(0);
        s.writer.write_all(b"INSERT INTO t VALUES(1);\n").unwrap();
        let rx = read_all_on_thread(s.reader);
        drop(s.end); // The staging thread returned without completing: cut off, too large…
        let err = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[test]
    fn an_abandoned_read_fails_at_once_even_with_bytes_to_read() {
        let mut s = setup(0);
        s.writer.write_all(&[b'x'; 1000]).unwrap();
        s.growth.abandon();
        let err = s.reader.read(&mut [0u8; 10]).unwrap_err();
        assert_eq!(err.to_string(), ABANDONED);
        // And a reader already waiting is woken.
        let s = setup(0);
        let rx = read_all_on_thread(s.reader);
        std::thread::sleep(Duration::from_millis(50));
        s.growth.abandon();
        let err = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), ABANDONED);
    }

    #[test]
    fn stops_with_storage_full_when_the_reserve_is_reached() {
        // A reserve no disk has: the first check, after 16 MiB, fails.
        let mut s = setup(u64::MAX);
        let chunk = vec![b'-'; 1 << 20];
        for _ in 0..17 {
            s.writer.write_all(&chunk).unwrap();
        }
        s.end.complete();
        let mut out = Vec::new();
        let err = s.reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
        assert!(out.len() as u64 >= CHECK_ROOM_EVERY, "{}", out.len());
    }
}
