//! Segment files: naming, creation and the recovery scan of one file.
//!
//! A segment is named after the index of its first record, zero-padded so that names sort in
//! log order: `00000000000000000001.seg`. Its header repeats that index; the two must agree.

use std::sync::Arc;

use crate::raft::log::error::LogError;
use crate::raft::log::io::{LogDir, LogFile};
use crate::raft::log::record::{self, HeaderError, RecordSpan, ScanEnd, SEGMENT_HEADER_LEN};

/// File-name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// The file name of the segment whose first record is `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// The first index encoded in a segment file name, or `None` if `name` is not a segment.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An open segment file.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Index of the first record the segment holds or will hold.
    pub first_index: u64,
    /// File name within the log directory.
    pub name: String,
    /// The open file, shared with readers and the flusher thread.
    pub file: Arc<dyn LogFile>,
}

impl Segment {
    /// Creates a segment durably: header written and synced, directory entry synced. Records
    /// are only ever written into a segment whose header is already durable, so a header can
    /// be torn only in a segment that holds nothing.
    pub fn create(dir: &dyn LogDir, first_index: u64) -> Result<Segment, LogError> {
        let name = segment_file_name(first_index);
        let file = dir
            .create(&name)
            .map_err(|e| LogError::io(format!("create segment {name}"), e))?;
        file.write_all_at(&record::encode_segment_header(first_index), 0)
            .map_err(|e| LogError::write(format!("write the header of segment {name}"), e))?;
        file.sync_data()
            .map_err(|e| LogError::io(format!("sync segment {name}"), e))?;
        dir.sync_dir().map_err(|e| {
            LogError::io(format!("sync the log directory after creating {name}"), e)
        })?;
        Ok(Segment {
            first_index,
            name,
            file,
        })
    }
}

/// A segment after the recovery scan.
#[derive(Debug)]
pub struct RecoveredSegment {
    /// The open segment.
    pub segment: Segment,
    /// Its valid records, in order.
    pub spans: Vec<RecordSpan>,
    /// Byte offset just past the last valid record: where the next append goes.
    pub end_offset: u64,
}

/// What the scan of one segment found.
#[derive(Debug)]
pub enum ScanOutcome {
    /// The segment is usable.
    Valid(RecoveredSegment),
    /// The segment has no valid header and no room for records: the remains of a creation
    /// that crashed. Only acceptable for the last segment.
    TornCreation {
        /// Why the header was rejected.
        reason: String,
    },
}

/// Reads and scans one segment; see the module docs of [`crate::raft::log`] for the rules.
/// A torn tail is cut only when `is_last`; anywhere else it is an error, because the records
/// of every segment but the last were durable before the next segment was created. Damage is
/// an error in every segment, except damaged records at or below `purged`, which are stepped
/// over (with a warning) when their length can be trusted.
pub fn recover_segment(
    dir: &dyn LogDir,
    name: &str,
    named_first_index: u64,
    is_last: bool,
    purged: Option<u64>,
) -> Result<ScanOutcome, LogError> {
    let image = dir
        .read(name)
        .map_err(|e| LogError::io(format!("read segment {name}"), e))?;
    let corrupt = |offset: u64, reason: String| LogError::Corrupt {
        segment: dir.file_path(name),
        offset,
        reason,
    };
    let (header, scan) = match record::scan_segment_above(&image, purged) {
        Ok(found) => found,
        // A header whose checksum matches was written whole: an old version is not a torn
        // creation, even in an empty last segment.
        Err(HeaderError::UnsupportedVersion(version)) => {
            return Err(LogError::UnsupportedFormat {
                segment: dir.file_path(name),
                version,
            });
        }
        Err(e) if is_last && image.len() <= SEGMENT_HEADER_LEN => {
            return Ok(ScanOutcome::TornCreation {
                reason: e.to_string(),
            });
        }
        Err(e) => return Err(corrupt(0, e.to_string())),
    };
    if header.first_index != named_first_index {
        return Err(corrupt(
            16,
            format!(
                "header says the first index is {}, the file name says {named_first_index}",
                header.first_index
            ),
        ));
    }
    let end_offset = match scan.end {
        ScanEnd::Clean => image.len() as u64,
        ScanEnd::Damaged { offset, reason } => return Err(corrupt(offset, reason)),
        ScanEnd::TornTail { offset, reason } if !is_last => {
            return Err(corrupt(
                offset,
                format!("{reason}, in a segment that is not the last"),
            ));
        }
        ScanEnd::TornTail { offset, .. } => offset,
    };
    let file = dir
        .open(name)
        .map_err(|e| LogError::io(format!("open segment {name}"), e))?;
    if let ScanEnd::TornTail { offset, reason } = &scan.end {
        tracing::warn!(
            segment = name,
            offset,
            cut_bytes = image.len() as u64 - offset,
            kept_records = scan.spans.len(),
            "cutting a torn tail off the last log segment (the remains of a write that a \
             crash interrupted, never acknowledged): {reason}"
        );
        file.set_len(*offset)
            .map_err(|e| LogError::io(format!("cut the torn tail of segment {name}"), e))?;
        file.sync_data()
            .map_err(|e| LogError::io(format!("sync segment {name} after cutting its tail"), e))?;
    }
    for skipped in &scan.skipped {
        tracing::warn!(
            segment = name,
            offset = skipped.offset,
            index = skipped.index,
            "a log record at or below the purge point is damaged; it is covered by a snapshot \
             and never read again: {}",
            skipped.reason
        );
    }
    Ok(ScanOutcome::Valid(RecoveredSegment {
        segment: Segment {
            first_index: header.first_index,
            name: name.to_owned(),
            file,
        },
        spans: scan.spans,
        end_offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_log_order() {
        assert_eq!(parse_segment_file_name(&segment_file_name(0)), Some(0));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert!(segment_file_name(9) < segment_file_name(10));
        assert_eq!(parse_segment_file_name("meta"), None);
        assert_eq!(parse_segment_file_name("1.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.seg"), None);
    }
}
