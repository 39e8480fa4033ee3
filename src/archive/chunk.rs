//! The archive's log chunks: a run of applied log entries, as the log stores them, in one
//! zstd-compressed object (`docs/log-format.md`, "Archived log chunks").
//!
//! Layout (inside the zstd frame): the magic `RLARCH1\n`, then each entry as
//! `index u64 | term u64 | kind u8 | stamp i64 | len u32 | crc32c u32 | payload` (little
//! endian), where `stamp` is the leader's clock (Unix ms) the entry carries, or -1 when it
//! carries none (a membership change, a new term's first entry), and the CRC-32C covers the
//! payload. Indexes follow each other without a gap. A chunk is read whole and checked before
//! any of it is used: a torn or altered object is an error, never a shorter run.

use std::io::{Read, Write};

use anyhow::{bail, Context as _};

use crate::raft::log::Record;

const MAGIC: &[u8; 8] = b"RLARCH1\n";
/// Largest entry accepted when reading: a corrupt or hostile length must not allocate
/// gigabytes (an entry is one request, bounded by the node's body limit).
const MAX_PAYLOAD: u32 = 256 << 20;
/// Largest chunk accepted, as stored and decompressed: the archiver writes at most 16 MiB of
/// entries (or one larger entry), so anything bigger is not one of ours (a compression bomb).
pub const MAX_CHUNK_BYTES: u64 = 512 << 20;

/// One archived entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEntry {
    pub index: u64,
    pub term: u64,
    pub kind: u8,
    /// The leader's clock the entry carries (Unix ms), if any.
    pub stamp: Option<i64>,
    pub payload: Vec<u8>,
}

/// Writes `records` (consecutive indexes) as a chunk into `out`, with each one's stamp.
pub fn write(
    out: impl Write,
    records: &[Record],
    stamp: impl Fn(&Record) -> Option<i64>,
) -> anyhow::Result<()> {
    let mut z = zstd::stream::write::Encoder::new(out, 3).context("start the chunk")?;
    z.write_all(MAGIC)?;
    let mut expected = records.first().map(|r| r.index);
    for r in records {
        if Some(r.index) != expected {
            bail!("log entries are not consecutive at {}", r.index);
        }
        expected = Some(r.index + 1);
        let len = u32::try_from(r.data.len()).context("an entry larger than 4 GiB")?;
        z.write_all(&r.index.to_le_bytes())?;
        z.write_all(&r.term.to_le_bytes())?;
        z.write_all(&[r.kind])?;
        z.write_all(&stamp(r).unwrap_or(-1).to_le_bytes())?;
        z.write_all(&len.to_le_bytes())?;
        z.write_all(&crc32c::crc32c(&r.data).to_le_bytes())?;
        z.write_all(&r.data)?;
    }
    z.finish().context("finish the chunk")?.flush()?;
    Ok(())
}

/// Reads a whole chunk, checking its framing, CRCs and that its indexes follow each other.
pub fn read(input: impl Read) -> anyhow::Result<Vec<ArchivedEntry>> {
    let mut z = zstd::stream::read::Decoder::new(input).context("open the chunk")?;
    let mut magic = [0u8; 8];
    z.read_exact(&mut magic).context("read the chunk's magic")?;
    if &magic != MAGIC {
        bail!("not an archived log chunk");
    }
    let mut entries: Vec<ArchivedEntry> = Vec::new();
    let mut total: u64 = 0;
    loop {
        let mut head = [0u8; 33];
        if !read_full_or_none(&mut z, &mut head)? {
            break;
        }
        let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap());
        let index = u64_at(0);
        let term = u64_at(8);
        let kind = head[16];
        let stamp = i64::from_le_bytes(head[17..25].try_into().unwrap());
        let len = u32::from_le_bytes(head[25..29].try_into().unwrap());
        let crc = u32::from_le_bytes(head[29..33].try_into().unwrap());
        total += 33 + u64::from(len);
        if len > MAX_PAYLOAD || total > MAX_CHUNK_BYTES {
            bail!("entry {index}: length {len} is not plausible for an archived chunk");
        }
        if let Some(prev) = entries.last() {
            if index != prev.index + 1 {
                bail!("entry {index} follows {}: a gap in the chunk", prev.index);
            }
        }
        let mut payload = vec![0u8; len as usize];
        z.read_exact(&mut payload)
            .with_context(|| format!("entry {index}: cut off"))?;
        if crc32c::crc32c(&payload) != crc {
            bail!("entry {index}: CRC mismatch");
        }
        entries.push(ArchivedEntry {
            index,
            term,
            kind,
            stamp: (stamp >= 0).then_some(stamp),
            payload,
        });
    }
    Ok(entries)
}

/// Fills `buf`, or returns false at a clean end before its first byte; a partial header is
/// an error.
fn read_full_or_none(r: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).context("read the chunk")?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            bail!("the chunk ends inside an entry's header");
        }
        filled += n;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64, data: &[u8]) -> Record {
        Record {
            index,
            term: 2,
            kind: 1,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_chunk_reads_back_as_written_and_damage_is_an_error() {
        let records = [record(5, b"five"), record(6, b""), record(7, &[7u8; 5000])];
        let mut bytes = Vec::new();
        write(&mut bytes, &records, |r| {
            (r.index != 6).then_some(r.index as i64 * 10)
        })
        .unwrap();
        let back = read(&bytes[..]).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].payload, b"five");
        assert_eq!(back[1].stamp, None);
        assert_eq!(back[2].stamp, Some(70));
        assert_eq!((back[2].index, back[2].term, back[2].kind), (7, 2, 1));
        // Cut anywhere: an error, never fewer entries.
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A gap is refused when writing.
        assert!(write(Vec::new(), &[record(1, b""), record(3, b"")], |_| None).is_err());
    }

    #[test]
    fn an_altered_payload_fails_its_crc() {
        let mut plain = Vec::new();
        plain.extend_from_slice(MAGIC);
        for part in [
            &9u64.to_le_bytes()[..],
            &1u64.to_le_bytes(),
            &[1],
            &(-1i64).to_le_bytes(),
        ] {
            plain.extend_from_slice(part);
        }
        plain.extend_from_slice(&3u32.to_le_bytes());
        plain.extend_from_slice(&crc32c::crc32c(b"abc").to_le_bytes());
        plain.extend_from_slice(b"abd");
        let bytes = zstd::encode_all(&plain[..], 1).unwrap();
        let err = read(&bytes[..]).unwrap_err();
        assert!(format!("{err:#}").contains("CRC"), "{err:#}");
    }
}
