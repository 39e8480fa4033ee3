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
//! Owns: parsing the file, checking a password (plain text, or a bcrypt hash `$2a$/$2b$/$2y$`, which
//! is only ever checked as a hash, unlike rqlite, which also accepts the hash itself),
//! the verified-credentials cache, and which perm each API route needs ([`required_perms`]).
//! Invariants: a password is never logged or kept in clear beyond the request that carries
//! it (the cache holds SHA-256 digests of successful checks only). The file is stat'ed on
//! every check and read again when it changed, and the cache belongs to one reading of the
//! file: a change of the file (a revoked user, a new password) drops it. A file that became
//! unreadable or malformed refuses everything (fails closed) until it is fixed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Verified credentials kept at most; the cache is emptied when full (it refills at one
/// bcrypt check per active user).
const CACHE_CAPACITY: usize = 4096;

/// The perms an HTTP API request needs (all of them), or `None` for a path that is not an
/// API endpoint (404 whatever the credentials, as in rqlite).
pub fn required_perms(method: &str, path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "/db/execute" => &[EXECUTE],
        "/db/query" => &[QUERY],
        "/db/request" | "/db/sql" => &[EXECUTE, QUERY],
        "/db/backup" => &[BACKUP],
        "/db/load" | "/boot" => &[LOAD],
        "/status" | "/nodes" => &[STATUS],
        "/readyz" => &[READY],
        "/remove" => &[REMOVE],
        "/leader" if method == "GET" => &[STATUS],
        "/leader" => &[LEADER_OPS],
        "/snapshot" | "/reap" => &[SNAPSHOT],
        "/debug/vars" => &[STATUS],
        // The web console: its page and assets need `ui`; each of its API calls needs the perm
        // of the endpoint it stands for. A backup job's download needs nothing more: its id
        // (128 random bits) was handed to a caller with `backup`, and a browser download link
        // cannot carry the console's credentials.
        "/console/api/backup-jobs" => &[BACKUP],
        "/console/api/cluster" => &[STATUS],
        "/console/api/restores" => &[LOAD],
        p if p.starts_with("/console/api/backup-jobs/") && p.ends_with("/download") => &[],
        p if p.starts_with("/console/api/backup-jobs/") => &[BACKUP],
        p if p.starts_with("/console/api/restores/") => &[LOAD],
        "/" | "/console" => &[],
        p if p.starts_with("/console/") => &[UI],
        _ => return None,
    })
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
    /// SHA-256 of (user, password, stored password) for checks that succeeded.
    verified: Mutex<HashSet<[u8; 32]>>,
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
            verified: Mutex::new(HashSet::new()),
        })
    }

    fn has_perm(&self, user: &str, perm: &str) -> bool {
        self.perms
            .get(user)
            .is_some_and(|p| p.contains(perm) || p.contains(ALL))
    }

    fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(stored) = self.passwords.get(user) else {
            return false;
        };
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [user, password, stored] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            h.finalize().into()
        };
        if self.verified.lock().contains(&key) {
            return true;
        }
        // A stored bcrypt hash is only ever a hash: knowing it must not be enough to log in.
        let ok = if is_bcrypt_hash(stored) {
            bcrypt::verify(password, stored).unwrap_or(false)
        } else {
            constant_time_eq(stored.as_bytes(), password.as_bytes())
        };
        if ok {
            let mut cache = self.verified.lock();
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }

    /// rqlite's `AA`: `*` holds the perm, or the credentials check out for a user holding it.
    fn allows(&self, creds: Option<&(String, String)>, perm: &str) -> bool {
        if self.has_perm(ANYONE, perm) {
            return true;
        }
        match creds {
            Some((user, password)) if !user.is_empty() => {
                self.has_perm(user, perm) && self.check_password(user, password)
            }
            _ => false,
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

/// What identifies one version of the file: a write changes the length, the ctime or the
/// mtime; a replacement (rename over it) changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok(FileStamp {
        len: m.len(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

struct Loaded {
    stamp: Option<FileStamp>,
    /// `None`: the file is unreadable or malformed now; everything is refused.
    creds: Option<Arc<Credentials>>,
}

/// The `-auth` file, followed as it changes.
pub struct Auth {
    path: PathBuf,
    loaded: RwLock<Loaded>,
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
        let stamp = stamp(path).map_err(|e| err(e.to_string()))?;
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let creds = Credentials::parse(&text).map_err(err)?;
        Ok(Auth {
            path: path.to_path_buf(),
            loaded: RwLock::new(Loaded {
                stamp: Some(stamp),
                creds: Some(Arc::new(creds)),
            }),
        })
    }

    /// The credentials as the file says now, read again if it changed since the last check.
    fn current(&self) -> Option<Arc<Credentials>> {
        let now = stamp(&self.path).ok();
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

    /// Whether a request with this `Authorization` header value holds every perm in `perms`.
    pub fn allows(&self, authorization: Option<&str>, perms: &[&str]) -> bool {
        let Some(creds) = self.current() else {
            return false;
        };
        let basic = authorization.and_then(parse_basic);
        perms.iter().all(|perm| creds.allows(basic.as_ref(), perm))
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
        {"username": "*", "perms": ["ready"]}
    ]"#;

    #[test]
    fn perms_plain_passwords_and_anyone() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::load(&write(dir.path(), FILE)).unwrap();
        let alice = basic_header("alice", "secret");
        assert!(auth.allows(Some(&alice), &[QUERY]));
        assert!(auth.allows(Some(&alice), &[BACKUP]));
        assert!(!auth.allows(Some(&alice), &[EXECUTE]));
        assert!(!auth.allows(Some(&alice), &[EXECUTE, QUERY]));
        assert!(!auth.allows(Some(&basic_header("alice", "wrong")), &[QUERY]));
        assert!(!auth.allows(None, &[QUERY]));
        assert!(
            auth.allows(None, &[READY]),
            "* grants ready to anonymous requests"
        );
        assert!(auth.allows(Some(&basic_header("root", "r00t")), &[LOAD, JOIN]));
        assert!(!auth.allows(Some("Bearer xyz"), &[QUERY]));
    }

    #[test]
    fn bcrypt_hashes_are_checked_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text =
            format!(r#"[{{"username": "bob", "password": "{hash}", "perms": ["execute"]}}]"#);
        let auth = Auth::load(&write(dir.path(), &text)).unwrap();
        let good = basic_header("bob", "pw");
        assert!(auth.allows(Some(&good), &[EXECUTE]));
        assert!(auth.allows(Some(&good), &[EXECUTE]), "cached");
        assert!(!auth.allows(Some(&basic_header("bob", "pW")), &[EXECUTE]));
        assert!(!auth.allows(Some(&basic_header("bob", &hash)), &[EXECUTE]));
    }

    #[test]
    fn a_changed_file_drops_cached_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), FILE);
        let auth = Auth::load(&path).unwrap();
        let alice = basic_header("alice", "secret");
        assert!(auth.allows(Some(&alice), &[QUERY]));
        // Same length, new password: the cached success must not survive.
        std::fs::write(&path, FILE.replace("secret", "SECRET")).unwrap();
        assert!(!auth.allows(Some(&alice), &[QUERY]));
        assert!(auth.allows(Some(&basic_header("alice", "SECRET")), &[QUERY]));
        // Malformed now: fail closed, even for `*`.
        std::fs::write(&path, "[{").unwrap();
        assert!(!auth.allows(None, &[READY]));
        std::fs::write(&path, FILE).unwrap();
        assert!(auth.allows(None, &[READY]));
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
    fn every_api_route_needs_a_perm() {
        assert_eq!(
            required_perms("POST", "/db/request"),
            Some(&[EXECUTE, QUERY][..])
        );
        assert_eq!(required_perms("GET", "/leader"), Some(&[STATUS][..]));
        assert_eq!(required_perms("POST", "/leader"), Some(&[LEADER_OPS][..]));
        assert_eq!(required_perms("GET", "/boot"), Some(&[LOAD][..]));
        assert_eq!(required_perms("GET", "/nope"), None);
        assert_eq!(required_perms("POST", "/snapshot"), Some(&[SNAPSHOT][..]));
        assert_eq!(required_perms("POST", "/reap"), Some(&[SNAPSHOT][..]));
        assert_eq!(required_perms("GET", "/debug/vars"), Some(&[STATUS][..]));
        assert_eq!(required_perms("GET", "/console/"), Some(&[UI][..]));
        assert_eq!(
            required_perms("GET", "/console/console.js"),
            Some(&[UI][..])
        );
        assert_eq!(required_perms("GET", "/"), Some(&[][..]));
        let job = "/console/api/backup-jobs/0123abcd";
        assert_eq!(
            required_perms("POST", "/console/api/backup-jobs"),
            Some(&[BACKUP][..])
        );
        assert_eq!(required_perms("GET", job), Some(&[BACKUP][..]));
        assert_eq!(
            required_perms("GET", &format!("{job}/download")),
            Some(&[][..])
        );
        assert_eq!(
            required_perms("POST", "/console/api/restores"),
            Some(&[LOAD][..])
        );
        assert_eq!(
            required_perms("POST", "/console/api/restores/x/install"),
            Some(&[LOAD][..])
        );
        assert_eq!(
            required_perms("GET", "/console/api/cluster"),
            Some(&[STATUS][..])
        );
    }

    #[test]
    fn basic_header_round_trips_passwords_with_colons() {
        let h = basic_header("u", "p:w");
        assert_eq!(parse_basic(&h), Some(("u".into(), "p:w".into())));
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
