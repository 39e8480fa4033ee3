//! rqlite's `-auto-backup` configuration file, read as rqlite reads it: JSON with `$VAR` and
//! `${VAR}` replaced from the environment first (unset variables become empty, as Go's
//! `os.ExpandEnv` makes them), `version` at most 1, `type`, `interval` (a Go duration),
//! `no_compress`, `timestamp`, `vacuum`, and the storage's own `sub` object.
//!
//! Storage types: `file` (`{"dir": ABSOLUTE_DIR, "name": FILE_NAME}`) and `s3` (rqlite's
//! `sub`: `access_key_id`, `secret_access_key`, `endpoint`, `region`, `bucket`, `path`,
//! `force_path_style`; see [`super::s3`]). `gcs` is refused with a clear error (no GCS
//! emulator runs here to test it against): a node that was asked to back up and cannot must
//! not start.
//!
//! rqlite's `-auto-restore` configuration ([`read_restore`]) shares the storage part, with
//! `timeout` (default 30 s) and `continue_on_failure` instead of the backup's settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// What the leader backs up, where, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoBackupConfig {
    pub interval: Duration,
    /// gzip the backup (rqlite's default; `no_compress: true` turns it off).
    pub compress: bool,
    /// Prefix the file name with the upload's UTC time, `YYYYMMDDHHMMSS_`, so every upload is
    /// a new file; otherwise each upload replaces the last.
    pub timestamp: bool,
    /// Back up a vacuumed copy (`GET /db/backup?vacuum`).
    pub vacuum: bool,
    pub storage: Storage,
    /// Continuous archiving (raftlite's own `archive` object; rqlite ignores the key).
    pub archive: Option<ArchiveConfig>,
}

/// Continuous archiving of the Raft log beside the backups, for point-in-time recovery
/// (`crate::archive`): `"archive": {"max_delay": "1s", "base_interval": "1h", "keep_bases": 2,
/// "max_log_hold_bytes": 1073741824}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveConfig {
    /// The longest an applied entry waits before it is shipped (default 1 s).
    pub max_delay: Duration,
    /// How often a new base backup is taken when the database changed (default: the
    /// configuration's `interval`).
    pub base_interval: Duration,
    /// Base backups kept, with the log needed from the oldest (default 2, at least 1).
    pub keep_bases: usize,
    /// The leader's log is not purged past what the archive holds while its segments take
    /// less than this (default 1 GiB; 0: no hold): an archive that falls behind (an outage,
    /// a storage slower than the writes) loses nothing until then, and continues from a
    /// base after.
    pub max_log_hold_bytes: u64,
}

/// [`ArchiveConfig::max_log_hold_bytes`]'s default.
pub const DEFAULT_MAX_LOG_HOLD_BYTES: u64 = 1 << 30;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    #[serde(default)]
    max_delay: Option<Interval>,
    #[serde(default)]
    base_interval: Option<Interval>,
    #[serde(default)]
    keep_bases: Option<usize>,
    #[serde(default)]
    max_log_hold_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// Files in a local directory, with `METADATA.json` beside them.
    File { dir: PathBuf, name: String },
    /// One object in an S3 (or S3-compatible) bucket.
    S3(super::s3::S3Config),
}

/// Where and how a node that starts empty fetches its first database (`-auto-restore`).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoRestoreConfig {
    /// How long the download may take (rqlite's default: 30 s).
    pub timeout: Duration,
    /// A failed download lets the node start empty instead of stopping it.
    pub continue_on_failure: bool,
    pub storage: Storage,
}

#[derive(serde::Deserialize)]
struct RawRestoreConfig {
    #[serde(default)]
    version: u32,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    timeout: Option<Interval>,
    #[serde(default)]
    continue_on_failure: bool,
    #[serde(default)]
    sub: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct RawConfig {
    #[serde(default)]
    version: u32,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    no_compress: bool,
    #[serde(default)]
    timestamp: bool,
    #[serde(default)]
    vacuum: bool,
    interval: Interval,
    #[serde(default)]
    sub: serde_json::Value,
    #[serde(default)]
    archive: Option<RawArchive>,
}

/// rqlite's `auto.Duration`: a Go duration string, or a number of nanoseconds.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Interval {
    Text(String),
    Nanos(u64),
}

#[derive(serde::Deserialize)]
struct RawFile {
    dir: String,
    name: String,
}

/// Reads and checks the configuration file at `path`.
pub fn read(path: &Path) -> anyhow::Result<AutoBackupConfig> {
    parse(&read_expanded(path, "auto-backup")?)
        .with_context(|| format!("auto-backup configuration {}", path.display()))
}

/// The file at `path` with its variables expanded from the environment, as rqlite reads it.
fn read_expanded(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the {what} configuration {}", path.display()))?;
    Ok(expand_env(&text, |name| std::env::var(name).ok()))
}

/// Parses a configuration whose variables are already expanded.
pub fn parse(text: &str) -> anyhow::Result<AutoBackupConfig> {
    let raw: RawConfig = serde_json::from_str(text).context("not a valid configuration")?;
    if raw.version > 1 {
        bail!("version {} is not supported (1 is)", raw.version);
    }
    let interval = raw.interval.duration("interval")?;
    if interval.is_zero() {
        bail!("interval must be more than zero");
    }
    let storage = storage(&raw.kind, raw.sub)?;
    let archive = match raw.archive {
        None => None,
        Some(a) => {
            let max_delay = match a.max_delay {
                Some(d) => d.duration("archive.max_delay")?,
                None => Duration::from_secs(1),
            };
            let base_interval = match a.base_interval {
                Some(d) => d.duration("archive.base_interval")?,
                None => interval,
            };
            if max_delay.is_zero() || base_interval.is_zero() {
                bail!("archive: max_delay and base_interval must be more than zero");
            }
            let keep_bases = a.keep_bases.unwrap_or(2);
            if keep_bases == 0 {
                bail!("archive: keep_bases must be at least 1");
            }
            Some(ArchiveConfig {
                max_delay,
                base_interval,
                keep_bases,
                max_log_hold_bytes: a.max_log_hold_bytes.unwrap_or(DEFAULT_MAX_LOG_HOLD_BYTES),
            })
        }
    };
    Ok(AutoBackupConfig {
        archive,
        interval,
        compress: !raw.no_compress,
        timestamp: raw.timestamp,
        vacuum: raw.vacuum,
        storage,
    })
}

impl Interval {
    fn duration(&self, what: &str) -> anyhow::Result<Duration> {
        Ok(match self {
            Interval::Text(text) => crate::flags::parse_go_duration(text)
                .map_err(|e| anyhow::anyhow!("{what} {text:?}: {e}"))?,
            Interval::Nanos(n) => Duration::from_nanos(*n),
        })
    }
}

/// Reads and checks an `-auto-restore` configuration file.
pub fn read_restore(path: &Path) -> anyhow::Result<AutoRestoreConfig> {
    parse_restore(&read_expanded(path, "auto-restore")?)
        .with_context(|| format!("auto-restore configuration {}", path.display()))
}

/// Parses an `-auto-restore` configuration whose variables are already expanded.
pub fn parse_restore(text: &str) -> anyhow::Result<AutoRestoreConfig> {
    let raw: RawRestoreConfig = serde_json::from_str(text).context("not a valid configuration")?;
    if raw.version > 1 {
        bail!("version {} is not supported (1 is)", raw.version);
    }
    let timeout = match &raw.timeout {
        Some(t) => t.duration("timeout")?,
        None => Duration::ZERO,
    };
    Ok(AutoRestoreConfig {
        // rqlite: zero (or absent) is 30 seconds.
        timeout: if timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            timeout
        },
        continue_on_failure: raw.continue_on_failure,
        storage: storage(&raw.kind, raw.sub)?,
    })
}

/// The storage of a configuration: its `type` and `sub`.
fn storage(kind: &str, sub: serde_json::Value) -> anyhow::Result<Storage> {
    Ok(match kind {
        "file" => {
            let file: RawFile =
                serde_json::from_value(sub).context("type file: sub needs dir and name")?;
            let dir = PathBuf::from(&file.dir);
            if !dir.is_absolute() {
                bail!(
                    "type file: dir must be an absolute path, not {:?}",
                    file.dir
                );
            }
            if super::file::is_reserved_name(&file.name) {
                bail!(
                    "type file: name {:?} is the storage's own (METADATA.json, .upload-*)",
                    file.name
                );
            }
            if !is_plain_file_name(&file.name) {
                bail!(
                    "type file: name must be a plain file name (no directory, not \".\" or \
                     \"..\"), not {:?}",
                    file.name
                );
            }
            Storage::File {
                dir,
                name: file.name,
            }
        }
        "s3" => {
            let s3: super::s3::S3Config = serde_json::from_value(sub)
                .context("type s3: sub needs region, bucket and path")?;
            s3.check()?;
            Storage::S3(s3)
        }
        "gcs" => bail!(
            "type gcs is not supported: refusing to start rather than silently not backing up \
             or restoring (types file and s3 are)"
        ),
        other => bail!("unsupported storage type {other:?}"),
    })
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Go's `os.ExpandEnv`: `${NAME}` and `$NAME` (letters, digits, `_`; or one of Go's
/// one-character names, a digit or `*#$@!?-`) replaced by `lookup`'s value, empty when unset.
/// A `$` followed by anything else stays; a `${` without its `}` is dropped.
fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => {
                    out.push_str(&lookup(&braced[..end]).unwrap_or_default());
                    rest = &braced[end + 1..];
                }
                None => rest = braced,
            }
            continue;
        }
        let first = after.chars().next();
        let len = match first {
            Some(c) if c.is_ascii_digit() || "*#$@!?-".contains(c) => 1,
            _ => after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len()),
        };
        if len == 0 {
            out.push('$');
        } else {
            out.push_str(&lookup(&after[..len]).unwrap_or_default());
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"version":1,"type":"file","interval":"5m","timestamp":true,
        "sub":{"dir":"/var/backups/raftlite","name":"backup.sqlite"}}"#;

    #[test]
    fn a_file_configuration_as_rqlite_documents_it() {
        let c = parse(FILE).unwrap();
        assert_eq!(
            c,
            AutoBackupConfig {
                interval: Duration::from_secs(300),
                compress: true,
                timestamp: true,
                vacuum: false,
                storage: Storage::File {
                    dir: "/var/backups/raftlite".into(),
                    name: "backup.sqlite".into()
                },
                archive: None,
            }
        );
        let c = parse(&FILE.replace("\"version\":1,", "\"no_compress\":true,\"vacuum\":true,"))
            .unwrap();
        assert!(!c.compress && c.vacuum);
        // rqlite also takes a number of nanoseconds.
        let c = parse(&FILE.replace("\"5m\"", "2000000000")).unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_the_reason() {
        let err = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(err(&FILE.replace("\"version\":1", "\"version\":2")).contains("version 2"));
        assert!(err(&FILE.replace("5m", "5 minutes")).contains("interval"));
        assert!(err(&FILE.replace("5m", "0s")).contains("more than zero"));
        assert!(err(&FILE.replace("/var/backups/raftlite", "backups")).contains("absolute"));
        for name in ["../x", "a/b", "..", ""] {
            assert!(
                err(&FILE.replace("backup.sqlite", name)).contains("plain file name"),
                "{name}"
            );
        }
        for name in ["METADATA.json", ".upload-x"] {
            assert!(
                err(&FILE.replace("backup.sqlite", name)).contains("storage's own"),
                "{name}"
            );
        }
        assert!(err(&FILE.replace("\"file\"", "\"gcs\"")).contains("not supported"));
        assert!(err(&FILE.replace("\"file\"", "\"s3\"")).contains("type s3"));
        assert!(err(&FILE.replace("\"file\"", "\"ftp\"")).contains("unsupported"));
        assert!(err("{").contains("not a valid configuration"));
    }

    #[test]
    fn an_s3_configuration_as_rqlite_documents_it() {
        let c = parse(
            r#"{"version":1,"type":"s3","interval":"1h","sub":{"access_key_id":"AK",
            "secret_access_key":"SK","endpoint":"minio:9000","region":"eu-west-1",
            "bucket":"b","path":"backups/db.sqlite.gz","force_path_style":true}}"#,
        )
        .unwrap();
        let Storage::S3(s3) = c.storage else {
            panic!("{c:?}")
        };
        assert_eq!(s3.endpoint, "minio:9000");
        assert_eq!(s3.path, "backups/db.sqlite.gz");
        assert!(s3.force_path_style);
        let err = parse(r#"{"type":"s3","interval":"1h","sub":{"region":"r","bucket":"b"}}"#)
            .unwrap_err();
        assert!(format!("{err:#}").contains("type s3"), "{err:#}");
    }

    #[test]
    fn archiving_is_raftlites_own_object_with_defaults() {
        let with = |archive: &str| parse(&FILE.replace("\"timestamp\":true,", archive));
        let c = with(r#""archive":{},"#).unwrap();
        assert_eq!(
            c.archive,
            Some(ArchiveConfig {
                max_delay: Duration::from_secs(1),
                base_interval: Duration::from_secs(300),
                keep_bases: 2,
                max_log_hold_bytes: 1 << 30,
            })
        );
        let c = with(
            r#""archive":{"max_delay":"250ms","base_interval":"1h","keep_bases":5,"max_log_hold_bytes":0},"#,
        )
        .unwrap();
        let a = c.archive.unwrap();
        assert_eq!(
            (
                a.max_delay,
                a.base_interval,
                a.keep_bases,
                a.max_log_hold_bytes
            ),
            (Duration::from_millis(250), Duration::from_secs(3600), 5, 0)
        );
        for bad in [
            r#""archive":{"keep_bases":0},"#,
            r#""archive":{"max_delay":"0s"},"#,
            r#""archive":{"maxdelay":"1s"},"#,
            r#""archive":{"max_log_hold_bytes":-1},"#,
            r#""archive":{"max_log_hold_bytes":"1GiB"},"#,
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
        assert_eq!(parse(FILE).unwrap().archive, None);
    }

    #[test]
    fn a_restore_configuration_as_rqlite_documents_it() {
        let sub = r#""sub":{"dir":"/b","name":"db"}"#;
        let c = parse_restore(&format!(r#"{{"version":1,"type":"file",{sub}}}"#)).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(30), "rqlite's default");
        assert!(!c.continue_on_failure);
        let c = parse_restore(&format!(
            r#"{{"type":"file","timeout":"2m","continue_on_failure":true,{sub}}}"#
        ))
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(120));
        assert!(c.continue_on_failure);
        let c = parse_restore(&format!(r#"{{"type":"file","timeout":"0s",{sub}}}"#)).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(parse_restore(&format!(r#"{{"type":"file","timeout":"x",{sub}}}"#)).is_err());
        assert!(parse_restore(&format!(r#"{{"version":2,"type":"file",{sub}}}"#)).is_err());
    }

    #[test]
    fn variables_expand_as_go_expands_them() {
        let env = |name: &str| (name == "DIR").then(|| "/b".to_string());
        assert_eq!(expand_env("$DIR/x ${DIR}y", env), "/b/x /by");
        assert_eq!(expand_env("$UNSET.${UNSET}.", env), "..");
        assert_eq!(
            expand_env("cost $55 and $ and $", env),
            "cost 5 and $ and $"
        );
        assert_eq!(expand_env("${DIR", env), "DIR");
    }
}
