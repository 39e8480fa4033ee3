//! Lower CPU priority for bulk work on the calling thread.
//!
//! A backup copy reads and writes the whole database as fast as the machine allows. On a node
//! whose cores are shared with Raft, HTTP and the apply thread, that competition shows up as
//! write latency, so the copy runs at nice 19 (Linux keeps a nice value per thread; the
//! issue's P5 allows a copy at lower priority). [`Background`] restores the previous value when
//! it drops. Raising a thread's priority back needs `CAP_SYS_NICE` (or an `RLIMIT_NICE`);
//! without it the pooled thread stays at nice 19, which only makes its later work yield to
//! the node's other threads too.

use rustix::process::{getpriority_process, setpriority_process};
use rustix::thread::gettid;

/// The nice value of bulk work.
pub const BACKGROUND_NICE: i32 = 19;

/// Holds the calling thread at [`BACKGROUND_NICE`] until dropped (on the same thread).
pub struct Background {
    previous: Option<i32>,
}

/// Lowers the calling thread's CPU priority for as long as the guard lives. Failing to change
/// it is not an error: the work runs at the priority it had.
pub fn background() -> Background {
    let tid = Some(gettid());
    let previous = getpriority_process(tid)
        .ok()
        .filter(|_| setpriority_process(tid, BACKGROUND_NICE).is_ok());
    Background { previous }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            if let Err(e) = setpriority_process(Some(gettid()), previous) {
                tracing::debug!("restore the thread's nice value {previous}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_the_calling_thread_only_and_restores_it() {
        std::thread::spawn(|| {
            let tid = Some(gettid());
            let before = getpriority_process(tid).unwrap();
            // A thread started before the change keeps its own value.
            let (ask, asked) = std::sync::mpsc::channel::<()>();
            let sibling = std::thread::spawn(move || {
                asked.recv().unwrap();
                getpriority_process(Some(gettid())).unwrap()
            });
            {
                let _low = background();
                assert_eq!(getpriority_process(tid).unwrap(), BACKGROUND_NICE);
                ask.send(()).unwrap();
                assert_eq!(sibling.join().unwrap(), before);
            }
            // Restoring needs privilege; as root (CI) it comes back.
            if rustix::process::geteuid().is_root() {
                assert_eq!(getpriority_process(tid).unwrap(), before);
            }
        })
        .join()
        .unwrap();
    }
}
