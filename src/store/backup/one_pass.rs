//! One pass for a plain binary backup: its file is written in page order, final bytes first
//! time, so streams can follow it as it grows instead of waiting for the whole copy.
//!
//! The two-pass copy (`copy_and_clean`) runs SQLite's page copier into a file, then changes a
//! few pages at the end: page 1 (header bytes, counters, the freelist), the schema and the
//! pages of the state table it drops. Page 1 comes first in the file, so nothing could be sent
//! before the copy was over. Here the same steps run twice over one read snapshot:
//!
//! 1. **Plan.** SQLite's page copier and the same clean-up run against a page store
//!    ([`raftlite_ffi::PageStore`]) that keeps only the pages the clean-up reads (page 1, the
//!    schema, the state table and its indexes, the statistics tables, the first freelist
//!    trunk: found beforehand with `dbstat` and `sqlite_dbpage`) and every page written after
//!    the copy. What the clean-up wrote is the *overlay*: the only pages whose final bytes
//!    differ from the snapshot's. Nothing reaches the disk.
//! 2. **Write.** The snapshot's pages, read in order through `sqlite_dbpage`, with the
//!    overlay's pages in their place and zeros for the page SQLite never uses (the one holding
//!    the lock byte at 1 GiB: the copier skips it), are appended to the copy's file; every
//!    write advances the length streams may read.
//!
//! Invariants:
//! - The file is byte for byte what the two-pass copy of the same snapshot would be (tests
//!   compare the two on databases with freelists, overflow pages, many schema pages and
//!   statistics).
//! - Whatever the plan cannot predict makes it give up before any byte is written (a read of
//!   a page it did not keep, `auto_vacuum`, an overlay over [`PLAN_MEMORY`]): the caller then
//!   makes the copy in two passes. The plan holds at most [`PLAN_MEMORY`] bytes of pages.
//! - Both steps run in the caller's read transaction: one snapshot, the Raft index the state
//!   row names.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use raftlite_ffi::{Connection, PageStore, Step};

use super::ContentId;
use crate::db::backup::{copy_into, rollback_header, CopyError, PAGES_PER_STEP};
use crate::db::STATE_TABLE;

/// Most bytes of pages a plan keeps in memory; a database that needs more is copied in two
/// passes.
pub const PLAN_MEMORY: usize = 32 << 20;

/// Where SQLite's lock byte lives; the page that holds it is never used (see `PENDING_BYTE`
/// in SQLite's source).
const PENDING_BYTE: u64 = 0x4000_0000;

/// Bytes per `write` of the copy. Small enough that the gathered pages are still in the CPU's
/// cache when the kernel copies them: 64 KiB writes take a third of the time of 1 MiB writes
/// here (0.75–0.97 s against 1.7–2.8 s per GiB).
const WRITE_CHUNK: usize = 64 << 10;

/// Tables the clean-up reads besides the schema: dropping the state table also deletes its
/// rows from these, when they exist.
const READ_BY_DROP: &[&str] = &["sqlite_stat1", "sqlite_stat4", "sqlite_sequence"];

/// What the write step needs: the final pages that differ from the snapshot, and the size.
pub struct Plan {
    pub content: ContentId,
    page_size: u64,
    /// The final file's length in bytes.
    pub len: u64,
    /// Final bytes of every page the clean-up changed, page 1 included.
    overlay: BTreeMap<u32, Vec<u8>>,
}

/// Why a plan gave up (the caller copies in two passes instead).
#[derive(Debug)]
pub struct NotPlanned(pub String);

/// Plans the copy of `src`'s current snapshot. `src` must be inside a read transaction that
/// has read (the snapshot is fixed); the plan reads only through it.
pub fn plan(src: &Connection) -> anyhow::Result<Result<Plan, NotPlanned>> {
    if src.query_i64("PRAGMA auto_vacuum")?.unwrap_or(0) != 0 {
        return Ok(Err(NotPlanned(
            "auto_vacuum: dropping the state table moves pages".into(),
        )));
    }
    let page_size = src.query_i64("PRAGMA page_size")?.unwrap_or(4096);
    let page_size = u64::try_from(page_size)?;
    let keep = pages_read_by_clean_up(src)?;
    if keep.len() as u64 * page_size > PLAN_MEMORY as u64 {
        return Ok(Err(NotPlanned(format!(
            "the clean-up reads {} pages, over the plan's memory",
            keep.len()
        ))));
    }
    let store = Arc::new(PlanStore::new(page_size, keep));
    let mut dest = Connection::open_page_store(store.clone())?;
    let copied = copy_into(src, &mut dest, PAGES_PER_STEP, |_| store.check());
    dest.close()?;
    if let Some(reason) = store.gave_up() {
        return Ok(Err(NotPlanned(reason)));
    }
    copied?;
    store.finish_copy();
    let mut copy = Connection::open_page_store(store.clone())?;
    let cleaned = super::copies::clean_copy(&copy, false);
    copy.close()?;
    if let Some(reason) = store.gave_up() {
        return Ok(Err(NotPlanned(reason)));
    }
    let content = cleaned?;
    let state = store.state.lock();
    let mut overlay = BTreeMap::new();
    for pgno in &state.overlay {
        if let Some(page) = state.pages.get(pgno) {
            overlay.insert(*pgno, page.clone());
        }
    }
    Ok(Ok(Plan {
        content,
        page_size,
        len: state.size,
        overlay,
    }))
}

/// Pages the clean-up reads: page 1, the schema's, those of the state table and its
/// indexes, of the tables [`READ_BY_DROP`] and the first freelist trunk (where freed pages
/// go). Found in the snapshot, before the copy.
fn pages_read_by_clean_up(src: &Connection) -> anyhow::Result<HashSet<u32>> {
    let mut keep = HashSet::from([1u32]);
    let mut names = vec!["sqlite_schema".to_string()];
    {
        let mut stmt = src.prepare(
            "SELECT name FROM main.sqlite_schema WHERE tbl_name IN (?1, ?2, ?3, ?4) \
             AND rootpage > 0",
        )?;
        stmt.bind_text(1, STATE_TABLE)?;
        for (i, t) in READ_BY_DROP.iter().enumerate() {
            stmt.bind_text(i as i32 + 2, t)?;
        }
        while let Step::Row = stmt.step()? {
            names.push(String::from_utf8_lossy(stmt.column_text(0)).into_owned());
        }
    }
    let mut stmt = src.prepare("SELECT pageno FROM dbstat('main') WHERE name = ?1")?;
    for name in &names {
        stmt.reset()?;
        stmt.bind_text(1, name)?;
        while let Step::Row = stmt.step()? {
            keep.insert(u32::try_from(stmt.column_i64(0))?);
        }
    }
    drop(stmt);
    let mut page1 = src.prepare("SELECT data FROM sqlite_dbpage('main') WHERE pgno = 1")?;
    if let Step::Row = page1.step()? {
        let data = page1.column_blob(0);
        if let Some(trunk) = data.get(32..36) {
            let trunk = u32::from_be_bytes(trunk.try_into()?);
            if trunk != 0 {
                keep.insert(trunk);
            }
        }
    }
    Ok(keep)
}

/// The plan's page store: the kept pages, the file's size, and what was written after the
/// copy. A read of a page it did not keep fails the statement and makes the plan give up.
struct PlanStore {
    page_size: u64,
    state: Mutex<PlanState>,
}

struct PlanState {
    keep: HashSet<u32>,
    pages: BTreeMap<u32, Vec<u8>>,
    size: u64,
    /// Set once the copier is done: from then on every write is kept, in `overlay`.
    copied: bool,
    overlay: HashSet<u32>,
    kept_bytes: usize,
    gave_up: Option<String>,
}

impl PlanStore {
    fn new(page_size: u64, keep: HashSet<u32>) -> PlanStore {
        PlanStore {
            page_size,
            state: Mutex::new(PlanState {
                keep,
                pages: BTreeMap::new(),
                size: 0,
                copied: false,
                overlay: HashSet::new(),
                kept_bytes: 0,
                gave_up: None,
            }),
        }
    }

    fn page_of(&self, offset: u64) -> std::io::Result<u32> {
        u32::try_from(offset / self.page_size + 1).map_err(std::io::Error::other)
    }

    /// The copier is done: its page 1 becomes a rollback-mode header, and every later write
    /// is part of the overlay.
    fn finish_copy(&self) {
        let mut state = self.state.lock();
        if let Some(page1) = state.pages.get_mut(&1) {
            rollback_header(page1);
        }
        state.overlay.insert(1);
        state.copied = true;
    }

    fn gave_up(&self) -> Option<String> {
        self.state.lock().gave_up.clone()
    }

    /// Stops the copier once the plan has given up.
    fn check(&self) -> Result<(), CopyError> {
        match self.gave_up() {
            Some(reason) => Err(CopyError::Stopped(reason)),
            None => Ok(()),
        }
    }

    fn give_up(state: &mut PlanState, reason: String) -> std::io::Error {
        let err = std::io::Error::other(reason.clone());
        state.gave_up.get_or_insert(reason);
        err
    }
}

impl PageStore for PlanStore {
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut state = self.state.lock();
        if offset >= state.size {
            return Ok(0);
        }
        let pgno = self.page_of(offset)?;
        let within = usize::try_from(offset % self.page_size).map_err(std::io::Error::other)?;
        match state.pages.get(&pgno) {
            Some(page) => {
                let n = buf.len().min(page.len().saturating_sub(within));
                buf[..n].copy_from_slice(&page[within..within + n]);
                Ok(n)
            }
            None => Err(PlanStore::give_up(
                &mut state,
                format!("the clean-up read page {pgno}, which the plan did not keep"),
            )),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.lock();
        let pgno = self.page_of(offset)?;
        state.size = state.size.max(offset + data.len() as u64);
        let whole_page = offset % self.page_size == 0 && data.len() as u64 == self.page_size;
        if state.copied || state.keep.contains(&pgno) {
            if !whole_page {
                return Err(PlanStore::give_up(
                    &mut state,
                    format!(
                        "a write of {} bytes at {offset} is not one page",
                        data.len()
                    ),
                ));
            }
            if state.copied {
                state.overlay.insert(pgno);
            }
            if state.pages.insert(pgno, data.to_vec()).is_none() {
                state.kept_bytes += data.len();
                if state.kept_bytes > PLAN_MEMORY {
                    return Err(PlanStore::give_up(
                        &mut state,
                        "the clean-up changed more pages than the plan may hold".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn truncate(&self, size: u64) -> std::io::Result<()> {
        let mut state = self.state.lock();
        state.size = size;
        let first_gone = u32::try_from(size.div_ceil(self.page_size) + 1).unwrap_or(u32::MAX);
        let gone: Vec<u32> = state.pages.range(first_gone..).map(|(p, _)| *p).collect();
        for p in gone {
            if let Some(page) = state.pages.remove(&p) {
                state.kept_bytes -= page.len();
            }
            state.overlay.remove(&p);
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.state.lock().size
    }
}

/// Writes the planned copy of `src`'s snapshot (the one the plan was made in) to `out` (the
/// copy's file, or straight to a client: `Backups::binary_direct`), in page order. `written` is called with the bytes written so far after every chunk; an error
/// from it (the disk reserve) stops the copy.
pub fn write(
    src: &Connection,
    plan: &Plan,
    out: &mut impl std::io::Write,
    mut written: impl FnMut(u64) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    let page_size = usize::try_from(plan.page_size).map_err(std::io::Error::other)?;
    let pages = plan.len / plan.page_size;
    let pending_page = PENDING_BYTE / plan.page_size + 1;
    let zeros = vec![0u8; page_size];
    let mut buf = Vec::with_capacity(WRITE_CHUNK + page_size);
    let mut done = 0u64;
    let mut scan = src.prepare("SELECT pgno, data FROM sqlite_dbpage('main')")?;
    // The page number of the scan's current row (0: none yet; u64::MAX: no more rows).
    let mut row = 0u64;
    for pgno in 1..=pages {
        while row < pgno {
            row = match scan.step()? {
                Step::Row => u64::try_from(scan.column_i64(0)).unwrap_or(0),
                Step::Done => u64::MAX,
            };
        }
        let page: &[u8] = match u32::try_from(pgno).ok().and_then(|p| plan.overlay.get(&p)) {
            Some(page) => page,
            None if pgno == pending_page => &zeros,
            None if row == pgno && scan.column_blob(1).len() == page_size => scan.column_blob(1),
            None => {
                return Err(CopyError::Stopped(format!(
                    "page {pgno} of the snapshot is missing or not {page_size} bytes"
                )))
            }
        };
        buf.extend_from_slice(page);
        if buf.len() >= WRITE_CHUNK {
            out.write_all(&buf)?;
            done += buf.len() as u64;
            buf.clear();
            written(done)?;
            // Slows the copy in tests (`sleep(ms)`): a reader must wait for the bytes.
            crate::failpoint::crash_point("backup::one_pass_chunk_written");
        }
    }
    if !buf.is_empty() {
        out.write_all(&buf)?;
        done += buf.len() as u64;
        written(done)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite_ffi::OpenFlags;

    /// A WAL-mode database shaped by `sql`, with the state table and its row, as a node has.
    fn source(dir: &std::path::Path, sql: &str) -> Connection {
        let conn = Connection::open(
            dir.join("src.db"),
            OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::NO_MUTEX,
        )
        .expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL").expect("wal");
        conn.execute_batch("CREATE TABLE early(x)")
            .expect("early table");
        crate::store::applied_state::ensure_table(&conn).expect("state table");
        let log_id =
            crate::store::node_info::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        crate::store::applied_state::write(&conn, &log_id, None, Some("lineage-x"))
            .expect("state row");
        conn.execute_batch(sql).expect("shape");
        conn
    }

    /// The one-pass file of `src`'s snapshot, and the two-pass file of the same snapshot.
    fn both(dir: &std::path::Path, src: &Connection) -> (Vec<u8>, Vec<u8>, ContentId) {
        src.execute_batch("BEGIN").expect("begin");
        src.query_i64("SELECT count(*) FROM sqlite_master")
            .expect("read");
        let plan = plan(src).expect("plan").expect("planned");
        let one = dir.join("one.db");
        let mut out = std::fs::File::create_new(&one).expect("create");
        let mut last = 0;
        write(src, &plan, &mut out, |n| {
            assert!(n > last, "progress grows");
            last = n;
            Ok(())
        })
        .expect("write");
        assert_eq!(last, plan.len, "every byte reported");
        let two = dir.join("two.db");
        crate::db::backup::copy_to_file(src, &two, 64, |_| Ok(())).expect("copy");
        src.execute_batch("ROLLBACK").expect("rollback");
        let mut conn =
            Connection::open(&two, OpenFlags::READ_WRITE | OpenFlags::NO_MUTEX).expect("open copy");
        let content = super::super::copies::clean_copy(&conn, false).expect("clean");
        conn.close().expect("close");
        assert_eq!(content.raft_index(), plan.content.raft_index());
        (
            std::fs::read(&one).expect("read one"),
            std::fs::read(&two).expect("read two"),
            plan.content,
        )
    }

    fn assert_same(sql: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = source(dir.path(), sql);
        // Writes after the snapshot's start must not be in either file.
        let (one, two, content) = both(dir.path(), &src);
        assert_eq!(content.raft_index(), 42);
        assert_eq!(one.len(), two.len(), "length for {sql}");
        if let Some(i) = one.iter().zip(&two).position(|(a, b)| a != b) {
            panic!(
                "first difference at byte {i} (page {}) for {sql}",
                i / 4096 + 1
            );
        }
        // And the file is a database without the state table, in rollback mode.
        assert_eq!(&one[18..20], &[1, 1]);
        let path = dir.path().join("check.db");
        std::fs::write(&path, &one).expect("write check");
        let check = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::NO_MUTEX)
            .expect("open check");
        assert_eq!(
            check
                .query_text("PRAGMA integrity_check")
                .expect("check")
                .as_deref(),
            Some("ok")
        );
        assert_eq!(
            check
                .query_i64(&format!(
                    "SELECT count(*) FROM sqlite_schema WHERE name = '{STATE_TABLE}'"
                ))
                .expect("schema"),
            Some(0)
        );
    }

    #[test]
    fn the_one_pass_file_is_the_two_pass_file() {
        // Plain rows, in the WAL (never checkpointed).
        assert_same(
            "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); \
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3000) \
             INSERT INTO t SELECT x, hex(randomblob(50)) FROM c;",
        );
    }

    #[test]
    fn with_a_freelist_overflow_pages_and_a_checkpoint() {
        assert_same(
            "CREATE TABLE big(b BLOB); \
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200) \
             INSERT INTO big SELECT randomblob(9000) FROM c; \
             PRAGMA wal_checkpoint(TRUNCATE); \
             DELETE FROM big WHERE rowid % 3 = 0; \
             CREATE INDEX ib ON big(length(b));",
        );
    }

    #[test]
    fn with_a_schema_of_many_pages_statistics_and_sequences() {
        let mut sql = String::new();
        for i in 0..300 {
            sql.push_str(&format!(
                "CREATE TABLE t{i}(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT \
                 DEFAULT 'a long default value to fill the schema pages'); \
                 INSERT INTO t{i}(v) VALUES ('x'); "
            ));
        }
        sql.push_str("ANALYZE;");
        assert_same(&sql);
    }

    #[test]
    fn of_an_empty_database() {
        assert_same("SELECT 1;");
    }

    #[test]
    fn auto_vacuum_is_not_planned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(
            dir.path().join("av.db"),
            OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::NO_MUTEX,
        )
        .expect("open");
        conn.execute_batch("PRAGMA auto_vacuum=FULL; CREATE TABLE t(x)")
            .expect("shape");
        conn.execute_batch("BEGIN; SELECT 1 FROM t;")
            .expect("begin");
        let NotPlanned(reason) = plan(&conn).expect("plan").err().expect("not planned");
        assert!(reason.contains("auto_vacuum"), "{reason}");
    }

    /// One step of a random database's history.
    #[derive(Debug, Clone)]
    enum Op {
        /// A table with `rows` rows of `size`-byte blobs (overflow pages past ~4 KB).
        Table {
            rows: u16,
            size: u16,
        },
        /// Deletes every `nth` row of a table (pages go to the freelist).
        Delete {
            table: u8,
            nth: u8,
        },
        /// An index on a table.
        Index {
            table: u8,
        },
        /// Drops a table (many pages to the freelist at once).
        Drop {
            table: u8,
        },
        Checkpoint,
        Analyze,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (1u16..400, 1u16..9000).prop_map(|(rows, size)| Op::Table { rows, size }),
            2 => (any::<u8>(), 2u8..6).prop_map(|(table, nth)| Op::Delete { table, nth }),
            1 => any::<u8>().prop_map(|table| Op::Index { table }),
            1 => any::<u8>().prop_map(|table| Op::Drop { table }),
            1 => Just(Op::Checkpoint),
            1 => Just(Op::Analyze),
        ]
    }

    fn history_sql(ops: &[Op]) -> String {
        let mut sql = String::new();
        let mut tables: Vec<usize> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            let pick = |t: u8| (!tables.is_empty()).then(|| tables[t as usize % tables.len()]);
            match op {
                Op::Table { rows, size } => {
                    sql.push_str(&format!(
                        "CREATE TABLE t{n}(id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB); \
                         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c \
                         WHERE x < {rows}) INSERT INTO t{n}(v) SELECT randomblob({size}) FROM c; "
                    ));
                    tables.push(n);
                }
                Op::Delete { table, nth } => {
                    if let Some(t) = pick(*table) {
                        sql.push_str(&format!("DELETE FROM t{t} WHERE id % {nth} = 0; "));
                    }
                }
                Op::Index { table } => {
                    if let Some(t) = pick(*table) {
                        sql.push_str(&format!(
                            "CREATE INDEX IF NOT EXISTS i{t}_{n} ON t{t}(length(v)); "
                        ));
                    }
                }
                Op::Drop { table } => {
                    if let Some(t) = pick(*table) {
                        sql.push_str(&format!("DROP TABLE t{t}; "));
                        tables.retain(|x| *x != t);
                    }
                }
                Op::Checkpoint => sql.push_str("PRAGMA wal_checkpoint(TRUNCATE); "),
                Op::Analyze => sql.push_str("ANALYZE; "),
            }
        }
        sql.push_str("SELECT 1;");
        sql
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Whatever the database's history (freelists, overflow chains, dropped tables,
        /// statistics, a checkpointed or an unchecked WAL), the one-pass file is the two-pass
        /// file, byte for byte.
        #[test]
        fn any_history_gives_the_two_pass_bytes(
            ops in proptest::collection::vec(op(), 1..10)
        ) {
            assert_same(&history_sql(&ops));
        }
    }
}
