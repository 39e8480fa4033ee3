//! The rows of one table, read by several connections at once and written in the one-query
//! scan's order: the SQL dump's only parallel part (formatting rows is most of its time).
//!
//! How: the table's rowids are cut into ranges, claimed in order by helper threads, one per
//! helper connection. Each range is read with `WHERE <rowid> BETWEEN lo AND hi` (rowid
//! order) and formatted into its own bounded channel; the dump's thread empties the channels
//! in claim order into the dump's writer. Ranges adapt to the table: each aims at
//! [`RANGE_TARGET`] bytes of text, from the bytes per rowid the previous range gave.
//!
//! Invariants:
//! - The output is byte for byte the one-query dump's: a table is read in ranges only when the
//!   one query scans the table's own b-tree (its rowid order; [`plan`] checks the query's
//!   program), never through an index; anything else is left to the one query.
//! - Every helper reads the snapshot of the dump's own connection: the caller's job
//!   ([`share_snapshot`] does it).
//! - Memory is bounded: at most [`RANGES_AHEAD_PER_HELPER`] × helpers + 1 ranges are claimed
//!   and not yet written, each holding at most [`PIECES_PER_RANGE`] pieces of [`SINK_CAPACITY`]
//!   bytes (plus one value larger than that, which SQLite holds anyway); a helper that gets
//!   ahead waits.
//! - A failure anywhere stops everything: the dump's thread returns the first error in
//!   order; dropping the channels wakes every helper, and none outlives the call.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use raftlite_ffi::{ColumnType, Connection, Error};

use super::{push_quoted_ident, write_rows, DumpError, Sink, SINK_CAPACITY};

/// Bytes of dump text a range aims at.
const RANGE_TARGET: f64 = 256.0 * 1024.0;
/// Rowids in the first range of a table, before its density is known.
const FIRST_SPAN: f64 = 64.0;
/// How much a range may grow or shrink from the previous one.
const MAX_SPAN_STEP: f64 = 8.0;
/// The largest range, in rowids: far below `i64::MAX`, so `lo + span` cannot overflow an
/// `i64` by more than saturation handles, and a sparse table of random 64-bit rowids still
/// needs only a few ranges.
const MAX_SPAN: f64 = 4e18;
/// Tables with fewer rows are read by the one query: helpers would cost more than they save.
const MIN_ROWS: u64 = 64;
/// Pieces a range's channel holds before its helper waits.
const PIECES_PER_RANGE: usize = 8;
/// Ranges each helper may have claimed ahead of the one being written.
const RANGES_AHEAD_PER_HELPER: usize = 2;

/// How to read one table in ranges.
pub(super) struct Plan {
    table: Vec<u8>,
    /// A name of the rowid that no column shadows.
    rowid: &'static str,
    /// The smallest and largest rowid; `None` for an empty table.
    bounds: Option<(i64, i64)>,
}

/// Whether the rows `select_all` reads from `table` can be read in rowid ranges, in the
/// same order: an ordinary rowid table whose full scan reads the table's own b-tree.
pub(super) fn plan(
    conn: &Connection,
    table: &[u8],
    select_all: &[u8],
) -> Result<Option<Plan>, DumpError> {
    // With this pragma on (the shell's corruption retry) the one query reads backwards.
    if conn.query_i64("PRAGMA reverse_unordered_selects")? != Some(0) {
        return Ok(None);
    }
    let mut stmt = conn.prepare(
        "SELECT s.rootpage, l.wr FROM sqlite_schema AS s JOIN pragma_table_list AS l \
         ON l.schema = 'main' AND l.name = s.name \
         WHERE s.type = 'table' AND s.name = ?1 AND l.type = 'table'",
    )?;
    stmt.bind_text_bytes(1, table)?;
    if !stmt.step()?.is_row() || stmt.column_i64(1) != 0 {
        return Ok(None);
    }
    let root = stmt.column_i64(0);
    drop(stmt);

    let mut columns = conn.prepare("SELECT name FROM pragma_table_xinfo(?1, 'main')")?;
    columns.bind_text_bytes(1, table)?;
    let mut shadowed = Vec::new();
    while columns.step()?.is_row() {
        shadowed.push(columns.column_text(0).to_ascii_lowercase());
    }
    drop(columns);
    let Some(rowid) = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|r| !shadowed.iter().any(|c| c == r.as_bytes()))
    else {
        return Ok(None);
    };

    // The full scan's program opens the b-tree it reads: the table's root, or an index's.
    let mut explain = b"EXPLAIN ".to_vec();
    explain.extend_from_slice(select_all);
    let Some(mut program) = conn.prepare_first_bytes(&explain)?.0 else {
        return Ok(None);
    };
    let mut reads_table = false;
    while program.step()?.is_row() {
        if program.column_text(1) == b"OpenRead" {
            if program.column_i64(3) != root {
                return Ok(None);
            }
            reads_table = true;
        }
    }
    drop(program);
    if !reads_table {
        return Ok(None);
    }

    let mut sql = format!("SELECT min({rowid}), max({rowid}) FROM main.").into_bytes();
    push_quoted_ident(&mut sql, table);
    let Some(mut minmax) = conn.prepare_first_bytes(&sql)?.0 else {
        return Ok(None);
    };
    let bounds = if minmax.step()?.is_row() && minmax.column_type(0) != ColumnType::Null {
        Some((minmax.column_i64(0), minmax.column_i64(1)))
    } else {
        None
    };
    Ok(Some(Plan {
        table: table.to_vec(),
        rowid,
        bounds,
    }))
}

/// What a helper hands over for one range, in order.
enum Piece {
    Bytes(Vec<u8>),
    /// The range is complete: this many rows.
    End(u64),
    /// The range stopped at an error, after this many rows (sent before it).
    Failed(DumpError, u64),
}

/// `Write` into a range's channel. A closed channel means the dump stopped.
struct PieceWriter<'a> {
    tx: &'a SyncSender<Piece>,
}

impl std::io::Write for PieceWriter<'_> {
    /// In pieces of at most [`SINK_CAPACITY`] bytes, so that a large value (the sink hands
    /// one over whole) waits in the channel's bound like any other output.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for piece in buf.chunks(SINK_CAPACITY) {
            self.tx
                .send(Piece::Bytes(piece.to_vec()))
                .map_err(|_| std::io::Error::other("the dump stopped"))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The next rowids to claim, and how many to claim at a time.
struct Cursor {
    next: Option<i64>,
    last: i64,
    span: f64,
}

impl Cursor {
    fn claim(&mut self) -> Option<(i64, i64)> {
        let lo = self.next?;
        // The span is at least 1 and far below i64::MAX, so the cast is exact enough.
        let hi = lo.saturating_add(self.span as i64 - 1).min(self.last);
        self.next = (hi < self.last).then(|| hi + 1);
        Some((lo, hi))
    }

    /// Learns from a finished range: the next ones aim at [`RANGE_TARGET`] bytes.
    fn learn(&mut self, rowids: f64, bytes: f64) {
        let wanted = if bytes > 0.0 {
            RANGE_TARGET * rowids / bytes
        } else {
            rowids * MAX_SPAN_STEP
        };
        self.span = wanted
            .clamp(rowids / MAX_SPAN_STEP, rowids * MAX_SPAN_STEP)
            .clamp(1.0, MAX_SPAN);
    }
}

/// Writes the rows of the planned table, read by `helpers`, into `sink`, counting them in
/// `rows`. `select_all` is the one query (`SELECT cols FROM main.t`); `conn` is the dump's
/// own connection, watched for an interrupt while the helpers read. Returns false, having
/// written nothing, when no helper thread could start: the caller then runs the one query.
///
/// The rows written must be as many as the table holds (`count(*)`, counted first): a
/// b-tree whose cells are out of order (damage SQLite does not report) could make a range
/// read skip rows the one query would have written, and a dump must not lose rows without
/// saying so. A shortfall is reported as corruption, which the dump writes as the shell does.
pub(super) fn rows(
    conn: &Connection,
    helpers: &mut [Connection],
    plan: &Plan,
    select_all: &[u8],
    prefix: &[u8],
    sink: &mut Sink<'_>,
    rows: &mut u64,
) -> Result<bool, DumpError> {
    let Some((first, last)) = plan.bounds else {
        return Ok(true);
    };
    let mut ranged = select_all.to_vec();
    ranged.extend_from_slice(format!(" WHERE {} BETWEEN ?1 AND ?2", plan.rowid).as_bytes());
    // A table that cannot be counted is damaged: the one query writes what the shell would.
    let Some(expected) = count_rows(conn, &plan.table) else {
        return Ok(false);
    };
    if expected < MIN_ROWS {
        return Ok(false);
    }
    let cursor = Mutex::new(Cursor {
        next: Some(first),
        last,
        span: FIRST_SPAN,
    });
    let written_before = *rows;
    std::thread::scope(|scope| {
        let (order_tx, order_rx) =
            sync_channel::<Receiver<Piece>>(helpers.len() * RANGES_AHEAD_PER_HELPER);
        let mut started = 0;
        for helper in helpers.iter_mut() {
            let order_tx = order_tx.clone();
            let (cursor, ranged) = (&cursor, &ranged);
            let spawned = std::thread::Builder::new()
                .name("dump-helper".into())
                .spawn_scoped(scope, move || {
                    read_ranges(helper, cursor, ranged, prefix, &order_tx)
                });
            // A thread the system refuses is one helper fewer.
            started += usize::from(spawned.is_ok());
        }
        drop(order_tx);
        if started == 0 {
            return Ok(false);
        }
        let result = (|| {
            for range in &order_rx {
                loop {
                    if conn.is_interrupted() {
                        return Err(
                            Error::new(raftlite_ffi::sys::SQLITE_INTERRUPT, "interrupted").into(),
                        );
                    }
                    match range.recv() {
                        Ok(Piece::Bytes(b)) => sink.put(&b)?,
                        Ok(Piece::End(n)) => {
                            *rows += n;
                            break;
                        }
                        Ok(Piece::Failed(e, n)) => {
                            *rows += n;
                            return Err(e);
                        }
                        Err(_) => {
                            return Err(Error::new(
                                raftlite_ffi::sys::SQLITE_INTERNAL,
                                "a dump helper stopped without finishing its range",
                            )
                            .into())
                        }
                    }
                }
            }
            let read = *rows - written_before;
            if read != expected {
                return Err(Error::new(
                    raftlite_ffi::sys::SQLITE_CORRUPT,
                    format!("the table holds {expected} rows; its rowid ranges gave {read}"),
                )
                .into());
            }
            Ok(true)
        })();
        // Dropping the queue (and with it every claimed range) wakes any helper waiting to
        // hand over; the scope then waits for all of them.
        drop(order_rx);
        result
    })
}

/// `count(*)` of `table`, or None if it cannot be read.
fn count_rows(conn: &Connection, table: &[u8]) -> Option<u64> {
    let mut sql = b"SELECT count(*) FROM main.".to_vec();
    push_quoted_ident(&mut sql, table);
    let mut count = conn.prepare_first_bytes(&sql).ok()?.0?;
    if !count.step().ok()?.is_row() {
        return None;
    }
    u64::try_from(count.column_i64(0)).ok()
}

/// One helper: claims ranges in order until none is left or the dump stopped.
fn read_ranges(
    helper: &mut Connection,
    cursor: &Mutex<Cursor>,
    ranged: &[u8],
    prefix: &[u8],
    order: &SyncSender<Receiver<Piece>>,
) {
    let mut stmt = match helper.prepare_first_bytes(ranged) {
        Ok((Some(stmt), _)) => stmt,
        failed => {
            let e = failed.err().unwrap_or_else(|| {
                Error::new(
                    raftlite_ffi::sys::SQLITE_INTERNAL,
                    "the range query is empty",
                )
            });
            // Reported in order, as the range it would have read.
            let (tx, rx) = sync_channel(1);
            let _ = tx.send(Piece::Failed(e.into(), 0));
            let guard = cursor.lock().unwrap_or_else(|p| p.into_inner());
            if guard.next.is_some() {
                let _ = order.send(rx);
            }
            return;
        }
    };
    loop {
        let (tx, rx) = sync_channel(PIECES_PER_RANGE);
        let (lo, hi) = {
            let mut guard = cursor.lock().unwrap_or_else(|p| p.into_inner());
            let Some(range) = guard.claim() else {
                return;
            };
            // Queued while the cursor is held, so ranges queue in claim order. A full queue
            // holds this helper (and the cursor) until the dump's thread catches up.
            if order.send(rx).is_err() {
                return;
            }
            range
        };
        let mut out = PieceWriter { tx: &tx };
        let mut sink = Sink::new(&mut out);
        let mut rows = 0;
        let read = stmt
            .reset()
            .and_then(|()| stmt.bind_i64(1, lo))
            .and_then(|()| stmt.bind_i64(2, hi))
            .map_err(DumpError::from)
            .and_then(|()| write_rows(&mut stmt, prefix, &mut sink, &mut rows));
        // Rows formatted before an error are sent too: the one query would have written
        // them before the error, and so must the dump.
        let finished = sink.finish().map_err(DumpError::from);
        let read = read.and(finished);
        let bytes = sink.bytes;
        drop(sink);
        match read {
            Ok(()) => {
                if tx.send(Piece::End(rows)).is_err() {
                    return;
                }
                let mut guard = cursor.lock().unwrap_or_else(|p| p.into_inner());
                guard.learn((hi - lo) as f64 + 1.0, bytes as f64);
            }
            Err(e) => {
                let _ = tx.send(Piece::Failed(e, rows));
                return;
            }
        }
    }
}

/// How many helper connections a dump uses: one per core, at most four (formatting is what
/// they share; beyond that the dump's own thread, which writes, is the limit).
pub fn helper_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Opens up to `count` helper connections reading the same state as `conn`, which must be
/// inside a transaction that has read. `open` opens a connection to the same file.
/// Helpers that cannot join (a busy lock, a snapshot refused, a state that moved) are left
/// out: fewer helpers only make the dump slower, and none make it the one-connection dump.
///
/// How each kind of file shares its state:
/// - A rollback-journal file: nothing to do. The shared lock `conn` holds keeps every writer
///   from committing until it ends, so a helper that reads now reads the same file.
/// - A WAL file with frames: `sqlite3_snapshot_open` on `conn`'s snapshot.
/// - A WAL file with no frame since it was last reset (SQLite cannot name such a snapshot):
///   `conn` reads the database file alone, and while it does no checkpoint may write to that
///   file (it holds the WAL's read lock 0), so the state changes only if frames are
///   appended. A helper joins if it, too, finds no frame (its own snapshot is refused the
///   same way); one that finds frames is left out.
pub fn share_snapshot(
    conn: &Connection,
    count: usize,
    mut open: impl FnMut() -> raftlite_ffi::Result<Connection>,
) -> Vec<Connection> {
    // Unknown is not "rollback journal": helpers would then read the latest state.
    let Ok(Some(mode)) = conn.query_text("PRAGMA journal_mode") else {
        return Vec::new();
    };
    let wal = mode.eq_ignore_ascii_case("wal");
    // `Some(None)`: a WAL file without frames.
    let snapshot = wal.then(|| conn.snapshot().ok());
    let mut helpers = Vec::with_capacity(count);
    for _ in 0..count {
        let joined = (|| -> raftlite_ffi::Result<Option<Connection>> {
            let helper = open()?;
            // The first read opens the WAL (and reads the schema); then the shared state.
            helper.query_i64("SELECT count(*) FROM sqlite_schema")?;
            helper.execute_batch("BEGIN")?;
            match &snapshot {
                Some(Some(s)) => helper.open_snapshot(s)?,
                Some(None) => {
                    helper.query_i64("SELECT count(*) FROM sqlite_schema")?;
                    if helper.snapshot().is_ok() {
                        return Ok(None);
                    }
                }
                None => {
                    helper.query_i64("SELECT count(*) FROM sqlite_schema")?;
                }
            }
            Ok(Some(helper))
        })();
        match joined {
            Ok(Some(h)) => helpers.push(h),
            Ok(None) | Err(_) => break,
        }
    }
    helpers
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use proptest::prelude::*;
    use raftlite_ffi::{Connection, ErrorCode, OpenFlags};

    use super::super::{dump_excluding, dump_with_helpers, DumpError};
    use super::share_snapshot;

    fn open(path: &Path) -> Connection {
        Connection::open(path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap()
    }

    fn wal_db(dir: &tempfile::TempDir, sql: &str) -> PathBuf {
        let path = dir.path().join("p.db");
        let c = open(&path);
        c.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        c.execute_batch(sql).unwrap();
        path
    }

    /// The dump made with `helpers` helper connections, in one snapshot.
    fn dump_with(path: &Path, helpers: usize) -> (Vec<u8>, usize) {
        let conn = reading(path);
        let mut helpers = share_snapshot(&conn, helpers, || open_ro(path));
        let joined = helpers.len();
        let mut out = Vec::new();
        dump_with_helpers(&conn, &mut helpers, None, &[], &mut out).unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
        (out, joined)
    }

    fn dump_alone(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        dump_excluding(&open(path), None, &[], &mut out).unwrap();
        out
    }

    /// Tables of every shape the ranges must handle, or leave to the one query.
    const SHAPES: &str = "
        CREATE TABLE ipk(id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 20000)
          INSERT INTO ipk SELECT x * 3, 'row ' || x || char(10) || 'it''s', x / 7.0,
            CASE WHEN x % 5 = 0 THEN randomblob(x % 300) END FROM c;
        CREATE TABLE plain(a, b);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 5000)
          INSERT INTO plain SELECT x, hex(randomblob(40)) FROM c;
        DELETE FROM plain WHERE a % 3 = 0;
        CREATE TABLE sparse(id INTEGER PRIMARY KEY, v);
        INSERT INTO sparse VALUES (-9223372036854775808, 'min'), (-5, 'neg'), (0, 'zero'),
          (1 << 40, 'far'), (9223372036854775806, 'near max'), (9223372036854775807, 'max');
        CREATE TABLE shadowed(rowid, _rowid_, oid, v);
        INSERT INTO shadowed VALUES (3, 2, 1, 'a'), (1, 2, 3, 'b');
        CREATE TABLE partly(rowid, v);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3000)
          INSERT INTO partly SELECT -x, x FROM c;
        CREATE TABLE wr(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3000)
          INSERT INTO wr SELECT 'k' || x, x FROM c;
        CREATE TABLE covered(a, b);
        CREATE INDEX covered_ab ON covered(b, a);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3000)
          INSERT INTO covered SELECT x, 3000 - x FROM c;
        CREATE TABLE narrow(a INT, b INT, c CHAR(20000) AS (printf('%.500c', b)) STORED);
        CREATE INDEX narrow_ba ON narrow(b, a);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3000)
          INSERT INTO narrow(a, b) SELECT x, 3000 - x FROM c;
        ANALYZE;
        CREATE TABLE gen(a INTEGER PRIMARY KEY, b, c AS (b * 2) STORED, d AS (a + 1));
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3000)
          INSERT INTO gen(a, b) SELECT x, x * x FROM c;
        CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB);
        INSERT INTO big VALUES (1, randomblob(300000)), (2, zeroblob(70000)), (3, 'x');
        CREATE TABLE empty(a);
        CREATE TABLE \"odd name\"(\"x y\" INTEGER PRIMARY KEY, \"z\"\"\");
        INSERT INTO \"odd name\" VALUES (1, 'q'), (2, NULL);
        CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
        INSERT INTO seq(v) VALUES (1), (2);
    ";

    #[test]
    fn helpers_give_the_one_query_bytes_for_every_table_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_db(&dir, SHAPES);
        let alone = dump_alone(&path);
        for n in [1, 2, 3] {
            let (with, joined) = dump_with(&path, n);
            assert_eq!(joined, n);
            assert!(with == alone, "{n} helpers: the dump differs");
        }
    }

    /// Which shapes are read in ranges, and by which name of the rowid.
    #[test]
    fn ranges_only_where_the_one_query_reads_the_table_in_rowid_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = wal_db(&dir, SHAPES);
        let conn = open(&path);
        let planned = |table: &str, cols: &str| {
            let select = format!("SELECT {cols} FROM main.\"{table}\"");
            super::plan(&conn, table.as_bytes(), select.as_bytes())
                .unwrap()
                .map(|p| (p.rowid, p.bounds))
        };
        assert_eq!(
            planned("ipk", "id,v,r,b"),
            Some(("rowid", Some((3, 60000))))
        );
        assert_eq!(
            planned("sparse", "id,v"),
            Some(("rowid", Some((i64::MIN, i64::MAX))))
        );
        assert_eq!(planned("partly", "rowid,v").map(|p| p.0), Some("_rowid_"));
        assert_eq!(planned("shadowed", "rowid,_rowid_,oid,v"), None);
        assert_eq!(planned("wr", "k,v"), None);
        assert_eq!(planned("gen", "a,b").map(|p| p.0), Some("rowid"));
        assert_eq!(planned("empty", "a"), Some(("rowid", None)));
        // The planner reads the dumped columns from an index (its declared width makes the
        // table look wide): not in rowid order.
        assert_eq!(planned("narrow", "a,b"), None);
        // A full scan the planner may answer from an index that holds every column.
        let mut eqp = conn
            .prepare("EXPLAIN QUERY PLAN SELECT a,b FROM main.covered")
            .unwrap();
        let mut explain = String::new();
        while eqp.step().unwrap().is_row() {
            explain.push_str(&String::from_utf8_lossy(eqp.column_text(3)));
        }
        drop(eqp);
        let expected = if explain.contains("COVERING INDEX") {
            None
        } else {
            Some("rowid")
        };
        assert_eq!(
            planned("covered", "a,b").map(|p| p.0),
            expected,
            "{explain}"
        );
    }

    #[test]
    fn a_rollback_journal_file_is_shared_by_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        open(&path).execute_batch(SHAPES).unwrap();
        let (with, joined) = dump_with(&path, 2);
        assert_eq!(joined, 2);
        assert!(with == dump_alone(&path));
    }

    /// Commits made after the dump's snapshot began never reach it: with frames in the WAL
    /// the helpers open that snapshot; with none (SQLite cannot name it) a helper that finds
    /// frames stays out.
    #[test]
    fn helpers_read_the_snapshot_not_later_commits() {
        for frames_before in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = wal_db(
                &dir,
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v);
                 WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 20000)
                   INSERT INTO t SELECT x, hex(randomblob(20)) FROM c;",
            );
            // Open for the whole test, so its frames stay in the WAL.
            let writer = open(&path);
            if frames_before {
                writer
                    .execute_batch("INSERT INTO t(v) VALUES ('first')")
                    .unwrap();
            }
            let before = dump_alone(&path);
            let conn = open(&path);
            conn.execute_batch("BEGIN").unwrap();
            conn.query_i64("SELECT count(*) FROM t").unwrap();
            // Commits after the snapshot began, before the helpers join.
            writer
                .execute_batch(
                    "UPDATE t SET v = 'changed' WHERE id % 2 = 0; INSERT INTO t(v) VALUES (1)",
                )
                .unwrap();
            let mut helpers = share_snapshot(&conn, 2, || open_ro(&path));
            assert_eq!(helpers.len(), if frames_before { 2 } else { 0 });
            let mut out = Vec::new();
            dump_with_helpers(&conn, &mut helpers, None, &[], &mut out).unwrap();
            conn.execute_batch("ROLLBACK").unwrap();
            assert!(out == before, "the dump read a later state");
            assert!(dump_alone(&path) != before);
        }
    }

    /// A connection inside a transaction that has read: a dump's own, before its helpers.
    fn reading(path: &Path) -> Connection {
        let conn = open(path);
        conn.execute_batch("BEGIN").unwrap();
        conn.query_i64("SELECT count(*) FROM sqlite_schema")
            .unwrap();
        conn
    }

    fn open_ro(path: &Path) -> raftlite_ffi::Result<Connection> {
        Connection::open(path, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX)
    }

    /// A writer that fails, or interrupts the dump's connection, after `after` bytes.
    struct Trap<'a> {
        written: usize,
        after: usize,
        interrupt: Option<&'a raftlite_ffi::InterruptHandle>,
    }

    impl std::io::Write for Trap<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written += buf.len();
            if self.written > self.after {
                match self.interrupt {
                    Some(h) => h.interrupt(),
                    None => return Err(std::io::Error::other("client left")),
                }
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn large(dir: &tempfile::TempDir) -> PathBuf {
        wal_db(
            dir,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000)
               INSERT INTO t SELECT x, hex(randomblob(50)) FROM c;",
        )
    }

    #[test]
    fn a_failing_writer_stops_every_helper() {
        let dir = tempfile::tempdir().unwrap();
        let path = large(&dir);
        let conn = reading(&path);
        let mut helpers = share_snapshot(&conn, 2, || open_ro(&path));
        let mut out = Trap {
            written: 0,
            after: 1 << 20,
            interrupt: None,
        };
        let err = dump_with_helpers(&conn, &mut helpers, None, &[], &mut out).unwrap_err();
        assert!(matches!(err, DumpError::Write(_)), "{err}");
        // The call returned, so every helper thread ended; their connections are usable.
        for h in &helpers {
            assert_eq!(h.query_i64("SELECT count(*) FROM t").unwrap(), Some(100000));
        }
    }

    #[test]
    fn an_interrupt_of_the_dump_connection_stops_the_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let path = large(&dir);
        let conn = reading(&path);
        let handle = conn.interrupt_handle();
        let mut helpers = share_snapshot(&conn, 2, || open_ro(&path));
        let mut out = Trap {
            written: 0,
            after: 1 << 20,
            interrupt: Some(&handle),
        };
        let err = dump_with_helpers(&conn, &mut helpers, None, &[], &mut out).unwrap_err();
        match err {
            DumpError::Sqlite(e) => assert_eq!(e.code(), ErrorCode::Interrupt),
            other => panic!("{other}"),
        }
        assert!(out.written < 8 << 20, "stopped soon: {} bytes", out.written);
    }

    /// A rollback-journal file of `rows` short rows with rowids 1..=rows, over many pages.
    fn many_leaves(dir: &tempfile::TempDir, rows: u32) -> PathBuf {
        let path = dir.path().join("d.db");
        open(&path)
            .execute_batch(&format!(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                 WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {rows})
                   INSERT INTO t SELECT x, printf('%.40c', 'a') FROM c;"
            ))
            .unwrap();
        path
    }

    /// Rewrites page `pgno` of the file through `sqlite_dbpage`.
    fn edit_page(path: &Path, pgno: i64, edit: impl FnOnce(&mut Vec<u8>)) {
        let c = open(path);
        let mut page = {
            let mut read = c
                .prepare("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
                .unwrap();
            read.bind_i64(1, pgno).unwrap();
            assert!(read.step().unwrap().is_row());
            read.column_blob(0).to_vec()
        };
        edit(&mut page);
        let mut write = c
            .prepare("UPDATE sqlite_dbpage SET data = ?1 WHERE pgno = ?2")
            .unwrap();
        write.bind_blob(1, &page).unwrap();
        write.bind_i64(2, pgno).unwrap();
        write.step().unwrap();
    }

    /// The leaf page of `t` that holds `rowid`, and the offset of that cell's rowid byte.
    fn cell_of(path: &Path, rowid: i64) -> (i64, usize) {
        let c = open(path);
        let leaves: Vec<i64> = {
            let mut q = c
                .prepare("SELECT pageno FROM dbstat WHERE name = 't' AND pagetype = 'leaf'")
                .unwrap();
            let mut v = Vec::new();
            while q.step().unwrap().is_row() {
                v.push(q.column_i64(0));
            }
            v
        };
        for pgno in leaves {
            let mut read = c
                .prepare("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
                .unwrap();
            read.bind_i64(1, pgno).unwrap();
            read.step().unwrap();
            let page = read.column_blob(0);
            let cells = usize::from(u16::from_be_bytes([page[3], page[4]]));
            for i in 0..cells {
                let ptr = usize::from(u16::from_be_bytes([page[8 + 2 * i], page[9 + 2 * i]]));
                // Payload size: one byte here (short rows); then the rowid's varint.
                if page[ptr] < 0x80 && page[ptr + 1] < 0x80 && i64::from(page[ptr + 1]) == rowid {
                    return (pgno, ptr + 1);
                }
            }
        }
        panic!("no cell for rowid {rowid}");
    }

    fn ends_in_rollback(dump: &[u8]) -> bool {
        dump.ends_with(b"ROLLBACK; -- due to errors\n")
    }

    /// Damage met while reading rows: the rows read before it are written first, as the one
    /// query writes them, then the shell's corruption marker. A damaged leaf (which
    /// `count(*)` meets too) leaves the table to the one query; a damaged overflow page
    /// (which only reading the row meets) stops a range mid-way.
    #[test]
    fn rows_before_damage_are_written_as_the_one_query_writes_them() {
        for overflow in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = many_leaves(&dir, 400);
            if overflow {
                open(&path)
                    .execute_batch("UPDATE t SET v = printf('%.9000c', 'b') WHERE id = 100")
                    .unwrap();
                let first_overflow = open(&path)
                    .query_i64(
                        "SELECT min(pageno) FROM dbstat WHERE name = 't' AND pagetype = 'overflow'",
                    )
                    .unwrap()
                    .unwrap();
                // The next page of the chain: far past the end of the file.
                edit_page(&path, first_overflow, |page| {
                    page[..4].copy_from_slice(&0x7fff_fff0u32.to_be_bytes())
                });
            } else {
                let (pgno, _) = cell_of(&path, 100);
                edit_page(&path, pgno, |page| page[0] = 0x42); // not a page type
            }
            let alone = dump_alone(&path);
            assert!(ends_in_rollback(&alone));
            let (with, joined) = dump_with(&path, 2);
            assert_eq!(joined, 2);
            assert!(
                with == alone,
                "overflow {overflow}:\n{}\n---\n{}",
                String::from_utf8_lossy(&with),
                String::from_utf8_lossy(&alone)
            );
        }
    }

    /// Cells out of rowid order (damage SQLite does not report): ranges would skip rows the
    /// one query writes, so the dump says it is damaged instead of losing them quietly.
    #[test]
    fn rows_a_range_read_would_miss_make_the_dump_report_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = many_leaves(&dir, 120);
        let (pgno, at) = cell_of(&path, 10);
        edit_page(&path, pgno, |page| page[at] = 100 + 27); // rowid 10 becomes 127
        let alone = dump_alone(&path);
        assert!(!ends_in_rollback(&alone), "the one query sees no damage");
        let (with, joined) = dump_with(&path, 2);
        assert_eq!(joined, 2);
        assert!(
            ends_in_rollback(&with),
            "{}",
            String::from_utf8_lossy(&with)
        );
        assert!(super::super::contains(&with, b"CORRUPTION ERROR"));
    }

    /// A value larger than the sink goes through a range's channel in sink-sized pieces.
    #[test]
    fn a_large_value_goes_in_bounded_pieces() {
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let mut out = super::PieceWriter { tx: &tx };
        std::io::Write::write_all(&mut out, &vec![7u8; 5 * super::SINK_CAPACITY + 3]).unwrap();
        drop(tx);
        let sizes: Vec<usize> = rx
            .iter()
            .map(|p| match p {
                super::Piece::Bytes(b) => b.len(),
                _ => panic!("not bytes"),
            })
            .collect();
        assert_eq!(sizes.len(), 6);
        assert!(sizes.iter().all(|&n| n <= super::SINK_CAPACITY));
        assert_eq!(sizes.iter().sum::<usize>(), 5 * super::SINK_CAPACITY + 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Random rowids, deletions and value sizes: with helpers the dump is the same bytes.
        #[test]
        fn any_rowid_layout_gives_the_one_query_bytes(
            rows in proptest::collection::vec((any::<i64>(), 0usize..3000), 0..400),
            deletes in proptest::collection::vec(any::<i64>(), 0..50),
            helpers in 1usize..4,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = wal_db(&dir, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, w TEXT)");
            let c = open(&path);
            c.execute_batch("BEGIN").unwrap();
            for (id, len) in &rows {
                c.execute_batch(&format!(
                    "INSERT OR REPLACE INTO t VALUES ({id}, randomblob({len}), '{id}')"
                ))
                .unwrap();
            }
            for d in &deletes {
                c.execute_batch(&format!("DELETE FROM t WHERE id >= {d} AND id < {d} + 1000000"))
                    .unwrap();
            }
            c.execute_batch("COMMIT").unwrap();
            let (with, joined) = dump_with(&path, helpers);
            prop_assert_eq!(joined, helpers);
            prop_assert!(with == dump_alone(&path));
        }
    }
}
