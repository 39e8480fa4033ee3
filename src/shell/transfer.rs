//! Moving whole databases between a node and a local file: `.backup` and `.dump` download,
//! `.restore` and `.boot` upload.
//!
//! Owns: streaming in both directions, the temp-file-then-rename rule and the progress bar.
//!
//! Invariants:
//! - Nothing is held in memory whole: downloads copy through a fixed buffer to disk, uploads
//!   hand the open file to the HTTP client as a streaming body.
//! - A download lands in a temp file next to the target (same directory, so the final rename
//!   is atomic), is fsynced, and only then renamed over the target. On any failure (an error
//!   status, a stream cut off mid-way, a full disk) the temp file is removed and the target is
//!   untouched: there is never a half-written file under the final name.
//! - The progress bar (bytes, rate, ETA when the size is known) draws on stderr and only when
//!   stdout is a terminal; piped use stays quiet.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::blocking::{Body, Response};
use reqwest::{Method, StatusCode};

use super::client::{HttpClient, Timeout};

/// The first bytes of every SQLite database file that rqlite checks (`SQLite format`).
const SQLITE_MAGIC: &[u8] = b"SQLite format";

/// A temp file that removes itself unless it was renamed into place.
struct PartFile {
    path: PathBuf,
    done: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates `.<name>.<pid>.part` next to `target`, refusing to clobber anything.
fn create_part(target: &Path) -> anyhow::Result<(PartFile, File)> {
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", target.display()))?;
    if target.is_dir() {
        bail!("{} is a directory", target.display());
    }
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut part_name = std::ffi::OsString::from(".");
    part_name.push(name);
    part_name.push(format!(".{}.part", std::process::id()));
    let path = dir.join(part_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok((PartFile { path, done: false }, file))
}

fn progress(len: Option<u64>, label: &str) -> ProgressBar {
    if !io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (
            ProgressBar::new(n),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

/// The status line of a refused transfer, with the first line of the server's text if any.
pub fn status_error(prefix: &str, resp: Response) -> anyhow::Error {
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED {
        return anyhow!("unauthorized");
    }
    let body = resp.text().unwrap_or_default();
    match body.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => anyhow!("{prefix} {status}: {line}"),
        None => anyhow!("{prefix} {status}"),
    }
}

/// GETs `path` into `target` (temp file, then rename). Returns the bytes written.
pub fn download(client: &mut HttpClient, path: &str, target: &Path) -> anyhow::Result<u64> {
    let (mut part, file) = create_part(target)?;
    let mut resp = client.send(
        Method::GET,
        path,
        None,
        &mut || Ok(Body::from("")),
        Timeout::Transfer,
    )?;
    if resp.status() != StatusCode::OK {
        return Err(status_error("server responded with:", resp));
    }
    let bar = progress(resp.content_length(), "download");
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let copied = io::copy(&mut bar.wrap_read(&mut resp), &mut out);
    let n = match copied {
        Ok(n) => n,
        Err(e) => {
            bar.abandon();
            bail!(
                "transfer cut off after {} bytes ({}); {} not written",
                bar.position(),
                root_message(&e),
                target.display()
            );
        }
    };
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("write {}", target.display()))?;
    file.sync_all()
        .with_context(|| format!("write {}", target.display()))?;
    drop(file);
    fs::rename(&part.path, target).with_context(|| format!("write {}", target.display()))?;
    part.done = true;
    bar.finish();
    Ok(n)
}

/// The innermost cause of an I/O error raised while reading a response body.
fn root_message(e: &io::Error) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// How an upload file is compressed. It goes up as it is: the server recognises both and
/// decompresses on the fly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// Told by the first bytes: gzip's `1f 8b`, a zstd frame's or a skippable frame's magic.
    fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.len() >= 4
            && (head[..4] == [0x28, 0xb5, 0x2f, 0xfd]
                || (head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]))
        {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

/// A local file opened for upload: its size, its compression, and whether it (decompressed)
/// starts like a SQLite database.
pub struct Upload {
    pub path: PathBuf,
    pub len: u64,
    pub is_sqlite: bool,
    pub compression: Option<Compression>,
}

/// Up to 16 bytes from the start of `r`.
fn read_head(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head[..got].to_vec())
}

impl Upload {
    pub fn open(path: &str) -> anyhow::Result<Upload> {
        let mut f = File::open(path).with_context(|| format!("cannot read {path}"))?;
        let meta = f
            .metadata()
            .with_context(|| format!("cannot read {path}"))?;
        if meta.is_dir() {
            bail!("cannot read {path}: is a directory");
        }
        let mut head = read_head(&mut f).with_context(|| format!("cannot read {path}"))?;
        let compression = Compression::sniff(&head);
        if let Some(c) = compression {
            // The kind is the content's: decompress just enough to see its first bytes. A
            // file that does not decompress is left for the server to refuse with a reason.
            let f = File::open(path).with_context(|| format!("cannot read {path}"))?;
            let mut content: Box<dyn Read> = match c {
                Compression::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
                Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(f)?),
            };
            head = read_head(&mut content).unwrap_or_default();
        }
        Ok(Upload {
            path: PathBuf::from(path),
            len: meta.len(),
            // rqlite's check: more than 13 bytes, starting with "SQLite format".
            is_sqlite: head.len() > SQLITE_MAGIC.len() && head.starts_with(SQLITE_MAGIC),
            compression,
        })
    }

    /// POSTs the file, followed by `suffix`, to `path` as a streaming body.
    pub fn post(
        &self,
        client: &mut HttpClient,
        path: &str,
        content_type: &str,
        suffix: &[u8],
    ) -> anyhow::Result<Response> {
        let bar = progress(Some(self.len + suffix.len() as u64), "upload");
        let total = self.len + suffix.len() as u64;
        let resp = client.send(
            Method::POST,
            path,
            Some(content_type),
            &mut || {
                bar.reset();
                let file = File::open(&self.path)?;
                let reader = bar.wrap_read(file.chain(io::Cursor::new(suffix.to_vec())));
                Ok(Body::sized(reader, total))
            },
            Timeout::Transfer,
        );
        match &resp {
            Ok(_) => bar.finish(),
            Err(_) => bar.abandon(),
        }
        resp.with_context(|| format!("upload {}", self.path.display()))
    }
}

/// Writes a small text file (`.sysdump`) the same way: temp file, then rename.
pub fn write_small_file(path: &str, text: &[u8]) -> anyhow::Result<()> {
    let (mut part, mut file) = create_part(Path::new(path))?;
    file.write_all(text)
        .with_context(|| format!("write {path}"))?;
    drop(file);
    fs::rename(&part.path, path).with_context(|| format!("write {path}"))?;
    part.done = true;
    Ok(())
}
