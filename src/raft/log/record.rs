//! Byte layout of segment headers and records: encoding and decoding as pure functions.
//!
//! Nothing here does I/O, so the fuzz target, the benches and recovery all share one decoder.
//! Every function that reads bytes takes them as untrusted: a length is checked against what is
//! actually there before it is used, and nothing panics on any input.
//!
//! Record frame (all integers little-endian), see `docs/log-format.md`:
//!
//! ```text
//! +--------+--------+-----------+----------+------+--------------+
//! | len u32| crc u32| index u64 | term u64 | kind | data ...     |
//! +--------+--------+-----------+----------+------+--------------+
//!   `len` counts the bytes after the crc: 17 + data.len().
//!   `crc` is CRC32C over the len field followed by the body (index .. end of data).
//! ```

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89RLOG\r\n\x1a";
/// Version of the segment format written by this code.
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of the frame prefix (length + checksum).
pub const FRAME_PREFIX_LEN: usize = 8;
/// Size of the fixed part of a record body (index + term + kind).
pub const BODY_FIXED_LEN: usize = 17;
/// Largest body accepted when decoding. It bounds allocations driven by bytes from disk.
pub const MAX_BODY_LEN: usize = u32::MAX as usize;

/// A log record borrowed from a caller or from a decode buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Raft log index.
    pub index: u64,
    /// Raft term of the entry.
    pub term: u64,
    /// What `data` holds; chosen by the layer above the engine.
    pub kind: u8,
    /// Opaque payload.
    pub data: &'a [u8],
}

/// An owned log record, as returned by reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Raft log index.
    pub index: u64,
    /// Raft term of the entry.
    pub term: u64,
    /// What `data` holds; chosen by the layer above the engine.
    pub kind: u8,
    /// Opaque payload.
    pub data: Vec<u8>,
}

impl Record {
    /// Borrows this record.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            index: self.index,
            term: self.term,
            kind: self.kind,
            data: &self.data,
        }
    }
}

impl RecordRef<'_> {
    /// Copies the record out of the buffer it borrows from.
    pub fn to_owned(self) -> Record {
        Record {
            index: self.index,
            term: self.term,
            kind: self.kind,
            data: self.data.to_vec(),
        }
    }

    /// Bytes this record takes on disk, frame included.
    pub fn encoded_len(&self) -> usize {
        FRAME_PREFIX_LEN + BODY_FIXED_LEN + self.data.len()
    }
}

/// Why a run of bytes is not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends before the frame does: a torn write, or the end of the data.
    Truncated,
    /// The length field is smaller than the fixed body; zero-filled tails end up here.
    LengthTooSmall(u32),
    /// The checksum does not match the bytes.
    ChecksumMismatch,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "record runs past the end of the segment"),
            FrameError::LengthTooSmall(len) => {
                write!(
                    f,
                    "record length {len} is smaller than the {BODY_FIXED_LEN}-byte body"
                )
            }
            FrameError::ChecksumMismatch => write!(f, "record checksum mismatch"),
        }
    }
}

/// Appends the encoded frame of `record` to `out`.
pub fn encode_record(record: &RecordRef<'_>, out: &mut Vec<u8>) {
    let body_len = BODY_FIXED_LEN + record.data.len();
    // A payload over 4 GiB cannot be framed; the engine rejects it before calling us.
    let len_field = u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&len_field);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&record.index.to_le_bytes());
    out.extend_from_slice(&record.term.to_le_bytes());
    out.push(record.kind);
    out.extend_from_slice(record.data);
    let crc = frame_checksum(&len_field, &out[start + FRAME_PREFIX_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn frame_checksum(len_field: &[u8; 4], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_field), body)
}

/// Decodes the record at the start of `buf`; returns it and the bytes it took.
pub fn decode_record(buf: &[u8]) -> Result<(RecordRef<'_>, usize), FrameError> {
    let prefix: &[u8; FRAME_PREFIX_LEN] = buf
        .get(..FRAME_PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    let len_field = [prefix[0], prefix[1], prefix[2], prefix[3]];
    let body_len = u32::from_le_bytes(len_field);
    let stored_crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if (body_len as usize) < BODY_FIXED_LEN {
        return Err(FrameError::LengthTooSmall(body_len));
    }
    let total = FRAME_PREFIX_LEN + body_len as usize;
    let body = buf
        .get(FRAME_PREFIX_LEN..total)
        .ok_or(FrameError::Truncated)?;
    if frame_checksum(&len_field, body) != stored_crc {
        return Err(FrameError::ChecksumMismatch);
    }
    let index = u64::from_le_bytes(body[0..8].try_into().map_err(|_| FrameError::Truncated)?);
    let term = u64::from_le_bytes(body[8..16].try_into().map_err(|_| FrameError::Truncated)?);
    let record = RecordRef {
        index,
        term,
        kind: body[16],
        data: &body[BODY_FIXED_LEN..],
    };
    Ok((record, total))
}

/// The decoded fixed header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u16,
    /// Index of the first record the segment holds (or will hold, when empty).
    pub first_index: u64,
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Truncated,
    /// The magic number is wrong: not a segment, or overwritten.
    BadMagic,
    /// The header checksum does not match.
    ChecksumMismatch,
    /// A version this code does not read.
    UnsupportedVersion(u16),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Truncated => write!(
                f,
                "segment header is shorter than {SEGMENT_HEADER_LEN} bytes"
            ),
            HeaderError::BadMagic => write!(f, "segment header has a wrong magic number"),
            HeaderError::ChecksumMismatch => write!(f, "segment header checksum mismatch"),
            HeaderError::UnsupportedVersion(v) => {
                write!(f, "segment format version {v} is not supported (this build reads {SEGMENT_FORMAT_VERSION})")
            }
        }
    }
}

/// Encodes the header of a segment whose first record will be `first_index`.
pub fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..10].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    // Bytes 10..16 are flags and reserved space, zero in version 1.
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    // Bytes 24..28 are reserved, zero in version 1.
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Decodes and checks a segment header from the start of `buf`.
pub fn decode_segment_header(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let header = buf
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(HeaderError::Truncated)?;
    if header[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let stored_crc = u32::from_le_bytes([header[28], header[29], header[30], header[31]]);
    if crc32c::crc32c(&header[..28]) != stored_crc {
        return Err(HeaderError::ChecksumMismatch);
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&header[16..24]);
    Ok(SegmentHeader {
        version,
        first_index: u64::from_le_bytes(first),
    })
}

/// Where one record sits inside a segment buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Byte offset of the frame from the start of the segment file.
    pub offset: u64,
    /// Length of the whole frame in bytes.
    pub len: u32,
}

/// How a scan of a segment's records ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte after the header belongs to a valid record.
    Clean,
    /// The bytes from `offset` on are not a valid continuation of the log. They look like the
    /// remains of an interrupted write: nothing valid follows them.
    TornTail {
        /// Offset of the first byte that is not part of a valid record.
        offset: u64,
        /// Why the record at `offset` was rejected.
        reason: String,
    },
    /// The record at `offset` is damage, not a torn write: either its frame is invalid but the
    /// record after it (located through the length field) is valid and continues the log, or
    /// its frame is valid but its index is out of sequence. Cutting here could drop records
    /// that were once acknowledged.
    CorruptMiddle {
        /// Offset of the invalid record.
        offset: u64,
        /// Why the record at `offset` was rejected.
        reason: String,
    },
}

/// The result of scanning the records of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// Valid records, in order, with consecutive indexes from the header's first index.
    pub spans: Vec<RecordSpan>,
    /// How the scan ended.
    pub end: ScanEnd,
}

/// Scans a whole segment image: header, then records until the first invalid byte.
///
/// A record is valid when its frame checks and its index is the next one expected. Only the
/// offsets are kept, so memory follows the record count, not the payload size.
pub fn scan_segment(image: &[u8]) -> Result<(SegmentHeader, SegmentScan), HeaderError> {
    let header = decode_segment_header(image)?;
    let mut spans = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut expected = header.first_index;
    let end = loop {
        let Some(rest) = image.get(offset..) else {
            break ScanEnd::Clean;
        };
        if rest.is_empty() {
            break ScanEnd::Clean;
        }
        let reason = match decode_record(rest) {
            Ok((record, used)) if record.index == expected => {
                spans.push(RecordSpan {
                    offset: offset as u64,
                    len: used as u32,
                });
                offset += used;
                expected = expected.wrapping_add(1);
                continue;
            }
            Ok((record, _)) => {
                // A frame that checks but is out of sequence was written whole by someone: no
                // torn write produces it, so it is damage (or a bug), never a tail to cut.
                break ScanEnd::CorruptMiddle {
                    offset: offset as u64,
                    reason: format!(
                        "record has index {} where {expected} was expected",
                        record.index
                    ),
                };
            }
            Err(e) => e.to_string(),
        };
        let offset_u64 = offset as u64;
        break if valid_record_follows(rest, expected) {
            ScanEnd::CorruptMiddle {
                offset: offset_u64,
                reason,
            }
        } else {
            ScanEnd::TornTail {
                offset: offset_u64,
                reason,
            }
        };
    };
    Ok((header, SegmentScan { spans, end }))
}

/// After a bad frame at the start of `rest`, tells whether its length field leads to a valid
/// record with index `expected + 1`, i.e. whether the log visibly goes on past the damage.
fn valid_record_follows(rest: &[u8], expected: u64) -> bool {
    let Some(len_bytes) = rest.get(..4) else {
        return false;
    };
    let body_len =
        u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    let Some(next) = rest.get(FRAME_PREFIX_LEN.saturating_add(body_len)..) else {
        return false;
    };
    matches!(decode_record(next), Ok((r, _)) if r.index == expected.wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: u64, records: &[(u64, u64, &[u8])]) -> Vec<u8> {
        let mut image = encode_segment_header(first).to_vec();
        for (index, term, data) in records {
            encode_record(
                &RecordRef {
                    index: *index,
                    term: *term,
                    kind: 1,
                    data,
                },
                &mut image,
            );
        }
        image
    }

    #[test]
    fn record_round_trips() {
        let record = RecordRef {
            index: 7,
            term: 3,
            kind: 2,
            data: b"hello",
        };
        let mut buf = Vec::new();
        encode_record(&record, &mut buf);
        assert_eq!(buf.len(), record.encoded_len());
        let (decoded, used) = decode_record(&buf).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(used, buf.len());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_record(
            &RecordRef {
                index: 1,
                term: 1,
                kind: 0,
                data: b"abc",
            },
            &mut buf,
        );
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_record(&damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_record_is_truncated() {
        let mut buf = Vec::new();
        encode_record(
            &RecordRef {
                index: 1,
                term: 1,
                kind: 0,
                data: b"abcdef",
            },
            &mut buf,
        );
        for cut in 0..buf.len() {
            assert!(decode_record(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header).unwrap().first_index, 42);
        let mut bad = header;
        bad[17] ^= 1;
        assert_eq!(
            decode_segment_header(&bad),
            Err(HeaderError::ChecksumMismatch)
        );
        assert_eq!(decode_segment_header(&[0; 32]), Err(HeaderError::BadMagic));
        assert_eq!(
            decode_segment_header(&header[..31]),
            Err(HeaderError::Truncated)
        );
    }

    #[test]
    fn scan_cuts_a_torn_tail_and_a_zero_tail() {
        let image = segment(5, &[(5, 1, b"a"), (6, 1, b"b"), (7, 1, b"c")]);
        let (_, scan) = scan_segment(&image).unwrap();
        assert_eq!(scan.spans.len(), 3);
        assert_eq!(scan.end, ScanEnd::Clean);

        let torn = &image[..image.len() - 3];
        let (_, scan) = scan_segment(torn).unwrap();
        assert_eq!(scan.spans.len(), 2);
        assert!(matches!(scan.end, ScanEnd::TornTail { .. }));

        let mut zeroed = image.clone();
        zeroed.extend_from_slice(&[0; 100]);
        let (_, scan) = scan_segment(&zeroed).unwrap();
        assert_eq!(scan.spans.len(), 3);
        assert!(matches!(scan.end, ScanEnd::TornTail { .. }));
    }

    #[test]
    fn scan_reports_damage_followed_by_valid_records() {
        let mut image = segment(1, &[(1, 1, b"aaaa"), (2, 1, b"bbbb"), (3, 1, b"cccc")]);
        let second = SEGMENT_HEADER_LEN
            + RecordRef {
                index: 1,
                term: 1,
                kind: 1,
                data: b"aaaa",
            }
            .encoded_len();
        image[second + 20] ^= 0x40;
        let (_, scan) = scan_segment(&image).unwrap();
        assert_eq!(scan.spans.len(), 1);
        assert!(
            matches!(scan.end, ScanEnd::CorruptMiddle { .. }),
            "{:?}",
            scan.end
        );
    }

    #[test]
    fn scan_rejects_a_record_out_of_sequence() {
        let image = segment(1, &[(1, 1, b"a"), (3, 1, b"b")]);
        let (_, scan) = scan_segment(&image).unwrap();
        assert_eq!(scan.spans.len(), 1);
        assert!(matches!(scan.end, ScanEnd::CorruptMiddle { .. }));
    }
}
