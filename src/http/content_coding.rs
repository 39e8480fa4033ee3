//! How a backup body is compressed: the choice (`compress`, `Accept-Encoding`) and the
//! streaming encoders (gzip, zstd).
//!
//! Two ways to ask, never both at once:
//! - `compress` (rqlite's; bare, `=gzip` or `=true`: gzip) or `compress=zstd`: the body *is* a
//!   compressed file (a `.gz` or `.zst`), with no `Content-Encoding`, so the client saves it
//!   as it comes. Any other value is a 400. With `compress`, `Accept-Encoding` is not read.
//! - Without `compress`, `Accept-Encoding` (RFC 9110 §12.5.3): a content coding that the
//!   client's HTTP stack undoes, told by `Content-Encoding`. zstd and gzip are offered, zstd
//!   first on equal q-values; unknown codings are ignored; `*` stands for every coding not
//!   named; identity is acceptable unless `identity;q=0`, or `*;q=0` without an identity
//!   entry, refuses it, counts as q=1 when the field does not name it, and wins every tie. So
//!   a coding is used only when the client ranks it above identity (`zstd, identity;q=0.5`)
//!   or refuses identity: the `Accept-Encoding: gzip` that Go's and Python's HTTP stacks
//!   send by default gets the plain file, because compressing a database on the node costs
//!   more CPU than most links save (RFC 9110 lets the server choose among acceptable
//!   codings). `compress=` asks for a compressed file outright. When the client refuses
//!   identity and accepts neither zstd nor gzip, the answer is a 406 naming what is offered
//!   (§15.5.7 allows it; a backup client that refuses plain bytes had better be told than
//!   be sent them). No field, or an empty one: identity.
//!
//! Every `/db/backup` answer carries `Vary: Accept-Encoding`, whatever it chose.
//!
//! Invariants of the encoders: memory holds one input chunk and the encoder's window (gzip
//! level 1: 32 KiB; zstd level 3: 2 MiB at most, within RFC 8878's 8 MiB for HTTP); each
//! chunk's compressed bytes go out as soon as the encoder releases them; an error from the
//! input ends the output with that error and never with a trailer, so the client sees a
//! truncated transfer rather than a clean short file.

use std::fmt;
use std::io::{self, Write};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::error_status;
use super::params::QueryParams;
use super::response::text_error;
use crate::store::backup::ByteStream;

/// zstd's level for backups: the `zstd` tool's default, several times faster than gzip's
/// level 1 for a smaller file.
pub const ZSTD_LEVEL: i32 = 3;

/// A compression the backup offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Zstd,
}

impl Coding {
    /// The token in `Content-Encoding`, `Accept-Encoding` and `compress=`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }
}

/// What the body will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The bytes as the backup makes them.
    Identity,
    /// `compress`: a compressed file, without `Content-Encoding`.
    File(Coding),
    /// `Accept-Encoding`: a content coding, told by `Content-Encoding`.
    Content(Coding),
}

impl Encoding {
    pub fn coding(self) -> Option<Coding> {
        match self {
            Encoding::Identity => None,
            Encoding::File(c) | Encoding::Content(c) => Some(c),
        }
    }
}

/// Why no encoding could be chosen: the caller's mistake either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodingError {
    /// `compress=` with a value that names no compression.
    UnknownCompress(String),
    /// `Accept-Encoding` refuses identity and accepts nothing offered.
    NotAcceptable,
}

impl fmt::Display for CodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodingError::UnknownCompress(v) => write!(
                f,
                "invalid compress value {v:?}: use compress (gzip), compress=gzip or compress=zstd"
            ),
            CodingError::NotAcceptable => f.write_str(
                "no acceptable content coding: Accept-Encoding refuses identity, and this \
                 server offers zstd, gzip and identity",
            ),
        }
    }
}

impl std::error::Error for CodingError {}

/// The encoding of a backup answer. `honour_accept_encoding`: false where the answer must not
/// be content-coded (the console's download, whose progress counts the bytes the browser
/// saves). A refusal comes back as the answer to send.
pub fn negotiate(
    req: &HttpRequest,
    params: &QueryParams,
    honour_accept_encoding: bool,
) -> Result<Encoding, Box<HttpResponse>> {
    let fields: Vec<&str> = if honour_accept_encoding {
        accept_encoding_fields(req)
    } else {
        Vec::new()
    };
    choose(params.get("compress"), &fields).map_err(|e| {
        let mut resp = text_error(error_status::content_coding(&e), &e);
        set_vary(&mut resp);
        Box::new(resp)
    })
}

/// The request's `Accept-Encoding` field values (a value that is not visible ASCII is no field).
pub fn accept_encoding_fields(req: &HttpRequest) -> Vec<&str> {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The choice, from the `compress` parameter (`Some("")` when bare) and the `Accept-Encoding`
/// field values.
pub fn choose(compress: Option<&str>, accept_encoding: &[&str]) -> Result<Encoding, CodingError> {
    if let Some(value) = compress {
        return match value.to_ascii_lowercase().as_str() {
            "" | "gzip" | "true" => Ok(Encoding::File(Coding::Gzip)),
            "zstd" => Ok(Encoding::File(Coding::Zstd)),
            _ => Err(CodingError::UnknownCompress(value.to_owned())),
        };
    }
    if accept_encoding.is_empty() {
        return Ok(Encoding::Identity);
    }
    let accepted = Accepted::parse(accept_encoding);
    // Best q first; on a tie the order here decides: identity, then zstd, then gzip.
    let mut best: Option<(u16, Encoding)> = None;
    for (q, encoding) in [
        (accepted.identity_q(), Encoding::Identity),
        (accepted.q(Coding::Zstd), Encoding::Content(Coding::Zstd)),
        (accepted.q(Coding::Gzip), Encoding::Content(Coding::Gzip)),
    ] {
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, encoding));
        }
    }
    best.map(|(_, e)| e).ok_or(CodingError::NotAcceptable)
}

/// q-values in thousandths (`q=0.5` is 500), as the grammar allows three decimals.
const Q_MAX: u16 = 1000;
/// Identity's q when nothing names it (RFC 9110: acceptable by default), and it wins ties.
const Q_IDENTITY_UNNAMED: u16 = Q_MAX;

/// The q-values one `Accept-Encoding` gives: for the codings offered, identity and `*`.
#[derive(Debug, Default)]
struct Accepted {
    zstd: Option<u16>,
    gzip: Option<u16>,
    identity: Option<u16>,
    any: Option<u16>,
}

impl Accepted {
    fn parse(fields: &[&str]) -> Accepted {
        let mut a = Accepted::default();
        for element in fields.iter().flat_map(|f| f.split(',')) {
            let mut parts = element.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let mut q = Some(Q_MAX);
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("q") {
                    q = parse_q(v.trim());
                }
            }
            // A malformed weight makes the element unreadable: it is ignored, not guessed.
            let Some(q) = q else { continue };
            let slot = match name.as_str() {
                "zstd" => &mut a.zstd,
                // RFC 9110 §8.4.1.3: x-gzip is gzip.
                "gzip" | "x-gzip" => &mut a.gzip,
                "identity" => &mut a.identity,
                "*" => &mut a.any,
                _ => continue,
            };
            // Named twice: the first one counts.
            if slot.is_none() {
                *slot = Some(q);
            }
        }
        a
    }

    fn q(&self, coding: Coding) -> u16 {
        let named = match coding {
            Coding::Zstd => self.zstd,
            Coding::Gzip => self.gzip,
        };
        named.or(self.any).unwrap_or(0)
    }

    fn identity_q(&self) -> u16 {
        self.identity
            .or(self.any.filter(|&q| q == 0))
            .unwrap_or(Q_IDENTITY_UNNAMED)
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(Q_MAX),
        _ => None,
    }
}

/// `Vary: Accept-Encoding`: what a cache must key a backup answer on.
pub fn set_vary(resp: &mut HttpResponse) {
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
}

/// The headers an encoding adds to a successful answer (`Content-Encoding` for a content
/// coding; nothing for a compressed file, whose type stays the backup's).
pub fn set_headers(builder: &mut HttpResponseBuilder, encoding: Encoding) {
    if let Encoding::Content(c) = encoding {
        builder.insert_header((header::CONTENT_ENCODING, c.token()));
    }
}

/// The backup body compressed as `coding`, chunk by chunk.
pub fn encode(body: ByteStream, coding: Coding) -> ByteStream {
    match coding {
        Coding::Gzip => Box::pin(gzip_stream(body)),
        Coding::Zstd => Box::pin(zstd_stream(body)),
    }
}

/// gzip (level 1) as a stream: each input chunk is compressed as it arrives, so nothing is
/// buffered beyond the encoder's window. An input error ends the output with that error.
pub fn gzip_stream(input: ByteStream) -> impl Stream<Item = io::Result<Bytes>> {
    encoded(
        input,
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
    )
}

/// zstd (level [`ZSTD_LEVEL`], one frame with a content checksum, as the `zstd` tool writes
/// it) as a stream, on the same terms as [`gzip_stream`]: the frame's end (and checksum) is written
/// only after the input ended cleanly.
pub fn zstd_stream(input: ByteStream) -> impl Stream<Item = io::Result<Bytes>> {
    let encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).and_then(|mut e| {
        e.include_checksum(true)?;
        Ok(e)
    });
    async_stream::try_stream! {
        let mut out = Box::pin(encoded(input, encoder?));
        while let Some(chunk) = out.next().await {
            yield chunk?;
        }
    }
}

/// An encoder that writes into a `Vec` the stream empties as it fills.
trait VecEncoder: Write {
    fn output(&mut self) -> &mut Vec<u8>;
    /// Ends the coding (trailer, checksum): what is left to send.
    fn finish_output(self) -> io::Result<Vec<u8>>;
}

impl VecEncoder for flate2::write::GzEncoder<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn finish_output(self) -> io::Result<Vec<u8>> {
        self.finish()
    }
}

impl VecEncoder for zstd::stream::write::Encoder<'static, Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn finish_output(self) -> io::Result<Vec<u8>> {
        self.finish()
    }
}

/// `input` through `enc`, chunk by chunk: compressed bytes go out as the encoder releases
/// them, and the trailer only after the input ended cleanly (an input error ends the output
/// with it).
fn encoded<E: VecEncoder>(input: ByteStream, mut enc: E) -> impl Stream<Item = io::Result<Bytes>> {
    async_stream::try_stream! {
        let mut input = input;
        while let Some(chunk) = input.next().await {
            enc.write_all(&chunk?)?;
            if !enc.output().is_empty() {
                yield Bytes::from(std::mem::take(enc.output()));
            }
        }
        let rest = enc.finish_output()?;
        if !rest.is_empty() {
            yield Bytes::from(rest);
        }
    }
}

#[cfg(test)]
mod tests;
