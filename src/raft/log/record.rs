//! Byte layout of segment headers and records: encoding, decoding and the recovery scan of one
//! segment image, as pure functions.
//!
//! Nothing here does I/O, so the fuzz target, the benches and recovery all share one decoder.
//! Every function that reads bytes takes them as untrusted: a length is checked against what is
//! actually there before it is used, and nothing panics on any input.
//!
//! Record frame, format version 2 (all integers little-endian), see `docs/log-format.md`:
//!
//! ```text
//! +--------+-----------+-----------+-----------+----------+------+----------+------+
//! | len u32| body_crc  | head_crc  | index u64 | term u64 | kind | data ... | 0xA5 |
//! +--------+-----------+-----------+-----------+----------+------+----------+------+
//!  \_______ head: 12 bytes ______/ \______________ body: len bytes ______/   end mark
//!   `len` counts the body: 17 + data.len().
//!   `body_crc` is CRC32C of the body; `head_crc` is CRC32C of the 8 bytes before it.
//! ```
//!
//! The head has its own checksum so that a reader can trust a record's length, and so find the
//! record after it, even when the body is damaged. The end mark is never zero, so the last byte
//! of a record that reached the disk whole is never zero either: that is what tells an
//! interrupted write (which leaves a prefix of its bytes, or zeros) from damage to a complete
//! record (see [`scan_segment_above`]).

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89RLOG\r\n\x1a";
/// Version of the segment format written (and the only one read) by this code. Version 1 had no
/// head checksum and no end mark; nothing released ever wrote it.
pub const SEGMENT_FORMAT_VERSION: u16 = 2;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of a record's head (length, body checksum, head checksum).
pub const FRAME_HEAD_LEN: usize = 12;
/// Size of the fixed part of a record body (index + term + kind).
pub const BODY_FIXED_LEN: usize = 17;
/// The byte that ends every record. Four bits set: no single flipped bit makes it zero.
pub const RECORD_END_MARK: u8 = 0xA5;
/// Bytes a record takes on disk besides its body: the head and the end mark.
pub const FRAME_OVERHEAD: usize = FRAME_HEAD_LEN + 1;
/// Largest body a record may have: its whole frame must still fit a `u32`.
pub const MAX_BODY_LEN: usize = u32::MAX as usize - FRAME_OVERHEAD;

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
        FRAME_OVERHEAD + BODY_FIXED_LEN + self.data.len()
    }
}

/// Why a run of bytes is not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside the record's head.
    HeadTruncated,
    /// The head checksum does not match: the length field cannot be trusted. A zero-filled
    /// tail ends up here too.
    HeadChecksumMismatch,
    /// The head checks, but its length is outside what a record can have.
    LengthOutOfRange(u32),
    /// The head checks, but the buffer ends before the frame it describes.
    Truncated {
        /// Length of the whole frame, as the head gives it.
        frame_len: usize,
    },
    /// The head checks and the frame is whole, but the body checksum does not match.
    BodyChecksumMismatch,
    /// The head and body check, but the byte after the body is not [`RECORD_END_MARK`].
    BadEndMark(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::HeadTruncated => write!(f, "the segment ends inside the record's head"),
            FrameError::HeadChecksumMismatch => write!(
                f,
                "the record's head fails its checksum, so its length cannot be trusted"
            ),
            FrameError::LengthOutOfRange(len) => write!(
                f,
                "the record's head checks but gives an impossible body length of {len} bytes"
            ),
            FrameError::Truncated { frame_len } => {
                write!(
                    f,
                    "the {frame_len}-byte record runs past the end of the segment"
                )
            }
            FrameError::BodyChecksumMismatch => write!(f, "the record's body fails its checksum"),
            FrameError::BadEndMark(found) => write!(
                f,
                "the record's end mark is {found:#04x} instead of {RECORD_END_MARK:#04x}"
            ),
        }
    }
}

/// Appends the encoded frame of `record` to `out`.
pub fn encode_record(record: &RecordRef<'_>, out: &mut Vec<u8>) {
    let body_len = BODY_FIXED_LEN + record.data.len();
    // A body over MAX_BODY_LEN cannot be framed; the engine rejects it before calling us.
    let len_field = u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&len_field);
    out.extend_from_slice(&[0; 8]);
    let body_start = out.len();
    out.extend_from_slice(&record.index.to_le_bytes());
    out.extend_from_slice(&record.term.to_le_bytes());
    out.push(record.kind);
    out.extend_from_slice(record.data);
    let body_crc = crc32c::crc32c(&out[body_start..]);
    out[start + 4..start + 8].copy_from_slice(&body_crc.to_le_bytes());
    let head_crc = crc32c::crc32c(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&head_crc.to_le_bytes());
    out.push(RECORD_END_MARK);
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// Checks the head at the start of `buf` and returns the length of the whole frame it
/// describes (which may run past the end of `buf`).
fn decode_frame_len(buf: &[u8]) -> Result<usize, FrameError> {
    let head = buf.get(..FRAME_HEAD_LEN).ok_or(FrameError::HeadTruncated)?;
    if crc32c::crc32c(&head[..8]) != le_u32(&head[8..]) {
        return Err(FrameError::HeadChecksumMismatch);
    }
    let body_len = le_u32(head);
    if (body_len as usize) < BODY_FIXED_LEN || body_len as usize > MAX_BODY_LEN {
        return Err(FrameError::LengthOutOfRange(body_len));
    }
    Ok(FRAME_OVERHEAD + body_len as usize)
}

/// Decodes the record at the start of `buf`; returns it and the bytes it took.
pub fn decode_record(buf: &[u8]) -> Result<(RecordRef<'_>, usize), FrameError> {
    let frame_len = decode_frame_len(buf)?;
    let frame = buf
        .get(..frame_len)
        .ok_or(FrameError::Truncated { frame_len })?;
    let body = &frame[FRAME_HEAD_LEN..frame_len - 1];
    if crc32c::crc32c(body) != le_u32(&frame[4..]) {
        return Err(FrameError::BodyChecksumMismatch);
    }
    let end_mark = frame[frame_len - 1];
    if end_mark != RECORD_END_MARK {
        return Err(FrameError::BadEndMark(end_mark));
    }
    let record = RecordRef {
        index: le_u64(&body[0..]),
        term: le_u64(&body[8..]),
        kind: body[16],
        data: &body[BODY_FIXED_LEN..],
    };
    Ok((record, frame_len))
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
    // Bytes 10..16 are flags and reserved space, zero (as they were in version 1).
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    // Bytes 24..28 are reserved, zero (as they were in version 1).
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

/// A damaged record at or below the purge point that the scan stepped over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRecord {
    /// Byte offset of the frame.
    pub offset: u64,
    /// The index the record holds by its position.
    pub index: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// How a scan of a segment's records ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte after the header belongs to a valid record.
    Clean,
    /// The bytes from `offset` on are what an interrupted write leaves: a prefix of a record,
    /// then the end of the file or zeros. Nothing after them was ever acknowledged.
    TornTail {
        /// Offset of the first byte that is not part of a valid record.
        offset: u64,
        /// What the scan found there.
        reason: String,
    },
    /// The record at `offset` is damaged, and no interrupted write can explain the damage:
    /// cutting the segment here could drop acknowledged records.
    Damaged {
        /// Offset of the damaged record.
        offset: u64,
        /// What the scan found there.
        reason: String,
    },
}

/// The result of scanning the records of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// The records, in order, with consecutive indexes from the header's first index. Every
    /// one passes its checks, except those listed in `skipped`.
    pub spans: Vec<RecordSpan>,
    /// Damaged records at or below the purge point that the scan stepped over.
    pub skipped: Vec<SkippedRecord>,
    /// How the scan ended.
    pub end: ScanEnd,
}

/// Scans a whole segment image as [`scan_segment_above`] does, with no purge point: every
/// record must be intact.
pub fn scan_segment(image: &[u8]) -> Result<(SegmentHeader, SegmentScan), HeaderError> {
    scan_segment_above(image, None)
}

/// Scans a whole segment image: header, then records until the end or the first invalid one.
///
/// A record is valid when its frame checks and its index is the next one expected. Only the
/// offsets are kept, so memory follows the record count, not the payload size. At the first
/// record that is not valid, the scan decides between a torn tail and damage:
///
/// - It is a **torn tail** (an interrupted write) when the image ends inside the record's
///   head; or its head fails its checksum and only zeros follow the head; or its head checks
///   and the image ends before the frame does; or its head checks, the frame is whole, and
///   its last byte (where the end mark belongs) and everything after it are zero.
/// - Anything else is **damage**: a complete record that fails its checks (its end-mark byte
///   is not zero), a head that fails its checksum with non-zero bytes after it, a length no
///   record can have, or a valid record with the wrong index.
///
/// One exception: a record at or below `purged` (the purge point) whose head checks and whose
/// frame is whole is stepped over when its body or end mark is damaged. It is covered by a
/// snapshot and never read again, and its checked length says where the next record starts.
///
/// The reason given for damage ends with what cutting the segment there would lose (see
/// [`what_a_cut_would_lose`]); nothing else is decided by it.
pub fn scan_segment_above(
    image: &[u8],
    purged: Option<u64>,
) -> Result<(SegmentHeader, SegmentScan), HeaderError> {
    let header = decode_segment_header(image)?;
    let mut spans = Vec::new();
    let mut skipped = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut expected = header.first_index;
    let mut end = loop {
        let rest = image.get(offset..).unwrap_or_default();
        if rest.is_empty() {
            break ScanEnd::Clean;
        }
        // The frame length to step over, and, for a damaged purged record, why it is damaged.
        let (used, damage) = match decode_record(rest) {
            Ok((record, used)) if record.index == expected => (used, None),
            Ok((record, _)) => {
                // A frame that checks but is out of sequence was written whole by someone: no
                // torn write produces it, so it is damage (or a bug), never a tail to cut.
                break ScanEnd::Damaged {
                    offset: offset as u64,
                    reason: format!(
                        "a record holds index {} where {expected} was expected",
                        record.index
                    ),
                };
            }
            Err(failure) => {
                let whole_frame = matches!(
                    failure,
                    FrameError::BodyChecksumMismatch | FrameError::BadEndMark(_)
                );
                match decode_frame_len(rest) {
                    Ok(frame_len) if whole_frame && purged.is_some_and(|p| expected <= p) => {
                        (frame_len, Some(failure))
                    }
                    _ => break classify_invalid_record(rest, offset as u64, expected, failure),
                }
            }
        };
        if let Some(failure) = damage {
            skipped.push(SkippedRecord {
                offset: offset as u64,
                index: expected,
                reason: failure.to_string(),
            });
        }
        spans.push(RecordSpan {
            offset: offset as u64,
            len: used as u32,
        });
        offset += used;
        expected = expected.wrapping_add(1);
    };
    if let ScanEnd::Damaged { offset, reason } = &mut end {
        reason.push_str(&what_a_cut_would_lose(image, *offset as usize, expected));
    }
    Ok((
        header,
        SegmentScan {
            spans,
            skipped,
            end,
        },
    ))
}

/// Decides whether the invalid record at the start of `rest` (which should hold index
/// `expected`) is the remains of an interrupted write or damage; see [`scan_segment_above`].
fn classify_invalid_record(
    rest: &[u8],
    offset: u64,
    expected: u64,
    failure: FrameError,
) -> ScanEnd {
    let all_zero = |bytes: &[u8]| bytes.iter().all(|&b| b == 0);
    let torn = |what: &str| ScanEnd::TornTail {
        offset,
        reason: format!("record {expected}: {failure}{what}"),
    };
    let damaged = |what: String| ScanEnd::Damaged {
        offset,
        reason: format!("record {expected}: {failure}{what}"),
    };
    match failure {
        FrameError::HeadTruncated | FrameError::Truncated { .. } => torn(""),
        FrameError::HeadChecksumMismatch => {
            let after_head = &rest[FRAME_HEAD_LEN..];
            if all_zero(after_head) {
                torn(", and only zeros follow it")
            } else {
                let non_zero = after_head.iter().filter(|&&b| b != 0).count();
                damaged(format!(
                    ", and {non_zero} non-zero bytes follow it where an interrupted write \
                     leaves only zeros, so this is damage"
                ))
            }
        }
        FrameError::LengthOutOfRange(_) => {
            damaged(", which no writer of this format produces".to_owned())
        }
        FrameError::BodyChecksumMismatch | FrameError::BadEndMark(_) => {
            let frame_len = decode_frame_len(rest).unwrap_or(rest.len());
            let from_end_mark = &rest[frame_len.saturating_sub(1).min(rest.len())..];
            if all_zero(from_end_mark) {
                return torn(", and it ends in zeros");
            }
            // The end-mark byte is there and not zero, so the write of this record reached
            // its end: the record was whole, and the damage came later.
            damaged(
                "; its last byte was written, so the record reached the disk whole and was \
                 damaged since"
                    .to_owned(),
            )
        }
    }
}

/// Says what cutting a segment at its damaged record (at `damaged_at`, holding index
/// `damaged_index` by its position) would lose: that record, and the intact records found
/// after it in the segment.
///
/// A damaged head gives no length to trust, so the next intact record is looked for at every
/// byte offset after the damaged record's start: the first frame that checks and holds a
/// higher index, then the consecutive records that follow it. This only informs the operator:
/// a payload may hold bytes that look like a record, so what is found here never decides
/// whether the segment is cut or refused. It reads only bytes of a segment that is already
/// refused, so its cost (one head checksum per byte) is paid once, at a failed start-up.
fn what_a_cut_would_lose(image: &[u8], damaged_at: usize, damaged_index: u64) -> String {
    // Checking the length and index fields first keeps the checksums for the few offsets
    // where a record could start (a length that fits what is left of the segment): a damaged
    // 64 MiB segment of garbage would otherwise cost a head checksum for each of its bytes.
    let could_start_a_record = |start: usize| {
        let Some(head) = image.get(start..start + FRAME_HEAD_LEN + 8) else {
            return false;
        };
        let body_len = le_u32(head) as usize;
        if body_len < BODY_FIXED_LEN || body_len > image.len() - start - FRAME_OVERHEAD {
            return false;
        }
        le_u64(&head[FRAME_HEAD_LEN..]) > damaged_index
    };
    let first_intact = (damaged_at + 1..image.len())
        .filter(|&start| could_start_a_record(start))
        .find_map(|start| match decode_record(&image[start..]) {
            Ok((record, used)) => Some((start, record.index, used)),
            Err(_) => None,
        });
    let Some((first_at, first_index, first_len)) = first_intact else {
        return "; no intact record follows it in this segment".to_owned();
    };
    let mut last_index = first_index;
    let mut at = first_at + first_len;
    while let Ok((record, used)) = decode_record(&image[at..]) {
        if record.index != last_index.wrapping_add(1) {
            break;
        }
        last_index = record.index;
        at += used;
    }
    let found = if last_index == first_index {
        format!("the intact record {first_index} found after it (at byte {first_at})")
    } else {
        format!(
            "the {} intact records {first_index} to {last_index} found after it (the first at \
             byte {first_at})",
            last_index - first_index + 1
        )
    };
    format!("; cutting the segment here would lose it and {found}")
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
        // A whole header of another version (its checksum matches) is refused by version.
        let mut old = header;
        old[8..10].copy_from_slice(&1u16.to_le_bytes());
        let crc = crc32c::crc32c(&old[..28]);
        old[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_segment_header(&old),
            Err(HeaderError::UnsupportedVersion(1))
        );
    }

    /// Three records of different lengths; returns the image and the offset of each frame.
    fn three_records() -> (Vec<u8>, Vec<usize>) {
        let image = segment(
            5,
            &[
                (5, 1, b"first"),
                (6, 1, b"second record"),
                (7, 2, b"third!"),
            ],
        );
        let mut starts = vec![SEGMENT_HEADER_LEN];
        for _ in 0..2 {
            let at = *starts.last().unwrap();
            let (_, used) = decode_record(&image[at..]).unwrap();
            starts.push(at + used);
        }
        (image, starts)
    }

    #[test]
    fn scan_cuts_a_torn_tail_and_a_zero_tail() {
        let (image, starts) = three_records();
        let (_, scan) = scan_segment(&image).unwrap();
        assert_eq!(scan.spans.len(), 3);
        assert_eq!(scan.end, ScanEnd::Clean);

        let torn = &image[..image.len() - 3];
        let (_, scan) = scan_segment(torn).unwrap();
        assert_eq!(scan.spans.len(), 2);
        assert_eq!(
            scan.end,
            ScanEnd::TornTail {
                offset: starts[2] as u64,
                reason: "record 7: the 36-byte record runs past the end of the segment".into()
            }
        );

        let mut zeroed = image.clone();
        zeroed.extend_from_slice(&[0; 100]);
        let (_, scan) = scan_segment(&zeroed).unwrap();
        assert_eq!(scan.spans.len(), 3);
        assert!(matches!(scan.end, ScanEnd::TornTail { .. }));
    }

    /// What a write that a crash interrupted leaves of the last two records (written together,
    /// as one append): a prefix of their bytes, then the end of the file or zeros up to any
    /// length. Each is a torn tail, and the records before it are kept.
    #[test]
    fn every_interrupted_write_of_the_last_records_is_a_torn_tail() {
        let (image, starts) = three_records();
        for cut in starts[1]..image.len() {
            let whole_records = if cut < starts[2] { 1 } else { 2 };
            let mut zero_filled = image[..cut].to_vec();
            zero_filled.resize(image.len(), 0);
            let mut zero_padded = zero_filled.clone();
            zero_padded.resize(image.len() + 4096, 0);
            for (shape, bytes) in [
                ("cut", &image[..cut]),
                ("zero-filled", &zero_filled[..]),
                ("zero-padded", &zero_padded[..]),
            ] {
                let (_, scan) = scan_segment(bytes).unwrap();
                let context = format!("{shape} at byte {cut}: {:?}", scan.end);
                if starts.contains(&cut) && shape == "cut" {
                    // The write stopped exactly before a record.
                    assert_eq!(scan.end, ScanEnd::Clean, "{context}");
                } else {
                    assert!(matches!(scan.end, ScanEnd::TornTail { .. }), "{context}");
                }
                assert_eq!(scan.spans.len(), whole_records, "{context}");
            }
        }
    }

    /// A flipped bit in a record that reached the disk whole is never taken for an
    /// interrupted write, wherever it is, the length field and the last record included: the
    /// scan reports damage at the start of the record that holds the bit.
    #[test]
    fn every_bit_flip_in_the_records_is_damage_never_a_torn_tail() {
        let (image, starts) = three_records();
        for bit in SEGMENT_HEADER_LEN * 8..image.len() * 8 {
            let mut damaged = image.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let (_, scan) = scan_segment(&damaged).unwrap();
            let holder = starts.iter().rposition(|&s| s <= bit / 8).unwrap();
            match &scan.end {
                ScanEnd::Damaged { offset, .. } => {
                    assert_eq!(*offset, starts[holder] as u64, "bit {bit}");
                    assert_eq!(scan.spans.len(), holder, "bit {bit}");
                }
                other => panic!("bit {bit}: expected damage, got {other:?}"),
            }
        }
    }

    #[test]
    fn damage_reports_say_what_was_found() {
        let (image, starts) = three_records();
        let reason = |byte: usize| {
            let mut damaged = image.clone();
            damaged[byte] ^= 0x10;
            match scan_segment(&damaged).unwrap().1.end {
                ScanEnd::Damaged { reason, .. } => reason,
                other => panic!("byte {byte}: {other:?}"),
            }
        };
        // The length field of the middle record: what a cut would lose is named, though the
        // damaged length cannot say where the next record starts.
        let length = reason(starts[1] + 1);
        assert!(
            length.starts_with(
                "record 6: the record's head fails its checksum, so its length cannot be \
                 trusted, and "
            ) && length.ends_with(&format!(
                "; cutting the segment here would lose it and the intact record 7 found after \
                 it (at byte {})",
                starts[2]
            )),
            "{length}"
        );
        // The length field of the first record: both records after it are named.
        let first = reason(starts[0]);
        assert!(
            first.ends_with(&format!(
                "; cutting the segment here would lose it and the 2 intact records 6 to 7 found \
                 after it (the first at byte {})",
                starts[1]
            )),
            "{first}"
        );
        // The payload of the middle record: its neighbour is named.
        let body = reason(starts[1] + 30);
        assert!(
            body.contains("its last byte was written")
                && body.ends_with(&format!(
                    "the intact record 7 found after it (at byte {})",
                    starts[2]
                )),
            "{body}"
        );
        // The payload of the last record.
        let last = reason(image.len() - 3);
        assert!(
            last.starts_with("record 7: the record's body fails its checksum; its last byte")
                && last.ends_with("; no intact record follows it in this segment"),
            "{last}"
        );
        // A valid record out of sequence.
        let misplaced = segment(5, &[(5, 1, b"a"), (9, 1, b"b"), (10, 1, b"c")]);
        match scan_segment(&misplaced).unwrap().1.end {
            ScanEnd::Damaged { reason, .. } => assert!(
                reason.starts_with("a record holds index 9 where 6 was expected")
                    && reason.contains("the intact record 10 found after it"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_record_at_or_below_the_purge_point_is_stepped_over() {
        let (image, starts) = three_records();
        // Bit 3 of the payload of record 5.
        let mut damaged = image.clone();
        damaged[starts[0] + FRAME_HEAD_LEN + BODY_FIXED_LEN + 1] ^= 0x08;
        let (_, scan) = scan_segment_above(&damaged, Some(5)).unwrap();
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.spans.len(), 3);
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(
            (scan.skipped[0].offset, scan.skipped[0].index),
            (starts[0] as u64, 5)
        );
        // Above the purge point the same damage stops the scan.
        for purged in [None, Some(4)] {
            let (_, scan) = scan_segment_above(&damaged, purged).unwrap();
            assert!(
                matches!(scan.end, ScanEnd::Damaged { offset, .. } if offset == starts[0] as u64)
            );
        }
        // A damaged head cannot be stepped over: its length is not known.
        let mut bad_head = image.clone();
        bad_head[starts[0] + 1] ^= 0x08;
        let (_, scan) = scan_segment_above(&bad_head, Some(6)).unwrap();
        assert!(
            matches!(scan.end, ScanEnd::Damaged { .. }),
            "{:?}",
            scan.end
        );
        // Nor is a valid record with the wrong index.
        let misplaced = segment(5, &[(5, 1, b"a"), (9, 1, b"b"), (7, 1, b"c")]);
        let (_, scan) = scan_segment_above(&misplaced, Some(6)).unwrap();
        assert!(
            matches!(scan.end, ScanEnd::Damaged { .. }),
            "{:?}",
            scan.end
        );
    }

    #[test]
    fn scan_rejects_a_record_out_of_sequence() {
        let image = segment(1, &[(1, 1, b"a"), (3, 1, b"b")]);
        let (_, scan) = scan_segment(&image).unwrap();
        assert_eq!(scan.spans.len(), 1);
        assert!(matches!(scan.end, ScanEnd::Damaged { .. }));
    }
}
