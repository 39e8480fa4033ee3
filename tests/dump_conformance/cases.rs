//! The hand-written databases of the suite, one [`Case`] each: what it builds, what part of the
//! dump format it exercises, and, when the reference shell's own dump cannot bring the
//! database back, the [`Loss`] that the shell's format causes.
//!
//! Databases are built with our bundled SQLite through `raftlite_ffi`. Its build differs from
//! Debian's `sqlite3` 3.40.1 in ways that matter here: foreign keys are on by default (cases
//! that need violations turn them off) and `ANALYZE` also fills `sqlite_stat4` (see `stat4`).
//! Schema text stays within what 3.40.1 parses, since the reference shell reads every file.

use std::path::Path;

use raftlite_ffi::{Connection, OpenFlags, ValueRef};

use crate::compare::{exactly, Content, SameValue, Val};
use crate::Rng;

/// One database of the suite.
pub struct Case {
    pub name: &'static str,
    /// What it exercises, for the report and the reader.
    pub covers: &'static str,
    /// Creates the database file at the given path (and its `-wal`, for WAL cases).
    pub build: fn(&Path),
    /// Set when the shell's format itself cannot round-trip this database.
    pub loss: Option<Loss>,
}

/// How the shell's own `.dump` + reload loses part of a database. The suite checks that our
/// dump loses exactly this: reloading it gives `expect(original)` (compared with `same`), and
/// not the original itself (so a case that stops being lossy is noticed and its note updated).
pub struct Loss {
    pub why: &'static str,
    /// Turns the original's content into what the reload brings back.
    pub expect: fn(&mut Content),
    /// Value equality after `expect` (exact but for documented relaxations).
    pub same: SameValue,
    /// Part of what the reloading shell prints on stderr; `None`: it prints nothing.
    pub reload_error: Option<&'static str>,
}

/// A database under construction.
pub struct Db {
    pub conn: Connection,
}

impl Db {
    pub fn create(path: &Path) -> Db {
        let conn = Connection::open(path, OpenFlags::READ_WRITE | OpenFlags::CREATE)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Db { conn }
    }

    /// Runs a script; a failure names the script.
    pub fn sql(&self, sql: &str) -> &Db {
        self.bytes(sql.as_bytes())
    }

    /// Runs a script given as bytes (for identifiers that are not UTF-8).
    pub fn bytes(&self, sql: &[u8]) -> &Db {
        if let Err(e) = self.conn.execute_batch_bytes(sql) {
            panic!("build script failed: {e}\n{}", sql.escape_ascii());
        }
        self
    }

    /// Runs `sql` once per row of parameters, in one transaction.
    pub fn rows<'a>(&self, sql: &str, rows: impl IntoIterator<Item = Vec<ValueRef<'a>>>) -> &Db {
        self.sql("BEGIN");
        {
            let mut stmt = self
                .conn
                .prepare(sql)
                .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
            for row in rows {
                for (i, v) in row.iter().enumerate() {
                    stmt.bind_value(i as i32 + 1, *v).unwrap();
                }
                while stmt
                    .step()
                    .unwrap_or_else(|e| panic!("{sql} with {row:?}: {e}"))
                    .is_row()
                {}
                stmt.reset().unwrap();
            }
        }
        self.sql("COMMIT")
    }
}

fn script(path: &Path, sql: &str) {
    Db::create(path).sql(sql);
}

fn text(s: &str) -> ValueRef<'_> {
    ValueRef::Text(s.as_bytes())
}

/// `-0.0` becomes `0.0`: the shell writes both as `0.0`.
fn negative_zero_lost(c: &mut Content) {
    c.map_values(|v| {
        if *v == Val::Real((-0.0f64).to_bits()) {
            *v = Val::Real(0.0f64.to_bits());
        }
    });
}

/// TEXT ends at its first NUL: the shell handles values as C strings.
fn text_cut_at_nul(c: &mut Content) {
    c.map_values(|v| {
        if let Val::Text(t) = v {
            if let Some(i) = t.iter().position(|&b| b == 0) {
                t.truncate(i);
            }
        }
    });
}

/// Nothing survives: a dump that ends in `ROLLBACK` restores an empty database.
fn nothing_survives(c: &mut Content) {
    c.schema.clear();
    c.tables.clear();
}

/// The reference shell's REAL parser (3.40.1) reads literals below about 1e-289 up to one unit
/// in the last place off, and the smallest subnormals as zero; the text we print is exact.
fn tiny_reals_close(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Real(x), Val::Real(y)) => {
            let (fx, fy) = (f64::from_bits(*x), f64::from_bits(*y));
            x == y
                || (fx.abs() < 1e-289 && fx.signum() == fy.signum() && x.abs_diff(*y) <= 1)
                || (fx.is_subnormal() && fy == 0.0)
        }
        _ => a == b,
    }
}

/// Doubles below this magnitude do not survive the reference shell's parser (see
/// [`tiny_reals_close`]); generators keep clear of them outside the `reals_tiny` case.
pub const SMALLEST_SAFE_REAL: f64 = 1e-289;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty",
            covers: "a valid database whose only table was dropped: the dump is just its frame",
            build: |p| script(p, "CREATE TABLE gone(x); DROP TABLE gone;"),
            loss: None,
        },
        Case {
            name: "zero_bytes",
            covers: "a file of 0 bytes, which SQLite reads as an empty database",
            build: |p| std::fs::write(p, b"").unwrap(),
            loss: None,
        },
        Case {
            name: "simple",
            covers: "an INTEGER PRIMARY KEY table with TEXT and REAL columns, and an empty table",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE person(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL);
                     INSERT INTO person VALUES(1,'ada',9.5),(2,'brian',NULL),(3,'chen',7.0);
                     CREATE TABLE nothing_yet(a, b);",
                )
            },
            loss: None,
        },
        Case {
            name: "storage_classes",
            covers: "every storage class in an untyped column and under each affinity, \
                     including the declared types whose affinity surprises (FLOATING POINT is \
                     INTEGER, STRING is NUMERIC)",
            build: storage_classes,
            loss: None,
        },
        Case {
            name: "empty_vs_null",
            covers: "'' and NULL and x'' and zeroblob(0) kept apart, in every affinity, in \
                     UNIQUE and non-integer PRIMARY KEY columns",
            build: |p| {
                let db = Db::create(p);
                db.sql(
                    "CREATE TABLE e(id INTEGER PRIMARY KEY, u, t TEXT, n NUMERIC, i INTEGER,
                                    r REAL, b BLOB);
                     CREATE TABLE k(key TEXT PRIMARY KEY, v);
                     CREATE TABLE u(a UNIQUE, b BLOB UNIQUE);",
                );
                let vals = [
                    ValueRef::Null,
                    text(""),
                    ValueRef::Blob(b""),
                    ValueRef::Blob(&[0]),
                ];
                db.rows(
                    "INSERT INTO e(u,t,n,i,r,b) VALUES(?1,?1,?1,?1,?1,?1)",
                    vals.iter().map(|v| vec![*v]),
                );
                db.rows("INSERT INTO k VALUES(?1, 1)", vals.iter().map(|v| vec![*v]));
                db.rows(
                    "INSERT INTO u VALUES(?1, ?1)",
                    vals.iter().map(|v| vec![*v]),
                );
                db.sql("INSERT INTO e(u) VALUES(zeroblob(0)), (''), (NULL);");
            },
            loss: None,
        },
        Case {
            name: "text_escapes",
            covers: "quotes, LF, CR, CRLF, control bytes, backslashes, the literal text \\n next \
                     to a real newline (the shell then marks newlines \\012, or (\\n0) when both \
                     forms occur), SQL comment markers, long lines",
            build: text_escapes,
            loss: None,
        },
        Case {
            name: "text_nul",
            covers: "TEXT with NUL bytes at the start, middle and end",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, anything, len INT)");
                let vals: [&[u8]; 5] = [b"a\0b", b"\0first", b"last\0", b"two\0\0nuls\0", b"\0"];
                db.rows(
                    "INSERT INTO t(s, anything, len) VALUES(?1, ?1, ?2)",
                    vals.iter()
                        .map(|v| vec![ValueRef::Text(v), ValueRef::Integer(v.len() as i64)]),
                );
            },
            loss: Some(Loss {
                why: "TEXT is cut at its first NUL byte (the shell writes C strings)",
                expect: text_cut_at_nul,
                same: exactly,
                reload_error: None,
            }),
        },
        Case {
            name: "text_invalid_utf8",
            covers: "TEXT that is not UTF-8 (lone continuation bytes, truncated sequences, \
                     overlong forms, surrogates, bytes next to quotes and newlines): written \
                     and reloaded byte for byte",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, u, note)");
                let vals: [&[u8]; 14] = [
                    b"\xff",
                    b"\xc3(",
                    b"\x80",
                    b"\xe2\x82",
                    b"\xf0\x9f\x98",
                    b"\xc0\xaf",
                    b"\xed\xa0\x80",
                    b"\xf4\x90\x80\x80",
                    b"A\xffB",
                    b"caf\xe9",
                    b"\xfe\xff",
                    b"'\xff'",
                    b"\n\xff\r",
                    b"\xff\\n\n",
                ];
                db.rows(
                    "INSERT INTO t(s, u, note) VALUES(?1, ?1, hex(?1))",
                    vals.iter().map(|v| vec![ValueRef::Text(v)]),
                );
            },
            loss: None,
        },
        Case {
            name: "text_unicode",
            covers: "valid non-ASCII text: accents (composed and combining), CJK, Hangul, emoji \
                     and ZWJ sequences, right-to-left scripts, a BOM, U+FFFD, U+10FFFF, \
                     invisible spaces, NEL/LS/PS line breaks",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)");
                let vals = [
                    "caf\u{e9}",
                    "cafe\u{301}",
                    "\u{65e5}\u{672c}\u{8a9e}",
                    "\u{d55c}\u{ad6d}\u{c5b4}",
                    "\u{1f600}\u{1f680}",
                    "\u{1f469}\u{200d}\u{1f52c}",
                    "\u{5e9}\u{5dc}\u{5d5}\u{5dd}",
                    "\u{645}\u{631}\u{62d}\u{628}\u{627}",
                    "\u{feff}bom",
                    "\u{fffd}",
                    "\u{10ffff}",
                    "\u{a0}nbsp\u{200b}zwsp",
                    "nel\u{85}ls\u{2028}ps\u{2029}",
                    "\u{130}stanbul \u{df}\u{1e9e}",
                ];
                db.rows(
                    "INSERT INTO t(s) VALUES(?1)",
                    vals.iter().map(|v| vec![text(v)]),
                );
            },
            loss: None,
        },
        Case {
            name: "integers",
            covers: "0, \u{b1}1, 8/16/32/53/63-bit limits in untyped, INTEGER, REAL, TEXT and \
                     NUMERIC columns, and INTEGER PRIMARY KEY at both ends of its range",
            build: |p| {
                let db = Db::create(p);
                db.sql(
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, v, i INTEGER, r REAL, s TEXT, \
                     n NUMERIC);
                     CREATE TABLE ends(id INTEGER PRIMARY KEY, note);",
                );
                let vals: Vec<i64> = vec![
                    0,
                    1,
                    -1,
                    127,
                    -128,
                    32767,
                    -32768,
                    i32::MAX as i64,
                    i32::MIN as i64,
                    1 << 32,
                    (1 << 53) - 1,
                    1 << 53,
                    (1 << 53) + 1,
                    -(1 << 53) - 1,
                    1 << 62,
                    i64::MAX,
                    i64::MIN,
                    i64::MIN + 1,
                    1_000_000_000_000_000_000,
                    1_234_567_890_123_456_789,
                ];
                db.rows(
                    "INSERT INTO t(v,i,r,s,n) VALUES(?1,?1,?1,?1,?1)",
                    vals.iter().map(|v| vec![ValueRef::Integer(*v)]),
                );
                db.rows(
                    "INSERT INTO ends VALUES(?1, ?1)",
                    [i64::MIN, -1, 0, i64::MAX]
                        .iter()
                        .map(|v| vec![ValueRef::Integer(*v)]),
                );
            },
            loss: None,
        },
        Case {
            name: "reals",
            covers: "ordinary REALs: short and long fractions, thirds, pi, e, 0.1+0.2, 1e15 to \
                     1e23, \u{b1}2^63, 2^64, DBL_MAX, \u{b1}infinity, in untyped and REAL columns",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v, r REAL, shown TEXT)");
                let vals = [
                    0.0,
                    0.1,
                    0.2,
                    0.3,
                    1.0,
                    -1.0,
                    1.5,
                    -2.5,
                    100.0,
                    1e15,
                    1e16,
                    1e17,
                    1e20,
                    1e21,
                    1e22,
                    1e23,
                    123_456_789.123_456_79,
                    1.0 / 3.0,
                    2.0 / 3.0,
                    std::f64::consts::PI,
                    std::f64::consts::E,
                    1e-5,
                    1e-7,
                    0.000123,
                    9007199254740992.0,
                    9007199254740994.0,
                    9223372036854775808.0,
                    -9223372036854775808.0,
                    18446744073709551616.0,
                    f64::MAX,
                    f64::MIN,
                    1e-200,
                    1e-280,
                    1e300,
                    4.35,
                    0.1 + 0.2,
                    12345.678,
                    99.99,
                    -0.5,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ];
                db.rows(
                    "INSERT INTO t(v, r, shown) VALUES(?1, ?1, ?2)",
                    vals.iter()
                        .map(|v| vec![ValueRef::Real(*v), ValueRef::Null]),
                );
                db.sql("UPDATE t SET shown = printf('%!.20g', v)");
            },
            loss: None,
        },
        Case {
            name: "real_boundaries",
            covers: "REALs where the printed form changes: integral values (written as N.0) up \
                     to and past \u{b1}2^63, fractions next to 2^52 and 2^53, 1e15..1e17 with \
                     fractions, the largest double below 1, integral REALs under INTEGER, \
                     NUMERIC and TEXT affinity, text that looks like a REAL",
            build: |p| {
                let db = Db::create(p);
                db.sql(
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, v, r REAL, i INTEGER, n NUMERIC, \
                     s TEXT)",
                );
                let two52 = 4503599627370496.0f64;
                let mut vals = vec![
                    two52 - 0.5,
                    two52 + 0.5,
                    two52 * 2.0 - 1.0,
                    two52 * 2.0 + 2.0,
                    999999999999999.9,
                    1e15 + 0.25,
                    1e16 + 2.0,
                    99999999999999999.0,
                    123456789012345.67,
                    // The doubles next to 2^63, where the C cast to int64 overflows.
                    f64::from_bits(0x43df_ffff_ffff_ffff),
                    2f64.powi(63),
                    -2f64.powi(63),
                    f64::from_bits(0x43e0_0000_0000_0001),
                    1.0 - f64::EPSILON / 2.0,
                    1.0 + f64::EPSILON,
                    1e-288,
                    3.0,
                    -3.0,
                    1e100,
                    1.7976931348623157e308,
                ];
                for e in 14..=18 {
                    let base = 10f64.powi(e);
                    vals.extend([base - 1.0, base + 1.0, base * 1.5, base + 0.5]);
                }
                db.rows(
                    "INSERT INTO t(v,r,i,n,s) VALUES(?1,?1,?1,?1,?1)",
                    vals.iter().map(|v| vec![ValueRef::Real(*v)]),
                );
                db.sql(
                    "INSERT INTO t(v,r,i,n,s) VALUES('3.0','3.0','3.0','3.0','3.0'),
                        ('1e3','1e3','1e3','1e3','1e3'), ('-0','-0','-0','-0','-0'),
                        ('9223372036854775808','9223372036854775808','9223372036854775808',
                         '9223372036854775808','9223372036854775808');",
                );
            },
            loss: None,
        },
        Case {
            name: "reals_random",
            covers: "3000 doubles drawn from random bit patterns (every exponent above 1e-289, \
                     both signs): each must come back with the same bits",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v, r REAL)");
                let mut rng = Rng::new(0x5eed_f00d);
                let mut vals = Vec::new();
                while vals.len() < 3000 {
                    let v = f64::from_bits(rng.next_u64());
                    if v.is_finite() && (v == 0.0 || v.abs() >= SMALLEST_SAFE_REAL) {
                        vals.push(if v == 0.0 { 0.0 } else { v });
                    }
                }
                db.rows(
                    "INSERT INTO t(v, r) VALUES(?1, ?1)",
                    vals.iter().map(|v| vec![ValueRef::Real(*v)]),
                );
            },
            loss: None,
        },
        Case {
            name: "real_negzero",
            covers: "-0.0 in an untyped column, next to 0.0",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
                db.rows(
                    "INSERT INTO t(v) VALUES(?1)",
                    [-0.0, 0.0].iter().map(|v| vec![ValueRef::Real(*v)]),
                );
            },
            loss: Some(Loss {
                why: "-0.0 is written as 0.0: the sign of zero is lost",
                expect: negative_zero_lost,
                same: exactly,
                reload_error: None,
            }),
        },
        Case {
            name: "reals_tiny",
            covers: "the smallest normal doubles, subnormals down to 4.9e-324, and random values \
                     below 1e-289",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
                let mut vals = vec![
                    f64::MIN_POSITIVE,
                    -f64::MIN_POSITIVE,
                    f64::from_bits(1),
                    -f64::from_bits(1),
                    f64::from_bits(0x000f_ffff_ffff_ffff),
                    1e-310,
                    1e-300,
                    1e-290,
                ];
                let mut rng = Rng::new(424242);
                while vals.len() < 200 {
                    let v = f64::from_bits(rng.next_u64());
                    if v != 0.0 && v.abs() < SMALLEST_SAFE_REAL {
                        vals.push(v);
                    }
                }
                db.rows(
                    "INSERT INTO t(v) VALUES(?1)",
                    vals.iter().map(|v| vec![ValueRef::Real(*v)]),
                );
            },
            loss: Some(Loss {
                why: "sqlite3 3.40.1 parses REAL literals below ~1e-289 up to 1 ulp off, and the \
                      smallest subnormals as 0.0 (the digits we write are exact)",
                expect: |_| {},
                same: tiny_reals_close,
                reload_error: None,
            }),
        },
        Case {
            name: "nan_and_infinity",
            covers: "infinities in every affinity, a NaN bound as REAL (SQLite stores NULL), the \
                     bytes of NaNs and infinities as BLOBs, text spelling Inf and NaN",
            build: |p| {
                let db = Db::create(p);
                db.sql(
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, v, r REAL, i INTEGER, n NUMERIC, \
                     s TEXT, b BLOB)",
                );
                let nan_bits = [
                    f64::NAN.to_bits().to_be_bytes(),
                    0x7ff0_0000_0000_0001u64.to_be_bytes(),
                    0xfff8_0000_0000_0000u64.to_be_bytes(),
                    f64::INFINITY.to_bits().to_le_bytes(),
                ];
                let mut rows: Vec<Vec<ValueRef>> = vec![
                    vec![ValueRef::Real(f64::INFINITY)],
                    vec![ValueRef::Real(f64::NEG_INFINITY)],
                    vec![ValueRef::Real(f64::NAN)],
                    vec![text("Inf")],
                    vec![text("-inf")],
                    vec![text("NaN")],
                ];
                rows.extend(nan_bits.iter().map(|b| vec![ValueRef::Blob(b)]));
                db.rows("INSERT INTO t(v,r,i,n,s,b) VALUES(?1,?1,?1,?1,?1,?1)", rows);
                db.sql("INSERT INTO t(v, r) VALUES(1e999, -1e999), (9e999 - 9e999, 0);");
            },
            loss: None,
        },
        Case {
            name: "blobs",
            covers: "BLOBs: empty, all 256 byte values, NULs, a quote, zeroblob, 64 KiB of random \
                     bytes, and BLOBs in INTEGER and TEXT columns",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b, i INTEGER, s TEXT)");
                let all: Vec<u8> = (0..=255).collect();
                let mut rng = Rng::new(7);
                let random: Vec<u8> = (0..65536).map(|_| rng.next_u64() as u8).collect();
                let vals: [&[u8]; 8] = [
                    b"",
                    &all,
                    b"\0",
                    &[0; 16],
                    b"'",
                    b"hello",
                    "\u{e9}".as_bytes(),
                    &random,
                ];
                db.rows(
                    "INSERT INTO t(b,i,s) VALUES(?1,?1,?1)",
                    vals.iter().map(|v| vec![ValueRef::Blob(v)]),
                );
                db.sql("INSERT INTO t(id, b) VALUES(100, zeroblob(10));");
            },
            loss: None,
        },
        Case {
            name: "nulls",
            covers: "rows of NULLs only, NULL in a TEXT PRIMARY KEY (allowed in rowid tables), \
                     several NULLs under UNIQUE",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(a, b, c);
                     INSERT INTO t VALUES(NULL,NULL,NULL),(NULL,NULL,NULL),(1,NULL,'x');
                     CREATE TABLE pk(k TEXT PRIMARY KEY, v);
                     INSERT INTO pk VALUES(NULL,1),(NULL,2),('a',3);
                     CREATE TABLE u(a UNIQUE, b);
                     INSERT INTO u VALUES(NULL,1),(NULL,2);",
                )
            },
            loss: None,
        },
        Case {
            name: "quoted_names",
            covers: "table and column names that need quotes: spaces, keywords (bare after \
                     INSERT INTO only when not a keyword), quote characters of every kind, \
                     leading digits, punctuation, non-ASCII, a newline; and names that look \
                     special but are not keywords (rowid, true, main)",
            build: quoted_names,
            loss: None,
        },
        Case {
            name: "sqlite_like_names",
            covers: "ordinary tables whose names resemble SQLite's internal ones (sqlite, \
                     sqlitex, _sqlite_sequence, \"sqlite stat1\", sqlite-stat4): the shell \
                     skips only names that start with sqlite_",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE sqlite(a); INSERT INTO sqlite VALUES(1);
                     CREATE TABLE sqlitex(a); INSERT INTO sqlitex VALUES(2);
                     CREATE TABLE _sqlite_sequence(name, seq);
                     INSERT INTO _sqlite_sequence VALUES('t', 3);
                     CREATE TABLE \"sqlite stat1\"(a); INSERT INTO \"sqlite stat1\" VALUES(4);
                     CREATE TABLE \"sqlite-stat4\"(a); INSERT INTO \"sqlite-stat4\" VALUES(5);
                     CREATE TABLE \"Sqlite\"\"_x\"(a); INSERT INTO \"Sqlite\"\"_x\" VALUES(6);",
                )
            },
            loss: None,
        },
        Case {
            name: "names_invalid_utf8",
            covers: "a table, its columns, an index and a view named with bytes that are not \
                     UTF-8 (SQLite takes any byte >= 0x80 in an identifier)",
            build: |p| {
                Db::create(p).bytes(
                    b"CREATE TABLE \"t\xff\xfe\"(\"c\xe9\", \"d\x80e\" TEXT, plain);
                      INSERT INTO \"t\xff\xfe\" VALUES(1, 'x', 2.5), (NULL, '\xff', x'00');
                      CREATE INDEX \"i\xff\" ON \"t\xff\xfe\"(\"c\xe9\");
                      CREATE TABLE \xc3\xa9t\xe9(a); INSERT INTO \xc3\xa9t\xe9 VALUES('bare');
                      CREATE VIEW \"v\xff\" AS SELECT \"d\x80e\" FROM \"t\xff\xfe\";",
                );
            },
            loss: None,
        },
        Case {
            name: "reserved_names",
            covers: "tables renamed into SQLite's reserved namespace through writable_schema: \
                     sqlite_own (the shell skips every table starting with sqlite_) and \
                     SQLITE_UPPER (its test is case-sensitive, so the shell dumps it, and the \
                     reload refuses the name)",
            build: |p| {
                let db = Db::create(p);
                db.sql(
                    "CREATE TABLE own(a, b); INSERT INTO own VALUES(1, 'hidden');
                     CREATE TABLE upper(a); INSERT INTO upper VALUES('dumped, not reloaded');
                     CREATE TABLE plain(a); INSERT INTO plain VALUES('kept');
                     PRAGMA writable_schema=ON;
                     UPDATE sqlite_schema SET name='sqlite_own', tbl_name='sqlite_own',
                        sql='CREATE TABLE sqlite_own(a, b)' WHERE name='own';
                     UPDATE sqlite_schema SET name='SQLITE_UPPER', tbl_name='SQLITE_UPPER',
                        sql='CREATE TABLE SQLITE_UPPER(a)' WHERE name='upper';
                     PRAGMA writable_schema=OFF;",
                );
            },
            loss: Some(Loss {
                why: "tables named sqlite_* are never dumped; SQLITE_* ones are dumped but their \
                      names are refused on reload",
                expect: |c| {
                    c.drop_table("sqlite_own");
                    c.drop_table("SQLITE_UPPER");
                },
                same: exactly,
                reload_error: Some("object name reserved for internal use: SQLITE_UPPER"),
            }),
        },
        Case {
            name: "autoincrement",
            covers: "AUTOINCREMENT tables with gaps, with their last row deleted, emptied, never \
                     used, jumped ahead by an explicit id; sqlite_sequence comes after every \
                     other table",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
                     INSERT INTO a(v) VALUES('one'),('two'),('three'),('four');
                     DELETE FROM a WHERE id IN (2, 4);
                     CREATE TABLE b(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                     INSERT INTO b(v) VALUES(1),(2); DELETE FROM b;
                     CREATE TABLE c(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                     CREATE TABLE \"d q\"(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                     INSERT INTO \"d q\"(id, v) VALUES(1000, 'jump');
                     CREATE TABLE later(x); INSERT INTO later VALUES('made after sqlite_sequence');",
                )
            },
            loss: None,
        },
        Case {
            name: "autoincrement_edited",
            covers: "sqlite_sequence edited by hand: a counter set far ahead, one set below the \
                     table's largest id, a TEXT counter, a row for a table that does not exist, \
                     a negative counter",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                     CREATE TABLE b(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                     CREATE TABLE c(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                     INSERT INTO a(v) VALUES('x'),('y'); INSERT INTO b(v) VALUES('x'),('y'),('z');
                     INSERT INTO c(v) VALUES(1);
                     UPDATE sqlite_sequence SET seq = 1000000 WHERE name = 'a';
                     UPDATE sqlite_sequence SET seq = 1 WHERE name = 'b';
                     UPDATE sqlite_sequence SET seq = 'forty-two' WHERE name = 'c';
                     INSERT INTO sqlite_sequence VALUES('no_such_table', 7), ('neg', -5);",
                )
            },
            loss: None,
        },
        Case {
            name: "autoincrement_dropped",
            covers: "an AUTOINCREMENT table dropped: sqlite_sequence is left, empty, with no \
                     AUTOINCREMENT table to recreate it",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE gone(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                     INSERT INTO gone(v) VALUES(1);
                     CREATE TABLE keep(x); INSERT INTO keep VALUES(1);
                     DROP TABLE gone;",
                )
            },
            loss: Some(Loss {
                why: "the dump's `DELETE FROM sqlite_sequence;` finds no such table on reload, so \
                      the empty sqlite_sequence is not recreated",
                expect: |c| c.drop_table("sqlite_sequence"),
                same: exactly,
                reload_error: Some("no such table: sqlite_sequence"),
            }),
        },
        Case {
            name: "indexes",
            covers: "UNIQUE, multi-column, DESC, partial, expression and COLLATE indexes, a \
                     quoted index name, a composite PRIMARY KEY's automatic index",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, email TEXT, age INT, data);
                     CREATE UNIQUE INDEX t_email ON t(email);
                     CREATE INDEX t_name_age ON t(name, age DESC);
                     CREATE INDEX t_adults ON t(age) WHERE age IS NOT NULL AND age >= 18;
                     CREATE INDEX t_expr ON t(lower(name), length(email));
                     CREATE INDEX t_nocase ON t(name COLLATE NOCASE);
                     CREATE INDEX \"index with space\" ON t(\"name\");
                     CREATE TABLE u(a TEXT UNIQUE, b INT, c, PRIMARY KEY(b, c));
                     INSERT INTO t VALUES(1,'Ann','ann@x',30,x'01'),(2,'bob','bob@x',NULL,NULL),
                                         (3,'Cy','cy@x',12,'d');
                     INSERT INTO u VALUES('a',1,2),('b',1,3);",
                )
            },
            loss: None,
        },
        Case {
            name: "views",
            covers: "a view on a view that was dropped and made again (so it comes later in \
                     sqlite_schema), a view with a comment (ends in \\n;), quoted names, a \
                     column list",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(x, y); INSERT INTO t VALUES(1,'a'),(2,'b');
                     CREATE VIEW v1 AS SELECT x FROM t;
                     CREATE VIEW v2 AS SELECT x * 2 AS twice FROM v1;
                     DROP VIEW v1;
                     CREATE VIEW v1 AS SELECT x FROM t WHERE x > 0;
                     CREATE VIEW \"my view\" AS SELECT y AS \"the y\" FROM t -- keep the comment
                       WHERE y <> 'z';
                     CREATE VIEW named(a, b) AS SELECT x, y FROM t;",
                )
            },
            loss: None,
        },
        Case {
            name: "triggers",
            covers: "AFTER, BEFORE and INSTEAD OF triggers, WHEN, UPDATE OF, RAISE, a comment \
                     inside the body; rows the triggers wrote are data, and the triggers are \
                     made after the rows on reload so they do not fire again",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, v);
                     CREATE TABLE log(id INTEGER PRIMARY KEY, msg TEXT);
                     CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN
                       INSERT INTO log(msg) VALUES('insert ' || new.id); -- logged
                     END;
                     CREATE TRIGGER t_bu BEFORE UPDATE OF v ON t WHEN new.v IS NULL BEGIN
                       SELECT RAISE(ABORT, 'v may not become NULL');
                     END;
                     CREATE VIEW tv AS SELECT id, v FROM t;
                     CREATE TRIGGER tv_ii INSTEAD OF INSERT ON tv BEGIN
                       INSERT INTO t VALUES(new.id, new.v);
                     END;
                     INSERT INTO t VALUES(1,'a'),(2,'b');
                     INSERT INTO tv VALUES(3,'through the view');",
                )
            },
            loss: None,
        },
        Case {
            name: "object_order",
            covers: "objects that refer to objects made after them: a view on a later view, a \
                     trigger writing into a later table, an index on a table renamed after it \
                     was made, a view rewritten by ALTER TABLE RENAME, tables recreated so that \
                     sqlite_schema's rowid order differs from name order",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(a, b); INSERT INTO t VALUES(1, 2);
                     CREATE VIEW early AS SELECT * FROM late;
                     CREATE VIEW late AS SELECT a FROM t;
                     CREATE TRIGGER into_later AFTER INSERT ON t BEGIN
                       INSERT INTO made_later VALUES(new.a);
                     END;
                     CREATE TABLE made_later(x);
                     CREATE TABLE old_name(k INTEGER PRIMARY KEY, v);
                     CREATE INDEX on_old ON old_name(v);
                     CREATE VIEW uses_old AS SELECT v FROM old_name;
                     INSERT INTO old_name VALUES(1, 'renamed');
                     ALTER TABLE old_name RENAME TO new_name;
                     CREATE TABLE z(a); CREATE TABLE y(a); DROP TABLE z; CREATE TABLE z(b);
                     INSERT INTO z VALUES('z after y');",
                )
            },
            loss: None,
        },
        Case {
            name: "create_text_odd",
            covers:
                "CREATE text as typed: comments of both kinds inside, tabs, lone CRs, blank lines, \
                     odd spacing, quoted names in every quote style (\"x\" and 'x' become \
                     IF NOT EXISTS), comments in index, view and trigger text, the text SQLite \
                     writes for CREATE TABLE ... AS SELECT",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE c1(a -- why a
                        , b /* and b */ ,
                        c);
                     CREATE   TABLE\t\"c2\"\t(\ta\tINTEGER ,\r b\r);
                     CREATE TABLE 'c3'(x);
                     CREATE TABLE [c4](x);
                     CREATE TABLE `c5`(x);
                     CREATE TABLE c6(x

                        DEFAULT 'a -- not a comment /* nor this */');
                     CREATE INDEX c1_a ON c1(a /* by a */
                       );
                     CREATE VIEW c7 AS SELECT 1 /* one */ AS one;
                     CREATE TRIGGER c8 AFTER INSERT ON c1 BEGIN SELECT 1; /* done */ END;
                     INSERT INTO c1 VALUES(1,2,3); INSERT INTO \"c2\" VALUES(4,5);
                     INSERT INTO c6 DEFAULT VALUES;
                     CREATE TABLE c9 AS SELECT 1 AS \"a b\", 'x' AS [c], 2.5 AS \"order\";",
                )
            },
            loss: None,
        },
        Case {
            name: "create_text_reshaped",
            covers: "CREATE text that the reload cannot give back as it was: CRLF line ends in \
                     a table's text, a `--` comment in an index's text",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE crlf(a,\r\n  b\r\n);
                     INSERT INTO crlf VALUES(1, 2);
                     CREATE INDEX commented ON crlf(a -- by a
                        , b);",
                )
            },
            loss: Some(Loss {
                why: "the shell's line reader drops the CR of every CRLF it reads, and an index \
                      text holding `--` is written as `text\\n;`, whose newline SQLite keeps \
                      as part of the index's text",
                expect: |c| {
                    for row in &mut c.schema {
                        let is_index = row[0] == Val::Text(b"index".to_vec());
                        if let Val::Text(sql) = &mut row[3] {
                            let text = String::from_utf8(sql.clone()).unwrap();
                            let mut text = text.replace("\r\n", "\n");
                            if is_index && text.contains("--") {
                                text.push('\n');
                            }
                            *sql = text.into_bytes();
                        }
                    }
                    c.schema.sort();
                },
                same: exactly,
                reload_error: None,
            }),
        },
        Case {
            name: "create_text_open_comment",
            covers: "schema rows edited through writable_schema so that their CREATE text ends \
                     inside a comment: the shell completes the statement with a newline or */",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE w1(a); INSERT INTO w1 VALUES(1);
                     CREATE TABLE w2(a); INSERT INTO w2 VALUES(2);
                     PRAGMA writable_schema=ON;
                     UPDATE sqlite_schema SET sql = sql || ' -- open line comment'
                        WHERE name = 'w1';
                     UPDATE sqlite_schema SET sql = sql || ' /* open block comment'
                        WHERE name = 'w2';
                     PRAGMA writable_schema=OFF;",
                )
            },
            loss: Some(Loss {
                why: "SQLite keeps a table's CREATE text only up to its closing parenthesis: the \
                      reloaded schema rows lose the trailing comment",
                expect: |c| {
                    for row in &mut c.schema {
                        if let Val::Text(sql) = &mut row[3] {
                            if let Some(i) =
                                sql.windows(4).position(|w| w == b" -- " || w == b" /* ")
                            {
                                sql.truncate(i);
                            }
                        }
                    }
                    c.schema.sort();
                },
                same: exactly,
                reload_error: None,
            }),
        },
        Case {
            name: "without_rowid",
            covers: "WITHOUT ROWID tables: TEXT key, compound keys in declared and reversed \
                     order, DESC and NOCASE key columns, an INTEGER PRIMARY KEY that is no \
                     rowid alias, BLOB keys, keys that are not UTF-8",
            build: |p| {
                let db = Db::create(p);
                db.sql(
                    "CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
                     CREATE TABLE comp(a INT, b TEXT, c, PRIMARY KEY(b, a)) WITHOUT ROWID;
                     CREATE TABLE ordered(a INT, b TEXT COLLATE NOCASE, c,
                                          PRIMARY KEY(a DESC, b)) WITHOUT ROWID;
                     CREATE TABLE ipk(id INTEGER PRIMARY KEY, v) WITHOUT ROWID;
                     CREATE TABLE bk(k BLOB PRIMARY KEY, v) WITHOUT ROWID;
                     INSERT INTO kv VALUES('z',1),('a',2),('m',x'00'),('',NULL);
                     INSERT INTO comp VALUES(2,'x',NULL),(1,'x',1.5),(3,'a','t');
                     INSERT INTO ordered VALUES(1,'B',1),(1,'a',2),(2,'b',3),(-1,'',4);
                     INSERT INTO ipk VALUES(10,'ten'),(-5,'minus five');
                     INSERT INTO bk VALUES(x'',1),(x'00',2),(x'ff00',3);",
                );
                let keys: [&[u8]; 3] = [b"\xff", b"\xfe\xff", b"ok"];
                db.rows(
                    "INSERT INTO kv VALUES(?1, hex(?1))",
                    keys.iter().map(|k| vec![ValueRef::Text(k)]),
                );
            },
            loss: None,
        },
        Case {
            name: "strict",
            covers: "STRICT tables (INT, REAL, TEXT, BLOB, ANY), STRICT and WITHOUT ROWID \
                     together, integral values in a REAL column of a STRICT table",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE s(id INTEGER PRIMARY KEY, i INT, r REAL, t TEXT, b BLOB, a ANY)
                        STRICT;
                     INSERT INTO s VALUES(1, 5, 2.5, 'x', x'ff', 'text');
                     INSERT INTO s VALUES(2, NULL, 3, NULL, NULL, 7);
                     INSERT INTO s VALUES(3, -1, 1e100, '3', x'', 1.25);
                     INSERT INTO s VALUES(4, 0, 0, '', NULL, x'0102');
                     CREATE TABLE sw(k TEXT PRIMARY KEY, v ANY) STRICT, WITHOUT ROWID;
                     INSERT INTO sw VALUES('a', '1'), ('b', 1), ('c', 1.0), ('d', 1.5);",
                )
            },
            loss: None,
        },
        Case {
            name: "generated_columns",
            covers: "VIRTUAL and STORED generated columns, first, in the middle and last (their \
                     values are not dumped; the INSERT has no column list), and ALTER TABLE ADD \
                     COLUMN with defaults over existing rows",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE g(
                        first INT AS (id * 10),
                        id INTEGER PRIMARY KEY,
                        a INT,
                        twice INT GENERATED ALWAYS AS (a * 2) VIRTUAL,
                        b TEXT,
                        up TEXT AS (upper(b)) STORED,
                        c REAL);
                     INSERT INTO g(id,a,b,c) VALUES(1,1,'x',0.5),(2,NULL,'yz',NULL),(3,-7,NULL,2.0);
                     CREATE TABLE g2(x, y AS (x || '!'));
                     INSERT INTO g2(x) VALUES('hi'),(NULL),(3);
                     CREATE TABLE grown(a); INSERT INTO grown VALUES(1),(2);
                     ALTER TABLE grown ADD COLUMN b TEXT DEFAULT 'later';
                     ALTER TABLE grown ADD COLUMN c DEFAULT -1.5;
                     ALTER TABLE grown ADD COLUMN d AS (a + 1);
                     INSERT INTO grown(a, b) VALUES(3, NULL);",
                )
            },
            loss: None,
        },
        Case {
            name: "covering_index_order",
            covers: "a table whose dump SELECT can be answered from a smaller covering index \
                     (a large STORED generated column is not selected): the row order of the \
                     dump is whatever plan SQLite picks, ours and the shell's must agree",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(a, b, pad AS (printf('%.500c', 'x') || a) STORED);
                     CREATE INDEX t_ba ON t(b, a);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
                     INSERT INTO t(a, b) SELECT i, (i * 7919) % 301 FROM n;
                     ANALYZE; DROP TABLE sqlite_stat4;",
                )
            },
            loss: None,
        },
        Case {
            name: "foreign_keys",
            covers: "a child table made before its parent, a self reference, a deferred key, and \
                     a row that violates its foreign key (the dump turns enforcement off)",
            build: |p| {
                script(
                    p,
                    "PRAGMA foreign_keys=OFF;
                     CREATE TABLE child(id INTEGER PRIMARY KEY,
                                        pid INT REFERENCES parent(id) ON DELETE CASCADE);
                     CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);
                     CREATE TABLE node(id INTEGER PRIMARY KEY,
                                       up INT REFERENCES node(id) DEFERRABLE INITIALLY DEFERRED);
                     INSERT INTO child VALUES(1,10),(2,10),(3,99);
                     INSERT INTO parent VALUES(10,'p');
                     INSERT INTO node VALUES(2,1),(1,NULL),(3,2);",
                )
            },
            loss: None,
        },
        Case {
            name: "rowid_forms",
            covers: "INTEGER PRIMARY KEY not first, sparse and negative ids, INTEGER PRIMARY KEY \
                     DESC and INT PRIMARY KEY (neither aliases the rowid, so rowids are not \
                     kept), columns named rowid/oid/_rowid_, a table hiding all three",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(name TEXT, id INTEGER PRIMARY KEY, x REAL);
                     INSERT INTO t VALUES('a', 5, 1.5),('b', -3, NULL),('c', 1000000, 2.0),
                                         ('d', 9223372036854775807, 3.25);
                     CREATE TABLE t2(a, b, \"Id\" integer primary key asc);
                     INSERT INTO t2 VALUES(1,2,77),(3,4,7);
                     CREATE TABLE desc_key(id INTEGER PRIMARY KEY DESC, v);
                     INSERT INTO desc_key VALUES(5,'five'),(1,'one');
                     CREATE TABLE int_key(id INT PRIMARY KEY, v);
                     INSERT INTO int_key VALUES(5,'five'),(1,'one');
                     CREATE TABLE named(rowid, v); INSERT INTO named VALUES('r1', 1),('r2', 2);
                     CREATE TABLE hidden(rowid, oid, _rowid_);
                     INSERT INTO hidden VALUES(3,2,1),(1,2,3);
                     CREATE TABLE gaps(v); INSERT INTO gaps VALUES(1),(2),(3),(4);
                     DELETE FROM gaps WHERE v IN (1, 3);",
                )
            },
            loss: None,
        },
        Case {
            name: "fts5",
            covers: "FTS5 tables (shadow tables dumped as tables, the virtual table as a \
                     writable_schema row): porter tokenizer, a quoted name, external content, \
                     contentless, detail=none",
            build: |p| {
                script(
                    p,
                    "CREATE VIRTUAL TABLE docs USING fts5(title,
                        body, tokenize = 'porter' /* its text keeps this newline */);
                     INSERT INTO docs VALUES('hello','hello world, it''s me'),
                                            ('second','lorem ipsum' || char(10) || 'newline');
                     CREATE VIRTUAL TABLE \"my ft\" USING fts5(x);
                     INSERT INTO \"my ft\" VALUES('quoted name');
                     CREATE TABLE src(id INTEGER PRIMARY KEY, body TEXT);
                     INSERT INTO src VALUES(1,'external content'),(7,'second row');
                     CREATE VIRTUAL TABLE ext USING fts5(body, content='src', content_rowid='id');
                     INSERT INTO ext(ext) VALUES('rebuild');
                     CREATE VIRTUAL TABLE bare USING fts5(a, content='', detail=none);
                     INSERT INTO bare(rowid, a) VALUES(3, 'contentless');",
                )
            },
            loss: None,
        },
        Case {
            name: "fts3_fts4",
            covers: "FTS3 and FTS4 tables with options (prefix, order=desc, notindexed, \
                     languageid) and an fts4aux table over one",
            build: |p| {
                script(
                    p,
                    "CREATE VIRTUAL TABLE f3 USING fts3(content);
                     INSERT INTO f3 VALUES('alpha beta'),('gamma');
                     CREATE VIRTUAL TABLE f4 USING fts4(a, b, prefix=\"2,3\", order=desc,
                                                        notindexed=b, languageid=\"lid\");
                     INSERT INTO f4(a, b, lid) VALUES('delta epsilon', 'not indexed', 1),
                                                     ('zeta', NULL, 0);
                     CREATE VIRTUAL TABLE f4_terms USING fts4aux(f4);",
                )
            },
            loss: None,
        },
        Case {
            name: "rtree",
            covers: "R*Tree tables: REAL and 32-bit integer coordinates, auxiliary columns",
            build: |p| {
                script(
                    p,
                    "CREATE VIRTUAL TABLE rt USING rtree(id, minx, maxx, miny, maxy);
                     INSERT INTO rt VALUES(1, 0, 10, 0, 10),(2, 5.5, 6.5, -1, 1);
                     CREATE VIRTUAL TABLE ri USING rtree_i32(id, x0, x1, +label, +extra);
                     INSERT INTO ri VALUES(1, -5, 5, 'first', x'00'),(2, 0, 1, NULL, 2.5);",
                )
            },
            loss: None,
        },
        Case {
            name: "unknown_module",
            covers: "a virtual table whose module this SQLite does not have (written through \
                     writable_schema): its schema row is dumped and reloaded, and it is \
                     unreadable on both sides",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(a); INSERT INTO t VALUES(1);
                     PRAGMA writable_schema=ON;
                     INSERT INTO sqlite_schema VALUES('table','mystery','mystery',0,
                        'CREATE VIRTUAL TABLE mystery USING no_such_module(a, \"b c\", ''d'')');
                     PRAGMA writable_schema=OFF;",
                )
            },
            loss: None,
        },
        Case {
            name: "stat1",
            covers: "sqlite_stat1 after ANALYZE (dumped after `ANALYZE sqlite_schema;`, which \
                     creates it), with a row edited by hand, and a table made after it",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(a, b); CREATE INDEX t_a ON t(a);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<50)
                     INSERT INTO t SELECT i % 7, i FROM n;
                     ANALYZE; DROP TABLE sqlite_stat4;
                     INSERT INTO sqlite_stat1 VALUES('t', NULL, '50');
                     CREATE TABLE after_analyze(x); INSERT INTO after_analyze VALUES(1);",
                )
            },
            loss: None,
        },
        Case {
            name: "stat4",
            covers: "sqlite_stat4, which our SQLite's ANALYZE fills (built with STAT4) and \
                     Debian's sqlite3 3.40.1 does not know",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(a, b); CREATE INDEX t_ab ON t(a, b);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<100)
                     INSERT INTO t SELECT i % 7, i FROM n;
                     ANALYZE;",
                )
            },
            loss: Some(Loss {
                why: "the reference shell is built without STAT4: `ANALYZE sqlite_schema;` does \
                      not create sqlite_stat4 there, so its rows find no table on reload",
                expect: |c| c.drop_table("sqlite_stat4"),
                same: exactly,
                reload_error: Some("no such table: sqlite_stat4"),
            }),
        },
        Case {
            name: "header_settings",
            covers: "settings kept in the file header, which a dump never carries: a 512-byte \
                     page, auto_vacuum, user_version, application_id (notes, not differences)",
            build: |p| {
                script(
                    p,
                    "PRAGMA page_size=512; PRAGMA auto_vacuum=FULL; PRAGMA user_version=42;
                     PRAGMA application_id=1234567;
                     CREATE TABLE t(a); INSERT INTO t VALUES(printf('%.2000c', 'x'));",
                )
            },
            loss: None,
        },
        Case {
            name: "utf16le",
            covers: "a UTF-16le database with 64 KiB pages: names and text converted to UTF-8 \
                     on the way out, newlines and quotes in UTF-16 text",
            build: |p| {
                script(
                    p,
                    "PRAGMA page_size=65536; PRAGMA encoding='UTF-16le';
                     CREATE TABLE \"\u{fc} t\"(s TEXT, b BLOB);
                     INSERT INTO \"\u{fc} t\" VALUES('\u{65e5}\u{672c}' || char(10) || 'it''s', x'00');
                     INSERT INTO \"\u{fc} t\" VALUES('\u{1f600}', NULL);",
                )
            },
            loss: None,
        },
        Case {
            name: "utf16be_odd_text",
            covers: "a UTF-16be database holding text that is not valid UTF-16 (lone surrogates, \
                     an odd byte count): compared as the UTF-8 SQLite converts it to",
            build: |p| {
                script(
                    p,
                    "PRAGMA encoding='UTF-16be';
                     CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT);
                     INSERT INTO t(s) VALUES(CAST(x'd800' AS TEXT)), (CAST(x'dc000041' AS TEXT)),
                        (CAST(x'd83dde00' AS TEXT)), (CAST(x'004100' AS TEXT)), ('plain');",
                )
            },
            loss: None,
        },
        Case {
            name: "wal_checkpointed",
            covers: "a database in WAL mode, closed cleanly (no -wal left)",
            build: |p| {
                script(
                    p,
                    "PRAGMA journal_mode=WAL; CREATE TABLE t(a, b); INSERT INTO t VALUES(1,'wal');",
                )
            },
            loss: None,
        },
        Case {
            name: "wal_uncheckpointed",
            covers: "a WAL-mode database whose tables and rows live only in the -wal file next \
                     to it (copied while the writer was open, as after a crash)",
            build: wal_uncheckpointed,
            loss: None,
        },
        Case {
            name: "wide_table",
            covers: "a table of 1500 columns of mixed types",
            build: |p| {
                let n = 1500;
                let cols: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
                let vals: Vec<String> = (0..n)
                    .map(|i| match i % 4 {
                        0 => i.to_string(),
                        1 => format!("'s{i}'"),
                        2 => format!("{i}.5"),
                        _ => "NULL".to_string(),
                    })
                    .collect();
                script(
                    p,
                    &format!(
                        "CREATE TABLE w({}); INSERT INTO w VALUES({});",
                        cols.join(", "),
                        vals.join(",")
                    ),
                );
            },
            loss: None,
        },
        Case {
            name: "long_values",
            covers: "one row holding 8 MB of text full of quotes and newlines and a 4 MB blob: \
                     values many times larger than the dumper's 64 KiB buffer",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, b BLOB)");
                let mut s = String::new();
                let mut i = 0;
                while s.len() < 8_000_000 {
                    s.push_str(&format!("line {i} 'quoted' \\n\r\n"));
                    i += 1;
                }
                let mut rng = Rng::new(11);
                let b: Vec<u8> = (0..4_000_000).map(|_| rng.next_u64() as u8).collect();
                db.rows(
                    "INSERT INTO t(s, b) VALUES(?1, ?2)",
                    [vec![text(&s), ValueRef::Blob(&b)]],
                );
            },
            loss: None,
        },
        Case {
            name: "many_rows",
            covers: "100,000 rows of mixed types with an index",
            build: |p| {
                let db = Db::create(p);
                db.sql("CREATE TABLE big(id INTEGER PRIMARY KEY, i INT, r REAL, t TEXT, b BLOB)");
                db.sql("CREATE INDEX big_i ON big(i)");
                let mut rng = Rng::new(1234);
                let rows: Vec<(i64, f64, String, [u8; 8])> = (0..100_000)
                    .map(|k| {
                        let x = rng.next_u64();
                        (
                            (x >> 20) as i64 - (1 << 43),
                            (x % 1_000_000) as f64 / 997.0,
                            format!("row {k} {}", "x".repeat((x % 41) as usize)),
                            x.to_le_bytes(),
                        )
                    })
                    .collect();
                db.rows(
                    "INSERT INTO big(i, r, t, b) VALUES(?1, ?2, ?3, ?4)",
                    rows.iter().map(|(i, r, t, b)| {
                        vec![
                            ValueRef::Integer(*i),
                            ValueRef::Real(*r),
                            text(t),
                            ValueRef::Blob(b),
                        ]
                    }),
                );
            },
            loss: None,
        },
        Case {
            name: "corrupt_table",
            covers: "a table with a damaged leaf page: the dump writes what it can read, the \
                     CORRUPTION ERROR marker, the rows read backwards, and ends in ROLLBACK",
            build: corrupt_table,
            loss: Some(Loss {
                why: "the dump of a damaged database ends in `ROLLBACK; -- due to errors`, so \
                      its reload keeps nothing",
                expect: nothing_survives,
                same: exactly,
                reload_error: None,
            }),
        },
        Case {
            name: "corrupt_schema",
            covers: "a damaged leaf page in sqlite_schema itself: the shell's table query fails \
                     (CORRUPTION ERROR, its retry with a second ORDER BY is a syntax error), the \
                     second pass reports the error, and the dump still ends in COMMIT",
            build: corrupt_schema,
            loss: Some(Loss {
                why: "nothing of a schema that cannot be read is dumped: the reload is empty",
                expect: nothing_survives,
                same: exactly,
                reload_error: None,
            }),
        },
        Case {
            name: "schema_junk",
            covers: "a schema row whose text is not SQL (written through writable_schema): the \
                     shell reads such a schema with writable_schema on, writes the text as it \
                     is, finds no columns, and ends in ROLLBACK",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE t(a); INSERT INTO t VALUES(1);
                     PRAGMA writable_schema=ON;
                     INSERT INTO sqlite_schema VALUES('table','junk','junk',0,'this is not sql');
                     PRAGMA writable_schema=OFF;",
                )
            },
            loss: Some(Loss {
                why: "a table without readable columns is a dump error: the dump ends in \
                      ROLLBACK and its reload keeps nothing",
                expect: nothing_survives,
                same: exactly,
                reload_error: Some("near \"this\": syntax error"),
            }),
        },
        Case {
            name: "check_violation",
            covers: "rows that break a CHECK constraint, stored while ignore_check_constraints \
                     was on",
            build: |p| {
                script(
                    p,
                    "CREATE TABLE checked(id INTEGER PRIMARY KEY, x CHECK (x > 0));
                     INSERT INTO checked VALUES(1, 1);
                     PRAGMA ignore_check_constraints=ON;
                     INSERT INTO checked VALUES(2, -5), (3, 0);
                     PRAGMA ignore_check_constraints=OFF;
                     INSERT INTO checked VALUES(4, 2);",
                )
            },
            loss: Some(Loss {
                why: "a dump does not carry ignore_check_constraints: the rows that break the \
                      CHECK are refused on reload",
                expect: |c| {
                    if let Some(Ok(rows)) = c.tables.get_mut(b"checked".as_slice()) {
                        rows.retain(|r| matches!(r[1], Val::Int(x) if x > 0));
                    }
                },
                same: exactly,
                reload_error: Some("CHECK constraint failed"),
            }),
        },
    ]
}

fn storage_classes(path: &Path) {
    let db = Db::create(path);
    db.sql(
        "CREATE TABLE untyped(v);
         CREATE TABLE typed(i INTEGER, r REAL, t TEXT, n NUMERIC, b BLOB, vc VARCHAR(10),
                            dp DOUBLE PRECISION, bo BOOLEAN, dt DATETIME, fp FLOATING POINT,
                            st STRING, ch CHARINT);",
    );
    let vals: Vec<ValueRef> = vec![
        ValueRef::Null,
        ValueRef::Integer(0),
        ValueRef::Integer(1),
        ValueRef::Integer(-1),
        ValueRef::Integer(42),
        ValueRef::Real(1.5),
        ValueRef::Real(-2.25),
        ValueRef::Real(3.0),
        text(""),
        text("text"),
        text("123"),
        text("1.5"),
        text(" 7"),
        text("7 "),
        text("0x10"),
        text("1e3"),
        text("3.0"),
        text("-0"),
        text("+5"),
        text("9223372036854775808"),
        text("1,5"),
        ValueRef::Blob(b""),
        ValueRef::Blob(b"\x00\x01"),
        ValueRef::Blob(b"abc"),
    ];
    db.rows(
        "INSERT INTO untyped VALUES(?1)",
        vals.iter().map(|v| vec![*v]),
    );
    db.rows(
        "INSERT INTO typed VALUES(?1,?1,?1,?1,?1,?1,?1,?1,?1,?1,?1,?1)",
        vals.iter().map(|v| vec![*v]),
    );
}

fn text_escapes(path: &Path) {
    let db = Db::create(path);
    db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)");
    let controls: String = (1u8..32).map(char::from).collect();
    let long_lines = "a line that ends in a newline\n".repeat(300);
    let long = "y".repeat(70_000);
    let vals: Vec<&str> = vec![
        "",
        "'",
        "''",
        "it's",
        "say \"hi\"",
        "back\\slash",
        "semi;colon",
        "one\ntwo",
        "\n",
        "\n\n",
        "cr\rhere",
        "\r",
        "crlf\r\nline",
        "tab\there",
        "ends with a newline\n",
        "\nstarts with a newline",
        "the text \\n and a real\nnewline",
        "\\n and \\012 and a real\nnewline",
        "\\n, \\012, (\\n0) and a real\nnewline",
        "\\n, \\012, (\\n0), (\\n1) and\n",
        "the text \\r and a real\rreturn",
        "\\r and \\015 and a real\rreturn",
        "both 'q' \n and \r and '' end",
        "-- not a comment",
        "/* not a comment */",
        "a--b",
        "x'); DROP TABLE t;--",
        &controls,
        "del\x7f",
        "esc\x1b[31mred\x1b[0m",
        "replace(",
        "char(10)",
        &long_lines,
        &long,
    ];
    db.rows(
        "INSERT INTO t(s) VALUES(?1)",
        vals.iter().map(|v| vec![text(v)]),
    );
}

fn quoted_names(path: &Path) {
    let db = Db::create(path);
    let names = [
        "my table",
        "order",
        "Group",
        "select",
        "values",
        "key",
        "replace",
        "temp",
        "abort",
        "rowid",
        "true",
        "main",
        "without",
        "a\"b",
        "it's",
        "\u{442}\u{430}\u{431}\u{43b}\u{438}\u{446}\u{430}",
        "\u{8868}",
        "1abc",
        "a-b",
        "CamelCase",
        "_under",
        "t$dollar",
        " lead",
        "trail ",
        "dot.name",
        "x[y]",
        "back`tick",
        "semi;colon",
        "per%cent",
        "new\nline",
        "",
    ];
    db.sql("BEGIN");
    for n in names {
        let q = format!("\"{}\"", n.replace('"', "\"\""));
        let col = format!("\"col {}\"", n.replace('"', "\"\""));
        db.sql(&format!(
            "CREATE TABLE {q}({col} TEXT, \"order\" INT, \"a\"\"b\" REAL, plain, \"\u{5217}\", \
             \"true\", \"rowid\")"
        ));
        let mut stmt = db
            .conn
            .prepare(&format!(
                "INSERT INTO {q} VALUES(?1, ?2, 1.5, NULL, '\u{5024}', 1, 2)"
            ))
            .unwrap();
        stmt.bind_text(1, n).unwrap();
        stmt.bind_i64(2, n.len() as i64).unwrap();
        stmt.step().unwrap();
    }
    db.sql("COMMIT");
}

fn wal_uncheckpointed(path: &Path) {
    let scratch = path.with_extension("building");
    let db = Db::create(&scratch);
    db.sql(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES('only in the wal'), ('also in the wal');
         CREATE INDEX t_v ON t(v);
         CREATE TABLE u(a); INSERT INTO u VALUES(x'0102');",
    );
    // Copy while the writer is open: closing it would checkpoint the WAL into the file.
    std::fs::copy(&scratch, path).unwrap();
    std::fs::copy(wal_of(&scratch), wal_of(path)).unwrap();
    drop(db);
    // The case only means something if the main file alone has none of it.
    let alone = path.with_extension("alone");
    std::fs::copy(path, &alone).unwrap();
    let c = Connection::open(&alone, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(
        c.query_i64("SELECT count(*) FROM sqlite_schema").unwrap(),
        Some(0),
        "the main file must hold no schema: it all lives in the -wal"
    );
}

/// The `-wal` file next to a database file.
pub fn wal_of(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-wal");
    s.into()
}

/// The page that the `n`-th cell (0-based) of an interior table page points to; `page_start`
/// is the page's offset in the file, `header` its b-tree header's (they differ on page 1).
fn child_page(file: &[u8], page_start: usize, header: usize, n: usize) -> usize {
    assert_eq!(file[header], 0x05, "an interior table page");
    let cells = u16::from_be_bytes([file[header + 3], file[header + 4]]) as usize;
    assert!(cells > n, "the page has {cells} cells, not {}", n + 1);
    // The cell pointer array follows the 12-byte interior header; a cell starts with its
    // child's page number.
    let at = header + 12 + 2 * n;
    let cell = page_start + u16::from_be_bytes([file[at], file[at + 1]]) as usize;
    u32::from_be_bytes([file[cell], file[cell + 1], file[cell + 2], file[cell + 3]]) as usize
}

/// sqlite_schema spread over several 1 KiB pages, the second of its leaves given an impossible
/// page type.
fn corrupt_schema(path: &Path) {
    let db = Db::create(path);
    db.sql("PRAGMA page_size=1024");
    for i in 0..60 {
        db.sql(&format!(
            "CREATE TABLE table_with_a_long_name_{i:03}(a_long_column_name_{i}, other);
             INSERT INTO table_with_a_long_name_{i:03} VALUES({i}, 'x');"
        ));
    }
    drop(db);
    let mut file = std::fs::read(path).unwrap();
    const PAGE: usize = 1024;
    // Page 1 holds the 100-byte file header before sqlite_schema's root.
    let leaf = child_page(&file, 0, 100, 1);
    assert_eq!(
        file[(leaf - 1) * PAGE],
        0x0d,
        "the child must be a table leaf"
    );
    file[(leaf - 1) * PAGE] = 0x42;
    std::fs::write(path, file).unwrap();
}

/// A table whose second leaf page has an impossible page type: SQLite reports SQLITE_CORRUPT
/// when a scan reaches it, from either direction.
fn corrupt_table(path: &Path) {
    let db = Db::create(path);
    db.sql(
        "PRAGMA page_size=1024;
         CREATE TABLE good(id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE bad(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
         INSERT INTO good SELECT i, printf('good %03d %.40c', i, 'g') FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
         INSERT INTO bad SELECT i, printf('bad %03d %.40c', i, 'b') FROM n;",
    );
    let root = db
        .conn
        .query_i64("SELECT rootpage FROM sqlite_schema WHERE name = 'bad'")
        .unwrap()
        .unwrap() as usize;
    drop(db);
    let mut file = std::fs::read(path).unwrap();
    const PAGE: usize = 1024;
    let page = |n: usize| (n - 1) * PAGE;
    let leaf = child_page(&file, page(root), page(root), 1);
    assert_eq!(file[page(leaf)], 0x0d, "the child must be a table leaf");
    file[page(leaf)] = 0x42;
    std::fs::write(path, file).unwrap();
}
