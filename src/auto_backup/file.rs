//! The `file` storage of automatic backups: files in a local directory, as rqlite writes them.
//! Each upload goes to a temporary `.upload-*` file in the directory, is fsynced, then renamed
//! to its name (`NAME`, or `YYYYMMDDHHMMSS_NAME` with `timestamp`), and `METADATA.json`
//! (`{"id":…,"timestamp":<ms>,"name":<path>}`) is replaced the same way, so a reader sees an
//! older complete backup or the new one, never part of one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

const METADATA: &str = "METADATA.json";
const UPLOAD_PREFIX: &str = ".upload-";
const MAX_METADATA_BYTES: u64 = 64 * 1024;

/// What `METADATA.json` says of the last upload.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A directory that receives backups.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    name: String,
    timestamp: bool,
}

impl FileStorage {
    /// Creates `dir` if needed and checks a file can be written there (at start-up: a node
    /// that cannot back up says so before it serves). Temporary files a crash left are removed.
    pub fn open(dir: &Path, name: &str, timestamp: bool) -> anyhow::Result<FileStorage> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the backup directory {}", dir.display()))?;
        let probe = dir.join(format!(
            "{UPLOAD_PREFIX}{}.probe",
            crate::temp_file::unique_suffix()
        ));
        create_new(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .with_context(|| format!("write to the backup directory {}", dir.display()))?;
        remove_old_uploads(dir);
        Ok(FileStorage {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            timestamp,
        })
    }

    /// The storage at `dir` as it is, to read from: nothing is created or checked.
    pub fn at(dir: &Path, name: &str) -> FileStorage {
        FileStorage {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            timestamp: false,
        }
    }

    /// The latest backup: the file `METADATA.json` names, when it is in this directory and
    /// still there (uploads with `timestamp` are each a new file), else `NAME`.
    pub fn latest(&self) -> PathBuf {
        let named = self.current().ok().flatten().and_then(|m| m.name);
        match named.map(PathBuf::from) {
            Some(path) if path.parent() == Some(self.dir.as_path()) && path.is_file() => path,
            _ => self.dir.join(&self.name),
        }
    }

    /// Copies the latest backup ([`FileStorage::latest`]) into the new file `to`, at most
    /// `max_bytes` of it; returns its size.
    pub fn download(&self, to: &Path, max_bytes: u64) -> anyhow::Result<u64> {
        copy_capped(&self.latest(), to, max_bytes)
    }

    /// The directory of the archive's objects (continuous archiving): `NAME.archive` beside
    /// the backups.
    pub fn archive_root(&self) -> PathBuf {
        self.dir.join(format!("{}.archive", self.name))
    }

    /// Writes the archive object `rel` (`bases/…`, `log/…`) from the file `from`: a
    /// temporary file, fsynced, renamed into place, so a reader never sees part of one.
    pub fn put_object(&self, rel: &str, from: &Path) -> anyhow::Result<u64> {
        let path = self.object_path(rel)?;
        let parent = path.parent().expect("an object has a directory");
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        let tmp = crate::temp_file::TempFile::new(parent.join(format!(
            "{UPLOAD_PREFIX}{}",
            crate::temp_file::unique_suffix()
        )));
        let mut out =
            create_new(tmp.path()).with_context(|| format!("create {}", tmp.path().display()))?;
        let mut source =
            std::fs::File::open(from).with_context(|| format!("open {}", from.display()))?;
        let n = io::copy(&mut source, &mut out).with_context(|| format!("write {rel}"))?;
        out.sync_all().with_context(|| format!("fsync {rel}"))?;
        drop(out);
        let mut tmp = tmp;
        tmp.rename_to(&path)
            .with_context(|| format!("rename {rel} into place"))?;
        tmp.persist();
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync {}", parent.display()))?;
        Ok(n)
    }

    /// Copies the archive object `rel` into the new file `to`, at most `max_bytes`.
    pub fn get_object(&self, rel: &str, to: &Path, max_bytes: u64) -> anyhow::Result<u64> {
        copy_capped(&self.object_path(rel)?, to, max_bytes)
    }

    /// The names of the archive objects in the folder `rel_dir` (`bases`, `log`).
    pub fn list_objects(&self, rel_dir: &str) -> anyhow::Result<Vec<String>> {
        let names = names_in(&self.object_path(rel_dir)?, |t| t.is_file())?;
        Ok(names
            .into_iter()
            .filter(|n| !n.starts_with(UPLOAD_PREFIX))
            .collect())
    }

    /// The names of the folders in the archive folder `rel_dir` ("" for the root).
    pub fn list_folders(&self, rel_dir: &str) -> anyhow::Result<Vec<String>> {
        let dir = if rel_dir.is_empty() {
            self.archive_root()
        } else {
            self.object_path(rel_dir)?
        };
        names_in(&dir, |t| t.is_dir())
    }

    /// Removes the archive object `rel` (gone already is fine).
    pub fn delete_object(&self, rel: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(self.object_path(rel)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("remove {rel}"))
            }
            _ => Ok(()),
        }
    }

    fn object_path(&self, rel: &str) -> anyhow::Result<PathBuf> {
        if rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\0'))
        {
            anyhow::bail!("not an archive object name: {rel:?}");
        }
        Ok(self.archive_root().join(rel))
    }

    /// The directory the backups go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the uploads go, for the log and `/status`.
    pub fn describe(&self) -> String {
        format!("dir:{}, file:{}", self.dir.display(), self.name)
    }

    /// The last upload's metadata, if any.
    pub fn current(&self) -> anyhow::Result<Option<Metadata>> {
        use std::io::Read as _;
        let path = self.dir.join(METADATA);
        // Metadata is a few hundred bytes; a larger file is not ours to load whole.
        let read = std::fs::File::open(&path).and_then(|f| {
            let mut bytes = Vec::new();
            f.take(MAX_METADATA_BYTES)
                .read_to_end(&mut bytes)
                .map(|_| bytes)
        });
        match read {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("read {}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// The id of the last upload, if the file it names is still there (a backup removed by
    /// hand must be made again, not skipped as already uploaded).
    pub fn current_id(&self) -> anyhow::Result<Option<String>> {
        Ok(self.current()?.and_then(|m| match &m.name {
            Some(name) if !Path::new(name).exists() => None,
            _ => Some(m.id),
        }))
    }

    /// Writes one backup: `body` writes its bytes into the temporary file (and returns how
    /// many), which becomes the named file once complete and on disk; then the metadata names
    /// it with `id`. Returns the final path. Nothing is left behind on an error.
    pub fn upload(
        &self,
        id: &str,
        now_unix_secs: i64,
        body: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
    ) -> anyhow::Result<(PathBuf, u64)> {
        let name = if self.timestamp {
            format!("{}_{}", compact_utc(now_unix_secs), self.name)
        } else {
            self.name.clone()
        };
        let final_path = self.dir.join(&name);
        let suffix = crate::temp_file::unique_suffix();
        let tmp =
            crate::temp_file::TempFile::new(self.dir.join(format!("{UPLOAD_PREFIX}{suffix}")));
        let tmp_meta =
            crate::temp_file::TempFile::new(self.dir.join(format!("{UPLOAD_PREFIX}{suffix}.meta")));
        let mut file =
            create_new(tmp.path()).with_context(|| format!("create {}", tmp.path().display()))?;
        let written = {
            let mut out = io::BufWriter::with_capacity(1 << 20, &mut file);
            let n = body(&mut out).context("write the backup")?;
            out.flush().context("write the backup")?;
            n
        };
        file.sync_all().context("fsync the backup")?;
        drop(file);
        let metadata = Metadata {
            id: id.to_string(),
            timestamp: Some(now_unix_secs.saturating_mul(1000)),
            name: Some(final_path.display().to_string()),
        };
        let meta_bytes = serde_json::to_vec(&metadata).context("encode the metadata")?;
        create_new(tmp_meta.path())
            .and_then(|mut f| f.write_all(&meta_bytes).and_then(|()| f.sync_all()))
            .with_context(|| format!("write {}", tmp_meta.path().display()))?;
        let mut tmp = tmp;
        tmp.rename_to(&final_path)
            .with_context(|| format!("rename the backup to {}", final_path.display()))?;
        tmp.persist();
        let mut tmp_meta = tmp_meta;
        tmp_meta
            .rename_to(self.dir.join(METADATA))
            .context("rename the metadata into place")?;
        tmp_meta.persist();
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .context("fsync the backup directory")?;
        Ok((final_path, written))
    }
}

/// The sorted names of the entries of `dir` whose type `keep` accepts (none if `dir` does
/// not exist).
fn names_in(dir: &Path, keep: impl Fn(std::fs::FileType) -> bool) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        if entry.file_type().is_ok_and(&keep) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Copies `from` into the new file `to`, fsynced; more than `max_bytes` is an error.
fn copy_capped(from: &Path, to: &Path, max_bytes: u64) -> anyhow::Result<u64> {
    use std::io::Read as _;
    let source = std::fs::File::open(from).with_context(|| format!("open {}", from.display()))?;
    let mut out = create_new(to).with_context(|| format!("create {}", to.display()))?;
    let n = io::copy(&mut source.take(max_bytes.saturating_add(1)), &mut out)
        .with_context(|| format!("copy {}", from.display()))?;
    if n > max_bytes {
        anyhow::bail!("{} is larger than {max_bytes} bytes", from.display());
    }
    out.sync_all()
        .with_context(|| format!("sync {}", to.display()))?;
    Ok(n)
}

/// Creates `path`, which must not exist: never through a symbolic link planted there, never
/// truncating a file that is someone else's (`O_CREAT | O_EXCL` does not follow links).
fn create_new(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Temporary files older than this are a crash's leftovers; younger ones may be another
/// node's upload in progress (several nodes may share one directory).
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes `.upload-*` files a crash left, once they are old enough to be nobody's work.
fn remove_old_uploads(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with(UPLOAD_PREFIX);
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > LEFTOVER_AGE);
        if ours && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `name` is one this storage uses for itself, so no backup may have it.
pub fn is_reserved_name(name: &str) -> bool {
    name == METADATA || name.starts_with(UPLOAD_PREFIX)
}

/// `YYYYMMDDHHMMSS` in UTC: rqlite's timestamp prefix.
pub(crate) fn compact_utc(unix_secs: i64) -> String {
    crate::http::json::rfc3339_from_unix(unix_secs)
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_replace_the_file_or_add_timestamped_ones_with_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let plain = FileStorage::open(dir.path(), "b.sqlite", false).unwrap();
        assert_eq!(plain.current().unwrap(), None);
        for (id, body) in [("1", &b"one"[..]), ("2", b"two")] {
            let (path, n) = plain
                .upload(id, 1_800_000_000, |w| w.write_all(body).map(|()| 3))
                .unwrap();
            assert_eq!((path.clone(), n), (dir.path().join("b.sqlite"), 3));
            assert_eq!(std::fs::read(&path).unwrap(), body);
        }
        let meta = plain.current().unwrap().unwrap();
        assert_eq!(meta.id, "2");
        assert_eq!(meta.timestamp, Some(1_800_000_000_000));
        let stamped = FileStorage::open(dir.path(), "b.sqlite", true).unwrap();
        let (path, _) = stamped
            .upload("3", 1_800_000_000, |w| w.write_all(b"x").map(|()| 1))
            .unwrap();
        assert_eq!(path, dir.path().join("20270115080000_b.sqlite"));
        assert_eq!(meta_name(&stamped), path.display().to_string());
        // A failed upload leaves nothing and changes nothing.
        let err = stamped.upload("4", 1_800_000_100, |_| Err(io::Error::other("boom")));
        assert!(format!("{:#}", err.unwrap_err()).contains("boom"));
        assert_eq!(stamped.current().unwrap().unwrap().id, "3");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["20270115080000_b.sqlite", "METADATA.json", "b.sqlite"]
        );
    }

    #[test]
    fn an_id_whose_file_is_gone_is_no_id() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::open(dir.path(), "b", false).unwrap();
        let (path, _) = storage
            .upload("7", 1_800_000_000, |w| w.write_all(b"x").map(|()| 1))
            .unwrap();
        assert_eq!(storage.current_id().unwrap().as_deref(), Some("7"));
        std::fs::remove_file(path).unwrap();
        assert_eq!(storage.current_id().unwrap(), None);
    }

    fn meta_name(s: &FileStorage) -> String {
        s.current().unwrap().unwrap().name.unwrap()
    }

    /// A link planted under a temporary name is never written through, and files another
    /// node may be writing (young `.upload-*` files) are left alone at start-up.
    #[test]
    fn planted_links_and_young_temporary_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join(format!("{UPLOAD_PREFIX}probe"));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(create_new(&planted).is_err());
        let young = dir.path().join(format!("{UPLOAD_PREFIX}someone-else"));
        std::fs::write(&young, b"in progress").unwrap();
        let storage = FileStorage::open(dir.path(), "b", false).unwrap();
        storage
            .upload("1", 1_800_000_000, |w| w.write_all(b"x").map(|()| 1))
            .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&young).unwrap(), b"in progress");
        assert!(is_reserved_name("METADATA.json") && is_reserved_name(".upload-x"));
        assert!(!is_reserved_name("backup.sqlite"));
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        assert!(FileStorage::open(&file, "b", false).is_err());
    }
}
