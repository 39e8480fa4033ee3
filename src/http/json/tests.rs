use raftlite_ffi::Value;

use super::*;
use crate::db::request::{Rows, StatementOutcome, StatementResult};

fn float(f: f64) -> String {
    let mut s = String::new();
    write_float(&mut s, f);
    s
}

fn rows(cols: &[&str], decl: &[Option<&str>], values: Vec<Vec<Value>>) -> StatementResult {
    StatementResult {
        outcome: StatementOutcome::Rows(Rows {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            decltypes: decl.iter().map(|d| d.map(str::to_string)).collect(),
            values,
        }),
        time: 0.5,
    }
}

fn encode(results: &[StatementResult], opts: EncodeOptions) -> String {
    encode_response(
        &ApiResponse {
            results,
            ..Default::default()
        },
        opts,
    )
}

#[test]
fn go_float_formatting() {
    assert_eq!(float(3.0), "3");
    assert_eq!(float(-0.0), "-0");
    assert_eq!(float(0.1), "0.1");
    assert_eq!(float(1e21), "1e+21");
    assert_eq!(float(1.5e300), "1.5e+300");
    assert_eq!(float(1e20), "100000000000000000000");
    assert_eq!(float(1e-7), "1e-07");
    assert_eq!(float(1.234e-7), "1.234e-07");
    assert_eq!(float(1e-6), "0.000001");
    assert_eq!(float(123.456), "123.456");
    assert_eq!(float(f64::INFINITY), "1e999");
    assert_eq!(float(f64::NEG_INFINITY), "-1e999");
}

#[test]
fn go_string_escaping() {
    let mut s = String::new();
    write_string(&mut s, "a<b>&\"\\\n\t\u{1}\u{2028}é");
    assert_eq!(s, r#""a\u003cb\u003e\u0026\"\\\n\t\u0001\u2028é""#);
}

#[test]
fn execute_results_omit_zero_fields() {
    let r = vec![
        StatementResult {
            outcome: StatementOutcome::Executed {
                last_insert_id: 0,
                rows_affected: 0,
            },
            time: 0.1,
        },
        StatementResult {
            outcome: StatementOutcome::Executed {
                last_insert_id: 1,
                rows_affected: 1,
            },
            time: 0.1,
        },
        StatementResult::error("no such table: bar"),
    ];
    assert_eq!(
        encode(&r, EncodeOptions::default()),
        r#"{"results":[{},{"last_insert_id":1,"rows_affected":1},{"error":"no such table: bar"}]}"#
    );
}

#[test]
fn query_result_exact_text() {
    let r = vec![rows(
        &["id", "name"],
        &[Some("INTEGER"), Some("TEXT")],
        vec![
            vec![Value::Integer(1), Value::Text("fiona".into())],
            vec![Value::Integer(2), Value::Text("declan".into())],
        ],
    )];
    assert_eq!(
        encode(&r, EncodeOptions::default()),
        r#"{"results":[{"columns":["id","name"],"types":["integer","text"],"values":[[1,"fiona"],[2,"declan"]]}]}"#
    );
    let empty = vec![rows(&["id"], &[Some("INTEGER")], vec![])];
    assert_eq!(
        encode(&empty, EncodeOptions::default()),
        r#"{"results":[{"columns":["id"],"types":["integer"]}]}"#
    );
}

#[test]
fn associative_sorts_keys_and_marks_execute_results() {
    let r = vec![
        rows(
            &["name", "id"],
            &[Some("text"), Some("integer")],
            vec![vec![Value::Text("fiona".into()), Value::Integer(1)]],
        ),
        StatementResult {
            outcome: StatementOutcome::Executed {
                last_insert_id: 2,
                rows_affected: 1,
            },
            time: 0.0,
        },
        rows(&["x"], &[None], vec![]),
    ];
    let opts = EncodeOptions {
        associative: true,
        ..Default::default()
    };
    assert_eq!(
        encode(&r, opts),
        r#"{"results":[{"types":{"id":"integer","name":"text"},"rows":[{"id":1,"name":"fiona"}]},{"last_insert_id":2,"rows_affected":1,"rows":null},{"types":{"x":""},"rows":[]}]}"#
    );
}

#[test]
fn blobs_base64_or_array_and_reals() {
    let r = vec![rows(
        &["3.0", "x'00ff'"],
        &[None, None],
        vec![vec![Value::Real(3.0), Value::Blob(vec![0, 255])]],
    )];
    assert_eq!(
        encode(&r, EncodeOptions::default()),
        r#"{"results":[{"columns":["3.0","x'00ff'"],"types":["real","blob"],"values":[[3,"AP8="]]}]}"#
    );
    let opts = EncodeOptions {
        blob_array: true,
        ..Default::default()
    };
    assert!(encode(&r, opts).contains("[[3,[0,255]]]"));
}

#[test]
fn boolean_and_datetime_columns() {
    let r = vec![rows(
        &["b", "d", "t", "bad"],
        &[
            Some("BOOLEAN"),
            Some("DATETIME"),
            Some("timestamp"),
            Some("date"),
        ],
        vec![
            vec![
                Value::Integer(1),
                Value::Text("2024-01-02 03:04:05".into()),
                Value::Integer(0),
                Value::Text("soon".into()),
            ],
            vec![
                Value::Integer(0),
                Value::Text("2024-01-02T03:04:05.120+02:00".into()),
                Value::Integer(1_700_000_000_123),
                Value::Null,
            ],
        ],
    )];
    let out = encode(&r, EncodeOptions::default());
    assert!(
        out.contains(r#""values":[[true,"2024-01-02T03:04:05Z","1970-01-01T00:00:00Z","soon"],[false,"2024-01-02T03:04:05.12+02:00","2023-11-14T22:13:20.123Z",null]]"#),
        "{out}"
    );
}

#[test]
fn timings_and_envelope_fields() {
    let r = vec![StatementResult {
        outcome: StatementOutcome::Executed {
            last_insert_id: 1,
            rows_affected: 1,
        },
        time: 0.25,
    }];
    let resp = ApiResponse {
        results: &r,
        error: None,
        time: 0.5,
        sequence_number: 0,
        raft_index: 7,
    };
    assert_eq!(
        encode_response(
            &resp,
            EncodeOptions {
                timings: true,
                ..Default::default()
            }
        ),
        r#"{"results":[{"last_insert_id":1,"rows_affected":1,"time":0.25}],"time":0.5,"raft_index":7}"#
    );
    let resp = ApiResponse {
        results: &[],
        error: Some("stale read"),
        ..Default::default()
    };
    assert_eq!(
        encode_response(&resp, EncodeOptions::default()),
        r#"{"results":[],"error":"stale read"}"#
    );
}

#[test]
fn pretty_matches_go_indent() {
    let r = vec![rows(
        &["id"],
        &[Some("integer")],
        vec![vec![Value::Integer(1)]],
    )];
    let out = encode(
        &r,
        EncodeOptions {
            pretty: true,
            ..Default::default()
        },
    );
    assert_eq!(
        out,
        "{\n    \"results\": [\n        {\n            \"columns\": [\n                \"id\"\n            ],\n            \"types\": [\n                \"integer\"\n            ],\n            \"values\": [\n                [\n                    1\n                ]\n            ]\n        }\n    ]\n}"
    );
    assert_eq!(
        indent(r#"{"results":[],"s":"a,b:{"}"#, "    "),
        "{\n    \"results\": [],\n    \"s\": \"a,b:{\"\n}"
    );
}

#[test]
fn sqlite_time_parsing() {
    assert_eq!(
        parse_sqlite_time("2024-02-29").as_deref(),
        Some("2024-02-29T00:00:00Z")
    );
    assert_eq!(parse_sqlite_time("2024-02-30"), None);
    assert_eq!(
        parse_sqlite_time("2024-01-02 03:04").as_deref(),
        Some("2024-01-02T03:04:00Z")
    );
    assert_eq!(
        parse_sqlite_time("2024-01-02T03:04:05Z").as_deref(),
        Some("2024-01-02T03:04:05Z")
    );
    assert_eq!(
        parse_sqlite_time("2024-01-02 03:04:05-07:30").as_deref(),
        Some("2024-01-02T03:04:05-07:30")
    );
    assert_eq!(parse_sqlite_time("2024-01-02 03:04:05 junk"), None);
    assert_eq!(rfc3339_from_unix(-1), "1969-12-31T23:59:59Z");
}
