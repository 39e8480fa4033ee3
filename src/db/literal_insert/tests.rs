use proptest::prelude::*;
use raftlite_ffi::{Connection, OpenFlags};

use super::*;

fn open() -> Connection {
    let conn = Connection::open(
        ":memory:",
        OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::MEMORY,
    )
    .unwrap();
    conn.execute_batch(
        "CREATE TABLE t(a, b INTEGER, c REAL, d TEXT, e BLOB, f NUMERIC);
         CREATE TABLE \"odd \"\"name\"(a PRIMARY KEY, b NOT NULL);
         CREATE TABLE s(a INTEGER, b TEXT) STRICT;",
    )
    .unwrap();
    conn
}

/// Every stored value of every table, as SQLite itself shows it (storage class and exact
/// bytes), in rowid order.
fn contents(conn: &Connection) -> String {
    let mut out = String::new();
    for (table, cols) in [("t", 6), ("\"odd \"\"name\"", 2), ("s", 2)] {
        let exprs: Vec<String> = ["a", "b", "c", "d", "e", "f"][..cols]
            .iter()
            .map(|c| format!("typeof({c}) || ':' || quote({c}) || ':' || hex({c})"))
            .collect();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM {table} ORDER BY rowid",
                exprs.join(" || ' | ' || ")
            ))
            .unwrap();
        while stmt.step().unwrap().is_row() {
            out.push_str(&String::from_utf8_lossy(stmt.column_text(0)));
            out.push('\n');
        }
    }
    out
}

/// Runs `sql` through the fast path: `Err` carries SQLite's error message.
fn run_fast(conn: &Connection, insert: &LiteralInsert<'_>) -> Result<(), String> {
    let mut template = String::new();
    insert.template_into(&mut template);
    let mut stmt = conn.prepare(&template).map_err(|e| e.to_string())?;
    insert.bind(&mut stmt).map_err(|e| e.to_string())?;
    while stmt.step().map_err(|e| e.to_string())?.is_row() {}
    Ok(())
}

/// Runs each statement as text on one connection and through the fast path on another, and
/// checks both databases end up the same (and both agree on which statements fail).
fn assert_same_as_text(statements: &[String]) {
    let (text, fast) = (open(), open());
    for sql in statements {
        let insert = parse(sql).unwrap_or_else(|| panic!("not recognised: {sql}"));
        assert!(is_literal_insert(sql), "{sql}");
        let by_text = text.execute_batch(sql).map_err(|e| e.to_string());
        let by_fast = run_fast(&fast, &insert);
        assert_eq!(
            by_text.is_ok(),
            by_fast.is_ok(),
            "{sql}: {by_text:?} vs {by_fast:?}"
        );
        if let (Err(a), Err(b)) = (&by_text, &by_fast) {
            // The fast path's error names the same constraint (the text's error may add the
            // statement's position, which the template does not have).
            let core = |m: &str| m.split(" (").next().unwrap_or(m).to_string();
            assert_eq!(core(a), core(b), "{sql}");
        }
    }
    assert_eq!(contents(&text), contents(&fast));
}

#[test]
fn recognises_the_dump_shape_and_decodes_values() {
    let sql = "INSERT INTO t VALUES(1,-2,3.5,'it''s',X'00ff',NULL);\n";
    let got = parse(sql).unwrap();
    assert_eq!(got.table, "t");
    assert_eq!(
        got.values,
        vec![
            Literal::Integer(1),
            Literal::Integer(-2),
            Literal::Real("3.5"),
            Literal::Text(Cow::Owned("it's".into())),
            Literal::Blob(vec![0, 255]),
            Literal::Null,
        ]
    );
    let mut template = String::new();
    got.template_into(&mut template);
    assert_eq!(
        template,
        "INSERT INTO t VALUES(?1,?2,CAST(?3 AS REAL),?4,?5,?6)"
    );

    let quoted = parse("insert into \"odd \"\"name\" values(replace(replace('a\\r\\nb','\\r',char(13)),'\\n',char(10)),x'');").unwrap();
    assert_eq!(quoted.table, "\"odd \"\"name\"");
    assert_eq!(
        quoted.values,
        vec![
            Literal::Text(Cow::Owned("a\r\nb".into())),
            Literal::Blob(vec![])
        ]
    );
}

#[test]
fn integers_fold_as_sqlite_folds_them() {
    let one = |v: &str| -> String {
        let sql = format!("INSERT INTO t VALUES({v});");
        format!("{:?}", parse(&sql).unwrap().values[0])
    };
    assert_eq!(one("9223372036854775807"), "Integer(9223372036854775807)");
    assert_eq!(one("-9223372036854775808"), "Integer(-9223372036854775808)");
    assert_eq!(one("0000000000000000000000042"), "Integer(42)");
    assert_eq!(one("-0"), "Integer(0)");
    // Past the 64-bit range SQLite's parser makes a REAL of the digits.
    assert_eq!(one("9223372036854775808"), "Real(\"9223372036854775808\")");
    assert_eq!(
        one("-9223372036854775809"),
        "Real(\"-9223372036854775809\")"
    );
    assert_eq!(one("1e999"), "Real(\"1e999\")");
    assert_eq!(one("1."), "Real(\"1.\")");
}

#[test]
fn leaves_everything_else_to_sqlite() {
    for sql in [
        "INSERT INTO t VALUES(1),(2);",
        "INSERT INTO t(a) VALUES(1);",
        "INSERT INTO main.t VALUES(1);",
        "INSERT INTO t VALUES(1)",
        "INSERT INTO t VALUES(1); -- note",
        "INSERT INTO t VALUES(1); INSERT INTO t VALUES(2);",
        "INSERT INTO t VALUES('a'); INSERT INTO t VALUES('b');",
        "INSERT  INTO t VALUES(1);",
        "INSERT INTO t VALUES (1);",
        "INSERT INTO t VALUES( 1);",
        "INSERT INTO t VALUES();",
        "INSERT INTO t VALUES(0x1f);",
        "INSERT INTO t VALUES(1_000);",
        "INSERT INTO t VALUES(.5);",
        "INSERT INTO t VALUES(1e);",
        "INSERT INTO t VALUES(--1);",
        "INSERT INTO t VALUES(+1);",
        "INSERT INTO t VALUES('open);",
        "INSERT INTO t VALUES(X'abc');",
        "INSERT INTO t VALUES(X'zz');",
        "INSERT INTO t VALUES(NULLX);",
        "INSERT INTO t VALUES(TRUE);",
        "INSERT INTO t VALUES(random());",
        "INSERT INTO t VALUES(replace('a','b',char(0)));",
        "INSERT INTO t VALUES(replace('a','b',char(200)));",
        "INSERT INTO t VALUES(replace('a','b','c'));",
        "INSERT INTO [t] VALUES(1);",
        "INSERT INTO t VALUES(:a);",
        "REPLACE INTO t VALUES(1);",
        "CREATE TABLE x(a);",
    ] {
        assert!(parse(sql).is_none(), "{sql}");
    }
    // Nesting deeper than the limit.
    let mut deep = "'x'".to_string();
    for _ in 0..=MAX_REPLACE_DEPTH {
        deep = format!("replace({deep},'a',char(10))");
    }
    assert!(parse(&format!("INSERT INTO t VALUES({deep});")).is_none());
    // A blob with bad digits still ends the statement (the shape check does not decode).
    assert!(is_literal_insert("INSERT INTO t VALUES(X'zz');"));
    assert!(!is_literal_insert("INSERT INTO t VALUES(1),(2);"));
}

#[test]
fn edge_values_change_the_database_as_the_text_does() {
    let values = [
        "0",
        "-0",
        "-0.0",
        "0.0",
        "1.",
        "007",
        "007.50",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "2.2250738585072013834e-308",
        "4.9406564584124654e-324",
        "1.7976931348623157081e+308",
        "3070.4973470529021142",
        "0.10000000000000000555",
        "1e999",
        "-1e999",
        "1E5",
        "1e-5",
        "''",
        "'it''s'",
        "'日本語 🙂'",
        "'42'",
        "'4.5'",
        "' 7 '",
        "X''",
        "x'DEADbeef'",
        "NULL",
        "null",
        "replace('a\\nb','\\n',char(10))",
        "replace('a\\nb','',char(10))",
        "replace(replace('a\\r\\n\\rb','\\r',char(13)),'\\n',char(10))",
        "replace('x\\012y','\\012',char(10))",
    ];
    let mut statements = Vec::new();
    for v in values {
        // Every affinity: a, b INTEGER, c REAL, d TEXT, e BLOB, f NUMERIC.
        statements.push(format!("INSERT INTO t VALUES({v},{v},{v},{v},{v},{v});"));
    }
    assert_same_as_text(&statements);
}

#[test]
fn errors_are_the_same_as_the_texts() {
    assert_same_as_text(&[
        "INSERT INTO \"odd \"\"name\" VALUES(1,'x');".to_string(),
        // UNIQUE, NOT NULL, STRICT type, then fine again.
        "INSERT INTO \"odd \"\"name\" VALUES(1,'y');".to_string(),
        "INSERT INTO \"odd \"\"name\" VALUES(2,NULL);".to_string(),
        "INSERT INTO s VALUES('abc','x');".to_string(),
        "INSERT INTO s VALUES(1.5,'x');".to_string(),
        "INSERT INTO s VALUES(2,3);".to_string(),
        "INSERT INTO s VALUES(3,'ok');".to_string(),
    ]);
    // A template that does not prepare (wrong count, unknown table) fails as the text would;
    // the script runner then runs the text for SQLite's own message.
    let conn = open();
    for sql in ["INSERT INTO t VALUES(1);", "INSERT INTO nowhere VALUES(1);"] {
        let insert = parse(sql).unwrap();
        assert!(run_fast(&conn, &insert).is_err(), "{sql}");
        assert!(conn.execute_batch(sql).is_err(), "{sql}");
    }
}

/// A value as a dumper writes it, for the property test.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(raftlite_ffi::format_real_20g),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "[0-9]{1,30}",
        "-[0-9]{1,30}\\.[0-9]{0,25}",
        any::<String>().prop_map(|s| shell_text(&s)),
        "[a-z'\n\r\\\\]{0,20}".prop_map(|s| shell_text(&s)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| format!("X'{}'", hex_upper(&b))),
        Just("NULL".to_string()),
    ]
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Text quoted as the `sqlite3` shell's `.dump` writes it: `''` for quotes, and line breaks
/// escaped through `replace(...,'\n',char(10))` (with `\012` when the text holds `\n`).
fn shell_text(s: &str) -> String {
    let s: String = s.chars().filter(|c| *c != '\0').collect();
    let mut body = s.replace('\'', "''");
    let mut wrap = Vec::new();
    for (ch, code, a, b) in [('\r', 13, "\\r", "\\015"), ('\n', 10, "\\n", "\\012")] {
        if body.contains(ch) {
            let token = if s.contains(a) { b } else { a };
            body = body.replace(ch, token);
            wrap.push((token, code));
        }
    }
    let mut out = format!("'{body}'");
    for (token, code) in wrap {
        out = format!("replace({out},'{token}',char({code}))");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_rows_change_the_database_as_the_text_does(
        rows in proptest::collection::vec(proptest::collection::vec(value_text(), 6), 1..8)
    ) {
        let statements: Vec<String> = rows
            .iter()
            .map(|r| format!("INSERT INTO t VALUES({});", r.join(",")))
            .collect();
        assert_same_as_text(&statements);
    }
}
