//! Restores: a SQLite file or SQL text that replaces or extends the database on every node
//! (`POST /db/load`, `POST /boot`, the console's staged restores).
//!
//! - [`files`]: the restore's files in the data directory and what startup removes;
//! - [`build_once`]: SQL loads into a blank cluster, built once by the leader;
//! - [`replicate`]: what each node does when it applies a load entry (pull, install).

pub mod build_once;
pub mod files;
pub mod replicate;
