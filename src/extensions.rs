//! `-extensions-path`: the SQLite extensions every connection of this node loads.
//!
//! As rqlite does: each path is a directory (its regular files), a zip or a tar.gz archive
//! (its files; an archive with a subdirectory is refused), or one file. At start-up the
//! files are copied into `<data>/extensions/` (emptied first), and every connection loads
//! them, in name order, when it opens (`db::settings`): a file that is not an extension, or
//! fails to load, stops the start with SQLite's reason. `/status` reports them under
//! `extensions` (`dir`, `names`, and raftlite's `digest`).
//!
//! Invariants: what is loaded is the copy, never the original, so it cannot change under a
//! running node; names are plain file names (an archive entry with a directory, `..`, or a
//! link is refused, never written outside the folder); two nodes whose sets differ would
//! apply the same entry differently, so a node joins a cluster only with the leader's set
//! (the `digest`, checked by the leader on join).
//!
//! Extensions run inside the process with its rights: only the operator chooses them (a
//! flag), and SQL's `load_extension()` stays refused. Their functions must be deterministic
//! to be used in writes: raftlite cannot check that (rqlite neither).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

/// The most bytes one extension file may have (an archive entry counts decompressed).
const MAX_FILE_BYTES: u64 = 512 << 20;

/// The extensions gathered for this node.
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    pub dir: PathBuf,
    /// The copies, in name order.
    pub files: Vec<PathBuf>,
    /// SHA-256 over the names and contents, in order ("" without extensions): the set two
    /// nodes must share.
    pub digest: String,
}

impl Extensions {
    /// Empties `<data_dir>/extensions` and copies every extension of `paths` into it.
    pub fn gather(data_dir: &Path, paths: &[PathBuf]) -> anyhow::Result<Extensions> {
        let dir = data_dir.join("extensions");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("empty {}", dir.display()))?;
        }
        if paths.is_empty() {
            return Ok(Extensions::default());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        for path in paths {
            gather_one(path, &dir).with_context(|| format!("extension path {}", path.display()))?;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        let mut hash = Sha256::new();
        for file in &files {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            hash.update((name.len() as u64).to_le_bytes());
            hash.update(name.as_bytes());
            let mut f = std::fs::File::open(file)?;
            let len = std::io::copy(&mut f, &mut HashWriter(&mut hash))?;
            hash.update(len.to_le_bytes());
        }
        let digest = if files.is_empty() {
            String::new()
        } else {
            hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(Extensions { dir, files, digest })
    }

    /// The file names, in order.
    pub fn names(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn gather_one(path: &Path, dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).context("it does not exist or cannot be read")?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type()?.is_file() {
                continue;
            }
            copy_in(&mut std::fs::File::open(entry.path())?, dir, &name)?;
        }
        return Ok(());
    }
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)?.read(&mut magic)?;
    match &magic[..n] {
        [b'P', b'K', 3, 4] => from_zip(path, dir),
        [0x1f, 0x8b, ..] => from_tar_gz(path, dir),
        _ => {
            let name = path
                .file_name()
                .context("no file name")?
                .to_string_lossy()
                .into_owned();
            copy_in(&mut std::fs::File::open(path)?, dir, &name)
        }
    }
}

fn from_zip(path: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path)?).context("read the zip")?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        if entry.is_dir() || !plain_name(&name) {
            bail!("the zip holds {name:?}: an archive of extensions holds files only, no folders");
        }
        if entry.is_symlink() {
            bail!("the zip holds a link, {name:?}");
        }
        copy_in(&mut entry, dir, &name)?;
    }
    Ok(())
}

fn from_tar_gz(path: &Path, dir: &Path) -> anyhow::Result<()> {
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().context("read the tar.gz")? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name.strip_prefix("./").unwrap_or(&name).to_string();
        match entry.header().entry_type() {
            tar::EntryType::Regular if plain_name(&name) => copy_in(&mut entry, dir, &name)?,
            // `./` itself, as `tar -C dir .` writes it.
            tar::EntryType::Directory if name.is_empty() || name == "." => {}
            _ => bail!(
                "the tar.gz holds {name:?}: an archive of extensions holds files only, no \
                 folders or links"
            ),
        }
    }
    Ok(())
}

/// A name with no folder in it, nothing hidden, nothing that climbs.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255
}

/// Copies `from` into `dir/name` (a new file: two extensions with one name are refused).
fn copy_in(from: &mut dyn std::io::Read, dir: &Path, name: &str) -> anyhow::Result<()> {
    if !plain_name(name) {
        bail!("{name:?} is not a plain file name");
    }
    let to = dir.join(name);
    let mut out = std::fs::File::create_new(&to).with_context(|| {
        format!("{name}: two extensions have this name, or it cannot be written")
    })?;
    let copied = std::io::copy(&mut from.take(MAX_FILE_BYTES + 1), &mut out)?;
    if copied > MAX_FILE_BYTES {
        bail!("{name} is over {MAX_FILE_BYTES} bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_folder_are_not_plain() {
        for bad in ["", ".hidden", "a/b", "../x", "a\\b", "x\0y"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert!(plain_name("libext.so"));
    }

    #[test]
    fn files_folders_and_archives_are_gathered_and_digested_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("b.so"), b"bee").unwrap();
        std::fs::write(src.join(".hidden"), b"no").unwrap();
        std::fs::write(src.join("sub/c.so"), b"not taken").unwrap();
        let single = tmp.path().join("a.so");
        std::fs::write(&single, b"ay").unwrap();
        let data = tmp.path().join("data");
        let got = Extensions::gather(&data, &[src.clone(), single.clone()]).unwrap();
        assert_eq!(got.names(), ["a.so", "b.so"]);
        assert_eq!(got.digest.len(), 64);
        // The same set, gathered again (the folder emptied first): the same digest.
        let again = Extensions::gather(&data, &[single.clone(), src.clone()]).unwrap();
        assert_eq!(again.digest, got.digest);
        // Another content: another digest.
        std::fs::write(&single, b"ay!").unwrap();
        let other = Extensions::gather(&data, &[src.clone(), single.clone()]).unwrap();
        assert_ne!(other.digest, got.digest);
        // The same name twice is refused.
        std::fs::write(tmp.path().join("b.so"), b"x").unwrap();
        let err = Extensions::gather(&data, &[src, tmp.path().join("b.so")]).unwrap_err();
        assert!(format!("{err:#}").contains("two extensions"), "{err:#}");
        // None: an empty set, no folder.
        let none = Extensions::gather(&data, &[]).unwrap();
        assert_eq!((none.files.len(), none.digest.as_str()), (0, ""));
        assert!(!data.join("extensions").exists());
    }

    #[test]
    fn archives_with_folders_or_escaping_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // A tar.gz with a file in a folder.
        let tgz = tmp.path().join("x.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&tgz).unwrap(),
                flate2::Compression::fast(),
            );
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "sub/evil.so", &b"x"[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let err = Extensions::gather(&tmp.path().join("d"), &[tgz]).unwrap_err();
        assert!(format!("{err:#}").contains("files only"), "{err:#}");
        // A zip whose entry climbs out.
        let z = tmp.path().join("x.zip");
        {
            let mut w = zip::ZipWriter::new(std::fs::File::create(&z).unwrap());
            w.start_file("../evil.so", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"x").unwrap();
            w.finish().unwrap();
        }
        let err = Extensions::gather(&tmp.path().join("d2"), &[z]).unwrap_err();
        assert!(format!("{err:#}").contains("files only"), "{err:#}");
        assert!(!tmp.path().join("evil.so").exists());
        // A path that is not there.
        let err =
            Extensions::gather(&tmp.path().join("d3"), &[tmp.path().join("nope")]).unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
    }
}
