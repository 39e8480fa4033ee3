//! bcrypt checks, off the HTTP workers.
//!
//! A bcrypt check at cost 12 takes about a quarter of a second of CPU by design. Run on an
//! actix worker, it would stall every request that worker serves, and a client sending wrong
//! passwords (each one a new check: nothing to cache) could stall the node. So checks run on
//! [`THREADS`] threads of their own, at nice 19 so the node's other threads run first, and at
//! most [`QUEUE`] checks wait for them: a check that finds the queue full fails at once (the
//! request is refused, as for a wrong password), and is logged at most once a second; a check
//! that waited [`MAX_WAIT`] is refused too.
//!
//! Invariants: the threads end when the [`BcryptVerifier`] is dropped (its queue closes); a
//! caller that stops waiting (its request went away) costs at most the one check already
//! running; a password lives only in the job that checks it.

use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender, TrySendError};
use parking_lot::Mutex;

/// Threads that run bcrypt.
pub const THREADS: usize = 2;

/// Checks waiting at most (several seconds of work at cost 12 on two threads).
pub const QUEUE: usize = 32;

/// The longest a request waits for its check: on a machine whose cores are busy, threads at
/// nice 19 may get little time, and a refusal (the client retries) beats an endless wait.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

struct Job {
    password: String,
    hash: String,
    answer: tokio::sync::oneshot::Sender<bool>,
}

/// The pool of bcrypt threads.
pub struct BcryptVerifier {
    jobs: Sender<Job>,
    last_busy_warning: Mutex<Option<Instant>>,
}

impl BcryptVerifier {
    /// Starts the threads.
    pub fn start() -> BcryptVerifier {
        let (jobs, queue) = bounded::<Job>(QUEUE);
        for i in 0..THREADS {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .spawn(move || {
                    // Held for the thread's life: it only ever runs bcrypt.
                    let _low = crate::db::priority::background();
                    for job in queue {
                        // The caller may have gone; the check ran anyway, so drop the answer.
                        if job.answer.is_closed() {
                            continue;
                        }
                        let ok = bcrypt::verify(&job.password, &job.hash).unwrap_or(false);
                        let _ = job.answer.send(ok);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("start a bcrypt thread: {e}");
            }
        }
        BcryptVerifier {
            jobs,
            last_busy_warning: Mutex::new(None),
        }
    }

    /// Whether `password` matches the bcrypt `hash`; `None` when too many checks are waiting
    /// (or the threads are gone), which the caller treats as a refusal.
    pub async fn verify(&self, password: String, hash: String) -> Option<bool> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = Job {
            password,
            hash,
            answer,
        };
        match self.jobs.try_send(job) {
            Ok(()) => match tokio::time::timeout(MAX_WAIT, answered).await {
                Ok(answer) => answer.ok(),
                Err(_) => {
                    tracing::warn!(
                        "a password check waited {MAX_WAIT:?} for bcrypt and was refused"
                    );
                    None
                }
            },
            Err(TrySendError::Full(_)) => {
                self.warn_busy();
                None
            }
            Err(TrySendError::Disconnected(_)) => None,
        }
    }

    fn warn_busy(&self) {
        let mut last = self.last_busy_warning.lock();
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            tracing::warn!(
                waiting = QUEUE,
                "too many password checks waiting for bcrypt: refusing new ones until they drain"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_run_and_a_full_queue_refuses_at_once() {
        let verifier = BcryptVerifier::start();
        let hash = bcrypt::hash("pw", 4).unwrap();
        assert_eq!(verifier.verify("pw".into(), hash.clone()).await, Some(true));
        assert_eq!(verifier.verify("no".into(), hash).await, Some(false));

        // Fill the threads and the queue with slow checks (cost 10), then one more: it must be
        // refused without waiting for them. The workers keep taking jobs, so a place can free
        // up between filling and asking: then the check is queued (its future is pending on
        // its first poll) and the queue is filled again, a bounded number of times.
        let slow = bcrypt::hash("pw", 10).unwrap();
        let mut waiting = Vec::new();
        let mut refused = false;
        for _attempt in 0..50 {
            let mut filled = false;
            for _ in 0..(THREADS + QUEUE + 8) {
                let (answer, answered) = tokio::sync::oneshot::channel();
                let job = Job {
                    password: "x".into(),
                    hash: slow.clone(),
                    answer,
                };
                match verifier.jobs.try_send(job) {
                    Ok(()) => waiting.push(answered),
                    Err(_) => {
                        filled = true;
                        break;
                    }
                }
            }
            assert!(filled, "the queue never filled");
            // Refused: answered on the first poll, with no answer (not a wait for the queue).
            match futures_util::FutureExt::now_or_never(verifier.verify("pw".into(), slow.clone()))
            {
                Some(answer) => {
                    assert_eq!(answer, None, "a full queue answers no check");
                    refused = true;
                    break;
                }
                None => continue,
            }
        }
        assert!(refused, "never refused while the queue was full");
        drop(waiting);
    }
}
