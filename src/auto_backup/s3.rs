//! S3 and S3-compatible storage for automatic backups and restores, through the
//! `object_store` crate (signing, multipart uploads, retries).
//!
//! Naming and metadata are rqlite's, so either tool finds the other's backups: the object is
//! `path` in `bucket` (with `timestamp`, its last segment gets the prefix
//! `YYYYMMDDHHMMSS_`, UTC), and an upload carries its id as the user metadata
//! `x-rqlite-auto-backup-id`, which is read back from `path` to skip an unchanged database.
//!
//! Memory is bounded whatever the database's size: an upload is a multipart upload fed from
//! the backup file in [`PART_SIZE`] pieces, at most [`PARTS_IN_FLIGHT`] of them sent at once,
//! and a download is written to its file as it arrives.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, ObjectStore as _, PutMultipartOptions,
    RetryConfig, WriteMultipart,
};

/// rqlite's metadata key for an upload's id.
pub const ID_METADATA: &str = "x-rqlite-auto-backup-id";
/// The size of each part of a multipart upload (S3 wants at least 5 MiB but for the last).
pub const PART_SIZE: usize = 8 << 20;
/// How many parts may be on their way at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// The `sub` object of an `s3` configuration, as rqlite documents it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct S3Config {
    /// Empty: AWS itself. Without a scheme, `https://` is assumed (as rqlite does).
    #[serde(default)]
    pub endpoint: String,
    pub region: String,
    /// Empty access keys: the usual AWS sources (environment, profile, instance role).
    #[serde(default)]
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: String,
    pub bucket: String,
    pub path: String,
    #[serde(default)]
    pub force_path_style: bool,
}

impl S3Config {
    /// Checks what rqlite would only find out at the first upload.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.bucket.is_empty() {
            bail!("type s3: bucket is empty");
        }
        if self.region.is_empty() {
            bail!("type s3: region is empty");
        }
        let segments: Vec<&str> = self.path.split('/').collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            bail!(
                "type s3: path must be an object key of non-empty segments (no leading, \
                 trailing or doubled '/', no \".\" or \"..\"), not {:?}",
                self.path
            );
        }
        Ok(())
    }

    fn endpoint_url(&self) -> Option<String> {
        match self.endpoint.as_str() {
            "" => None,
            e if e.contains("://") => Some(e.to_string()),
            e => Some(format!("https://{e}")),
        }
    }
}

/// One backup object in a bucket.
pub struct S3Storage {
    client: AmazonS3,
    downloads: AmazonS3,
    key: String,
    timestamp: bool,
    describe: String,
}

impl S3Storage {
    pub fn open(config: &S3Config, timestamp: bool) -> anyhow::Result<S3Storage> {
        config.check()?;
        let endpoint = config.endpoint_url();
        let client = |total: Option<Duration>| -> anyhow::Result<AmazonS3> {
            let mut options = ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(10))
                .with_allow_http(
                    endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                );
            options = match total {
                Some(t) => options.with_timeout(t),
                None => options.with_timeout_disabled(),
            };
            let mut builder =
                if config.access_key_id.is_empty() || config.secret_access_key.is_empty() {
                    AmazonS3Builder::from_env()
                } else {
                    AmazonS3Builder::new()
                        .with_access_key_id(&config.access_key_id)
                        .with_secret_access_key(&config.secret_access_key)
                }
                .with_region(&config.region)
                .with_bucket_name(&config.bucket)
                .with_virtual_hosted_style_request(!config.force_path_style)
                .with_retry(RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(60),
                    ..RetryConfig::default()
                })
                .with_client_options(options);
            if let Some(endpoint) = &endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build().context("type s3: the client")
        };
        // Requests of bounded size (a part of PART_SIZE, a listing, a small object): one that
        // takes longer than this fails (and is retried) rather than hold an upload for ever.
        let bounded = client(Some(Duration::from_secs(120)))?;
        // Downloads of whole backups, whose time grows with their size: bounded by the
        // caller (auto-restore's `timeout`), never by a total of its own.
        let downloads = client(None)?;
        let describe = match &endpoint {
            Some(e) if !e.ends_with("amazonaws.com") => {
                format!(
                    "{}/{}/{}",
                    e.trim_end_matches('/'),
                    config.bucket,
                    config.path
                )
            }
            _ => format!("s3://{}/{}", config.bucket, config.path),
        };
        Ok(S3Storage {
            client: bounded,
            downloads,
            key: config.path.clone(),
            timestamp,
            describe,
        })
    }

    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// The id the object at `path` carries, if it exists and has one.
    pub async fn current_id(&self) -> anyhow::Result<Option<String>> {
        let head = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self
            .client
            .get_opts(&ObjectPath::from(self.key.as_str()), head)
            .await
        {
            Ok(found) => Ok(found
                .attributes
                .get(&Attribute::Metadata(ID_METADATA.into()))
                .map(|v| v.to_string())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read the id of {}", self.describe)),
        }
    }

    /// The key an upload made at `unix_secs` goes to.
    pub fn key_at(&self, unix_secs: i64) -> String {
        if !self.timestamp {
            return self.key.clone();
        }
        let prefix = super::file::compact_utc(unix_secs);
        match self.key.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/{prefix}_{name}"),
            None => format!("{prefix}_{}", self.key),
        }
    }

    /// Uploads what `fill` writes to the key for `unix_secs`, with `id` as its metadata;
    /// returns the key and the bytes sent.
    pub async fn upload(
        &self,
        id: &str,
        unix_secs: i64,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<u64> + Send + 'static,
    ) -> anyhow::Result<(String, u64)> {
        let key = self.key_at(unix_secs);
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(ID_METADATA.into()),
            id.to_string().into(),
        );
        let n = self.put_stream(&key, attributes, fill).await?;
        Ok((key, n))
    }

    /// Writes `key` from what `fill` writes (on a blocking thread, through a bounded
    /// channel), as a multipart upload; returns the bytes sent. A failure aborts the upload,
    /// so no part of it stays in the bucket.
    async fn put_stream(
        &self,
        key: &str,
        attributes: Attributes,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<u64> + Send + 'static,
    ) -> anyhow::Result<u64> {
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = self
            .client
            .put_multipart_opts(&ObjectPath::from(key), opts)
            .await
            .with_context(|| format!("start the upload to {}", self.describe))?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(PARTS_IN_FLIGHT);
        let producer = tokio::task::spawn_blocking(move || {
            let mut out = ChunkSender {
                buf: Vec::with_capacity(PART_SIZE),
                tx,
            };
            let n = fill(&mut out)?;
            out.send()?;
            Ok::<u64, std::io::Error>(n)
        });
        let sent = async {
            while let Some(chunk) = rx.recv().await {
                parts.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                parts.put(chunk);
            }
            Ok::<(), object_store::Error>(())
        }
        .await;
        // The receiver is gone from here: a producer still writing fails at its next piece.
        drop(rx);
        let produced = producer.await.context("the backup reader")?;
        match (sent, produced) {
            (Ok(()), Ok(n)) => {
                parts
                    .finish()
                    .await
                    .with_context(|| format!("finish the upload to {}", self.describe))?;
                Ok(n)
            }
            (sent, produced) => {
                let _ = parts.abort().await;
                match sent {
                    Err(e) => Err(e).with_context(|| format!("upload to {}", self.describe)),
                    Ok(()) => Err(produced.unwrap_err()).context("read the backup"),
                }
            }
        }
    }

    /// The archive's key for `rel`: `PATH.archive/REL`.
    fn archive_key(&self, rel: &str) -> ObjectPath {
        ObjectPath::from(format!("{}.archive/{rel}", self.key))
    }

    /// Writes the archive object `rel` from the file `from`.
    pub async fn put_object(&self, rel: &str, from: &Path) -> anyhow::Result<u64> {
        let key = self.archive_key(rel).to_string();
        let from = from.to_path_buf();
        self.put_stream(&key, Attributes::new(), move |out| {
            std::io::copy(&mut std::fs::File::open(&from)?, out)
        })
        .await
    }

    /// Copies the archive object `rel` into the new file `to`, at most `max_bytes`.
    pub async fn get_object(&self, rel: &str, to: &Path, max_bytes: u64) -> anyhow::Result<u64> {
        self.get_into(&self.archive_key(rel), to, max_bytes).await
    }

    /// The names of the archive objects in the folder `rel_dir`.
    pub async fn list_objects(&self, rel_dir: &str) -> anyhow::Result<Vec<String>> {
        let prefix = self.archive_key(rel_dir);
        let mut listing = self.client.list(Some(&prefix));
        let mut names = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.with_context(|| format!("list {}", self.describe))?;
            if let Some(name) = meta.location.filename() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The names of the folders in the archive folder `rel_dir` ("" for the root).
    pub async fn list_folders(&self, rel_dir: &str) -> anyhow::Result<Vec<String>> {
        let prefix = if rel_dir.is_empty() {
            ObjectPath::from(format!("{}.archive", self.key))
        } else {
            self.archive_key(rel_dir)
        };
        let listing = self
            .client
            .list_with_delimiter(Some(&prefix))
            .await
            .with_context(|| format!("list {}", self.describe))?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Removes the archive object `rel`.
    pub async fn delete_object(&self, rel: &str) -> anyhow::Result<()> {
        match self.client.delete(&self.archive_key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("remove {rel} from {}", self.describe)),
        }
    }

    /// Writes the object at `path` into `to` (a new file), at most `max_bytes` of it;
    /// returns its size.
    pub async fn download(&self, to: &Path, max_bytes: u64) -> anyhow::Result<u64> {
        self.get_into(&ObjectPath::from(self.key.as_str()), to, max_bytes)
            .await
    }

    async fn get_into(&self, key: &ObjectPath, to: &Path, max_bytes: u64) -> anyhow::Result<u64> {
        use tokio::io::AsyncWriteExt as _;
        let found = self
            .downloads
            .get(key)
            .await
            .with_context(|| format!("download {}", self.describe))?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .await
            .with_context(|| format!("create {}", to.display()))?;
        let mut stream = found.into_stream();
        let mut total = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece.with_context(|| format!("download {}", self.describe))?;
            total += piece.len() as u64;
            if total > max_bytes {
                bail!("{} is larger than {max_bytes} bytes", self.describe);
            }
            file.write_all(&piece)
                .await
                .with_context(|| format!("write {}", to.display()))?;
        }
        file.sync_all()
            .await
            .with_context(|| format!("sync {}", to.display()))?;
        Ok(total)
    }
}

/// A writer that hands its bytes to the uploader in parts of [`PART_SIZE`].
struct ChunkSender {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE));
        self.tx
            .blocking_send(part.into())
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PART_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str) -> S3Config {
        S3Config {
            endpoint: "http://127.0.0.1:9".into(),
            region: "us-east-1".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            bucket: "b".into(),
            path: path.into(),
            force_path_style: true,
        }
    }

    #[test]
    fn timestamped_keys_prefix_the_last_segment_as_rqlite_does() {
        let s = S3Storage::open(&config("backups/db.sqlite.gz"), true).unwrap();
        // 2026-12-03 12:00:00 UTC.
        assert_eq!(
            s.key_at(1_796_299_200),
            "backups/20261203120000_db.sqlite.gz"
        );
        let s = S3Storage::open(&config("db.gz"), true).unwrap();
        assert_eq!(s.key_at(1_796_299_200), "20261203120000_db.gz");
        let s = S3Storage::open(&config("a/db.gz"), false).unwrap();
        assert_eq!(s.key_at(1_796_299_200), "a/db.gz");
        assert_eq!(s.describe(), "http://127.0.0.1:9/b/a/db.gz");
    }

    #[test]
    fn keys_that_are_not_plain_object_names_are_refused() {
        for bad in ["", "/db", "db/", "a//b", "a/../b", "."] {
            assert!(config(bad).check().is_err(), "{bad:?}");
        }
        let mut c = config("db");
        c.bucket.clear();
        assert!(c.check().is_err());
    }
}
