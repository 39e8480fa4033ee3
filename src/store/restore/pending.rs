//! Restores staged now and proposed later, after someone confirms them (the console's): the
//! registry that holds them meanwhile, one per node.
//!
//! An upload first takes a place ([`PendingRestores::start_upload`]): at most
//! [`MAX_PENDING`] restores are held or being uploaded at once. Once staged
//! ([`super::stage_for_later`]), it is kept under an unguessable id until it is taken to be
//! proposed ([`PendingRestores::take`], then [`super::propose`]), discarded, or its time is up
//! (at most [`DEFAULT_TTL`]).
//!
//! Invariant: a pending file belongs to its registry entry (a [`Staged`] holding its
//! [`crate::temp_file::TempFile`] guard). Discarding, expiry and a refused or abandoned
//! upload all drop the guard, which deletes the file; taking it hands it to the proposal. A
//! crash leaves a `.part` file, which startup removes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{RestoreError, Staged};
use crate::temp_file::unguessable_id;

/// Restores held or being uploaded at once.
pub const MAX_PENDING: usize = 4;
/// How long a pending restore waits for its confirmation, unless asked for less.
pub const DEFAULT_TTL: Duration = Duration::from_secs(900);

/// The restores waiting for a confirmation on this node.
#[derive(Default)]
pub struct PendingRestores {
    pending: Mutex<HashMap<String, Pending>>,
    /// Uploads being received (they count against [`MAX_PENDING`]).
    uploading: AtomicUsize,
}

struct Pending {
    staged: Staged,
    expires: Instant,
}

impl Pending {
    fn view(&self) -> PendingView {
        PendingView {
            report: self.staged.report().clone(),
            expires_in: self.expires.saturating_duration_since(Instant::now()),
        }
    }
}

/// What a pending restore is, for whoever confirms it.
#[derive(Debug, Clone)]
pub struct PendingView {
    /// The staging report ([`Staged::report`]).
    pub report: serde_json::Value,
    /// The time left before it is discarded.
    pub expires_in: Duration,
}

/// A place taken by an upload being staged; dropping it gives the place back, however the
/// upload ends.
pub struct UploadSlot<'a>(&'a AtomicUsize);

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PendingRestores {
    /// Takes a place for an upload about to be staged, or refuses when [`MAX_PENDING`]
    /// restores are already held or being uploaded.
    pub fn start_upload(&self) -> Result<UploadSlot<'_>, RestoreError> {
        self.sweep();
        // Checked and taken under the lock, so concurrent uploads cannot both take the last
        // place (places are given back without it: that only makes room).
        let pending = self.pending.lock();
        if pending.len() + self.uploading.load(Ordering::SeqCst) >= MAX_PENDING {
            return Err(RestoreError::TooManyPending);
        }
        self.uploading.fetch_add(1, Ordering::SeqCst);
        Ok(UploadSlot(&self.uploading))
    }

    /// Holds `staged` (its upload's place becomes its entry's) for at most `ttl`, and returns
    /// its new unguessable id and what it is.
    pub fn keep(
        self: &Arc<Self>,
        slot: UploadSlot<'_>,
        staged: Staged,
        ttl: Duration,
    ) -> (String, PendingView) {
        let id = unguessable_id();
        let pending = Pending {
            staged,
            expires: Instant::now() + ttl,
        };
        let view = pending.view();
        self.pending.lock().insert(id.clone(), pending);
        drop(slot);
        // Expiry: the entry (and its file) goes when its time is up, whoever is watching.
        let registry = Arc::clone(self);
        let expiring = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            if registry.pending.lock().remove(&expiring).is_some() {
                tracing::info!(
                    id = expiring,
                    "console restore expired unconfirmed; discarded"
                );
            }
        });
        (id, view)
    }

    /// What the pending restore `id` is.
    pub fn describe(&self, id: &str) -> Result<PendingView, RestoreError> {
        self.sweep();
        self.pending
            .lock()
            .get(id)
            .map(Pending::view)
            .ok_or(RestoreError::NotPending)
    }

    /// Discards the pending restore `id` (its file goes with it).
    pub fn discard(&self, id: &str) -> Result<(), RestoreError> {
        match self.pending.lock().remove(id) {
            Some(_) => Ok(()),
            None => Err(RestoreError::NotPending),
        }
    }

    /// Takes the pending restore `id` out of the registry, to be proposed.
    pub fn take(&self, id: &str) -> Result<Staged, RestoreError> {
        self.sweep();
        let taken = self.pending.lock().remove(id);
        taken.map(|p| p.staged).ok_or(RestoreError::NotPending)
    }

    /// Removes entries past their expiry (their files go with them).
    fn sweep(&self) {
        let now = Instant::now();
        self.pending.lock().retain(|_, p| p.expires > now);
    }
}
