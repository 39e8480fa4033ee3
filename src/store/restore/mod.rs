//! Restores: a SQLite file or SQL text that replaces or extends the database of every node.
//! `POST /db/load`, `POST /boot` and the console's staged restores all go through this
//! module; their HTTP handlers only parse parameters, forward, and answer. It owns staging,
//! validation (through `db::restore_file`), the build of a SQL load into a blank cluster,
//! the proposal, and what each node does when it applies the entry. It does not own the entry
//! types (`store::types`: `LoadCommand`, `SqlLoad`, `BuiltDatabase`, `BlankLayout`, the log's
//! format) nor the apply loop (`store::state_machine`, which calls [`replicate`]).
//!
//! The API:
//! - [`stage`]: a body, as it arrives, becomes staged, validated content ([`Staged`]) with its
//!   report. Nothing has changed yet: a dry run stops here.
//! - [`propose`]: staged content becomes one Raft entry; it returns once this node has
//!   applied the entry ([`Restored`]: the results, the log index, the report).
//! - [`stage_for_later`] and [`pending::PendingRestores`]: staging now and proposing after a
//!   confirmation (the console's restores): the reserve must stay free once the file is
//!   staged, and the registry holds it, bounded and for a limited time, until it is taken to
//!   be proposed, discarded, or expires.
//! - Every failure is a [`RestoreError`]; the HTTP side maps its variants to answers in one
//!   function (`http::load_routes::restore_error`).
//!
//! The steps:
//! 1. **Stage** (the leader; [`stage`]): the body streams into `load-<id>.part` through
//!    `db::restore_file::Stager` (gzip or zstd decompressed on the fly, the kind told by content, a
//!    WAL-mode header rewritten, `-max-load-size` counted on the decompressed bytes, CRC-32C
//!    in the same pass), then the file is validated: a database file by header, page count
//!    and `quick_check` (`integrity_check` on request), SQL text by its first word.
//! 2. **Build once** (the leader, SQL text only; [`build_once`]): when the database is blank,
//!    the script runs into a new database file, staged beside it, so the cluster can install
//!    one file instead of running the script on every node. For `/db/load` the build starts
//!    with the upload and reads the staged file as it grows ([`growing`]), so the two
//!    overlap; a body that fails staging or validation stops it, and nothing it wrote stays.
//! 3. **Propose** (the leader; [`propose`]): the file is renamed to `load-<id>.staged` and
//!    one small entry names it: `Command::Load` for a database file, `Command::LoadSql` for
//!    SQL text (with the built file, if any). The content never enters the log.
//! 4. **Replicate** (every node, when it applies the entry; [`replicate`]): the content is
//!    found locally or pulled from the source, checked against the entry's size and CRC,
//!    then run or installed.
//!
//! A binary load and a SQL load: a database file *replaces* the database: every node installs
//! the file, with its state table rewritten to the entry's log id and membership, fsynced, and
//! swapped in by the swap protocol. SQL text *extends* it: every node runs the script in the
//! entry's one write transaction, with the leader's clock and seed, all or nothing; an SQL
//! error is the entry's result (rqlite's 200 with `results[].error`), the same on every node.
//! Into a blank cluster the leader builds the script's database once ([`build_once`]); an SQL
//! error there ends the load before anything is proposed, and every node still blank at the
//! entry installs the built file as a binary load, any other runs the script.
//!
//! A follower stages nothing: `/db/load` is forwarded to the leader (`http::load_routes`),
//! and [`propose`] on a node that is not the leader answers [`RestoreError::NotLeader`]. A
//! follower takes part when it applies the entry: it pulls the content from the source (or
//! another member) into its own data directory, then runs or installs it ([`replicate`]).
//!
//! Invariants:
//! - Every file this module creates belongs to a [`crate::temp_file::TempFile`] until it is
//!   renamed into place: the staged upload and a built database until their entry is
//!   appended (then the state machine owns them), a pulled copy until it is complete and
//!   verified. A refused, failed or abandoned restore leaves nothing behind; startup removes
//!   what a crash left ([`files`]).
//! - Nothing is proposed until the content is validated: a [`Staged`] is made only by
//!   [`stage`], after the whole body is staged and checked.
//! - Nothing changes on a node before the content is local, complete, and matches the entry's
//!   size and CRC-32C.
//! - The disk reserve: staging, building and keeping a staged file leave `-disk-reserve`
//!   bytes free: checked before staging when the body declares its length, every 16 MiB while
//!   it is written, after it when it is kept for later, and as the built file's page limit
//!   (answered 507). A pull on another node is not held to it: its entry is committed, and
//!   applying it is the only way forward.

pub mod build_once;
pub mod files;
mod growing;
pub mod pending;
pub mod replicate;
mod stage;

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;

use crate::db::disk::check_room;
use crate::db::request::StatementResult;
use crate::db::restore_file::{LoadError, LoadKind, StagedInfo};
use crate::store::types::{LoadCommand, SqlLoad};
use crate::store::{NodeInfo, Store, StoreError};
use crate::temp_file::{unique_suffix, TempFile};
use build_once::{BlankBuild, BuildJob};

/// The sizes a restore may take.
#[derive(Debug, Clone, Copy)]
pub struct RestoreLimits {
    /// `-max-load-size`: the largest body and content (decompressed), in bytes.
    pub max_size: Option<u64>,
    /// `-disk-reserve`: bytes that must stay free on the data directory's file system.
    pub disk_reserve: u64,
}

/// Checks a caller asks for beyond those every body gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageChecks {
    /// `PRAGMA integrity_check` instead of `quick_check` (`?integrity_check`).
    pub integrity_check: bool,
    /// Only a database file is accepted (`/boot`): anything else is refused before validation.
    pub sqlite_only: bool,
    /// The caller proposes the content as soon as it is staged (`/db/load`): SQL text for a
    /// blank database starts building while the body still arrives ([`BuildJob`]).
    pub build_while_staging: bool,
}

/// A body staged in `load-<id>.part` and validated, not yet proposed. Dropping it removes
/// the file.
pub struct Staged {
    id: String,
    guard: TempFile,
    info: StagedInfo,
    report: serde_json::Value,
    /// The build started while staging, if any (dropped with the content, it stops).
    build: Option<BuildJob>,
}

impl Staged {
    /// The `"load"` report: kind, bytes, received, gzip, zstd, phases (and, for a database file,
    /// pages, page_size, tables).
    pub fn report(&self) -> &serde_json::Value {
        &self.report
    }
}

/// A restore whose entry this node has applied, or a SQL load whose script failed while it
/// was built (nothing proposed).
#[derive(Debug)]
pub struct Restored {
    /// What the load answers: the script's result (SQL text), nothing for a database file.
    pub results: Vec<StatementResult>,
    /// The entry's log index; `None` when nothing was proposed.
    pub raft_index: Option<u64>,
    /// The staging report with the proposal's phases added (and, for SQL text, `built`, and
    /// `installed_built` when the built file was installed).
    pub report: serde_json::Value,
}

/// Why a restore stopped. Nothing changed unless the variant says so.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The body was refused while it was staged or validated: the client's input, or this
    /// node's disk (see [`LoadError::is_local`]).
    #[error(transparent)]
    Input(#[from] LoadError),
    /// The body ended before it was complete (the client went away, or its connection broke).
    #[error("load body cut off: {0}")]
    CutOff(String),
    /// `/boot` takes a database file only.
    #[error("invalid SQLite data")]
    NotSqlite,
    /// A body staged to be proposed later left less than the reserve free (or the free space
    /// could not be read); the file is removed.
    #[error("{0}")]
    NoRoomToKeep(std::io::Error),
    /// The database built from a SQL load would eat into the reserve.
    #[error(
        "SQL load: not enough disk space to build the database ({reserve} bytes must stay \
         free, -disk-reserve): {cause}"
    )]
    NoRoomToBuild { reserve: u64, cause: String },
    /// A fault of this node while building the database of a SQL load.
    #[error("SQL load: {what}: {cause}")]
    BuildFailed { what: &'static str, cause: String },
    /// A fault of this node while staging or validating (a file it cannot create or rename, a
    /// task that failed).
    #[error("{0}")]
    Failed(String),
    /// This node is not the leader (or lost leadership before the entry was appended): nothing
    /// was proposed, and the staged files are gone.
    #[error("not leader")]
    NotLeader { leader: Option<NodeInfo> },
    /// The proposal failed after the entry may have been appended: it may still commit, so
    /// the staged files are kept for the nodes that will pull them (startup removes them once
    /// they are old).
    #[error("load: {0}")]
    Proposal(StoreError),
    /// [`pending::MAX_PENDING`] restores are already waiting for a confirmation or being
    /// uploaded.
    #[error(
        "{} restores are already staged or uploading; install or discard one",
        pending::MAX_PENDING
    )]
    TooManyPending,
    /// No pending restore has that id: it was discarded, installed or expired (or never was).
    #[error("no such staged restore (discarded, installed or expired)")]
    NotPending,
}

/// Streams `body` into a new staged file and validates it; nothing changes yet.
/// `declared`: the body's length, if it says: a body that cannot fit above the reserve is
/// refused before a byte is written; any body is also stopped at the reserve while it is
/// staged.
pub async fn stage<S, E>(
    store: &Store,
    body: S,
    declared: Option<u64>,
    limits: RestoreLimits,
    checks: StageChecks,
) -> Result<Staged, RestoreError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let data_dir = store.data_dir();
    // Backup copies kept for reuse give their room to the load (they hold the content the
    // load is about to replace; streams reading them keep their files until they end).
    store.backups().release_kept();
    if let Some(n) = declared {
        check_room(data_dir, n, limits.disk_reserve, "the load").map_err(LoadError::Io)?;
    }
    let id = unique_suffix();
    let part = files::part_path(data_dir, &id);
    let guard = TempFile::new(part.clone());
    let file = stage::create(&part)?;
    let growth = growing::Growth::new();
    let build = if checks.build_while_staging && !checks.sqlite_only {
        BuildJob::start_while_staging(
            store,
            &part,
            growth.clone(),
            limits.disk_reserve,
            declared.unwrap_or(0),
        )
        .await?
    } else {
        None
    };
    let staging = Instant::now();
    let staged = async {
        let info = stage::receive(body, file, &part, limits, growth).await?;
        let uploaded = staging.elapsed();
        if checks.sqlite_only && info.kind != LoadKind::Sqlite {
            return Err(RestoreError::NotSqlite);
        }
        let sqlite = stage::validate(&part, info.kind, checks.integrity_check).await?;
        let report = stage::report(&info, uploaded, staging.elapsed() - uploaded, sqlite);
        Ok((info, report))
    }
    .await;
    match staged {
        Ok((info, report)) => Ok(Staged {
            id,
            guard,
            info,
            report,
            build,
        }),
        Err(e) => {
            // Refused: the build stops and its file goes before the answer.
            if let Some(build) = build {
                build.cancel().await;
            }
            Err(e)
        }
    }
}

/// [`stage`] for content that waits for a confirmation before [`propose`] (the console's
/// restores): the file stays on disk meanwhile, so the reserve must still be free once it is
/// staged (the staging writer checks every 16 MiB; this checks the last stretch).
pub async fn stage_for_later<S, E>(
    store: &Store,
    body: S,
    declared: Option<u64>,
    limits: RestoreLimits,
) -> Result<Staged, RestoreError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let staged = stage(store, body, declared, limits, StageChecks::default()).await?;
    check_room(store.data_dir(), 0, limits.disk_reserve, "the upload")
        .map_err(RestoreError::NoRoomToKeep)?;
    Ok(staged)
}

/// Renames staged content to `load-<id>.staged` and proposes its entry (this node must lead),
/// then waits until this node has applied it. SQL text on a blank database is first built
/// into a database file, which the entry offers in the script's place ([`build_once`]).
/// `started`: when the restore began, for the log.
pub async fn propose(
    store: &Store,
    staged: Staged,
    limits: RestoreLimits,
    started: Instant,
) -> Result<Restored, RestoreError> {
    let Staged {
        id,
        mut guard,
        info,
        mut report,
        build,
    } = staged;
    let cmd = LoadCommand {
        id,
        kind: info.kind,
        size: info.size,
        crc32c: info.crc32c,
        source: store.node().raft_addr.clone(),
        shared: !store.is_single_node(),
    };
    // The script stays a `.part` file while it builds: a crash then leaves nothing behind
    // that startup keeps.
    let sql = if info.kind == LoadKind::Sql {
        let building = Instant::now();
        // A build started while staging ran with its own stamp, which the entry then carries.
        let (env, blank) = match build {
            Some(build) => {
                report["built_while_uploading"] = true.into();
                let env = build.env();
                let blank = match build.finish().await? {
                    // The build looked at the database when the upload began; a script
                    // that failed there may run on what was written since.
                    BlankBuild::ScriptFailed(_) if !build_once::still_blank(store).await? => {
                        BlankBuild::NotBlank
                    }
                    other => other,
                };
                (env, blank)
            }
            None => {
                let env = store.stamp();
                let blank =
                    build_once::build_for_blank(store, guard.path(), env, limits.disk_reserve)
                        .await?;
                (env, blank)
            }
        };
        let built = match blank {
            BlankBuild::NotBlank => None,
            BlankBuild::Built(mut built) => {
                built.database.database.source = cmd.source.clone();
                built.database.database.shared = cmd.shared;
                Some(built)
            }
            BlankBuild::ScriptFailed(error) => {
                return Ok(Restored {
                    results: vec![error],
                    raft_index: None,
                    report,
                })
            }
        };
        // After staging: the part of the build that did not overlap the upload.
        report["phases"]["build_s"] = building.elapsed().as_secs_f64().into();
        report["built"] = built.is_some().into();
        Some((env, built))
    } else {
        if let Some(build) = build {
            build.cancel().await;
        }
        None
    };
    guard
        .rename_to(files::staged_path(store.data_dir(), &cmd.id))
        .map_err(|e| RestoreError::Failed(format!("stage load data: rename: {e}")))?;
    let mut guards = vec![guard];
    let mut built_result = None;
    tracing::info!(
        kind = info.kind.as_str(),
        bytes = info.size,
        built = sql.as_ref().is_some_and(|(_, b)| b.is_some()),
        secs = started.elapsed().as_secs_f64(),
        "load staged and validated; proposing"
    );
    let proposed = Instant::now();
    let outcome = match sql {
        Some((env, built)) => {
            let built = built.map(|b| {
                guards.push(b.guard);
                built_result = Some(b.result);
                b.database
            });
            let load = SqlLoad {
                script: cmd,
                env,
                built,
            };
            store.propose_sql_load(load).await
        }
        None => store.propose_load(cmd).await,
    };
    match outcome {
        Ok(mut w) => {
            // The state machine owns the staged files now (consumed, or kept for peers).
            for guard in guards {
                guard.persist();
            }
            store.counters.loads.fetch_add(1, Ordering::Relaxed);
            report["phases"]["install_s"] = proposed.elapsed().as_secs_f64().into();
            // An installed built database answers nothing itself: the script's result is the
            // build's. (When the script ran instead, the entry answers with its own result.)
            if let (Some(result), true) = (built_result, w.results.results.is_empty()) {
                report["installed_built"] = true.into();
                w.results.results = vec![result];
            }
            Ok(Restored {
                results: w.results.results,
                raft_index: Some(w.raft_index),
                report,
            })
        }
        // Never appended: the staged files go with the guards.
        Err(StoreError::NotLeader { leader }) => Err(RestoreError::NotLeader { leader }),
        Err(e) => {
            // The entry may still commit: keep the files for the nodes that will pull them.
            for guard in guards {
                guard.persist();
            }
            Err(RestoreError::Proposal(e))
        }
    }
}
