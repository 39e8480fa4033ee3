//! rqlite's `-auto-backup` configuration file, read as rqlite reads it: JSON with `$VAR` and
//! `${VAR}` replaced from the environment first (unset variables become empty, as Go's
//! `os.ExpandEnv` makes them), `version` at most 1, `type`, `interval` (a Go duration),
//! `no_compress`, `timestamp`, `vacuum`, and the storage's own `sub` object.
//!
//! Storage types: `file` (`{"dir": ABSOLUTE_DIR, "name": FILE_NAME}`). `s3` and `gcs` are
//! refused with a clear error: a node that was asked to back up and cannot must not start.

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// Files in a local directory, with `METADATA.json` beside them.
    File { dir: PathBuf, name: String },
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
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the auto-backup configuration {}", path.display()))?;
    parse(&expand_env(&text, |name| std::env::var(name).ok()))
        .with_context(|| format!("auto-backup configuration {}", path.display()))
}

/// Parses a configuration whose variables are already expanded.
pub fn parse(text: &str) -> anyhow::Result<AutoBackupConfig> {
    let raw: RawConfig = serde_json::from_str(text).context("not a valid configuration")?;
    if raw.version > 1 {
        bail!("version {} is not supported (1 is)", raw.version);
    }
    let interval = match &raw.interval {
        Interval::Text(text) => crate::flags::parse_go_duration(text)
            .map_err(|e| anyhow::anyhow!("interval {text:?}: {e}"))?,
        Interval::Nanos(n) => Duration::from_nanos(*n),
    };
    if interval.is_zero() {
        bail!("interval must be more than zero");
    }
    let storage = match raw.kind.as_str() {
        "file" => {
            let file: RawFile =
                serde_json::from_value(raw.sub).context("type file: sub needs dir and name")?;
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
        "s3" | "gcs" => bail!(
            "type {} is not supported yet: refusing to start rather than silently not backing \
             up (type file is)",
            raw.kind
        ),
        other => bail!("unsupported storage type {other:?}"),
    };
    Ok(AutoBackupConfig {
        interval,
        compress: !raw.no_compress,
        timestamp: raw.timestamp,
        vacuum: raw.vacuum,
        storage,
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
        assert!(err(&FILE.replace("\"file\"", "\"s3\"")).contains("not supported yet"));
        assert!(err(&FILE.replace("\"file\"", "\"ftp\"")).contains("unsupported"));
        assert!(err("{").contains("not a valid configuration"));
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
