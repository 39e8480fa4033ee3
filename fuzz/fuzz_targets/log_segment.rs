//! Feeds arbitrary bytes to the Raft log's decoders and to recovery, as a segment file.
//!
//! Checks: nothing panics; every record recovery or a read hands back passes its checksum;
//! the scan's spans are in order and inside the input; a segment recovered from the bytes
//! can be appended to and reopened.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use raftlite::raft::log::io::{CrashImage, SimDir};
use raftlite::raft::log::meta::Meta;
use raftlite::raft::log::record::{self, decode_record, scan_segment};
use raftlite::raft::log::segment::segment_file_name;
use raftlite::raft::log::{LogEngine, LogOptions, RecordRef};

fuzz_target!(|data: &[u8]| {
    // The pure decoders.
    let _ = decode_record(data);
    let _ = Meta::decode(data);
    if let Ok((header, scan)) = scan_segment(data) {
        let mut previous_end = record::SEGMENT_HEADER_LEN as u64;
        for (i, span) in scan.spans.iter().enumerate() {
            assert_eq!(span.offset, previous_end, "spans must be contiguous");
            let end = span.offset + u64::from(span.len);
            let frame = &data[span.offset as usize..end as usize];
            let (rec, used) = decode_record(frame).expect("a scanned span decodes");
            assert_eq!(used, frame.len());
            assert_eq!(rec.index, header.first_index.wrapping_add(i as u64));
            previous_end = end;
        }
    }

    // Recovery through the engine: the bytes as the only segment of a log, named after the
    // first index the header claims (or 1 when the header is unreadable).
    let first_index = record::decode_segment_header(data).map_or(1, |h| h.first_index);
    let dir = SimDir::new();
    dir.put_file(&segment_file_name(first_index), data.to_vec());
    let options = LogOptions {
        segment_size: 4096,
        ..LogOptions::default()
    };
    let Ok(engine) = LogEngine::open_in(Arc::new(dir.clone()), options.clone()) else {
        return;
    };
    let bounds = engine.bounds();
    if let (Some(first), Some(last)) = (bounds.first_index, bounds.last_index) {
        let records = engine.read(first..last + 1).expect("recovered records read back");
        assert_eq!(records.len() as u64, last - first + 1);
    }
    let next = bounds.last_index.map_or(first_index, |l| l.wrapping_add(1));
    if next == u64::MAX {
        return;
    }
    let appended = RecordRef {
        index: next,
        term: 1,
        kind: 1,
        data: b"after recovery",
    };
    engine.append(&[appended]).expect("a recovered log takes appends");
    drop(engine);
    let reopened = LogEngine::open_in(Arc::new(dir.crash_image(CrashImage::DurableOnly)), options)
        .expect("a recovered log reopens");
    let got = reopened.get(next).expect("read the appended record");
    assert_eq!(got.map(|r| r.data), Some(b"after recovery".to_vec()));
});
