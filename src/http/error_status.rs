//! Where errors become HTTP statuses: the one place for every typed error a route meets
//! (docs/error-handling.md, "Where errors become HTTP answers").
//!
//! Route modules build the body (rqlite's shapes: JSON with an `error` field, or Go-style
//! plain text) and handle what is not a status (forwarding to the leader, redirects,
//! `Retry-After`); the status itself is decided here, and so is the log line for a fault of
//! this node, so each fault is logged once whichever route met it.
//!
//! The rules, for every error type alike: the caller's mistake is a 4xx; a node that cannot
//! serve now but will (shutting down, no leader, too busy) is a 503; a full disk or a reached
//! `-disk-reserve` is a 507; any other fault of this node is a 500.

use std::io;

use actix_web::http::StatusCode;

use super::body::BodyError;
use super::content_coding::CodingError;
use crate::cluster::stepdown::StepdownError;
use crate::db::DbError;
use crate::store::backup::BackupError;
use crate::store::restore::RestoreError;
use crate::store::{NotFresh, StoreError};

/// A request body that was refused before it ran: 413 when it is too large to hold, else 400.
pub fn body(e: &BodyError) -> StatusCode {
    match e {
        BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A failure of the database itself: 503 while the node shuts down, 507 on a full disk,
/// else 500.
pub fn database(e: &DbError) -> StatusCode {
    if !e.is_local_fault() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    tracing::warn!("database fault: {e}");
    if e.is_disk_full() {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// A `/db/execute`, `/db/query` or `/db/request` that failed as a whole (the route forwards a
/// `NotLeader` when it can; this is the status when it cannot). rqlite answers a failure that
/// is not about leadership or availability with 200 and the message in the body's `error`
/// field, where its clients look for it: `OK` here means exactly that.
pub fn store(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Database(db) if !db.is_local_fault() => database(db),
        StoreError::Database(db) => {
            tracing::warn!("database fault: {db}");
            StatusCode::OK
        }
        StoreError::StaleRead
        | StoreError::LinearizableTimeout { .. }
        | StoreError::ApplyTimeout { .. }
        | StoreError::Internal(_) => StatusCode::OK,
        // Refused before the log: the leader's disk is nearly full.
        StoreError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
    }
}

/// A stepdown that did not happen (`POST /leader`; the route forwards a `NotLeader` when it
/// can): 400 for a target that cannot lead, 503 when no other voter took over.
pub fn stepdown(e: &StepdownError) -> StatusCode {
    match e {
        StepdownError::BadTarget(_) => StatusCode::BAD_REQUEST,
        StepdownError::NotLeader { .. }
        | StepdownError::NoOtherVoter
        | StepdownError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A backup that cannot run: 503 when too many copies are in progress (the route adds
/// `Retry-After`), 507 when a copy would cross `-disk-reserve`, else 500.
pub fn backup(e: &BackupError) -> StatusCode {
    match e {
        BackupError::TooManyCopies(_) => StatusCode::SERVICE_UNAVAILABLE,
        BackupError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        BackupError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A backup compression that cannot be chosen: 400 for a `compress=` value that names none,
/// 406 when `Accept-Encoding` refuses identity and accepts nothing offered.
pub fn content_coding(e: &CodingError) -> StatusCode {
    match e {
        CodingError::UnknownCompress(_) => StatusCode::BAD_REQUEST,
        CodingError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
    }
}

/// A follower not recent enough for a backup's `freshness` or `min_index`, when the client
/// did not ask for the leader's copy instead (`stale=forward`): 503, a node that cannot serve
/// this now. A stale `level=none` read answers 200 with `error` (rqlite's shape for query
/// results), but a backup's 200 means its body is the backup: a client would save the
/// message as its file.
pub fn not_fresh(e: &NotFresh) -> StatusCode {
    match e {
        NotFresh::LeaderContact { .. } | NotFresh::Behind { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A restore that stopped (`/db/load`, `/boot` and the console's restores). A `NotLeader`
/// is 503 here; the route redirects instead when asked to and a leader is known.
pub fn restore(e: &RestoreError) -> StatusCode {
    match e {
        RestoreError::Input(input) if input.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
        RestoreError::Input(input) if input.is_disk_full() => {
            tracing::warn!("load refused: {input}");
            StatusCode::INSUFFICIENT_STORAGE
        }
        RestoreError::Input(input) if input.is_local() => {
            tracing::warn!("load failed: {input}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        RestoreError::Input(_) | RestoreError::CutOff(_) | RestoreError::NotSqlite => {
            StatusCode::BAD_REQUEST
        }
        RestoreError::NoRoomToKeep(io) if io.kind() == io::ErrorKind::StorageFull => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        RestoreError::NoRoomToKeep(_) | RestoreError::Failed(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        RestoreError::NoRoomToBuild { cause, .. } => {
            tracing::warn!("SQL load refused: build the database: {cause}");
            StatusCode::INSUFFICIENT_STORAGE
        }
        RestoreError::BuildFailed { .. } => {
            tracing::warn!("{e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        RestoreError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RestoreError::Proposal(StoreError::Database(db)) => database(db),
        RestoreError::Proposal(cause) => {
            tracing::warn!("load failed: {cause}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        RestoreError::TooManyPending => StatusCode::SERVICE_UNAVAILABLE,
        RestoreError::NotPending => StatusCode::NOT_FOUND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> raftlite_ffi::Error {
        raftlite_ffi::Error::new(raftlite_ffi::sys::SQLITE_FULL, "database or disk is full")
    }

    #[test]
    fn a_database_fault_is_503_while_closing_507_when_full_else_500() {
        assert_eq!(database(&DbError::Closed), StatusCode::SERVICE_UNAVAILABLE);
        let open_full = DbError::Open {
            what: "a read connection",
            path: "db.sqlite".into(),
            source: full(),
        };
        assert_eq!(database(&open_full), StatusCode::INSUFFICIENT_STORAGE);
        let swap_full = DbError::Swap {
            step: crate::db::SwapStep::SyncDirectory,
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert_eq!(database(&swap_full), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(
            database(&DbError::WriterStopped),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_store_failure_is_an_error_field_unless_the_node_is_closing_or_leaderless() {
        assert_eq!(
            store(&StoreError::Database(DbError::Closed)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            store(&StoreError::NotLeader { leader: None }),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            store(&StoreError::Database(DbError::WriterStopped)),
            StatusCode::OK
        );
        assert_eq!(store(&StoreError::StaleRead), StatusCode::OK);
    }

    #[test]
    fn a_follower_too_stale_for_a_backup_is_503() {
        let stale = NotFresh::LeaderContact {
            age: None,
            freshness: std::time::Duration::from_secs(1),
        };
        assert_eq!(not_fresh(&stale), StatusCode::SERVICE_UNAVAILABLE);
        let behind = NotFresh::Behind {
            applied: 3,
            min_index: 9,
            waited: std::time::Duration::from_millis(1500),
        };
        assert_eq!(not_fresh(&behind), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            behind.to_string(),
            "behind: applied index 3 is below min_index 9 after waiting 1.5s"
        );
        assert_eq!(
            stale.to_string(),
            "stale: last contact with the leader never (since this node started), more than freshness 1s"
        );
    }
}
