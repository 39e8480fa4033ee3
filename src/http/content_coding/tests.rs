use std::io::Read as _;

use super::*;
use crate::store::backup::CHUNK;

fn chunks(items: Vec<io::Result<Bytes>>) -> ByteStream {
    Box::pin(futures_util::stream::iter(items))
}

/// 8 MiB in 1 MiB chunks of xorshift bytes: barely compressible, so compressed output must
/// go out while the input is still coming.
fn input_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..8 * CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn input_chunks(bytes: &[u8]) -> Vec<io::Result<Bytes>> {
    bytes
        .chunks(CHUNK)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect()
}

fn joined(out: Vec<io::Result<Bytes>>) -> Vec<u8> {
    let mut all = Vec::new();
    for c in out {
        all.extend_from_slice(&c.expect("chunk"));
    }
    all
}

fn failing_input() -> ByteStream {
    chunks(vec![
        Ok(Bytes::from(input_bytes()[..CHUNK].to_vec())),
        Err(io::Error::other("disk gone")),
        Ok(Bytes::from_static(b"never")),
    ])
}

#[tokio::test]
async fn gzip_round_trips_chunk_by_chunk() {
    let input = input_bytes();
    let out: Vec<_> = gzip_stream(chunks(input_chunks(&input))).collect().await;
    assert!(
        out.len() >= 8,
        "output goes out chunk by chunk: {}",
        out.len()
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&joined(out)[..])
        .read_to_end(&mut plain)
        .expect("gunzip");
    assert!(plain == input);
}

#[tokio::test]
async fn zstd_round_trips_chunk_by_chunk() {
    let input = input_bytes();
    let out: Vec<_> = zstd_stream(chunks(input_chunks(&input))).collect().await;
    assert!(
        out.len() >= 8,
        "output goes out chunk by chunk: {}",
        out.len()
    );
    let plain = zstd::decode_all(&joined(out)[..]).expect("unzstd");
    assert!(plain == input);
}

#[tokio::test]
async fn gzip_passes_a_mid_stream_error_on_and_stops() {
    let out: Vec<_> = gzip_stream(failing_input()).collect().await;
    assert!(
        out.last().expect("items").is_err(),
        "the stream must end in the error"
    );
    // Never a clean gzip trailer after an error: the client sees a truncated transfer.
    assert_eq!(out.iter().filter(|c| c.is_err()).count(), 1);
}

#[tokio::test]
async fn zstd_passes_a_mid_stream_error_on_and_stops() {
    let out: Vec<_> = zstd_stream(failing_input()).collect().await;
    let last = out.last().expect("items");
    assert_eq!(
        last.as_ref().err().map(|e| e.to_string()).as_deref(),
        Some("disk gone"),
        "the stream must end in the input's error"
    );
    assert_eq!(out.iter().filter(|c| c.is_err()).count(), 1);
    // What went out before the error is no complete frame: no decoder hands back the chunk.
    let sent: Vec<u8> = out.into_iter().filter_map(Result::ok).flatten().collect();
    let decoded = zstd::decode_all(&sent[..]);
    assert!(
        !matches!(&decoded, Ok(d) if d.len() == CHUNK),
        "a clean frame end after the error"
    );
}

#[tokio::test]
async fn encode_picks_the_coding() {
    let one = || chunks(vec![Ok(Bytes::from_static(b"SELECT 1;\n"))]);
    let gz = joined(encode(one(), Coding::Gzip).collect().await);
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let zs = joined(encode(one(), Coding::Zstd).collect().await);
    assert_eq!(&zs[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(zstd::decode_all(&zs[..]).unwrap(), b"SELECT 1;\n");
}

#[test]
fn compress_values() {
    use Encoding::*;
    for (v, want) in [
        ("", File(Coding::Gzip)),
        ("gzip", File(Coding::Gzip)),
        ("true", File(Coding::Gzip)),
        ("GZIP", File(Coding::Gzip)),
        ("zstd", File(Coding::Zstd)),
        ("Zstd", File(Coding::Zstd)),
    ] {
        assert_eq!(choose(Some(v), &[]), Ok(want), "{v:?}");
        // compress wins over Accept-Encoding.
        assert_eq!(choose(Some(v), &["zstd, gzip"]), Ok(want), "{v:?}");
    }
    for v in ["false", "brotli", "1", "zst"] {
        let err = choose(Some(v), &[]).unwrap_err();
        assert_eq!(err, CodingError::UnknownCompress(v.into()));
        assert!(err.to_string().contains("compress=zstd"), "{err}");
    }
}

#[test]
fn accept_encoding_table() {
    use Encoding::*;
    let gz = Content(Coding::Gzip);
    let zs = Content(Coding::Zstd);
    let table: &[(&[&str], Result<Encoding, CodingError>)] = &[
        (&[], Ok(Identity)),
        (&[""], Ok(Identity)),
        // Identity, acceptable unless refused, wins every tie: a bare coding gets the plain file.
        (&["zstd"], Ok(Identity)),
        (&["gzip"], Ok(Identity)),
        (&["gzip, zstd"], Ok(Identity)),
        (&["gzip, deflate, br, zstd"], Ok(Identity)),
        (&["zstd, identity;q=0.5"], Ok(zs)),
        (&["gzip, identity;q=0.5"], Ok(gz)),
        (&["x-gzip, identity;q=0.5"], Ok(gz)),
        (&["GZip, identity;q=0.5"], Ok(gz)),
        (&["gzip, zstd, identity;q=0.5"], Ok(zs)),
        (&["gzip", "zstd", "identity;q=0.5"], Ok(zs)),
        (&["gzip;q=1.0, zstd;q=0.5, identity;q=0.1"], Ok(gz)),
        (&["gzip ; Q=0.3 , zstd;q=0.2, identity;q=0.1"], Ok(gz)),
        (&["zstd;q=0"], Ok(Identity)),
        (&["gzip;q=0.001, identity;q=0"], Ok(gz)),
        (&["gzip;q=0.5, identity"], Ok(Identity)),
        (&["identity;q=0.5, gzip;q=0.5"], Ok(Identity)),
        (&["identity"], Ok(Identity)),
        (&["*"], Ok(Identity)),
        (&["*, identity;q=0.5"], Ok(zs)),
        (&["*;q=0.5, gzip, identity;q=0.1"], Ok(gz)),
        (&["*, zstd;q=0, identity;q=0.5"], Ok(gz)),
        (&["br, deflate"], Ok(Identity)),
        (&["compress;q=1, foo"], Ok(Identity)),
        (&["identity;q=0, gzip"], Ok(gz)),
        (&["identity;q=0, br"], Err(CodingError::NotAcceptable)),
        (&["*;q=0"], Err(CodingError::NotAcceptable)),
        (&["*;q=0, identity"], Ok(Identity)),
        (
            &["identity;q=0, zstd;q=0, gzip;q=0"],
            Err(CodingError::NotAcceptable),
        ),
        // Malformed weights: the element is ignored.
        (&["zstd;q=2, gzip, identity;q=0.5"], Ok(gz)),
        (&["zstd;q=0.5000, gzip;q=abc, identity;q=0.1"], Ok(Identity)),
        (
            &["zstd;q=1.001, identity;q=0"],
            Err(CodingError::NotAcceptable),
        ),
        // The first of two entries counts.
        (
            &["gzip;q=0.2, zstd;q=0.1, gzip;q=0.05, identity;q=0.01"],
            Ok(gz),
        ),
    ];
    for (fields, want) in table {
        assert_eq!(&choose(None, fields), want, "{fields:?}");
    }
}

#[test]
fn q_values_follow_the_grammar() {
    for (v, want) in [
        ("1", Some(1000)),
        ("1.", Some(1000)),
        ("1.000", Some(1000)),
        ("0", Some(0)),
        ("0.5", Some(500)),
        ("0.05", Some(50)),
        ("0.123", Some(123)),
        ("0.1234", None),
        ("1.5", None),
        ("2", None),
        ("", None),
        ("-0", None),
        (".5", None),
    ] {
        assert_eq!(parse_q(v), want, "{v:?}");
    }
}
