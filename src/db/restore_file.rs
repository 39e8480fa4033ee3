//! A restore's input: what a `/db/load` or `/boot` body is, and whether it may replace or
//! extend the database. This module owns the byte-level and SQLite-level checks and nothing
//! else: it never touches the live database, the network or Raft. `store::restore` stages a
//! body through it, proposes it, and replicates and installs it.
//!
//! A body goes through [`Stager`] chunk by chunk, as it arrives:
//! - gzip (`1f 8b`) and zstd (the frame magic `28 b5 2f fd`, or a skippable frame's
//!   `5? 2a 4d 18`, which `pzstd` writes first) are recognised by their first bytes and
//!   decompressed on the fly. gzip is one member: bytes after it are refused. zstd is one or
//!   more frames, as the format defines it (RFC 8878 §3: a stream is a sequence of frames;
//!   `zstd -d` and `pzstd` read concatenations): frames may follow one another, and anything
//!   after a frame that is not a frame is refused. The zstd decoder's window is capped at
//!   [`ZSTD_WINDOW_LOG_MAX`], libzstd's own default, so one upload costs at most that much
//!   memory however the frame header asks;
//! - the kind is told by content: the 16 bytes `SQLite format 3\0` make a database file,
//!   anything else is SQL text;
//! - a database whose header says WAL mode (bytes 18–19 = `02 02`) is rewritten to rollback
//!   mode (`01 01`) on the way through: an upload never comes with its `-wal`, so the main file
//!   is the whole content, and a rollback-mode file opens read-only without creating `-wal` or
//!   `-shm` files next to it;
//! - SQL text must be UTF-8 without NUL bytes (validated across chunk boundaries), so binary
//!   garbage and encrypted files are refused before anything runs;
//! - the output size is limited (decompressed bytes count, so a gzip or zstd bomb stops at the
//!   limit);
//! - a CRC-32C of the output is computed in the same pass: it names the staged content when
//!   other nodes pull it.
//!
//! Nothing is held in memory beyond one chunk and the 100-byte database header.
//!
//! Then [`validate_sqlite_file`] checks a staged database before anything changes: the header
//! (magic, page size a power of two in 512..=65536, read/write versions), the page count (the
//! in-header count is trusted only when the change counter at offset 24 equals the
//! version-valid-for number at offset 92; otherwise the file size decides), and `PRAGMA
//! quick_check` (or `integrity_check`) on a read-only connection. [`check_sql_head`] refuses
//! text whose first word is not an SQL command. [`SqlStatements`] splits staged SQL text into
//! complete statements (`sqlite3_complete`) while reading it, for the apply path.

use std::io::{self, BufRead, Write};
use std::path::Path;

use raftlite_ffi::{Connection, OpenFlags};

/// The first 16 bytes of every SQLite database file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const HEADER_LEN: usize = 100;
/// The first two bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first four bytes of a zstd frame (0xFD2FB528, little-endian).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Bytes read before the compression is decided: the longest magic.
const MAGIC_LEN: usize = 4;
/// The largest zstd window accepted, as a power of two (128 MiB): libzstd's default limit,
/// which every level of the `zstd` tool stays under (only `--long` or `--ultra` go above).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Decompressed bytes the zstd decoder hands to the sink at a time.
const ZSTD_OUT_BUF: usize = 128 * 1024;

/// What a load body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LoadKind {
    /// A SQLite database file: it replaces the database.
    Sqlite,
    /// SQL text: it runs on the database, all or nothing.
    Sql,
}

impl LoadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadKind::Sqlite => "sqlite",
            LoadKind::Sql => "sql",
        }
    }
}

/// Why a load body was refused. Every variant is the client's input, except `Io`, which is
/// this node's fault: the disk is full, staging reached `-disk-reserve`, or another I/O error.
/// (`store::restore` carries it as `RestoreError::Input`; `http::load_routes::restore_error`
/// answers `TooLarge` with 413, the other inputs with 400, and `Io` with 507 or 500.)
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("load body is empty")]
    Empty,
    #[error("load body too large: the limit is {0} bytes (-max-load-size)")]
    TooLarge(u64),
    #[error("invalid gzip stream: {0}")]
    Gzip(String),
    #[error("invalid zstd stream: {0}")]
    Zstd(String),
    #[error("invalid load data: neither a SQLite database nor SQL text ({0})")]
    NotSqlOrSqlite(&'static str),
    #[error("invalid SQLite data: {0}")]
    InvalidSqlite(String),
    #[error("stage load data: {0}")]
    Io(#[from] io::Error),
}

impl LoadError {
    /// True when the fault is this node's (disk, I/O), not the input's.
    pub fn is_local(&self) -> bool {
        matches!(self, LoadError::Io(_))
    }

    /// The disk is full, or staging stopped at `-disk-reserve`.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, LoadError::Io(e) if e.kind() == io::ErrorKind::StorageFull)
    }

    pub fn is_too_large(&self) -> bool {
        matches!(self, LoadError::TooLarge(_))
    }
}

/// The staged content, once the body has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedInfo {
    pub kind: LoadKind,
    /// Bytes written (after decompression).
    pub size: u64,
    /// CRC-32C of the bytes written.
    pub crc32c: u32,
    /// Bytes received (before decompression).
    pub received: u64,
    pub gzip: bool,
    pub zstd: bool,
}

/// Writes a load body to `out` as it arrives: sniffs gzip or zstd and the kind, normalises a WAL
/// header, validates SQL text as UTF-8, enforces the size limit and computes the digest.
pub struct Stager<W: Write> {
    limit: Option<u64>,
    received: u64,
    /// Undecided until the first [`MAGIC_LEN`] bytes are in (or the body ends before).
    mode: Option<Mode<W>>,
    first: Vec<u8>,
    /// The output, until the mode is decided.
    sink_out: Option<W>,
}

enum Mode<W: Write> {
    Plain(Sink<W>),
    Gzip(Box<flate2::write::GzDecoder<Sink<W>>>),
    Zstd(Box<ZstdStage<W>>),
}

impl<W: Write> Stager<W> {
    /// `limit`: the largest content (decompressed) and body accepted, in bytes.
    pub fn new(out: W, limit: Option<u64>) -> Stager<W> {
        Stager {
            limit,
            received: 0,
            mode: None,
            first: Vec::with_capacity(MAGIC_LEN),
            sink_out: Some(out),
        }
    }

    /// Feeds the next chunk of the body.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), LoadError> {
        self.received += chunk.len() as u64;
        if let Some(limit) = self.limit {
            if self.received > limit {
                return Err(LoadError::TooLarge(limit));
            }
        }
        if self.mode.is_none() {
            let take = (MAGIC_LEN - self.first.len()).min(chunk.len());
            self.first.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.first.len() < MAGIC_LEN {
                return Ok(());
            }
            self.decide()?;
        }
        self.write(chunk)
    }

    fn decide(&mut self) -> Result<(), LoadError> {
        let out = self
            .sink_out
            .take()
            .ok_or_else(|| LoadError::Io(io::Error::other("stager used after it failed")))?;
        let sink = Sink::new(out, self.limit);
        let first = std::mem::take(&mut self.first);
        if first.starts_with(&GZIP_MAGIC) {
            let mut dec = Box::new(flate2::write::GzDecoder::new(sink));
            write_gz(&mut dec, &first)?;
            self.mode = Some(Mode::Gzip(dec));
        } else if is_zstd_start(&first) {
            let mut dec = Box::new(ZstdStage::new(sink)?);
            dec.write(&first)?;
            self.mode = Some(Mode::Zstd(dec));
        } else {
            let mut sink = sink;
            sink.put(&first)?;
            self.mode = Some(Mode::Plain(sink));
        }
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), LoadError> {
        if chunk.is_empty() {
            return Ok(());
        }
        match self.mode.as_mut() {
            Some(Mode::Plain(sink)) => sink.put(chunk),
            Some(Mode::Gzip(dec)) => write_gz(dec, chunk),
            Some(Mode::Zstd(dec)) => dec.write(chunk),
            None => Ok(()),
        }
    }

    /// Ends the body: flushes the decoder, checks what must be checked at the end, and returns
    /// the staged content's description and the writer.
    pub fn finish(mut self) -> Result<(StagedInfo, W), LoadError> {
        if self.mode.is_none() {
            if self.first.is_empty() {
                return Err(LoadError::Empty);
            }
            self.decide()?;
        }
        let received = self.received;
        let (sink, gzip, zstd) = match self.mode.take() {
            Some(Mode::Plain(sink)) => (sink, false, false),
            Some(Mode::Gzip(dec)) => {
                let sink = dec.finish().map_err(gz_error)?;
                // A member boundary or trailing garbage is not decoded by `finish`; a stream
                // cut short is reported as an error above.
                (sink, true, false)
            }
            Some(Mode::Zstd(dec)) => (dec.finish()?, false, true),
            None => return Err(LoadError::Empty),
        };
        let (info, out) = sink.finish()?;
        Ok((
            StagedInfo {
                received,
                gzip,
                zstd,
                ..info
            },
            out,
        ))
    }
}

/// A zstd frame, or a skippable frame (magic `0x184D2A50..=0x184D2A5F`, little-endian).
fn is_zstd_start(first: &[u8]) -> bool {
    first == ZSTD_MAGIC
        || (first.len() == MAGIC_LEN && first[0] & 0xf0 == 0x50 && first[1..] == [0x2a, 0x4d, 0x18])
}

/// zstd decompression into the sink, one bounded output buffer at a time. libzstd's raw
/// streaming decoder (not the crate's `Write` adapter) so that this knows where frames end:
/// a body that stops inside a frame is cut short, and bytes after a complete frame that are
/// not another frame are named as such.
struct ZstdStage<W: Write> {
    decoder: zstd::stream::raw::Decoder<'static>,
    sink: Sink<W>,
    out: Box<[u8]>,
    /// The last step ended exactly at the end of a frame, with all its output handed on.
    at_frame_end: bool,
    /// The last step filled the output buffer: step again, without input, to drain it.
    output_pending: bool,
}

impl<W: Write> ZstdStage<W> {
    fn new(sink: Sink<W>) -> Result<ZstdStage<W>, LoadError> {
        let mut decoder = zstd::stream::raw::Decoder::new()?;
        decoder.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
            ZSTD_WINDOW_LOG_MAX,
        ))?;
        Ok(ZstdStage {
            decoder,
            sink,
            out: vec![0u8; ZSTD_OUT_BUF].into_boxed_slice(),
            at_frame_end: false,
            output_pending: false,
        })
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), LoadError> {
        use zstd::stream::raw::Operation as _;
        // An empty step is taken only to drain output: libzstd reads a step without input
        // after a frame's end as the start of a header still to come.
        while !data.is_empty() || self.output_pending {
            let after_a_frame = self.at_frame_end;
            let step = self
                .decoder
                .run_on_buffers(data, &mut self.out)
                .map_err(|e| {
                    if after_a_frame {
                        LoadError::Zstd(format!(
                            "data after the end of the zstd stream is not a zstd frame ({e})"
                        ))
                    } else {
                        LoadError::Zstd(e.to_string())
                    }
                })?;
            data = &data[step.bytes_read..];
            if step.bytes_written > 0 {
                self.sink.put(&self.out[..step.bytes_written])?;
            }
            if step.bytes_read > 0 || step.bytes_written > 0 {
                // 0: a frame is complete and flushed (ZSTD_decompressStream's contract).
                self.at_frame_end = step.remaining == 0;
            }
            // A full buffer mid-frame may leave decoded bytes inside the decoder.
            self.output_pending = step.remaining != 0 && step.bytes_written == self.out.len();
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Sink<W>, LoadError> {
        // Drain what the last chunk left in the decoder (nothing, unless the buffer was full).
        self.write(&[])?;
        if !self.at_frame_end {
            return Err(LoadError::Zstd("the stream ends early".into()));
        }
        Ok(self.sink)
    }
}

fn write_gz<W: Write>(
    dec: &mut flate2::write::GzDecoder<Sink<W>>,
    data: &[u8],
) -> Result<(), LoadError> {
    dec.write_all(data).map_err(gz_error)
}

/// Errors from the decoder: the sink's own refusals travel inside `io::Error`.
fn gz_error(e: io::Error) -> LoadError {
    let kind = e.kind();
    if e.get_ref().is_some_and(|i| i.is::<SinkFailure>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(failure) = inner.downcast::<SinkFailure>() {
                return sink_error(*failure);
            }
        }
        return LoadError::Io(io::Error::other("stage load data"));
    }
    match kind {
        io::ErrorKind::UnexpectedEof => LoadError::Gzip("the stream ends early".into()),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => LoadError::Gzip(e.to_string()),
        // The decoder takes nothing after the end of the (first) gzip member.
        io::ErrorKind::WriteZero => LoadError::Gzip("data after the end of the gzip stream".into()),
        _ => LoadError::Io(e),
    }
}

#[derive(Debug)]
enum SinkMessage {
    TooLarge(u64),
    NotSql(&'static str),
    Io(io::Error),
}

/// A refusal from the sink, carried through the gzip decoder's `io::Error`.
#[derive(Debug)]
struct SinkFailure(SinkMessage);

impl std::fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for SinkFailure {}

/// The decompressed side: sniffs the kind, patches the header, validates text, counts, hashes.
struct Sink<W: Write> {
    out: W,
    limit: Option<u64>,
    size: u64,
    crc: u32,
    kind: Option<LoadKind>,
    /// The database header (or the first bytes of text) until the kind is known.
    head: Vec<u8>,
    /// An incomplete UTF-8 sequence at the end of the last chunk (SQL only).
    utf8_tail: Vec<u8>,
}

impl<W: Write> Sink<W> {
    fn new(out: W, limit: Option<u64>) -> Sink<W> {
        Sink {
            out,
            limit,
            size: 0,
            crc: 0,
            kind: None,
            head: Vec::with_capacity(HEADER_LEN),
            utf8_tail: Vec::new(),
        }
    }

    fn put(&mut self, data: &[u8]) -> Result<(), LoadError> {
        self.accept(data).map_err(sink_error)
    }

    fn accept(&mut self, mut data: &[u8]) -> Result<(), SinkFailure> {
        if let Some(limit) = self.limit {
            if self.size + self.head.len() as u64 + data.len() as u64 > limit {
                return Err(SinkFailure(SinkMessage::TooLarge(limit)));
            }
        }
        if self.kind.is_none() {
            let want = HEADER_LEN - self.head.len();
            let take = want.min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            // Decide as soon as the magic can be told apart from text.
            let n = self.head.len().min(SQLITE_MAGIC.len());
            let maybe_sqlite = self.head[..n] == SQLITE_MAGIC[..n];
            if maybe_sqlite && self.head.len() < HEADER_LEN {
                return Ok(());
            }
            self.decide_kind()?;
        }
        self.emit(data)
    }

    fn decide_kind(&mut self) -> Result<(), SinkFailure> {
        let mut head = std::mem::take(&mut self.head);
        let kind = if head.len() >= SQLITE_MAGIC.len() && head.starts_with(SQLITE_MAGIC) {
            // WAL-mode header (18-19 = 2): make the file self-contained rollback mode.
            if head.len() >= 20 && head[18] == 2 && head[19] == 2 {
                head[18] = 1;
                head[19] = 1;
            }
            LoadKind::Sqlite
        } else {
            LoadKind::Sql
        };
        self.kind = Some(kind);
        self.emit(&head)
    }

    fn emit(&mut self, data: &[u8]) -> Result<(), SinkFailure> {
        if data.is_empty() {
            return Ok(());
        }
        if self.kind == Some(LoadKind::Sql) {
            self.check_text(data)?;
        }
        self.out
            .write_all(data)
            .map_err(|e| SinkFailure(SinkMessage::Io(e)))?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.size += data.len() as u64;
        Ok(())
    }

    fn check_text(&mut self, data: &[u8]) -> Result<(), SinkFailure> {
        if data.contains(&0) {
            return Err(SinkFailure(SinkMessage::NotSql("it holds NUL bytes")));
        }
        let joined;
        let text: &[u8] = if self.utf8_tail.is_empty() {
            data
        } else {
            joined = [std::mem::take(&mut self.utf8_tail).as_slice(), data].concat();
            &joined
        };
        match std::str::from_utf8(text) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                self.utf8_tail = text[e.valid_up_to()..].to_vec();
                Ok(())
            }
            Err(_) => Err(SinkFailure(SinkMessage::NotSql("it is not UTF-8 text"))),
        }
    }

    fn finish(mut self) -> Result<(StagedInfo, W), LoadError> {
        if self.kind.is_none() {
            if self.head.is_empty() {
                return Err(LoadError::Empty);
            }
            self.decide_kind().map_err(sink_error)?;
        }
        if !self.utf8_tail.is_empty() {
            return Err(LoadError::NotSqlOrSqlite("it is not UTF-8 text"));
        }
        self.out.flush()?;
        Ok((
            StagedInfo {
                kind: self.kind.unwrap_or(LoadKind::Sql),
                size: self.size,
                crc32c: self.crc,
                received: 0,
                gzip: false,
                zstd: false,
            },
            self.out,
        ))
    }
}

fn sink_error(e: SinkFailure) -> LoadError {
    match e.0 {
        SinkMessage::TooLarge(n) => LoadError::TooLarge(n),
        SinkMessage::NotSql(why) => LoadError::NotSqlOrSqlite(why),
        SinkMessage::Io(e) => LoadError::Io(e),
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.accept(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What a validated database holds (for the response report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SqliteReport {
    pub page_size: u32,
    pub pages: u64,
    pub tables: u64,
}

/// The fields of a database header that validation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub page_size: u32,
    pub write_version: u8,
    pub read_version: u8,
    /// The in-header page count, when it is valid (change counter = version-valid-for).
    pub page_count: Option<u32>,
}

/// Parses and checks a database header (the first 100 bytes of the file).
pub fn parse_header(h: &[u8]) -> Result<Header, LoadError> {
    let bad = |m: &str| LoadError::InvalidSqlite(m.to_string());
    if h.len() < HEADER_LEN {
        return Err(bad("the file is shorter than a database header"));
    }
    if &h[..16] != SQLITE_MAGIC {
        return Err(bad("no SQLite header"));
    }
    let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let raw = u16::from_be_bytes([h[16], h[17]]);
    let page_size = if raw == 1 { 65536 } else { u32::from(raw) };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(LoadError::InvalidSqlite(format!(
            "page size {raw} in the header is not a power of two between 512 and 65536"
        )));
    }
    let (write_version, read_version) = (h[18], h[19]);
    if !(1..=2).contains(&write_version) || !(1..=2).contains(&read_version) {
        return Err(LoadError::InvalidSqlite(format!(
            "unknown file format versions {write_version}/{read_version} (encrypted?)"
        )));
    }
    // Reserved bytes per page (offset 20) must leave at least 480 usable bytes.
    if page_size - u32::from(h[20]) < 480 {
        return Err(bad("reserved space leaves too little of each page"));
    }
    let (changes, valid_for, count) = (be32(24), be32(92), be32(28));
    let page_count = (changes == valid_for && count > 0).then_some(count);
    Ok(Header {
        page_size,
        write_version,
        read_version,
        page_count,
    })
}

/// Validates a staged database file before anything changes: header, page count against the
/// file size, and `quick_check` (or `integrity_check`) on a read-only connection.
pub fn validate_sqlite_file(path: &Path, integrity: bool) -> Result<SqliteReport, LoadError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    let n = f.read(&mut head)?;
    let header = parse_header(&head[..n])?;
    let page_size = u64::from(header.page_size);
    let pages = match header.page_count {
        Some(count) => {
            let need = u64::from(count) * page_size;
            if len < need {
                return Err(LoadError::InvalidSqlite(format!(
                    "the file is truncated: the header says {count} pages of {page_size} bytes, \
                     the file has {len} bytes"
                )));
            }
            u64::from(count)
        }
        None => {
            if len % page_size != 0 {
                return Err(LoadError::InvalidSqlite(format!(
                    "the file is truncated: {len} bytes is not a whole number of \
                     {page_size}-byte pages"
                )));
            }
            len / page_size
        }
    };
    if pages == 0 {
        return Err(LoadError::InvalidSqlite("the file holds no pages".into()));
    }
    drop(f);
    let conn = Connection::open(
        path,
        OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX | OpenFlags::NO_FOLLOW,
    )
    .map_err(|e| LoadError::InvalidSqlite(e.message))?;
    let _ = conn.set_trusted_schema(false);
    let _ = conn.set_load_extension(false);
    let check = if integrity {
        "PRAGMA integrity_check(1)"
    } else {
        "PRAGMA quick_check(1)"
    };
    let verdict = conn
        .query_text(check)
        .map_err(|e| LoadError::InvalidSqlite(e.message))?
        .unwrap_or_default();
    if verdict != "ok" {
        return Err(LoadError::InvalidSqlite(format!(
            "{} failed: {verdict}",
            &check[7..check.len() - 3]
        )));
    }
    let tables = conn
        .query_i64("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        .map_err(|e| LoadError::InvalidSqlite(e.message))?
        .unwrap_or(0);
    Ok(SqliteReport {
        page_size: header.page_size,
        pages,
        tables: tables as u64,
    })
}

/// The first keywords an SQL command may start with.
const SQL_COMMANDS: &[&str] = &[
    "ALTER",
    "ANALYZE",
    "ATTACH",
    "BEGIN",
    "COMMIT",
    "CREATE",
    "DELETE",
    "DETACH",
    "DROP",
    "END",
    "EXPLAIN",
    "INSERT",
    "PRAGMA",
    "REINDEX",
    "RELEASE",
    "REPLACE",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "UPDATE",
    "VACUUM",
    "VALUES",
    "WITH",
];

/// Refuses text whose first word (after whitespace and comments) is not an SQL command: a
/// file that is neither a database nor SQL gets a 400 instead of a syntax error. Text that is
/// only whitespace and comments is refused as empty.
pub fn check_sql_head(head: &str) -> Result<(), LoadError> {
    // A comment longer than the head we read: give it the benefit of the doubt.
    let unterminated_comment = || {
        if head.len() >= 4096 {
            Ok(())
        } else {
            Err(LoadError::Empty)
        }
    };
    let mut rest = head;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            match r.find('\n') {
                Some(i) => rest = &r[i + 1..],
                None => return unterminated_comment(),
            }
            continue;
        }
        if let Some(r) = rest.strip_prefix("/*") {
            match r.find("*/") {
                Some(i) => rest = &r[i + 2..],
                None => return unterminated_comment(),
            }
            continue;
        }
        break;
    }
    if rest.is_empty() {
        return Err(LoadError::Empty);
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = rest[..end].to_ascii_uppercase();
    if SQL_COMMANDS.contains(&word.as_str()) {
        Ok(())
    } else {
        Err(LoadError::NotSqlOrSqlite(
            "it does not start with an SQL command",
        ))
    }
}

/// Reads up to 4 KiB from the start of a staged SQL file and applies [`check_sql_head`].
pub fn validate_sql_file(path: &Path) -> Result<(), LoadError> {
    use std::io::Read as _;
    let mut buf = vec![0u8; 4096];
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    buf.truncate(n);
    // The stager validated UTF-8 as a whole; a cut in the middle of a character is fine here.
    let text = match std::str::from_utf8(&buf) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or(""),
    };
    check_sql_head(text)
}

/// Complete SQL statements read from text, one at a time (`sqlite3_complete` decides where a
/// statement ends; a line that is one whole literal INSERT, the bulk of a dump, is known to
/// end one without it: see `db::literal_insert`). Memory holds one statement. Text after the
/// last complete statement is returned as a final statement (SQLite then reports it as
/// incomplete or runs it).
pub struct SqlStatements<R: BufRead> {
    reader: R,
    buf: String,
    done: bool,
}

impl<R: BufRead> SqlStatements<R> {
    pub fn new(reader: R) -> SqlStatements<R> {
        SqlStatements {
            reader,
            buf: String::new(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for SqlStatements<R> {
    type Item = io::Result<String>;

    fn next(&mut self) -> Option<io::Result<String>> {
        if self.done {
            return None;
        }
        loop {
            let before = self.buf.len();
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    let rest = std::mem::take(&mut self.buf);
                    return (!rest.trim().is_empty()).then_some(Ok(rest));
                }
                Ok(_) => {
                    // Only a line with a ';' can complete a statement.
                    let ends = self.buf[before..].contains(';')
                        && ((before == 0
                            && crate::db::literal_insert::is_literal_insert(&self.buf))
                            || raftlite_ffi::complete(&self.buf));
                    if ends {
                        return Some(Ok(std::mem::take(&mut self.buf)));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Bytes of statements a [`read_ahead`] thread hands over at a time.
const READ_AHEAD_BATCH_BYTES: usize = 256 * 1024;
/// Batches waiting for the runner: with the one being filled and the one being run, memory
/// holds about four batches (each of at most 256 KiB, or one statement longer than that).
const READ_AHEAD_BATCHES: usize = 2;

/// Reads and splits `statements` on a thread of its own within `scope`, ahead of the thread
/// that runs them (which gets them in order, as the iterator returned). A SQL load's time is
/// reading, splitting and recognising statements plus running them; on two threads the two
/// overlap. The reader stops after an error (handed over as the last item) and when the
/// returned iterator is dropped (at its next hand-over).
pub fn read_ahead<'scope, I>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    statements: I,
) -> io::Result<impl Iterator<Item = io::Result<String>> + 'scope>
where
    I: Iterator<Item = io::Result<String>> + Send + 'scope,
{
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<io::Result<String>>>(READ_AHEAD_BATCHES);
    std::thread::Builder::new()
        .name("sql-read-ahead".into())
        .spawn_scoped(scope, move || {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for item in statements {
                let failed = item.is_err();
                bytes += item.as_ref().map_or(0, String::len);
                batch.push(item);
                if failed || bytes >= READ_AHEAD_BATCH_BYTES {
                    if failed || tx.send(std::mem::take(&mut batch)).is_err() {
                        break;
                    }
                    bytes = 0;
                }
            }
            // The last batch (or the one that ends with the error); nobody may be listening.
            let _ = tx.send(batch);
        })?;
    Ok(rx.into_iter().flatten())
}

/// Runs the whole body through the same checks the server runs, into a scratch file at
/// `path`: staging, then validation. Fuzz targets and tests use it.
pub fn check_body(body: &[u8], path: &Path, limit: Option<u64>) -> Result<StagedInfo, LoadError> {
    let file = std::fs::File::create(path)?;
    let mut stager = Stager::new(io::BufWriter::new(file), limit);
    for chunk in body.chunks(4096) {
        stager.push(chunk)?;
    }
    let (info, out) = stager.finish()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    match info.kind {
        LoadKind::Sqlite => {
            validate_sqlite_file(path, false)?;
        }
        LoadKind::Sql => validate_sql_file(path)?,
    }
    Ok(info)
}

#[cfg(test)]
mod tests;
