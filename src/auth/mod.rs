//! `-auth`: rqlite's credentials file, HTTP basic authentication and permissions.
//!
//! The file is a JSON array of users, as rqlite reads it:
//! `[{"username": "bob", "password": "secret or bcrypt hash", "perms": ["query", "backup"]},
//!   {"username": "*", "perms": ["status", "ready"]}]`. The user `*` grants its perms to every
//! request, anonymous ones included. A request is allowed when `*` holds the perm (or `all`),
//! or when it carries basic-auth credentials that check out for a user holding it (rqlite's
//! `AA`). Unknown perm names and duplicate users are refused when the file is read, so a typo
//! cannot silently lock a user out (or in).
//!
//! Owns: parsing the file, deciding whether a caller holds a route's [`gate::Access`]
//! ([`Auth::permits`]), checking a password (plain text, or a bcrypt hash `$2a$/$2b$/$2y$`,
//! which is only ever checked as a hash, unlike rqlite, which also accepts the hash itself),
//! and the caches of recent checks. Which access each route needs is declared with the route
//! itself ([`gate`]).
//!
//! Invariants: a password is never logged or kept in clear beyond the request that carries
//! it (the caches hold SHA-256 digests only). bcrypt never runs on an HTTP worker: it runs on
//! the low-priority [`verifier`] threads, at most a bounded queue of checks waits there, and a
//! check that finds the queue full is refused at once, so a burst of wrong passwords costs
//! the other clients nothing but what those threads take at nice 19. A successful check is
//! remembered for [`VERIFIED_TTL`] and a failed one for [`REFUSED_TTL`]. The file is stat'ed on
//! every check and read again when it changed, and the caches belong to one reading of the
//! file: a change of the file (a revoked user, a new password) drops them. A file that became
//! unreadable or malformed refuses everything (fails closed) until it is fixed.

pub mod gate;
pub mod verifier;

use std::collections::{HashMap, HashSet};

pub use gate::Access;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Every perm rqlite defines.
pub const PERMS: &[&str] = &[
    ALL,
    EXECUTE,
    QUERY,
    BACKUP,
    LOAD,
    STATUS,
    READY,
    REMOVE,
    SNAPSHOT,
    LEADER_OPS,
    UI,
    JOIN,
    JOIN_READ_ONLY,
    JOIN_READ_REPLICA,
];
pub const ALL: &str = "all";
pub const EXECUTE: &str = "execute";
pub const QUERY: &str = "query";
pub const BACKUP: &str = "backup";
pub const LOAD: &str = "load";
pub const STATUS: &str = "status";
pub const READY: &str = "ready";
pub const REMOVE: &str = "remove";
pub const SNAPSHOT: &str = "snapshot";
pub const LEADER_OPS: &str = "leader-ops";
pub const UI: &str = "ui";
pub const JOIN: &str = "join";
pub const JOIN_READ_ONLY: &str = "join-read-only";
pub const JOIN_READ_REPLICA: &str = "join-read-replica";

/// The user whose perms every request has.
pub const ANYONE: &str = "*";

/// Checks remembered at most per cache; a full cache is emptied (it refills at one bcrypt
/// check per active user).
const CACHE_CAPACITY: usize = 4096;

/// How long a successful password check is remembered: a client sending the same
/// credentials on every request pays bcrypt once a minute, not per request.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// How long a failed check is remembered: the same wrong password repeated costs no bcrypt.
pub const REFUSED_TTL: Duration = Duration::from_secs(10);

/// Recent password checks, by SHA-256 of (user, password, stored password).
#[derive(Default)]
struct CheckCache {
    entries: HashMap<[u8; 32], Instant>,
}

impl CheckCache {
    fn fresh(&mut self, key: &[u8; 32], ttl: Duration) -> bool {
        match self.entries.get(key) {
            Some(at) if at.elapsed() < ttl => true,
            Some(_) => {
                self.entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, key: [u8; 32]) {
        if self.entries.len() >= CACHE_CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(key, Instant::now());
    }
}

/// A password check that the caches or a plain comparison settled, or the bcrypt work left.
enum PasswordCheck {
    Settled(bool),
    Bcrypt {
        key: [u8; 32],
        password: String,
        hash: String,
    },
}

/// A malformed or unreadable credentials file.
#[derive(Debug, thiserror::Error)]
#[error("auth file {path}: {reason}")]
pub struct AuthFileError {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    perms: Vec<String>,
}

/// One reading of the file.
struct Credentials {
    passwords: HashMap<String, String>,
    perms: HashMap<String, HashSet<String>>,
    /// Checks that succeeded, and that failed, recently.
    verified: Mutex<CheckCache>,
    refused: Mutex<CheckCache>,
}

impl Credentials {
    fn parse(text: &[u8]) -> Result<Credentials, String> {
        let entries: Vec<UserEntry> =
            serde_json::from_slice(text).map_err(|e| format!("not a JSON list of users: {e}"))?;
        let mut passwords = HashMap::new();
        let mut perms = HashMap::new();
        for entry in entries {
            if entry.username.is_empty() {
                return Err("a user has an empty username".into());
            }
            if perms.contains_key(&entry.username) {
                return Err(format!("user {:?} is listed twice", entry.username));
            }
            for perm in &entry.perms {
                if !PERMS.contains(&perm.as_str()) {
                    return Err(format!(
                        "user {:?} has unknown perm {perm:?} (known: {})",
                        entry.username,
                        PERMS.join(", ")
                    ));
                }
            }
            if let Some(password) = entry.password {
                passwords.insert(entry.username.clone(), password);
            }
            perms.insert(entry.username, entry.perms.into_iter().collect());
        }
        Ok(Credentials {
            passwords,
            perms,
            verified: Mutex::new(CheckCache::default()),
            refused: Mutex::new(CheckCache::default()),
        })
    }

    fn has_perm(&self, user: &str, perm: &str) -> bool {
        self.perms
            .get(user)
            .is_some_and(|p| p.contains(perm) || p.contains(ALL))
    }

    /// Whether `perms` (all of them, or any one) are held by `*` alone, or by `*` and `user`
    /// together (rqlite's `AA`, perm by perm).
    fn perms_held(&self, user: Option<&str>, perms: &[&str], all: bool) -> bool {
        let holds =
            |p: &&str| self.has_perm(ANYONE, p) || user.is_some_and(|u| self.has_perm(u, p));
        if all {
            perms.iter().all(holds)
        } else {
            perms.iter().any(holds)
        }
    }

    /// Settles a password check from the caches or a plain comparison, or says what bcrypt
    /// must check.
    fn check_password(&self, user: &str, password: &str) -> PasswordCheck {
        let Some(stored) = self.passwords.get(user) else {
            return PasswordCheck::Settled(false);
        };
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [user, password, stored] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            h.finalize().into()
        };
        if self.verified.lock().fresh(&key, VERIFIED_TTL) {
            return PasswordCheck::Settled(true);
        }
        if self.refused.lock().fresh(&key, REFUSED_TTL) {
            return PasswordCheck::Settled(false);
        }
        // A stored bcrypt hash is only ever a hash: knowing it must not be enough to log in.
        if is_bcrypt_hash(stored) {
            return PasswordCheck::Bcrypt {
                key,
                password: password.to_string(),
                hash: stored.clone(),
            };
        }
        let ok = constant_time_eq(stored.as_bytes(), password.as_bytes());
        self.remember(key, ok);
        PasswordCheck::Settled(ok)
    }

    fn remember(&self, key: [u8; 32], ok: bool) {
        if ok {
            self.verified.lock().insert(key);
        } else {
            self.refused.lock().insert(key);
        }
    }
}

fn is_bcrypt_hash(s: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| s.starts_with(p))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Loaded {
    stamp: Option<crate::file_stamp::FileStamp>,
    /// `None`: the file is unreadable or malformed now; everything is refused.
    creds: Option<Arc<Credentials>>,
}

/// The `-auth` file, followed as it changes.
pub struct Auth {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    bcrypt: verifier::BcryptVerifier,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({})", self.path.display())
    }
}

impl Auth {
    /// Reads the file; an unreadable or malformed file is an error naming it (the node refuses
    /// to start).
    pub fn load(path: &Path) -> Result<Auth, AuthFileError> {
        let err = |reason: String| AuthFileError {
            path: path.to_path_buf(),
            reason,
        };
        let stamp = crate::file_stamp::FileStamp::of(path).map_err(|e| err(e.to_string()))?;
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let creds = Credentials::parse(&text).map_err(err)?;
        Ok(Auth {
            path: path.to_path_buf(),
            loaded: RwLock::new(Loaded {
                stamp: Some(stamp),
                creds: Some(Arc::new(creds)),
            }),
            bcrypt: verifier::BcryptVerifier::start(),
        })
    }

    /// The credentials as the file says now, read again if it changed since the last check.
    fn current(&self) -> Option<Arc<Credentials>> {
        let now = crate::file_stamp::FileStamp::of(&self.path).ok();
        {
            let loaded = self.loaded.read();
            if loaded.stamp == now && now.is_some() {
                return loaded.creds.clone();
            }
        }
        let mut loaded = self.loaded.write();
        if loaded.stamp == now && now.is_some() {
            return loaded.creds.clone();
        }
        let creds = match std::fs::read(&self.path) {
            Ok(text) => match Credentials::parse(&text) {
                Ok(c) => {
                    tracing::info!(file = %self.path.display(), "auth file changed: reloaded");
                    Some(Arc::new(c))
                }
                Err(reason) => {
                    tracing::error!(
                        file = %self.path.display(),
                        "auth file changed and is malformed ({reason}): refusing every request until it is fixed"
                    );
                    None
                }
            },
            Err(e) => {
                tracing::error!(
                    file = %self.path.display(),
                    "auth file unreadable ({e}): refusing every request until it is fixed"
                );
                None
            }
        };
        *loaded = Loaded { stamp: now, creds };
        loaded.creds.clone()
    }

    /// Whether a request with this `Authorization` header value holds `access`.
    /// `members_by_tls`: the connection was authenticated by node mutual TLS, which proves
    /// [`Access::Member`] on its own.
    pub async fn permits(
        &self,
        authorization: Option<&str>,
        access: Access,
        members_by_tls: bool,
    ) -> bool {
        let (perms, all) = match access {
            Access::Public => return true,
            Access::Member(_) if members_by_tls => return true,
            Access::AllOf(perms) => (perms, true),
            Access::AnyOf(perms) | Access::Member(perms) => (perms, false),
        };
        let Some(creds) = self.current() else {
            return false;
        };
        if creds.perms_held(None, perms, all) {
            return true;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        // Perms first: a user who would not be allowed anyway costs no password check.
        if user.is_empty() || !creds.perms_held(Some(&user), perms, all) {
            return false;
        }
        match creds.check_password(&user, &password) {
            PasswordCheck::Settled(ok) => ok,
            PasswordCheck::Bcrypt {
                key,
                password,
                hash,
            } => match self.bcrypt.verify(password, hash).await {
                Some(ok) => {
                    creds.remember(key, ok);
                    ok
                }
                None => false,
            },
        }
    }

    /// The password of `user` as written in the file (for `-join-as`, which needs the clear
    /// text to authenticate to other nodes).
    pub fn password_of(&self, user: &str) -> Option<String> {
        self.current()?.passwords.get(user).cloned()
    }
}

/// `Basic base64(user:password)` → (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The `Authorization` header value for basic auth.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("auth.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    const FILE: &str = r#"[
        {"username": "alice", "password": "secret", "perms": ["query", "backup"]},
        {"username": "root", "password": "r00t", "perms": ["all"]},
        {"username": "joiner", "password": "j", "perms": ["join-read-only"]},
        {"username": "*", "perms": ["ready"]}
    ]"#;

    async fn allows(auth: &Auth, header: Option<&str>, perms: &'static [&'static str]) -> bool {
        auth.permits(header, Access::AllOf(perms), false).await
    }

    #[tokio::test]
    async fn perms_plain_passwords_and_anyone() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::load(&write(dir.path(), FILE)).unwrap();
        let alice = basic_header("alice", "secret");
        assert!(allows(&auth, Some(&alice), &[QUERY]).await);
        assert!(allows(&auth, Some(&alice), &[BACKUP]).await);
        assert!(!allows(&auth, Some(&alice), &[EXECUTE]).await);
        assert!(!allows(&auth, Some(&alice), &[EXECUTE, QUERY]).await);
        assert!(!allows(&auth, Some(&basic_header("alice", "wrong")), &[QUERY]).await);
        assert!(!allows(&auth, None, &[QUERY]).await);
        assert!(
            allows(&auth, None, &[READY]).await,
            "* grants ready to anonymous requests"
        );
        assert!(
            allows(&auth, Some(&alice), &[READY, QUERY]).await,
            "* and alice together"
        );
        assert!(allows(&auth, Some(&basic_header("root", "r00t")), &[LOAD, JOIN]).await);
        assert!(!allows(&auth, Some("Bearer xyz"), &[QUERY]).await);
        assert!(auth.permits(None, Access::Public, false).await);
    }

    #[tokio::test]
    async fn any_of_and_members() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::load(&write(dir.path(), FILE)).unwrap();
        let joiner = basic_header("joiner", "j");
        let any = Access::AnyOf(&[JOIN, JOIN_READ_ONLY]);
        assert!(auth.permits(Some(&joiner), any, false).await);
        assert!(
            !auth
                .permits(Some(&joiner), Access::AllOf(&[JOIN]), false)
                .await
        );
        assert!(!auth.permits(None, any, false).await);
        let member = Access::Member(&[JOIN]);
        assert!(!auth.permits(None, member, false).await);
        assert!(!auth.permits(Some(&joiner), member, false).await);
        assert!(
            auth.permits(Some(&basic_header("root", "r00t")), member, false)
                .await
        );
        assert!(
            auth.permits(None, member, true).await,
            "node mutual TLS proves membership"
        );
        assert!(
            !auth.permits(None, Access::AllOf(&[JOIN]), true).await,
            "but not a perm"
        );
    }

    #[tokio::test]
    async fn bcrypt_hashes_are_checked_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text =
            format!(r#"[{{"username": "bob", "password": "{hash}", "perms": ["execute"]}}]"#);
        let auth = Auth::load(&write(dir.path(), &text)).unwrap();
        let good = basic_header("bob", "pw");
        assert!(allows(&auth, Some(&good), &[EXECUTE]).await);
        assert!(allows(&auth, Some(&good), &[EXECUTE]).await, "cached");
        assert!(!allows(&auth, Some(&basic_header("bob", "pW")), &[EXECUTE]).await);
        assert!(!allows(&auth, Some(&basic_header("bob", &hash)), &[EXECUTE]).await);
        let creds = auth.current().unwrap();
        assert_eq!(creds.verified.lock().entries.len(), 1);
        assert_eq!(creds.refused.lock().entries.len(), 2);
    }

    #[test]
    fn cached_checks_expire() {
        let mut cache = CheckCache::default();
        cache.insert([1; 32]);
        assert!(cache.fresh(&[1; 32], Duration::from_secs(60)));
        assert!(!cache.fresh(&[1; 32], Duration::ZERO));
        assert!(
            !cache.fresh(&[1; 32], Duration::from_secs(60)),
            "expired entries go"
        );
    }

    #[tokio::test]
    async fn a_changed_file_drops_cached_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), FILE);
        let auth = Auth::load(&path).unwrap();
        let alice = basic_header("alice", "secret");
        assert!(allows(&auth, Some(&alice), &[QUERY]).await);
        // Same length, new password: the cached success must not survive.
        std::fs::write(&path, FILE.replace("secret", "SECRET")).unwrap();
        assert!(!allows(&auth, Some(&alice), &[QUERY]).await);
        assert!(allows(&auth, Some(&basic_header("alice", "SECRET")), &[QUERY]).await);
        // Malformed now: fail closed, even for `*`.
        std::fs::write(&path, "[{").unwrap();
        assert!(!allows(&auth, None, &[READY]).await);
        std::fs::write(&path, FILE).unwrap();
        assert!(allows(&auth, None, &[READY]).await);
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{}", "not a JSON list"),
            (
                "[{\"username\": \"a\", \"perms\": [\"backups\"]}]",
                "unknown perm \"backups\"",
            ),
            (
                "[{\"username\": \"a\"}, {\"username\": \"a\"}]",
                "listed twice",
            ),
            ("[{\"username\": \"\"}]", "empty username"),
            (
                "[{\"username\": \"a\", \"pass\": \"x\"}]",
                "not a JSON list",
            ),
        ];
        for (text, want) in cases {
            let path = write(dir.path(), text);
            let e = Auth::load(&path).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("auth.json"), "{text}: {e}");
        }
        let e = Auth::load(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.json"), "{e}");
    }

    #[test]
    fn basic_header_round_trips_passwords_with_colons() {
        let h = basic_header("u", "p:w");
        assert_eq!(parse_basic(&h), Some(("u".into(), "p:w".into())));
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
