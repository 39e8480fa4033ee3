//! An opened storage of automatic backups, whatever its type: what the uploader and the
//! auto-restore call ([`Target`]), so neither knows which storage it talks to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::config::Storage;
use super::file::FileStorage;
use super::s3::S3Storage;

/// Where backups go and restores come from.
pub enum Target {
    File(FileStorage),
    S3(S3Storage),
}

impl Target {
    /// Opens the storage for uploads: a `file` directory is created and checked writable.
    pub fn open_for_uploads(storage: &Storage, timestamp: bool) -> anyhow::Result<Target> {
        Ok(match storage {
            Storage::File { dir, name } => Target::File(FileStorage::open(dir, name, timestamp)?),
            Storage::S3(config) => Target::S3(S3Storage::open(config, timestamp)?),
        })
    }

    /// Opens the storage to read a backup from it; nothing is created.
    pub fn open_for_restore(storage: &Storage) -> anyhow::Result<Target> {
        Ok(match storage {
            Storage::File { dir, name } => Target::File(FileStorage::at(dir, name)),
            Storage::S3(config) => Target::S3(S3Storage::open(config, false)?),
        })
    }

    /// Where the backups are, for the log and errors.
    pub fn describe(&self) -> String {
        match self {
            Target::File(f) => f.describe(),
            Target::S3(s) => s.describe(),
        }
    }

    /// The local directory written to, if the storage is one.
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            Target::File(f) => Some(f.dir()),
            Target::S3(_) => None,
        }
    }

    /// The id of the last upload the storage holds, if any.
    pub async fn current_id(self: &Arc<Self>) -> anyhow::Result<Option<String>> {
        match &**self {
            Target::File(_) => {
                let this = Arc::clone(self);
                blocking(move || this.file().current_id()).await
            }
            Target::S3(s) => s.current_id().await,
        }
    }

    /// Writes one backup whose bytes `fill` writes (on a blocking thread, at background
    /// priority), named by `id`; returns where it went and its size.
    pub async fn upload(
        self: &Arc<Self>,
        id: &str,
        unix_secs: i64,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<u64> + Send + 'static,
    ) -> anyhow::Result<(String, u64)> {
        let background = move |out: &mut dyn std::io::Write| {
            let _background = crate::db::priority::background();
            fill(out)
        };
        match &**self {
            Target::File(_) => {
                let this = Arc::clone(self);
                let id = id.to_string();
                blocking(move || {
                    this.file()
                        .upload(&id, unix_secs, background)
                        .map(|(path, n)| (path.display().to_string(), n))
                })
                .await
            }
            Target::S3(s) => s.upload(id, unix_secs, background).await,
        }
    }

    /// Writes the archive object `rel` (`bases/NAME`, `log/NAME`) from the file `from`.
    pub async fn put_object(self: &Arc<Self>, rel: &str, from: &Path) -> anyhow::Result<u64> {
        match &**self {
            Target::File(_) => {
                let (this, rel, from) = (Arc::clone(self), rel.to_string(), from.to_path_buf());
                blocking(move || this.file().put_object(&rel, &from)).await
            }
            Target::S3(s) => s.put_object(rel, from).await,
        }
    }

    /// Copies the archive object `rel` into the new file `to`, at most `max_bytes`.
    pub async fn get_object(
        self: &Arc<Self>,
        rel: &str,
        to: &Path,
        max_bytes: u64,
    ) -> anyhow::Result<u64> {
        match &**self {
            Target::File(_) => {
                let (this, rel, to) = (Arc::clone(self), rel.to_string(), to.to_path_buf());
                blocking(move || this.file().get_object(&rel, &to, max_bytes)).await
            }
            Target::S3(s) => s.get_object(rel, to, max_bytes).await,
        }
    }

    /// The names of the archive objects in the folder `rel_dir`, sorted.
    pub async fn list_objects(self: &Arc<Self>, rel_dir: &str) -> anyhow::Result<Vec<String>> {
        match &**self {
            Target::File(_) => {
                let (this, rel) = (Arc::clone(self), rel_dir.to_string());
                blocking(move || this.file().list_objects(&rel)).await
            }
            Target::S3(s) => s.list_objects(rel_dir).await,
        }
    }

    /// The names of the folders in the archive folder `rel_dir` ("" for the root), sorted.
    pub async fn list_folders(self: &Arc<Self>, rel_dir: &str) -> anyhow::Result<Vec<String>> {
        match &**self {
            Target::File(_) => {
                let (this, rel) = (Arc::clone(self), rel_dir.to_string());
                blocking(move || this.file().list_folders(&rel)).await
            }
            Target::S3(s) => s.list_folders(rel_dir).await,
        }
    }

    /// Removes the archive object `rel`.
    pub async fn delete_object(self: &Arc<Self>, rel: &str) -> anyhow::Result<()> {
        match &**self {
            Target::File(_) => {
                let (this, rel) = (Arc::clone(self), rel.to_string());
                blocking(move || this.file().delete_object(&rel)).await
            }
            Target::S3(s) => s.delete_object(rel).await,
        }
    }

    fn file(&self) -> &FileStorage {
        match self {
            Target::File(f) => f,
            Target::S3(_) => unreachable!("called for file storage only"),
        }
    }

    /// Copies the latest backup into `to` (a new file), at most `max_bytes`; returns its size.
    pub async fn download(self: &Arc<Self>, to: &Path, max_bytes: u64) -> anyhow::Result<u64> {
        match &**self {
            Target::File(_) => {
                let this = Arc::clone(self);
                let to: PathBuf = to.to_path_buf();
                blocking(move || this.file().download(&to, max_bytes)).await
            }
            Target::S3(s) => s.download(to, max_bytes).await,
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("the storage thread")?
}
