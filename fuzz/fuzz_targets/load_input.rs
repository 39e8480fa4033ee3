//! Arbitrary bytes as a `/db/load` body, through the same staging and validation the server
//! runs (`raftlite::db::restore_file::check_body`: gzip sniffing, kind by content, WAL header rewrite,
//! UTF-8 text, size limit, header and page-count checks, `quick_check`).
//!
//! Properties: it never panics, and whatever it accepts as a database, SQLite opens and
//! checks cleanly: `quick_check` says ok again, and a full scan of every table reports no
//! corruption.

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use raftlite::db::restore_file::{check_body, LoadKind};
use raftlite_ffi::{Connection, ErrorCode, OpenFlags};

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("raftlite-fuzz-load-{}.db", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    let _ = std::fs::remove_file(&path);
    let accepted = check_body(data, &path, Some(8 * 1024 * 1024));
    if let Ok(info) = accepted {
        assert!(info.size > 0, "an empty body was accepted");
        if info.kind == LoadKind::Sqlite {
            let conn = Connection::open(&path, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX)
                .expect("an accepted database opens");
            let check = conn.query_text("PRAGMA quick_check").expect("quick_check runs");
            assert_eq!(check.as_deref(), Some("ok"));
            let mut tables = Vec::new();
            if let Ok(mut stmt) =
                conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            {
                while let Ok(step) = stmt.step() {
                    if !step.is_row() {
                        break;
                    }
                    tables.push(String::from_utf8_lossy(stmt.column_text(0)).into_owned());
                }
            }
            for t in tables {
                let sql = format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\""));
                if let Err(e) = conn.query_i64(&sql) {
                    assert!(
                        !matches!(e.code(), ErrorCode::Corrupt | ErrorCode::NotADatabase),
                        "accepted a database that is corrupt: {e}"
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
