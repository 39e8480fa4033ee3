//! Named crash points: places in the long operations (loads, the database swap, snapshots,
//! backups, log purges) where a test can stop the process as `kill -9` would, to check what
//! a crash at that step leaves on disk. The crash suite (`tests/faults_crash.rs`,
//! `docs/faults.md`) starts a node with `FAILPOINTS=<name>=return`, waits for it to die at
//! that point, restarts it, and checks the data directory and the cluster.
//!
//! Built only with the `failpoints` feature (the `fail` crate reads `FAILPOINTS` once, at
//! start-up, through [`setup`]); without it [`crash_point`] is an empty inline function and
//! `FAILPOINTS` is ignored. The release build and the benchmarks never have the feature.
//!
//! A point that fires writes one line to stderr (`failpoint <name>: killing the process`),
//! so a test can tell the crash happened at that step and not elsewhere, then sends SIGKILL
//! to its own process: no destructor, no buffered write, no exit handler runs, exactly as
//! when an operator or the kernel kills it. (A panic would only end one thread or task.)
//! Other `fail` actions (`sleep(ms)`, `pause`, `print`) work too, for investigations.

/// Reads `FAILPOINTS` from the environment and arms the points it names. Call once, at the
/// start of the process.
pub fn setup() {
    #[cfg(feature = "failpoints")]
    {
        // The scenario guard resets the registry when dropped: the points stay armed for the
        // life of the process.
        std::mem::forget(fail::FailScenario::setup());
    }
}

/// The crash point `name`: kills the process here when `FAILPOINTS` arms it with `return`.
#[inline]
pub fn crash_point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    fail::eval(name, |_| {
        eprintln!("failpoint {name}: killing the process");
        // SIGKILL cannot be caught: the process ends here, as with `kill -9`.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort()
    });
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
