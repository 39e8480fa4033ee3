//! A certificate and key followed on disk: renewed files take effect on the next handshake,
//! without a restart (as rqlite does since 8.37), for the servers (HTTPS, the Raft port) and
//! for the identities the node presents (forwarding, node-to-node mutual TLS).
//!
//! Invariants: the files are read at start-up, and a bad pair there is an error naming them
//! (the node refuses to start). After that, a handshake looks at the files' stamps at most
//! every [`CHECK_EVERY`]; when they changed, the pair is read again, and a pair that does not
//! load (half written, or a key that does not match its certificate) is logged and the
//! previous pair stays in use until the files change again. A handshake never fails because
//! of a reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use crate::file_stamp::FileStamp;

/// How often a handshake may look at the files.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

type Stamps = (Option<FileStamp>, Option<FileStamp>);

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamps: Stamps,
    checked: Instant,
}

/// A certificate chain and its key, read again when their files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    /// What the pair is, for errors and logs ("HTTPS certificate").
    what: String,
    current: Mutex<Current>,
}

impl ReloadingCert {
    /// Reads the pair; an unreadable or mismatched pair is an error naming the files.
    pub fn load(cert: PathBuf, key: PathBuf, what: &str) -> anyhow::Result<ReloadingCert> {
        let stamps = stamps(&cert, &key);
        let certified = super::certified_key(&cert, &key, what)?;
        Ok(ReloadingCert {
            cert,
            key,
            what: what.to_string(),
            current: Mutex::new(Current {
                key: Arc::new(certified),
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to use now, read again first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock();
        if current.checked.elapsed() >= CHECK_EVERY {
            current.checked = Instant::now();
            let now = stamps(&self.cert, &self.key);
            if now != current.stamps {
                current.stamps = now;
                match super::certified_key(&self.cert, &self.key, &self.what) {
                    Ok(key) => {
                        tracing::info!(
                            cert = %self.cert.display(),
                            "{} changed on disk: reloaded",
                            self.what
                        );
                        current.key = Arc::new(key);
                    }
                    Err(e) => tracing::error!(
                        "{} changed on disk but does not load ({e:#}): still using the previous one",
                        self.what
                    ),
                }
            }
        }
        Arc::clone(&current.key)
    }
}

fn stamps(cert: &std::path::Path, key: &std::path::Path) -> Stamps {
    (FileStamp::of(cert).ok(), FileStamp::of(key).ok())
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
