//! SQL loads into a blank database, run once: the leader builds the database the script makes,
//! and the cluster installs that file as it installs a binary load, instead of every node
//! running the script.
//!
//! Why: a SQL load normally runs on every node ([`super::replicate`]). A 1.7 GB dump takes
//! each node some 20 s of CPU, the nodes of a cluster on one machine share its cores, and each
//! writes the rows twice (WAL, then checkpoint). Restoring a dump into a new, empty cluster is
//! the common case, and there the result is known in advance: the script's effect on an empty
//! database.
//!
//! How (steps 1 and 2 are a [`BuildJob`]: started by [`super::stage`] with the upload for
//! `/db/load`, reading the staged file as it grows, or by [`build_for_blank`] after staging;
//! [`super::propose`] waits for it):
//! 1. The leader checks its database is blank ([`blank_layout`]: no schema object but the
//!    state table, `user_version` and `application_id` 0) and records its layout (page size,
//!    auto_vacuum, encoding).
//! 2. [`build`] runs the staged script, through the same runner as the apply path
//!    (`db::execute::run_sql_script`), into a new file with that layout, in rollback mode
//!    with a memory journal (a new file has no old pages to journal, so it stays small) and
//!    without syncs until the end, within the room above `-disk-reserve`
//!    ([`RestoreError::NoRoomToBuild`] past it). An SQL error ends the load there, with
//!    rqlite's answer and nothing proposed. The built file is staged as `load-<id>.staged`.
//! 3. The leader proposes one `Command::LoadSql` entry ([`crate::store::types::SqlLoad`]
//!    with `built` set) naming both contents, the script and the built file, each staged for
//!    the others to pull.
//! 4. Applying it, each node checks blankness again, on its own database at the entry's log
//!    position. That check is the authority: writes may have committed between the leader's
//!    check and the entry. Blank with the same layout: the node installs the built file (a
//!    database load). Otherwise it runs the script (a SQL load, additive as ever).
//!
//! Invariants: every node holds the same database at the entry's position, so every node takes
//! the same branch, and pulls only that branch's content. The built file is what the script
//! makes of a blank database with the recorded layout, so either branch yields the same rows
//! and schema.

use std::path::Path;

use anyhow::Context as _;
use raftlite_ffi::Connection;

use super::files::{part_path, staged_path};
use super::RestoreError;
use crate::db::execute::ScriptOutcome;
use crate::db::request::{ApplyEnv, StatementResult};
use crate::db::restore_file::{LoadKind, SQLITE_MAGIC};
use crate::store::types::{BlankLayout, BuiltDatabase, LoadCommand};
use crate::store::Store;
use crate::temp_file::{unique_suffix, TempFile};

/// The layout of the database on `conn` if it is blank: nothing in its schema but the state
/// table, and `user_version` and `application_id` both 0 (a built file would lose them).
pub fn blank_layout(conn: &Connection) -> raftlite_ffi::Result<Option<BlankLayout>> {
    let objects = conn
        .query_i64(&format!(
            "SELECT count(*) FROM sqlite_schema WHERE tbl_name <> '{}'",
            crate::db::STATE_TABLE
        ))?
        .unwrap_or(0);
    let user_version = conn.query_i64("PRAGMA user_version")?.unwrap_or(0);
    let application_id = conn.query_i64("PRAGMA application_id")?.unwrap_or(0);
    if objects != 0 || user_version != 0 || application_id != 0 {
        return Ok(None);
    }
    Ok(Some(BlankLayout {
        page_size: conn.query_i64("PRAGMA page_size")?.unwrap_or(4096) as u32,
        auto_vacuum: conn.query_i64("PRAGMA auto_vacuum")?.unwrap_or(0) as u8,
        encoding: conn
            .query_text("PRAGMA encoding")?
            .unwrap_or_else(|| "UTF-8".into()),
    }))
}

/// Runs the SQL script at `sql` into a new database file at `out` with `layout`, and syncs it
/// (see [`build_from`]).
pub fn build(
    sql: &Path,
    out: &Path,
    layout: &BlankLayout,
    env: ApplyEnv,
    settings: &crate::db::DbSettings,
    max_bytes: u64,
) -> anyhow::Result<ScriptOutcome> {
    let script = std::fs::File::open(sql).context("open the staged SQL")?;
    build_from(script, out, layout, env, settings, max_bytes)
}

/// Runs the SQL script read from `script` into a new database file at `out` with `layout`,
/// and syncs it. It runs with the load entry's clock and seed (`env`), as the apply path
/// would, and stops with SQLITE_FULL (an `Err`) if the file would grow past `max_bytes`.
/// `Ok(Failed)` is the script's own SQL error (the file is then of no use); `Err` is a fault of
/// this node (or a script that could not be read). `settings` are the node's, as on the
/// writer (`-fk`).
pub fn build_from(
    script: impl std::io::Read + Send,
    out: &Path,
    layout: &BlankLayout,
    env: ApplyEnv,
    settings: &crate::db::DbSettings,
    max_bytes: u64,
) -> anyhow::Result<ScriptOutcome> {
    // Its statement cache matters: a dump's row INSERTs run through one prepared template per
    // table, kept there (`db::literal_insert`), as on the writer.
    let mut conn = crate::db::settings::open_builder(out, settings)
        .with_context(|| format!("create {}", out.display()))?;
    // The layout is fixed by the file's first page, written when the state table is created:
    // a `PRAGMA page_size` in the script then changes nothing here, as on a live database.
    conn.execute_batch(&format!(
        "PRAGMA page_size={}; PRAGMA auto_vacuum={}; PRAGMA encoding='{}';",
        layout.page_size,
        layout.auto_vacuum,
        layout.encoding.replace('\'', "''")
    ))
    .context("set the layout")?;
    crate::store::applied_state::ensure_table(&conn).context("create the state table")?;
    // The file may not grow past `max_bytes`: a bigger one fails with SQLITE_FULL.
    let max_pages = (max_bytes / u64::from(layout.page_size)).max(2);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF; PRAGMA max_page_count={max_pages};"
    ))
    .context("set the build pragmas")?;
    // The entry's clock and seed, as the apply path would use them.
    conn.set_apply_inputs(Some(env.inputs()))
        .context("set the load's clock and seed")?;
    let outcome = crate::db::execute::run_sql_source(
        &conn,
        script,
        settings.foreign_keys,
        env.budget,
        |_| Ok(()),
    )?;
    conn.close().context("close the built database")?;
    if matches!(outcome, ScriptOutcome::Done { .. }) {
        std::fs::File::open(out)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("fsync {}", out.display()))?;
    }
    Ok(outcome)
}

/// Size and CRC-32C of a file, read in 1 MiB pieces: what a member pulling it checks.
pub fn size_and_crc(path: &Path) -> std::io::Result<(u64, u32)> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, crc));
        }
        size += n as u64;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

/// What the leader's look at a SQL load found ([`build_for_blank`], [`BuildJob::finish`]).
pub(super) enum BlankBuild {
    /// The database is not blank: the script runs on every node.
    NotBlank,
    /// The database is blank: the script's database is built and staged.
    Built(Built),
    /// The script's own SQL error: rqlite's 200 with `results[].error`; nothing is proposed.
    ScriptFailed(StatementResult),
}

/// A database built from a staged SQL load, staged for the others.
pub(super) struct Built {
    pub(super) database: BuiltDatabase,
    /// Owns `load-<id>.staged` until the entry is proposed.
    pub(super) guard: TempFile,
    /// The script's result, which the load answers when the built file is installed.
    pub(super) result: StatementResult,
}

/// If the database is blank, runs the staged script at `script_path` into a new database file,
/// leaving `reserve` bytes free, and stages that. `env`: the entry's clock and seed.
pub(super) async fn build_for_blank(
    store: &Store,
    script_path: &Path,
    env: ApplyEnv,
    reserve: u64,
) -> Result<BlankBuild, RestoreError> {
    let script =
        std::fs::File::open(script_path).map_err(|e| build_fault("open the staged SQL", &e))?;
    match BuildJob::start(store, script, env, reserve, None).await? {
        None => Ok(BlankBuild::NotBlank),
        Some(job) => job.finish().await,
    }
}

/// The layout of this node's database if it is blank ([`blank_layout`] on a reader).
async fn current_blank_layout(store: &Store) -> Result<Option<BlankLayout>, RestoreError> {
    store
        .database()
        .with_reader(blank_layout)
        .await
        .map_err(|e| build_fault("check the database is blank", &format!("{e:#}")))?
        .map_err(|e| build_fault("check the database is blank", &e))
}

/// Whether the database is still blank (its layout aside).
pub(super) async fn still_blank(store: &Store) -> Result<bool, RestoreError> {
    Ok(current_blank_layout(store).await?.is_some())
}

fn build_fault(what: &'static str, e: &dyn std::fmt::Display) -> RestoreError {
    RestoreError::BuildFailed {
        what,
        cause: e.to_string(),
    }
}

/// A database being built from a SQL load on a blocking thread, into `load-<id>.part`.
///
/// Started after staging ([`build_for_blank`]) it reads the staged file; started while the
/// body is still arriving ([`BuildJob::start_while_staging`], `/db/load` on a blank leader) it
/// reads the file as it grows ([`super::growing`]), so the build overlaps the upload. Either
/// way it is the same script run by the same builder: a staging that fails or is cut off makes
/// the read fail, never end early, so a partial script is never built. Dropped without
/// [`BuildJob::finish`], the build is abandoned (its next read fails) and its file removed
/// when its thread ends; [`BuildJob::cancel`] also waits for that.
pub(super) struct BuildJob {
    env: ApplyEnv,
    reserve: u64,
    data_dir: std::path::PathBuf,
    task: tokio::task::JoinHandle<BuildOutput>,
    abandon: AbandonOnDrop,
}

/// What the build's thread hands back: its file's guard, whatever happened.
struct BuildOutput {
    id: String,
    guard: TempFile,
    layout: BlankLayout,
    outcome: anyhow::Result<BuildOutcome>,
}

enum BuildOutcome {
    Done {
        result: StatementResult,
        size: u64,
        crc32c: u32,
    },
    ScriptFailed(StatementResult),
    /// The content is a database file, not SQL text (found by its first bytes).
    NotSqlText,
}

struct AbandonOnDrop(Option<std::sync::Arc<super::growing::Growth>>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(growth) = &self.0 {
            growth.abandon();
        }
    }
}

impl BuildJob {
    /// Starts building from the staged file at `part` while staging still writes it
    /// (announced through `growth`), if this node leads and its database is blank; the
    /// entry's clock and seed are stamped now.
    /// `body_len`: the body's declared length (0 if unknown), the room staging will take.
    pub(super) async fn start_while_staging(
        store: &Store,
        part: &Path,
        growth: std::sync::Arc<super::growing::Growth>,
        reserve: u64,
        body_len: u64,
    ) -> Result<Option<BuildJob>, RestoreError> {
        if !store.is_leader() {
            return Ok(None);
        }
        let file = std::fs::File::open(part).map_err(|e| build_fault("open the staged SQL", &e))?;
        let reader = super::growing::GrowingReader::new(
            file,
            growth.clone(),
            store.data_dir().to_path_buf(),
            reserve,
        );
        BuildJob::start(
            store,
            reader,
            store.stamp(),
            reserve,
            Some((growth, body_len)),
        )
        .await
    }

    /// Starts the build of `script` if the database is blank (`None` if it is not).
    /// `staging`: the file's growth and the body's declared length, when staging still runs.
    async fn start(
        store: &Store,
        script: impl std::io::Read + Send + 'static,
        env: ApplyEnv,
        reserve: u64,
        staging: Option<(std::sync::Arc<super::growing::Growth>, u64)>,
    ) -> Result<Option<BuildJob>, RestoreError> {
        let (growth, body_len) = staging.map_or((None, 0), |(g, len)| (Some(g), len));
        let abandon = AbandonOnDrop(growth);
        let Some(layout) = current_blank_layout(store).await? else {
            return Ok(None);
        };
        let data_dir = store.data_dir().to_path_buf();
        let settings = store.database().settings().clone();
        // Like staging, the build leaves `-disk-reserve` free: its file may not grow past the
        // room there is now, less what the body still being staged will take when its length
        // is declared (a build that overlaps staging is also stopped by its reader, which
        // checks the reserve as it goes, and checked once more at the end).
        let room = crate::db::disk::free_bytes(&data_dir)
            .map_err(|e| build_fault("check free space", &e))?
            .saturating_sub(reserve)
            .saturating_sub(body_len);
        let id = unique_suffix();
        let part = part_path(&data_dir, &id);
        let task = tokio::task::spawn_blocking(move || {
            // The thread owns the file's guard, so the file goes only once nothing writes it.
            let guard = TempFile::new(part.clone());
            let outcome = build_outcome(script, &part, &layout, env, &settings, room);
            BuildOutput {
                id,
                guard,
                layout,
                outcome,
            }
        });
        Ok(Some(BuildJob {
            env,
            reserve,
            data_dir,
            task,
            abandon,
        }))
    }

    /// The entry's clock and seed the build runs with.
    pub(super) fn env(&self) -> ApplyEnv {
        self.env
    }

    /// Waits for the build and stages the built file; `source` and `shared` as the script's.
    pub(super) async fn finish(self) -> Result<BlankBuild, RestoreError> {
        let BuildJob {
            reserve,
            data_dir,
            task,
            ..
        } = self;
        let output = task
            .await
            .map_err(|e| build_fault("build the database", &e))?;
        let BuildOutput {
            id,
            mut guard,
            layout,
            outcome,
        } = output;
        let (result, size, crc32c) = match outcome {
            Err(e) if crate::db::error::is_disk_full(&e) => {
                return Err(RestoreError::NoRoomToBuild {
                    reserve,
                    cause: format!("{e:#}"),
                })
            }
            Err(e) => return Err(build_fault("build the database", &format!("{e:#}"))),
            Ok(BuildOutcome::NotSqlText) => {
                return Err(build_fault(
                    "build the database",
                    &"the content is not SQL text",
                ))
            }
            Ok(BuildOutcome::ScriptFailed(error)) => return Ok(BlankBuild::ScriptFailed(error)),
            Ok(BuildOutcome::Done {
                result,
                size,
                crc32c,
            }) => (result, size, crc32c),
        };
        // The room the build started with was shared with staging when the two overlapped.
        crate::db::disk::check_room(&data_dir, 0, reserve, "the built database").map_err(|e| {
            RestoreError::NoRoomToBuild {
                reserve,
                cause: e.to_string(),
            }
        })?;
        guard
            .rename_to(staged_path(&data_dir, &id))
            .map_err(|e| build_fault("stage the built database", &e))?;
        Ok(BlankBuild::Built(Built {
            database: BuiltDatabase {
                database: LoadCommand {
                    id,
                    kind: LoadKind::Sqlite,
                    size,
                    crc32c,
                    // Filled in by the proposal, which names the script's source.
                    source: String::new(),
                    shared: false,
                },
                layout,
            },
            guard,
            result,
        }))
    }

    /// Abandons the build and waits until its thread has ended and its file is removed (the
    /// caller answers next, and a refused load leaves no file).
    pub(super) async fn cancel(self) {
        let BuildJob { task, abandon, .. } = self;
        drop(abandon);
        // The output's guard removes the file as it is dropped here.
        drop(task.await);
    }
}

/// The build's blocking part: refuses a database file by its first bytes, then runs the
/// script into `out` and reads the built file's size and CRC-32C.
fn build_outcome(
    mut script: impl std::io::Read + Send,
    out: &Path,
    layout: &BlankLayout,
    env: ApplyEnv,
    settings: &crate::db::DbSettings,
    room: u64,
) -> anyhow::Result<BuildOutcome> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
    (&mut script)
        .take(SQLITE_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .context("read the staged SQL")?;
    if head.as_slice() == SQLITE_MAGIC.as_slice() {
        return Ok(BuildOutcome::NotSqlText);
    }
    let script = std::io::Cursor::new(head).chain(script);
    let outcome = build_from(script, out, layout, env, settings, room)?;
    if let ScriptOutcome::Failed(_) = outcome {
        return Ok(BuildOutcome::ScriptFailed(outcome.into_result()));
    }
    let (size, crc32c) = size_and_crc(out).context("read the built database")?;
    Ok(BuildOutcome::Done {
        result: outcome.into_result(),
        size,
        crc32c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::SqlLoad;
    use raftlite_ffi::OpenFlags;

    fn open(path: &Path) -> Connection {
        crate::db::settings::open_writer(path, &Default::default()).unwrap()
    }

    fn default_layout() -> BlankLayout {
        BlankLayout {
            page_size: 4096,
            auto_vacuum: 0,
            encoding: "UTF-8".into(),
        }
    }

    /// Writes `text` to `load.sql` in `dir`.
    fn write_script(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("load.sql");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn schema_and_rows(path: &Path) -> String {
        let conn = Connection::open(path, OpenFlags::READ_ONLY).unwrap();
        conn.query_text(&format!(
            "SELECT group_concat(type || ' ' || name || ' ' || coalesce(sql, ''), char(10)) \
             FROM (SELECT * FROM sqlite_schema WHERE name <> '{}' ORDER BY name)",
            crate::db::STATE_TABLE
        ))
        .unwrap()
        .unwrap_or_default()
            + &conn
                .query_text("SELECT group_concat(a || '/' || b, ',') FROM t")
                .unwrap()
                .unwrap_or_default()
    }

    #[test]
    fn blank_means_no_schema_but_the_state_table_and_no_header_values() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("a.db"));
        crate::store::applied_state::ensure_table(&conn).unwrap();
        let layout = blank_layout(&conn).unwrap().expect("blank");
        assert_eq!(layout.page_size, 4096);
        assert_eq!(layout.encoding, "UTF-8");
        conn.execute_batch("PRAGMA user_version=3").unwrap();
        assert_eq!(blank_layout(&conn).unwrap(), None);
        conn.execute_batch("PRAGMA user_version=0; PRAGMA application_id=7")
            .unwrap();
        assert_eq!(blank_layout(&conn).unwrap(), None);
        conn.execute_batch("PRAGMA application_id=0; CREATE VIEW v AS SELECT 1")
            .unwrap();
        assert_eq!(blank_layout(&conn).unwrap(), None);
        conn.execute_batch("DROP VIEW v").unwrap();
        assert_eq!(blank_layout(&conn).unwrap(), Some(layout));
    }

    /// What the build makes equals what the script makes of a blank live database, and a
    /// script's `PRAGMA page_size` does not change the built file's layout.
    #[test]
    fn a_built_database_equals_the_script_run_on_a_blank_one() {
        let dir = tempfile::tempdir().unwrap();
        let sql = write_script(
            &dir,
            "PRAGMA foreign_keys=OFF;\nPRAGMA page_size=8192;\nBEGIN TRANSACTION;\n\
             CREATE TABLE t(a INTEGER PRIMARY KEY AUTOINCREMENT, b TEXT);\n\
             INSERT INTO t VALUES(1,'x;y');\nINSERT INTO t VALUES(2,X'00ff');\n\
             INSERT INTO t(b) VALUES(random() || ' ' || datetime('now'));\n\
             CREATE INDEX tb ON t(b);\nCREATE VIEW v AS SELECT b FROM t;\nCOMMIT;\n",
        );
        let live_path = dir.path().join("live.db");
        let live = open(&live_path);
        crate::store::applied_state::ensure_table(&live).unwrap();
        let layout = blank_layout(&live).unwrap().unwrap();
        let env = ApplyEnv {
            unix_millis: 1_800_000_000_000,
            seed: 42,
            ..ApplyEnv::default()
        };
        live.set_apply_inputs(Some(env.inputs())).unwrap();
        let ran =
            crate::db::execute::run_sql_script(&live, &sql, false, env.budget, |_| Ok(())).unwrap();
        drop(live);
        let built_path = dir.path().join("built.db");
        let built = build(
            &sql,
            &built_path,
            &layout,
            env,
            &Default::default(),
            u64::MAX,
        )
        .unwrap();
        assert_eq!(format!("{ran:?}"), format!("{built:?}"));
        assert!(matches!(built, ScriptOutcome::Done { .. }), "{built:?}");
        let expected = schema_and_rows(&live_path);
        assert!(expected.contains("1/x;y"), "{expected}");
        assert!(
            expected.contains("2027-01-15"),
            "the entry's clock: {expected}"
        );
        assert_eq!(schema_and_rows(&built_path), expected);
        let conn = Connection::open(&built_path, OpenFlags::READ_ONLY).unwrap();
        assert_eq!(conn.query_i64("PRAGMA page_size").unwrap(), Some(4096));
        assert_eq!(
            conn.query_text("PRAGMA quick_check").unwrap().as_deref(),
            Some("ok")
        );
    }

    #[test]
    fn a_failing_script_reports_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let sql = write_script(
            &dir,
            "CREATE TABLE t(a PRIMARY KEY);\nINSERT INTO t VALUES(1);\nINSERT INTO t VALUES(1);\n",
        );
        let layout = default_layout();
        let out = build(
            &sql,
            &dir.path().join("built.db"),
            &layout,
            ApplyEnv::default(),
            &Default::default(),
            u64::MAX,
        )
        .unwrap();
        assert!(
            matches!(&out, ScriptOutcome::Failed(m) if m.contains("UNIQUE")),
            "{out:?}"
        );
    }

    #[test]
    fn a_build_past_its_room_fails_as_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let sql = write_script(
            &dir,
            "CREATE TABLE b(x);\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c \
             WHERE i < 100) INSERT INTO b SELECT zeroblob(100000) FROM c;\n",
        );
        let layout = default_layout();
        let out = dir.path().join("built.db");
        let err = build(
            &sql,
            &out,
            &layout,
            ApplyEnv::default(),
            &Default::default(),
            1 << 20,
        )
        .unwrap_err();
        assert!(crate::db::error::is_disk_full(&err), "{err:#}");
        assert!(std::fs::metadata(&out).unwrap().len() <= 1 << 20);
        // With room, the same script builds.
        let ok = build(
            &sql,
            &out.with_extension("2"),
            &layout,
            ApplyEnv::default(),
            &Default::default(),
            u64::MAX,
        );
        assert!(matches!(ok, Ok(ScriptOutcome::Done { .. })), "{ok:?}");
    }

    /// A build started before the kind was known stops at a database file's first bytes,
    /// without creating its output; SQL text shorter than the magic still builds.
    #[test]
    fn a_build_stops_at_a_database_files_magic() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("built.db");
        let build_of = |body: Vec<u8>| {
            build_outcome(
                std::io::Cursor::new(body),
                &out,
                &default_layout(),
                ApplyEnv::default(),
                &Default::default(),
                u64::MAX,
            )
            .unwrap()
        };
        let mut body = SQLITE_MAGIC.to_vec();
        body.extend_from_slice(&[0u8; 4096]);
        assert!(matches!(build_of(body), BuildOutcome::NotSqlText));
        assert!(!out.exists());
        let outcome = build_of(b"CREATE TABLE t(a);".to_vec());
        assert!(matches!(outcome, BuildOutcome::Done { .. }));
    }

    #[test]
    fn the_branch_follows_the_layout_at_the_entry() {
        let cmd = |id: &str| LoadCommand {
            id: id.into(),
            kind: crate::db::restore_file::LoadKind::Sql,
            size: 1,
            crc32c: 0,
            source: "s".into(),
            shared: true,
        };
        let layout = default_layout();
        let mut load = SqlLoad {
            script: cmd("1"),
            env: ApplyEnv::default(),
            built: None,
        };
        assert_eq!(load.choose(Some(&layout)).id, "1", "nothing built");
        assert!(load.unused(&load.script).is_none());
        load.built = Some(BuiltDatabase {
            database: cmd("2"),
            layout: layout.clone(),
        });
        assert_eq!(load.choose(Some(&layout)).id, "2");
        assert_eq!(load.choose(None).id, "1");
        let other = BlankLayout {
            page_size: 8192,
            ..layout
        };
        assert_eq!(load.choose(Some(&other)).id, "1");
        assert_eq!(load.unused(&load.script).unwrap().id, "2");
        assert_eq!(load.unused(load.choose(None)).unwrap().id, "2");
        assert_eq!(load.unused(&cmd("2")).unwrap().id, "1");
    }
}
