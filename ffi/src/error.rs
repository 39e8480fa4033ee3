//! Errors from SQLite: the (extended) result code plus the message SQLite gave.

use std::fmt;

use libsqlite3_sys as sys;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The primary SQLite result codes raftlite tells apart. Everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Generic SQL error (syntax, no such table, ...).
    Error,
    Internal,
    Permission,
    Abort,
    Busy,
    Locked,
    NoMemory,
    ReadOnly,
    Interrupt,
    IoErr,
    Corrupt,
    NotFound,
    Full,
    CantOpen,
    Protocol,
    Schema,
    TooBig,
    Constraint,
    Mismatch,
    Misuse,
    Auth,
    Range,
    NotADatabase,
    Other(i32),
}

impl ErrorCode {
    pub fn from_primary(code: i32) -> ErrorCode {
        match code & 0xff {
            sys::SQLITE_ERROR => ErrorCode::Error,
            sys::SQLITE_INTERNAL => ErrorCode::Internal,
            sys::SQLITE_PERM => ErrorCode::Permission,
            sys::SQLITE_ABORT => ErrorCode::Abort,
            sys::SQLITE_BUSY => ErrorCode::Busy,
            sys::SQLITE_LOCKED => ErrorCode::Locked,
            sys::SQLITE_NOMEM => ErrorCode::NoMemory,
            sys::SQLITE_READONLY => ErrorCode::ReadOnly,
            sys::SQLITE_INTERRUPT => ErrorCode::Interrupt,
            sys::SQLITE_IOERR => ErrorCode::IoErr,
            sys::SQLITE_CORRUPT => ErrorCode::Corrupt,
            sys::SQLITE_NOTFOUND => ErrorCode::NotFound,
            sys::SQLITE_FULL => ErrorCode::Full,
            sys::SQLITE_CANTOPEN => ErrorCode::CantOpen,
            sys::SQLITE_PROTOCOL => ErrorCode::Protocol,
            sys::SQLITE_SCHEMA => ErrorCode::Schema,
            sys::SQLITE_TOOBIG => ErrorCode::TooBig,
            sys::SQLITE_CONSTRAINT => ErrorCode::Constraint,
            sys::SQLITE_MISMATCH => ErrorCode::Mismatch,
            sys::SQLITE_MISUSE => ErrorCode::Misuse,
            sys::SQLITE_AUTH => ErrorCode::Auth,
            sys::SQLITE_RANGE => ErrorCode::Range,
            sys::SQLITE_NOTADB => ErrorCode::NotADatabase,
            other => ErrorCode::Other(other),
        }
    }
}

/// An error returned by SQLite, or by this wrapper for misuse it caught before calling SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The extended result code (`SQLITE_IOERR_FSYNC`, `SQLITE_CONSTRAINT_UNIQUE`, ...).
    pub extended_code: i32,
    /// The message, as SQLite's `sqlite3_errmsg` gave it, or the wrapper's own text.
    pub message: String,
}

impl Error {
    pub fn new(extended_code: i32, message: impl Into<String>) -> Error {
        Error {
            extended_code,
            message: message.into(),
        }
    }

    /// The error for a call on a connection that was already closed.
    pub fn closed() -> Error {
        Error::new(sys::SQLITE_MISUSE, "connection is closed")
    }

    /// The error for text handed to SQLite that contains a NUL byte where SQLite needs a C string.
    pub fn interior_nul(what: &str) -> Error {
        Error::new(sys::SQLITE_MISUSE, format!("{what} contains a NUL byte"))
    }

    pub fn code(&self) -> ErrorCode {
        ErrorCode::from_primary(self.extended_code)
    }

    /// The primary result code (the low byte of the extended code).
    pub fn primary_code(&self) -> i32 {
        self.extended_code & 0xff
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
