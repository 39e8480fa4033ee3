//! The metadata file: the vote, the last purged log id and the committed log id.
//!
//! The file is small and always rewritten whole: write `meta.tmp`, fsync it, rename it over
//! `meta`, fsync the directory. A reader therefore sees either the old or the new file, never
//! a mix. The checksum catches the case where the disk lies about that.
//!
//! The engine does not interpret the vote or the log ids: they are opaque bytes chosen by the
//! layer above (the openraft adapter serializes its own types). Only the purged *index* is a
//! number, because the engine needs it to know where the log starts.

use crate::raft::log::error::LogError;
use crate::raft::log::io::LogDir;

/// File name of the metadata file.
pub const META_FILE: &str = "meta";
/// File name the next metadata file is written under before it is renamed.
pub const META_TEMP_FILE: &str = "meta.tmp";
/// Magic number of the metadata file.
pub const META_MAGIC: [u8; 8] = *b"\x89RLMETA\x1a";
/// Version of the metadata format written by this code.
pub const META_FORMAT_VERSION: u16 = 1;

const FLAG_VOTE: u16 = 1;
const FLAG_PURGED: u16 = 1 << 1;
const FLAG_COMMITTED: u16 = 1 << 2;
const FIXED_PREFIX_LEN: usize = 16;

/// The last purged log id: its index, and its full encoding for the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedId {
    /// Index of the last purged entry.
    pub index: u64,
    /// Opaque encoding of the whole log id.
    pub id: Vec<u8>,
}

/// Contents of the metadata file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The last saved vote, opaque.
    pub vote: Option<Vec<u8>>,
    /// The last purged log id.
    pub purged: Option<PurgedId>,
    /// The last committed log id, opaque. Saved lazily: it may lag behind.
    pub committed: Option<Vec<u8>>,
}

impl Meta {
    /// Encodes the whole file.
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0u16;
        let mut body = Vec::new();
        body.extend_from_slice(&self.purged.as_ref().map_or(0, |p| p.index).to_le_bytes());
        for (flag, field) in [
            (FLAG_VOTE, self.vote.as_deref()),
            (FLAG_PURGED, self.purged.as_ref().map(|p| p.id.as_slice())),
            (FLAG_COMMITTED, self.committed.as_deref()),
        ] {
            if field.is_some() {
                flags |= flag;
            }
            let bytes = field.unwrap_or_default();
            body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            body.extend_from_slice(bytes);
        }
        let mut out = Vec::with_capacity(FIXED_PREFIX_LEN + body.len() + 4);
        out.extend_from_slice(&META_MAGIC);
        out.extend_from_slice(&META_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the whole file; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Meta, String> {
        let prefix = bytes
            .get(..FIXED_PREFIX_LEN)
            .ok_or("file is shorter than its header")?;
        if prefix[0..8] != META_MAGIC {
            return Err("wrong magic number".into());
        }
        let version = u16::from_le_bytes([prefix[8], prefix[9]]);
        if version != META_FORMAT_VERSION {
            return Err(format!("format version {version} is not supported"));
        }
        let flags = u16::from_le_bytes([prefix[10], prefix[11]]);
        let body_len =
            u32::from_le_bytes([prefix[12], prefix[13], prefix[14], prefix[15]]) as usize;
        let crc_at = FIXED_PREFIX_LEN
            .checked_add(body_len)
            .ok_or("body length overflows")?;
        let crc_bytes = bytes
            .get(crc_at..crc_at + 4)
            .ok_or("file is shorter than its body")?;
        if bytes.len() != crc_at + 4 {
            return Err("trailing bytes after the checksum".into());
        }
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32c::crc32c(&bytes[..crc_at]) != stored {
            return Err("checksum mismatch".into());
        }
        let mut body = Cursor {
            bytes: &bytes[FIXED_PREFIX_LEN..crc_at],
        };
        let purged_index = body.u64()?;
        let vote = body.blob()?;
        let purged_id = body.blob()?;
        let committed = body.blob()?;
        let present = |flag: u16, blob: Vec<u8>| (flags & flag != 0).then_some(blob);
        Ok(Meta {
            vote: present(FLAG_VOTE, vote),
            purged: present(FLAG_PURGED, purged_id).map(|id| PurgedId {
                index: purged_index,
                id,
            }),
            committed: present(FLAG_COMMITTED, committed),
        })
    }

    /// Reads the metadata file from `dir`; an absent file is an empty [`Meta`].
    ///
    /// A leftover `meta.tmp` is from a write that crashed before its rename: it was never the
    /// metadata, so it is removed.
    pub fn load(dir: &dyn LogDir) -> Result<Meta, LogError> {
        let names = dir
            .list()
            .map_err(|e| LogError::io("list the log directory", e))?;
        if names.iter().any(|n| n == META_TEMP_FILE) {
            dir.remove(META_TEMP_FILE)
                .map_err(|e| LogError::io("remove a leftover meta.tmp", e))?;
        }
        if !names.iter().any(|n| n == META_FILE) {
            return Ok(Meta::default());
        }
        let bytes = dir
            .read(META_FILE)
            .map_err(|e| LogError::io("read the meta file", e))?;
        Meta::decode(&bytes).map_err(|reason| LogError::CorruptMeta { reason })
    }

    /// Replaces the metadata file atomically and durably.
    pub fn store(&self, dir: &dyn LogDir) -> Result<(), LogError> {
        let file = dir
            .create(META_TEMP_FILE)
            .map_err(|e| LogError::io("create meta.tmp", e))?;
        file.write_all_at(&self.encode(), 0)
            .map_err(|e| LogError::write("write meta.tmp", e))?;
        file.sync_data()
            .map_err(|e| LogError::io("sync meta.tmp", e))?;
        dir.rename(META_TEMP_FILE, META_FILE)
            .map_err(|e| LogError::io("rename meta.tmp over meta", e))?;
        dir.sync_dir()
            .map_err(|e| LogError::io("sync the log directory after replacing meta", e))
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.bytes.len() < n {
            return Err("body ends inside a field".into());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
    fn blob(&mut self) -> Result<Vec<u8>, String> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        Ok(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log::io::{CrashImage, SimDir};

    fn sample() -> Meta {
        Meta {
            vote: Some(b"vote".to_vec()),
            purged: Some(PurgedId {
                index: 9,
                id: b"id9".to_vec(),
            }),
            committed: None,
        }
    }

    #[test]
    fn round_trips() {
        for meta in [Meta::default(), sample()] {
            assert_eq!(Meta::decode(&meta.encode()).unwrap(), meta);
        }
    }

    #[test]
    fn rejects_every_bit_flip_and_every_truncation() {
        let bytes = sample().encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Meta::decode(&damaged).is_err(), "bit {bit}");
        }
        for cut in 0..bytes.len() {
            assert!(Meta::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_or_the_new_file() {
        let old = sample();
        let new = Meta {
            vote: Some(b"newer vote".to_vec()),
            ..sample()
        };
        for crash_at in 0..10 {
            let dir = SimDir::new();
            old.store(&dir).unwrap();
            dir.crash_at(dir.op_count() + crash_at);
            let finished = new.store(&dir).is_ok();
            for image in [CrashImage::DurableOnly, CrashImage::LiveWithTornWrite] {
                let after = dir.crash_image(image);
                let loaded = Meta::load(&after).unwrap();
                assert!(
                    loaded == old || loaded == new,
                    "crash at {crash_at}: {loaded:?}"
                );
                if finished {
                    assert_eq!(loaded, new);
                }
            }
        }
    }
}
