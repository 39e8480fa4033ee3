//! A dropped log engine leaves no thread behind. Its own test binary: it counts the process's
//! threads by name, which other tests opening engines at the same time would disturb.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftlite::raft::log::io::SimDir;
use raftlite::raft::log::{LogEngine, LogOptions, RecordRef};

/// The threads of this process named `raft-log-flusher` (as the kernel's `comm` holds it:
/// cut to 15 bytes).
fn flusher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("list this process's threads")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == &"raft-log-flusher"[..15])
        })
        .count()
}

#[test]
fn a_dropped_engine_has_joined_its_flusher_thread() {
    assert_eq!(flusher_threads(), 0);
    for round in 0..20u64 {
        let engine = LogEngine::open_in(Arc::new(SimDir::new()), LogOptions::default())
            .expect("open an engine");
        engine
            .append(&[RecordRef {
                index: 1,
                term: 1,
                kind: 1,
                data: b"x",
            }])
            .expect("append");
        assert_eq!(
            flusher_threads(),
            1,
            "round {round}: one engine, one flusher"
        );
        drop(engine);
        // Joined in the drop: gone at once, not eventually.
        assert_eq!(
            flusher_threads(),
            0,
            "round {round}: the dropped engine's flusher thread is still running"
        );
    }
    // The same after a wait: nothing starts again.
    let settle = Instant::now() + Duration::from_millis(100);
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(flusher_threads(), 0);
}
