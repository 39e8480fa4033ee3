//! Micro-benchmarks of hot paths, with criterion. Later issues add theirs beside this one
//! (the dumper's value formatting, log record encoding) as more `[[bench]]` targets.
//!
//! `json_encode`: rqlite-exact JSON encoding of a 10k-row query result (`encode_response`)
//! and of REAL values alone (`write_float`, Go's float formatting), the per-value cost
//! every query response pays.
//!
//! Run: `cargo bench -p raftlite-bench --bench json_encode`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use raftlite::db::request::{Rows, StatementOutcome, StatementResult};
use raftlite::http::json::{encode_response, write_float, ApiResponse, EncodeOptions};
use raftlite_ffi::Value;

fn ten_thousand_rows() -> Vec<StatementResult> {
    let values = (0..10_000i64)
        .map(|i| {
            vec![
                Value::Integer(i),
                Value::Text(format!("name {i} with \"quotes\" & <html>")),
                Value::Real(i as f64 * 1.25 + 0.001),
                if i % 7 == 0 {
                    Value::Null
                } else {
                    Value::Blob(vec![(i % 256) as u8; 16])
                },
            ]
        })
        .collect();
    vec![StatementResult {
        outcome: StatementOutcome::Rows(Rows {
            columns: vec!["id".into(), "name".into(), "score".into(), "data".into()],
            decltypes: vec![
                Some("INTEGER".into()),
                Some("TEXT".into()),
                Some("REAL".into()),
                Some("BLOB".into()),
            ],
            values,
        }),
        time: 0.0,
    }]
}

fn encode(c: &mut Criterion) {
    let results = ten_thousand_rows();
    let resp = ApiResponse {
        results: &results,
        ..Default::default()
    };
    let mut g = c.benchmark_group("encode_response_10k_rows");
    g.throughput(Throughput::Elements(10_000));
    for (name, opts) in [
        ("array", EncodeOptions::default()),
        (
            "associative",
            EncodeOptions {
                associative: true,
                ..Default::default()
            },
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| encode_response(black_box(&resp), opts)));
    }
    g.finish();

    let floats: Vec<f64> = (0..1_000)
        .map(|i| (i as f64 - 500.0) * 1234.5678 / 7.0)
        .chain([1e-7, 1e21, 0.1, f64::MIN_POSITIVE, 123456789.0])
        .collect();
    let mut g = c.benchmark_group("write_float");
    g.throughput(Throughput::Elements(floats.len() as u64));
    g.bench_function("mixed", |b| {
        let mut out = String::with_capacity(32 * floats.len());
        b.iter(|| {
            out.clear();
            for f in &floats {
                write_float(&mut out, *f);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
