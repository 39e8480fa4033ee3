use std::io::Write as _;

use super::*;

fn stage(body: &[u8], limit: Option<u64>) -> Result<(StagedInfo, Vec<u8>), LoadError> {
    let mut s = Stager::new(Vec::new(), limit);
    // Odd chunk sizes cross every boundary: gzip header, magic, database header, UTF-8.
    for chunk in body.chunks(7) {
        s.push(chunk)?;
    }
    s.finish()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn database(journal: &str) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.db");
    let conn = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    conn.query_text(&format!("PRAGMA journal_mode={journal}"))
        .unwrap();
    conn.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1), (2); CREATE TABLE u(b);")
        .unwrap();
    drop(conn);
    let bytes = std::fs::read(&path).unwrap();
    (dir, bytes)
}

#[test]
fn sql_text_is_staged_as_is() {
    let (info, out) = stage("CREATE TABLE t(a); -- é\n".as_bytes(), None).unwrap();
    assert_eq!(info.kind, LoadKind::Sql);
    assert_eq!(out, "CREATE TABLE t(a); -- é\n".as_bytes());
    assert_eq!(info.crc32c, crc32c::crc32c(&out));
    assert!(!info.gzip);
}

#[test]
fn gzip_is_decompressed_while_streaming() {
    let text = "INSERT INTO t VALUES(1);\n".repeat(1000);
    let (info, out) = stage(&gz(text.as_bytes()), None).unwrap();
    assert!(info.gzip);
    assert_eq!(info.kind, LoadKind::Sql);
    assert_eq!(out, text.as_bytes());
}

#[test]
fn truncated_gzip_is_refused() {
    let body = gz("INSERT INTO t VALUES(1);\n".repeat(1000).as_bytes());
    let err = stage(&body[..body.len() / 2], None).unwrap_err();
    assert!(matches!(err, LoadError::Gzip(_)), "{err}");
}

#[test]
fn empty_and_binary_bodies_are_refused() {
    assert!(matches!(stage(b"", None), Err(LoadError::Empty)));
    assert!(matches!(
        stage(&[0xff, 0xfe, 0x00, 0x10], None),
        Err(LoadError::NotSqlOrSqlite(_))
    ));
    assert!(matches!(
        stage(b"SELECT 1;\xc3", None),
        Err(LoadError::NotSqlOrSqlite(_))
    ));
}

#[test]
fn limit_counts_decompressed_bytes() {
    let text = "x".repeat(100_000);
    let body = gz(text.as_bytes());
    assert!(body.len() < 1000);
    let err = stage(&body, Some(10_000)).unwrap_err();
    assert!(err.is_too_large(), "{err}");
    assert!(stage(text.as_bytes(), Some(10_000))
        .unwrap_err()
        .is_too_large());
}

#[test]
fn wal_header_becomes_rollback_and_validates() {
    let (dir, bytes) = database("WAL");
    assert_eq!(&bytes[18..20], &[2, 2]);
    let (info, out) = stage(&gz(&bytes), None).unwrap();
    assert_eq!(info.kind, LoadKind::Sqlite);
    assert_eq!(&out[18..20], &[1, 1]);
    let staged = dir.path().join("staged.db");
    std::fs::write(&staged, &out).unwrap();
    let report = validate_sqlite_file(&staged, false).unwrap();
    assert_eq!(report.tables, 2);
    assert!(report.pages >= 2);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(names.len() <= 2, "validation left files behind: {names:?}");
}

#[test]
fn bad_databases_are_refused() {
    let (dir, bytes) = database("DELETE");
    let path = dir.path().join("bad.db");
    let check = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        validate_sqlite_file(&path, false)
    };
    assert!(check(&bytes).is_ok());
    // Truncated.
    assert!(matches!(
        check(&bytes[..bytes.len() - 100]),
        Err(LoadError::InvalidSqlite(_))
    ));
    // Page size not a power of two.
    let mut b = bytes.clone();
    b[16..18].copy_from_slice(&1000u16.to_be_bytes());
    assert!(check(&b).unwrap_err().to_string().contains("page size"));
    // A flipped byte in a b-tree page.
    let mut b = bytes.clone();
    let page = u16::from_be_bytes([b[16], b[17]]) as usize;
    b[page + 3] ^= 0xff;
    b[page + 5] ^= 0xff;
    assert!(matches!(check(&b), Err(LoadError::InvalidSqlite(_))));
    // The header, then random bytes: an encrypted file with a plain header.
    let mut b = bytes.clone();
    for (i, x) in b.iter_mut().enumerate().skip(100) {
        *x = (i * 7919 % 251) as u8;
    }
    assert!(matches!(check(&b), Err(LoadError::InvalidSqlite(_))));
}

#[test]
fn sql_head_must_be_a_command() {
    assert!(check_sql_head("-- dump\n/* x */ PRAGMA foreign_keys=OFF;").is_ok());
    assert!(check_sql_head("  insert into t values(1)").is_ok());
    assert!(matches!(
        check_sql_head("hello world"),
        Err(LoadError::NotSqlOrSqlite(_))
    ));
    assert!(matches!(
        check_sql_head("  -- only a comment\n"),
        Err(LoadError::Empty)
    ));
}

#[test]
fn statements_split_on_complete_boundaries() {
    let text = "CREATE TABLE t(a);\nINSERT INTO t VALUES('a;\nb');\nCREATE TRIGGER x AFTER INSERT ON t BEGIN\n SELECT 1;\nEND;\nSELECT 2";
    let got: Vec<String> = SqlStatements::new(text.as_bytes())
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[1], "INSERT INTO t VALUES('a;\nb');\n");
    assert!(got[2].starts_with("CREATE TRIGGER") && got[2].ends_with("END;\n"));
    assert_eq!(got[3], "SELECT 2");
}

#[test]
fn bytes_after_the_gzip_stream_are_an_input_error() {
    let mut body = gz(b"SELECT 1;\n");
    body.extend_from_slice(b"trailing garbage");
    let err = stage(&body, None).unwrap_err();
    assert!(matches!(err, LoadError::Gzip(_)), "{err}");
}

fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

#[test]
fn zstd_is_decompressed_while_streaming() {
    let text = "INSERT INTO t VALUES(1);\n".repeat(1000);
    let (info, out) = stage(&zst(text.as_bytes()), None).unwrap();
    assert!(info.zstd && !info.gzip);
    assert_eq!(info.kind, LoadKind::Sql);
    assert_eq!(out, text.as_bytes());
    assert_eq!(info.crc32c, crc32c::crc32c(text.as_bytes()));
    let (dir, bytes) = database("WAL");
    let (info, out) = stage(&zst(&bytes), None).unwrap();
    assert_eq!(info.kind, LoadKind::Sqlite);
    assert_eq!(
        &out[18..20],
        &[1, 1],
        "the WAL header is rewritten inside zstd too"
    );
    let staged = dir.path().join("staged.db");
    std::fs::write(&staged, &out).unwrap();
    assert_eq!(validate_sqlite_file(&staged, false).unwrap().tables, 2);
}

#[test]
fn zstd_output_larger_than_the_decoder_buffer_is_drained() {
    // Highly compressible: one small input chunk decodes to many full output buffers, and
    // the frame may end exactly as a buffer fills.
    for len in [ZSTD_OUT_BUF, 3 * ZSTD_OUT_BUF, 5 * ZSTD_OUT_BUF + 17] {
        let text = "x".repeat(len - 1) + ";";
        let (info, out) = stage(&zst(text.as_bytes()), None).unwrap();
        assert_eq!(info.size, len as u64);
        assert_eq!(out, text.as_bytes());
    }
}

#[test]
fn truncated_zstd_is_refused() {
    let body = zst("INSERT INTO t VALUES(1);\n".repeat(1000).as_bytes());
    for cut in [5, body.len() / 2, body.len() - 1] {
        let err = stage(&body[..cut], None).unwrap_err();
        assert!(matches!(err, LoadError::Zstd(_)), "{cut}: {err}");
    }
    // Only the magic.
    let err = stage(&ZSTD_MAGIC, None).unwrap_err();
    assert!(matches!(err, LoadError::Zstd(_)), "{err}");
}

#[test]
fn corrupt_zstd_is_refused_by_its_checksum() {
    // With a content checksum, as the `zstd` tool and raftlite's backups write it: a flipped
    // byte in the literals is caught at the frame's end (without one, zstd cannot tell).
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all("INSERT INTO t VALUES(1);\n".repeat(1000).as_bytes())
        .unwrap();
    let mut body = enc.finish().unwrap();
    let mid = body.len() / 2;
    body[mid] ^= 0x01;
    let err = stage(&body, None).map(|(info, _)| info).unwrap_err();
    assert!(matches!(err, LoadError::Zstd(_)), "{err}");
}

#[test]
fn zstd_limit_counts_decompressed_bytes() {
    let text = "x".repeat(1_000_000);
    let body = zst(text.as_bytes());
    assert!(body.len() < 1000);
    let err = stage(&body, Some(10_000)).unwrap_err();
    assert!(err.is_too_large(), "{err}");
}

#[test]
fn concatenated_zstd_frames_are_one_stream_and_garbage_after_them_is_refused() {
    let mut body = zst(b"INSERT INTO t VALUES(1);\n");
    body.extend_from_slice(&zst(b"INSERT INTO t VALUES(2);\n"));
    let (info, out) = stage(&body, None).unwrap();
    assert!(info.zstd);
    assert_eq!(out, b"INSERT INTO t VALUES(1);\nINSERT INTO t VALUES(2);\n");

    let mut body = zst(b"SELECT 1;\n");
    body.extend_from_slice(b"trailing garbage");
    let err = stage(&body, None).unwrap_err();
    assert!(
        matches!(&err, LoadError::Zstd(m) if m.contains("after the end")),
        "{err}"
    );
}

#[test]
fn a_leading_skippable_frame_is_zstd() {
    // A skippable frame (magic 0x184D2A50, 4-byte length, payload), as pzstd writes first.
    let mut body = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
    body.extend_from_slice(&zst(b"SELECT 1;\n"));
    let (info, out) = stage(&body, None).unwrap();
    assert!(info.zstd);
    assert_eq!(out, b"SELECT 1;\n");
}

#[test]
fn short_bodies_are_not_mistaken_for_compressed_ones() {
    let (info, out) = stage(b"END", None).unwrap();
    assert!(!info.zstd && !info.gzip);
    assert_eq!(out, b"END");
}
