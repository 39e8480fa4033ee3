//! The reference `sqlite3` shell that the SQL dumper is measured against.
//!
//! `src/db/dump.rs` promises the bytes of the `.dump` command of `sqlite3` 3.40.1, so only a
//! 3.40.x shell can judge it; any other version would fail tests for differences that are not
//! ours. Tests that compare with the shell call [`reference_shell`] first.
//!
//! When the shell is missing or is another version the comparison cannot run, and what happens
//! depends on where:
//! - under CI (the `CI` variable set, as CI services and `.ci/run` do) the calling test fails:
//!   a comparison that quietly did not happen would look like one that passed;
//! - elsewhere the test carries on without the shell and says so in one loud line on stderr,
//!   with the reason and the fix. The line is written straight to the process's stderr, so
//!   libtest's output capture (`cargo test`) does not swallow it; nextest shows it at the end
//!   of the run (`success-output = "final"` for these tests in `.config/nextest.toml`).

use std::path::PathBuf;
use std::process::Command;

/// The version prefix the dumper follows.
pub const REFERENCE_VERSION: &str = "3.40.";

/// A usable reference shell.
#[derive(Debug, Clone)]
pub struct ReferenceShell {
    /// The program to run (looked up on PATH).
    pub program: PathBuf,
    /// What `sqlite3 --version` printed first, e.g. `3.40.1`.
    pub version: String,
}

impl ReferenceShell {
    /// A command running this shell.
    pub fn command(&self) -> Command {
        Command::new(&self.program)
    }
}

/// The `sqlite3` 3.40.x on PATH. Without it: under CI, panics (failing `needed_by`); otherwise
/// prints why the comparison is skipped and returns `None`.
pub fn reference_shell(needed_by: &str) -> Option<ReferenceShell> {
    match find_reference_shell() {
        Ok(shell) => Some(shell),
        Err(why) => {
            super::prerequisite_missing(&format!(
                "{needed_by}: no reference sqlite3 shell ({why}): the dumper is measured \
                 against sqlite3 {REFERENCE_VERSION}x (Debian 12's `sqlite3` package: \
                 `apt-get install sqlite3`)"
            ));
            None
        }
    }
}

fn find_reference_shell() -> Result<ReferenceShell, String> {
    let program = PathBuf::from("sqlite3");
    let out = Command::new(&program)
        .arg("--version")
        .output()
        .map_err(|e| format!("`sqlite3` could not be started ({e})"))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    let version = printed.split_whitespace().next().unwrap_or("").to_string();
    if !out.status.success() || !version.starts_with(REFERENCE_VERSION) {
        return Err(format!(
            "`sqlite3 --version` printed {:?}, not {REFERENCE_VERSION}x",
            printed.trim()
        ));
    }
    Ok(ReferenceShell { program, version })
}
