//! `shell-backup-memory`: the `raftlite` shell's `.backup FILE` against a node serving the
//! data set: the shell's peak RSS growth (it must stream to the file, never buffer the
//! backup) and its time against `GET /db/backup` with a plain HTTP client.
//!
//! Skipped until the shell has `.backup`: the probe asks the shell for `.help` and looks for
//! `.backup` in it. TODO(shell): when the probe passes, run `raftlite -H 127.0.0.1 -p PORT`
//! with `.backup OUT` on stdin through `measure::run_tool` (baseline: the same shell running
//! only `.exit`), and report the growth and the time ratio to the backup scenario's row.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Context, ScenarioResult};
use crate::report::{Outcome, ScenarioReport};

const GOALS: &[&str] = &["shell .backup streams: RSS growth independent of the database size"];

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("shell-backup-memory", GOALS);
    if !shell_has_backup(&ctx.raftlite_bin()) {
        report.outcome = Outcome::Skipped(format!(
            "{} has no interactive shell with .backup yet",
            ctx.raftlite_bin().display()
        ));
        return Ok(report);
    }
    report.outcome =
        Outcome::Skipped("the shell has .backup; its measurement is still a TODO here".into());
    Ok(report)
}

/// Runs `raftlite` with `.help` on stdin (no server needed for help) and looks for
/// `.backup`. Bounded: the shell is killed after 10 s.
fn shell_has_backup(bin: &std::path::Path) -> bool {
    let Ok(mut child) = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = std::io::Write::write_all(&mut stdin, b".help\n.exit\n");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return false,
        }
    }
    let _ = child.kill();
    match child.wait_with_output() {
        Ok(o) => {
            String::from_utf8_lossy(&o.stdout).contains(".backup")
                || String::from_utf8_lossy(&o.stderr).contains(".backup")
        }
        Err(_) => false,
    }
}
