//! Callbacks SQLite makes into the caller: the authorizer (`sqlite3_set_authorizer`) and the
//! progress handler (`sqlite3_progress_handler`).
//!
//! The authorizer is asked about every action a statement will take while the statement is
//! being compiled: each table and column read or written, each pragma with its argument, each
//! function called, `ATTACH`, transaction control, and the same for the bodies of the
//! triggers and views the statement reaches (SQLite compiles those into the statement). Its
//! answer decides whether the statement may be prepared at all, whatever the shape of the text
//! (`EXPLAIN`, a trigger, a CTE, a pragma table-valued function). It is asked again whenever
//! SQLite re-prepares a statement after a schema change.
//!
//! The progress handler is called every N virtual-machine instructions while statements run,
//! and can stop the running statement (it then fails with `SQLITE_INTERRUPT`).
//!
//! This module holds no policy: the caller implements [`Authorizer`] and [`ProgressHandler`].
//!
//! Invariants: a registered hook lives (inside its [`Connection`]) at least as long as SQLite
//! may call it: until it is replaced, or the handle is closed. A callback never unwinds into
//! C: a panic in the caller's code denies the action (authorizer) or stops the statement
//! (progress handler).

use std::any::Any;
use std::borrow::Cow;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Arc;

use libsqlite3_sys as sys;

/// What a statement asks to do: SQLite's authorizer action codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAction {
    CreateIndex,
    CreateTable,
    CreateTempIndex,
    CreateTempTable,
    CreateTempTrigger,
    CreateTempView,
    CreateTrigger,
    CreateView,
    Delete,
    DropIndex,
    DropTable,
    DropTempIndex,
    DropTempTable,
    DropTempTrigger,
    DropTempView,
    DropTrigger,
    DropView,
    Insert,
    Pragma,
    Read,
    Select,
    Transaction,
    Update,
    Attach,
    Detach,
    AlterTable,
    Reindex,
    Analyze,
    CreateVtable,
    DropVtable,
    Function,
    Savepoint,
    Recursive,
    /// A code this version of the wrapper does not know.
    Other(i32),
}

impl AuthAction {
    fn from_code(code: c_int) -> AuthAction {
        match code {
            sys::SQLITE_CREATE_INDEX => AuthAction::CreateIndex,
            sys::SQLITE_CREATE_TABLE => AuthAction::CreateTable,
            sys::SQLITE_CREATE_TEMP_INDEX => AuthAction::CreateTempIndex,
            sys::SQLITE_CREATE_TEMP_TABLE => AuthAction::CreateTempTable,
            sys::SQLITE_CREATE_TEMP_TRIGGER => AuthAction::CreateTempTrigger,
            sys::SQLITE_CREATE_TEMP_VIEW => AuthAction::CreateTempView,
            sys::SQLITE_CREATE_TRIGGER => AuthAction::CreateTrigger,
            sys::SQLITE_CREATE_VIEW => AuthAction::CreateView,
            sys::SQLITE_DELETE => AuthAction::Delete,
            sys::SQLITE_DROP_INDEX => AuthAction::DropIndex,
            sys::SQLITE_DROP_TABLE => AuthAction::DropTable,
            sys::SQLITE_DROP_TEMP_INDEX => AuthAction::DropTempIndex,
            sys::SQLITE_DROP_TEMP_TABLE => AuthAction::DropTempTable,
            sys::SQLITE_DROP_TEMP_TRIGGER => AuthAction::DropTempTrigger,
            sys::SQLITE_DROP_TEMP_VIEW => AuthAction::DropTempView,
            sys::SQLITE_DROP_TRIGGER => AuthAction::DropTrigger,
            sys::SQLITE_DROP_VIEW => AuthAction::DropView,
            sys::SQLITE_INSERT => AuthAction::Insert,
            sys::SQLITE_PRAGMA => AuthAction::Pragma,
            sys::SQLITE_READ => AuthAction::Read,
            sys::SQLITE_SELECT => AuthAction::Select,
            sys::SQLITE_TRANSACTION => AuthAction::Transaction,
            sys::SQLITE_UPDATE => AuthAction::Update,
            sys::SQLITE_ATTACH => AuthAction::Attach,
            sys::SQLITE_DETACH => AuthAction::Detach,
            sys::SQLITE_ALTER_TABLE => AuthAction::AlterTable,
            sys::SQLITE_REINDEX => AuthAction::Reindex,
            sys::SQLITE_ANALYZE => AuthAction::Analyze,
            sys::SQLITE_CREATE_VTABLE => AuthAction::CreateVtable,
            sys::SQLITE_DROP_VTABLE => AuthAction::DropVtable,
            sys::SQLITE_FUNCTION => AuthAction::Function,
            sys::SQLITE_SAVEPOINT => AuthAction::Savepoint,
            sys::SQLITE_RECURSIVE => AuthAction::Recursive,
            other => AuthAction::Other(other),
        }
    }
}

/// One question to the authorizer. The meaning of `arg1` and `arg2` depends on the action
/// (SQLite's table: for `Pragma`, the pragma's name and its argument; for `Read`, the table and
/// the column; for `Function`, `arg2` is the function's name; for `Attach`, `arg1` is the file
/// name; for `Savepoint`, the operation and the savepoint's name...).
#[derive(Debug, Clone)]
pub struct AuthRequest<'a> {
    pub action: AuthAction,
    pub arg1: Option<Cow<'a, str>>,
    pub arg2: Option<Cow<'a, str>>,
    /// The schema the action applies to (`main`, `temp`, an attached name), when there is one.
    pub database: Option<Cow<'a, str>>,
    /// The innermost trigger or view whose code asks, or None for the statement's own text.
    pub accessor: Option<Cow<'a, str>>,
}

/// The authorizer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    Allow,
    /// The statement fails to prepare with `SQLITE_AUTH` ("not authorized").
    Deny,
    /// The action is skipped: a column read gives NULL, a `DELETE` becomes a slow delete...
    /// (see SQLite's documentation for each action).
    Ignore,
}

/// Decides what statements may do. Called on the thread that prepares the statement.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, request: &AuthRequest<'_>) -> Authorization;
}

/// Called every N virtual-machine instructions of running statements.
pub trait ProgressHandler: Send + Sync + 'static {
    /// False stops the running statement: it fails with `SQLITE_INTERRUPT`.
    fn keep_going(&self) -> bool;
}

/// A hook registered on a connection: the pointer SQLite holds, and the same value as `Any`
/// for [`crate::Connection::authorizer`]. The box gives the pointer a stable address.
pub(crate) struct Registered<T: ?Sized> {
    pub(crate) hook: Box<Arc<T>>,
    pub(crate) any: Arc<dyn Any + Send + Sync>,
}

impl<T: ?Sized> Registered<T> {
    /// `hook` and `any` are the same value, seen as the hook's trait and as `Any`.
    pub(crate) fn new(any: Arc<dyn Any + Send + Sync>, hook: Arc<T>) -> Registered<T> {
        Registered {
            hook: Box::new(hook),
            any,
        }
    }

    /// The pointer handed to SQLite as the callback's user data.
    pub(crate) fn user_data(&self) -> *mut c_void {
        &*self.hook as *const Arc<T> as *mut c_void
    }
}

/// A C string argument of a callback, or None for a null pointer.
///
/// # Safety
/// `p` is null or a NUL-terminated string valid for `'a`.
unsafe fn arg<'a>(p: *const c_char) -> Option<Cow<'a, str>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    Some(String::from_utf8_lossy(bytes))
}

/// The `xAuth` SQLite calls. `user_data` is a [`Registered::user_data`] pointer.
pub(crate) unsafe extern "C" fn authorizer_trampoline(
    user_data: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    database: *const c_char,
    accessor: *const c_char,
) -> c_int {
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: SQLite passes back the pointer given to sqlite3_set_authorizer, which points
        // at the `Arc` inside a `Registered` the connection keeps alive while it is set.
        let hook = unsafe { &*(user_data as *const Arc<dyn Authorizer>) };
        // SAFETY: SQLite passes null or NUL-terminated strings valid during the call.
        let request = unsafe {
            AuthRequest {
                action: AuthAction::from_code(action),
                arg1: arg(arg1),
                arg2: arg(arg2),
                database: arg(database),
                accessor: arg(accessor),
            }
        };
        hook.authorize(&request)
    }));
    match answer {
        Ok(Authorization::Allow) => sys::SQLITE_OK,
        Ok(Authorization::Ignore) => sys::SQLITE_IGNORE,
        Ok(Authorization::Deny) | Err(_) => sys::SQLITE_DENY,
    }
}

/// The progress callback SQLite calls. `user_data` is a [`Registered::user_data`] pointer.
pub(crate) unsafe extern "C" fn progress_trampoline(user_data: *mut c_void) -> c_int {
    let keep_going = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in `authorizer_trampoline`.
        let hook = unsafe { &*(user_data as *const Arc<dyn ProgressHandler>) };
        hook.keep_going()
    }));
    match keep_going {
        Ok(true) => 0,
        Ok(false) | Err(_) => 1,
    }
}
