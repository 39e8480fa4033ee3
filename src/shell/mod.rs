//! The `raftlite` shell: a drop-in for rqlite's `rqlite` CLI, plus offline commands.
//!
//! Layout, in the order a line flows through it:
//! - `args`: the command line (`-H`, `-p`, `-u`, `-a`…) and `RQLITE_HOST`.
//! - `repl`: the loop. Terminal (rustyline, history) or pipe; the banner; the exit status.
//! - `parse`: a line → a [`parse::Command`]; SQL gathered until complete. No I/O, no server
//!   feature: the fuzz target `shell_line` drives it.
//! - `session`: settings and the command implementations (HTTP calls, rqlite's messages).
//! - `client`: HTTP with failover to `--alternatives` and manual redirect following.
//! - `transfer`: streaming `.backup`/`.dump` to a temp file then rename; streaming uploads for
//!   `.restore`/`.boot`; the progress bar.
//! - `output`: tables in column/csv/json/line mode, and the key/value tree of `.status`.
//! - `offline`: `raftlite dump DB_FILE`, which needs no server.
//!
//! IMPLEMENTATION CAVEATS:
//! - No TLS: `-s https`, `-i`, `-c`, `-d`, `-k` are accepted, and `https` is refused with a
//!   clear message, because raftlited serves plain HTTP. Output has no colour.
//! - Ctrl-C during a `.backup`/`.dump` ends the process: the target is untouched, but the
//!   temp file `.NAME.PID.part` next to it stays behind.

#[cfg(feature = "server")]
pub mod args;
#[cfg(feature = "server")]
pub mod client;
pub mod offline;
#[cfg(feature = "server")]
pub mod output;
pub mod parse;
#[cfg(feature = "server")]
pub mod repl;
#[cfg(feature = "server")]
pub mod restore;
#[cfg(feature = "server")]
pub mod session;
#[cfg(feature = "server")]
pub mod transfer;
#[cfg(feature = "server")]
pub mod verify;
