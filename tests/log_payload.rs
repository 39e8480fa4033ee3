//! The Raft log's payload is an on-disk format (`docs/log-format.md`, "Payload"): every
//! record holds an openraft `Entry` whose application data is a `Command`, encoded with
//! bincode 1, where variant order, field order and each field's type fix the bytes. A build
//! that encodes them differently cannot read the logs earlier builds wrote.
//!
//! Two guards, both documented under "Compatibility" in `docs/log-format.md`:
//!
//! - **Pinned bytes.** One entry of each payload kind and each `Command` variant, with every
//!   nested variant (each parameter value kind, no/positional/named parameters, both row
//!   policies, both load kinds, a SQL load with and without a built database), is encoded as
//!   the log engine encodes it and compared with the bytes written below, field by field;
//!   the bytes are decoded back and compared with the value.
//! - **A log written by an earlier build.** `tests/data/log-fixture-v2/` holds the log of a
//!   real `raftlited` run (see [`write_log_fixture`], which wrote it) and the answers that node
//!   served. The test starts today's `raftlited` on a copy, without any database file, so
//!   every row comes from replaying the log, and compares the answers.
//!
//! A failure says: this changes the on-disk log format: bump the format version and write a
//! migration, or revert.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

// Every type whose encoding is the log's payload, and the codec the log engine uses. They may
// move between modules; what they encode to may not. Keep each import of them here.
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use raftlite::db::request::{
    ApplyEnv, ExecuteItem, ParamValue, Params, Request, ResultOptions, RowsPolicy, SqlStatement,
};
use raftlite::db::restore_file::LoadKind;
use raftlite::raft::log::openraft::{decode_entry_bytes, encode_entry, ENTRY_KIND_BINCODE};
use raftlite::raft::log::{LogEngine, LogOptions};
use raftlite::store::types::{
    BlankLayout, BuiltDatabase, Command, Entry, LoadCommand, SqlLoad, TypeConfig,
};
use raftlite::store::NodeInfo;

use common::Node;

/// What every failure of a guard in this file says.
const FORMAT_CHANGED: &str = "this changes the on-disk log format: bump the format version and \
                              write a migration, or revert (docs/log-format.md, \"Compatibility\")";

// ---------------------------------------------------------------------------------------------
// Pinned bytes
// ---------------------------------------------------------------------------------------------

/// The clock, seed and budget every pinned write carries: distinct bytes, so a reordered
/// field shows.
fn stamp() -> ApplyEnv {
    ApplyEnv {
        unix_millis: 0x0102_0304_0506,
        seed: 0x1122_3344_5566_7788,
        budget: 500_000_000,
    }
}

fn at(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(2, 7), index),
        payload,
    }
}

fn statement(sql: &str, params: Params) -> SqlStatement {
    SqlStatement {
        sql: sql.into(),
        params,
    }
}

fn request(statements: Vec<SqlStatement>, transaction: bool) -> Request {
    Request {
        statements,
        transaction,
    }
}

fn staged(id: &str, kind: LoadKind, shared: bool) -> LoadCommand {
    LoadCommand {
        id: id.into(),
        kind,
        size: 4096,
        crc32c: 0xdead_beef,
        source: "r:2".into(),
        shared,
    }
}

fn member(id: &str, https: bool, voter: bool) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        api_addr: "a:1".into(),
        raft_addr: "r:2".into(),
        https,
        voter,
    }
}

/// One pinned entry: its value and its bytes, as annotated hex (`#` starts a comment; spaces
/// and line breaks are ignored).
struct Pinned {
    name: &'static str,
    entry: Entry,
    hex: &'static str,
}

fn pinned() -> Vec<Pinned> {
    vec![
        Pinned {
            name: "blank",
            entry: at(1, EntryPayload::Blank),
            hex: "
                0200000000000000  # log_id.leader_id.term = 2            (u64)
                0700000000000000  # log_id.leader_id.node_id = 7         (u64)
                0100000000000000  # log_id.index = 1                     (u64)
                00000000          # EntryPayload::Blank                  (tag u32 0)
            ",
        },
        Pinned {
            name: "membership",
            entry: at(
                2,
                EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([7, 5])],
                    BTreeMap::from([
                        (9, member("n9", true, false)),
                        (7, member("n7", false, true)),
                        (5, member("n5", false, true)),
                    ]),
                )),
            ),
            hex: "
                0200000000000000 0700000000000000 0200000000000000  # log id (2, 7), index 2
                02000000          # EntryPayload::Membership             (tag 2)
                0100000000000000  # configs: 1 config
                0200000000000000  #   config 0: 2 voter ids, ascending
                0500000000000000  #     5
                0700000000000000  #     7
                0300000000000000  # nodes: 3, in ascending key order
                0500000000000000  #   key 5, NodeInfo:
                0200000000000000 6e35 0300000000000000 613a31 0300000000000000 723a32 00 01
                0700000000000000  #   key 7, NodeInfo:
                0200000000000000 6e37    # id = \"n7\"     (u64 length, UTF-8)
                0300000000000000 613a31  # api_addr = \"a:1\"
                0300000000000000 723a32  # raft_addr = \"r:2\"
                00                # https = false                        (bool: 1 byte)
                01                # voter = true
                0900000000000000  #   key 9, NodeInfo:
                0200000000000000 6e39 0300000000000000 613a31 0300000000000000 723a32
                01                # https = true
                00                # voter = false
            ",
        },
        Pinned {
            name: "execute",
            entry: at(
                3,
                EntryPayload::Normal(Command::Execute {
                    request: request(
                        vec![
                            statement("s0", Params::None),
                            statement(
                                "s1",
                                Params::Positional(vec![
                                    ParamValue::Null,
                                    ParamValue::Integer(-2),
                                    ParamValue::Real(1.5),
                                    ParamValue::Text("x".into()),
                                    ParamValue::Blob(vec![0xde, 0xad]),
                                    ParamValue::Bool(true),
                                ]),
                            ),
                            statement(
                                "s2",
                                Params::Named(vec![("a".into(), ParamValue::Integer(1))]),
                            ),
                        ],
                        true,
                    ),
                    policy: RowsPolicy::ReturningOnly,
                    opts: ResultOptions {
                        qualify_columns: false,
                    },
                    env: stamp(),
                }),
            ),
            hex: "
                0200000000000000 0700000000000000 0300000000000000  # log id (2, 7), index 3
                01000000          # EntryPayload::Normal                 (tag 1)
                00000000          # Command::Execute                     (tag 0)
                0300000000000000  # request.statements: 3
                0200000000000000 7330  # sql = \"s0\"
                00000000          #   params: Params::None               (tag 0)
                0200000000000000 7331  # sql = \"s1\"
                01000000          #   params: Params::Positional         (tag 1)
                0600000000000000  #     6 values
                00000000          #     ParamValue::Null                 (tag 0)
                01000000 feffffffffffffff  # ParamValue::Integer(-2)     (tag 1, i64)
                02000000 000000000000f83f  # ParamValue::Real(1.5)       (tag 2, f64 bits)
                03000000 0100000000000000 78  # ParamValue::Text(\"x\")   (tag 3, string)
                04000000 0200000000000000 dead  # ParamValue::Blob      (tag 4, u64 length, bytes)
                05000000 01       #     ParamValue::Bool(true)           (tag 5, bool)
                0200000000000000 7332  # sql = \"s2\"
                02000000          #   params: Params::Named              (tag 2)
                0100000000000000  #     1 pair
                0100000000000000 61  # name = \"a\"
                01000000 0100000000000000  # ParamValue::Integer(1)
                01                # request.transaction = true
                00000000          # policy: RowsPolicy::ReturningOnly    (tag 0)
                00                # opts.qualify_columns = false
                0605040302010000  # env.unix_millis                      (i64)
                8877665544332211  # env.seed                             (u64)
                0065cd1d00000000  # env.budget = 500000000               (u64)
            ",
        },
        // The example in docs/log-format.md, "Payload".
        Pinned {
            name: "execute_one_statement",
            entry: at(
                9,
                EntryPayload::Normal(Command::Execute {
                    request: request(
                        vec![statement(
                            "INSERT INTO t VALUES(?)",
                            Params::Positional(vec![ParamValue::Integer(5)]),
                        )],
                        false,
                    ),
                    policy: RowsPolicy::ReturningOnly,
                    opts: ResultOptions {
                        qualify_columns: false,
                    },
                    env: stamp(),
                }),
            ),
            hex: "
                0200000000000000 0700000000000000 0900000000000000  # log id (2, 7), index 9
                01000000          # EntryPayload::Normal
                00000000          # Command::Execute
                0100000000000000  # request.statements: 1
                1700000000000000 494e5345525420494e544f20742056414c554553283f29  # sql (23 bytes)
                01000000          #   params: Params::Positional
                0100000000000000  #     1 value
                01000000 0500000000000000  # ParamValue::Integer(5)
                00                # request.transaction = false
                00000000          # policy: RowsPolicy::ReturningOnly
                00                # opts.qualify_columns = false
                0605040302010000 8877665544332211 0065cd1d00000000  # env
            ",
        },
        Pinned {
            name: "strong_query",
            entry: at(
                4,
                EntryPayload::Normal(Command::StrongQuery {
                    request: request(vec![statement("q", Params::None)], false),
                    opts: ResultOptions {
                        qualify_columns: true,
                    },
                }),
            ),
            hex: "
                0200000000000000 0700000000000000 0400000000000000  # log id (2, 7), index 4
                01000000          # EntryPayload::Normal
                01000000          # Command::StrongQuery                 (tag 1)
                0100000000000000  # request.statements: 1
                0100000000000000 71  # sql = \"q\"
                00000000          #   params: Params::None
                00                # request.transaction = false
                01                # opts.qualify_columns = true
            ",
        },
        Pinned {
            name: "load",
            entry: at(
                5,
                EntryPayload::Normal(Command::Load(staged("L", LoadKind::Sqlite, true))),
            ),
            hex: "
                0200000000000000 0700000000000000 0500000000000000  # log id (2, 7), index 5
                01000000          # EntryPayload::Normal
                02000000          # Command::Load                        (tag 2)
                0100000000000000 4c  # id = \"L\"
                00000000          # kind: LoadKind::Sqlite               (tag 0)
                0010000000000000  # size = 4096                          (u64)
                efbeadde          # crc32c = 0xdeadbeef                  (u32)
                0300000000000000 723a32  # source = \"r:2\"
                01                # shared = true
            ",
        },
        Pinned {
            name: "execute_batch",
            entry: at(
                6,
                EntryPayload::Normal(Command::ExecuteBatch(vec![
                    ExecuteItem {
                        request: request(vec![statement("b0", Params::None)], false),
                        policy: RowsPolicy::AllQueries,
                        opts: ResultOptions {
                            qualify_columns: true,
                        },
                        env: stamp(),
                    },
                    ExecuteItem {
                        request: request(
                            vec![statement(
                                "b1",
                                Params::Positional(vec![ParamValue::Bool(false)]),
                            )],
                            false,
                        ),
                        policy: RowsPolicy::ReturningOnly,
                        opts: ResultOptions {
                            qualify_columns: false,
                        },
                        env: stamp().with_budget(1),
                    },
                ])),
            ),
            hex: "
                0200000000000000 0700000000000000 0600000000000000  # log id (2, 7), index 6
                01000000          # EntryPayload::Normal
                03000000          # Command::ExecuteBatch                (tag 3)
                0200000000000000  # 2 items, each an ExecuteItem (Execute's fields):
                0100000000000000 0200000000000000 6230 00000000 00  # request: \"b0\", no params, no transaction
                01000000          #   policy: RowsPolicy::AllQueries     (tag 1)
                01                #   opts.qualify_columns = true
                0605040302010000 8877665544332211 0065cd1d00000000  # env
                0100000000000000 0200000000000000 6231  # request: \"b1\"
                01000000 0100000000000000 05000000 00  # Positional, 1 value: Bool(false)
                00                #   request.transaction = false
                00000000          #   policy: RowsPolicy::ReturningOnly
                00                #   opts.qualify_columns = false
                0605040302010000 8877665544332211 0100000000000000  # env, budget = 1
            ",
        },
        Pinned {
            name: "load_sql",
            entry: at(
                7,
                EntryPayload::Normal(Command::LoadSql(SqlLoad {
                    script: staged("S", LoadKind::Sql, false),
                    env: stamp(),
                    built: None,
                })),
            ),
            hex: "
                0200000000000000 0700000000000000 0700000000000000  # log id (2, 7), index 7
                01000000          # EntryPayload::Normal
                04000000          # Command::LoadSql                     (tag 4)
                0100000000000000 53  # script.id = \"S\"
                01000000          # script.kind: LoadKind::Sql           (tag 1)
                0010000000000000 efbeadde 0300000000000000 723a32  # size, crc32c, source
                00                # script.shared = false
                0605040302010000 8877665544332211 0065cd1d00000000  # env
                00                # built: None                          (Option: 1 byte)
            ",
        },
        Pinned {
            name: "load_sql_built",
            entry: at(
                8,
                EntryPayload::Normal(Command::LoadSql(SqlLoad {
                    script: staged("S", LoadKind::Sql, true),
                    env: stamp(),
                    built: Some(BuiltDatabase {
                        database: staged("B", LoadKind::Sqlite, true),
                        layout: BlankLayout {
                            page_size: 4096,
                            auto_vacuum: 0,
                            encoding: "UTF-8".into(),
                        },
                    }),
                })),
            ),
            hex: "
                0200000000000000 0700000000000000 0800000000000000  # log id (2, 7), index 8
                01000000 04000000  # EntryPayload::Normal, Command::LoadSql
                0100000000000000 53 01000000 0010000000000000 efbeadde 0300000000000000 723a32
                01                # script.shared = true
                0605040302010000 8877665544332211 0065cd1d00000000  # env
                01                # built: Some, then a BuiltDatabase:
                0100000000000000 42  # database.id = \"B\"
                00000000          # database.kind: LoadKind::Sqlite
                0010000000000000 efbeadde 0300000000000000 723a32 01  # size, crc32c, source, shared
                00100000          # layout.page_size = 4096              (u32)
                00                # layout.auto_vacuum = 0               (u8)
                0500000000000000 5554462d38  # layout.encoding = \"UTF-8\"
            ",
        },
        Pinned {
            name: "vacuum",
            entry: at(9, EntryPayload::Normal(Command::Vacuum)),
            hex: "
                0200000000000000 0700000000000000 0900000000000000  # log id (2, 7), index 9
                01000000 05000000  # EntryPayload::Normal, Command::Vacuum (a unit variant)
            ",
        },
        Pinned {
            name: "cdc high-water mark",
            entry: at(10, EntryPayload::Normal(Command::CdcHighWatermark(0x0102_0304))),
            hex: "
                0200000000000000 0700000000000000 0a00000000000000  # log id (2, 7), index 10
                01000000 06000000  # EntryPayload::Normal, Command::CdcHighWatermark
                0403020100000000   # the index delivered through (u64)
            ",
        },
    ]
}

/// The bytes an annotated hex string stands for.
fn unhex(annotated: &str) -> Vec<u8> {
    let digits: String = annotated
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|code| code.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits: {digits}");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn each_payload_kind_encodes_to_its_pinned_bytes() {
    for case in pinned() {
        let expected = unhex(case.hex);
        let actual = encode_entry(&case.entry).expect("encode");
        if actual != expected {
            let at = actual
                .iter()
                .zip(&expected)
                .position(|(a, e)| a != e)
                .unwrap_or(actual.len().min(expected.len()));
            panic!(
                "pinned entry `{}` encodes differently from byte {at} on: {FORMAT_CHANGED}\n\
                 pinned: {}\nnow:    {}",
                case.name,
                hex(&expected),
                hex(&actual),
            );
        }
    }
}

#[test]
fn each_pinned_payload_decodes_to_its_value() {
    for case in pinned() {
        let decoded: Result<Entry, _> = decode_entry_bytes(&unhex(case.hex));
        match decoded {
            Ok(entry) => assert!(
                entry == case.entry,
                "pinned entry `{}` decodes to another value: {FORMAT_CHANGED}\n\
                 pinned: {}\nnow:    {}",
                case.name,
                describe(&case.entry),
                describe(&entry),
            ),
            Err(e) => panic!(
                "pinned entry `{}` no longer decodes ({e}): {FORMAT_CHANGED}",
                case.name
            ),
        }
    }
}

/// An entry in full (openraft's `Debug` shows a normal entry's payload as just `normal`).
fn describe(entry: &Entry) -> String {
    let payload = match &entry.payload {
        EntryPayload::Blank => "Blank".to_string(),
        EntryPayload::Normal(command) => format!("Normal({command:?})"),
        EntryPayload::Membership(m) => format!("Membership({m:?})"),
    };
    format!("{:?} {payload}", entry.log_id)
}

/// The name of every variant `entry` holds, at any depth. The matches list every variant with
/// no wildcard, so a new variant stops the build here: add it to [`EVERY_VARIANT`] and a
/// value holding it to [`pinned`].
fn variants_in(entry: &Entry) -> Vec<&'static str> {
    fn params(out: &mut Vec<&'static str>, p: &Params) {
        let values: Vec<&ParamValue> = match p {
            Params::None => {
                out.push("Params::None");
                Vec::new()
            }
            Params::Positional(v) => {
                out.push("Params::Positional");
                v.iter().collect()
            }
            Params::Named(v) => {
                out.push("Params::Named");
                v.iter().map(|(_, value)| value).collect()
            }
        };
        for value in values {
            out.push(match value {
                ParamValue::Null => "ParamValue::Null",
                ParamValue::Integer(_) => "ParamValue::Integer",
                ParamValue::Real(_) => "ParamValue::Real",
                ParamValue::Text(_) => "ParamValue::Text",
                ParamValue::Blob(_) => "ParamValue::Blob",
                ParamValue::Bool(_) => "ParamValue::Bool",
            });
        }
    }
    fn request(out: &mut Vec<&'static str>, r: &Request) {
        for s in &r.statements {
            params(out, &s.params);
        }
    }
    fn policy(out: &mut Vec<&'static str>, p: RowsPolicy) {
        out.push(match p {
            RowsPolicy::ReturningOnly => "RowsPolicy::ReturningOnly",
            RowsPolicy::AllQueries => "RowsPolicy::AllQueries",
        });
    }
    fn load(out: &mut Vec<&'static str>, l: &LoadCommand) {
        out.push(match l.kind {
            LoadKind::Sqlite => "LoadKind::Sqlite",
            LoadKind::Sql => "LoadKind::Sql",
        });
    }
    let mut out = Vec::new();
    match &entry.payload {
        EntryPayload::Blank => out.push("EntryPayload::Blank"),
        EntryPayload::Membership(_) => out.push("EntryPayload::Membership"),
        EntryPayload::Normal(command) => match command {
            Command::Execute {
                request: r,
                policy: p,
                ..
            } => {
                out.push("Command::Execute");
                request(&mut out, r);
                policy(&mut out, *p);
            }
            Command::StrongQuery { request: r, .. } => {
                out.push("Command::StrongQuery");
                request(&mut out, r);
            }
            Command::Load(l) => {
                out.push("Command::Load");
                load(&mut out, l);
            }
            Command::ExecuteBatch(items) => {
                out.push("Command::ExecuteBatch");
                for item in items {
                    request(&mut out, &item.request);
                    policy(&mut out, item.policy);
                }
            }
            Command::Vacuum => out.push("Command::Vacuum"),
            Command::CdcHighWatermark(_) => out.push("Command::CdcHighWatermark"),
            Command::LoadSql(sql) => {
                out.push("Command::LoadSql");
                load(&mut out, &sql.script);
                match &sql.built {
                    None => out.push("SqlLoad.built: None"),
                    Some(built) => {
                        out.push("SqlLoad.built: Some");
                        load(&mut out, &built.database);
                    }
                }
            }
        },
    }
    out
}

/// Every variant that can appear in a payload.
const EVERY_VARIANT: &[&str] = &[
    "EntryPayload::Blank",
    "EntryPayload::Membership",
    "Command::Execute",
    "Command::StrongQuery",
    "Command::Load",
    "Command::ExecuteBatch",
    "Command::LoadSql",
    "Command::Vacuum",
    "Command::CdcHighWatermark",
    "Params::None",
    "Params::Positional",
    "Params::Named",
    "ParamValue::Null",
    "ParamValue::Integer",
    "ParamValue::Real",
    "ParamValue::Text",
    "ParamValue::Blob",
    "ParamValue::Bool",
    "RowsPolicy::ReturningOnly",
    "RowsPolicy::AllQueries",
    "LoadKind::Sqlite",
    "LoadKind::Sql",
    "SqlLoad.built: None",
    "SqlLoad.built: Some",
];

#[test]
fn the_pinned_entries_hold_every_variant() {
    let covered: BTreeSet<&str> = pinned()
        .iter()
        .flat_map(|case| variants_in(&case.entry))
        .collect();
    let every: BTreeSet<&str> = EVERY_VARIANT.iter().copied().collect();
    let missing: Vec<_> = every.difference(&covered).collect();
    assert!(missing.is_empty(), "no pinned entry holds {missing:?}");
    let unlisted: Vec<_> = covered.difference(&every).collect();
    assert!(unlisted.is_empty(), "add {unlisted:?} to EVERY_VARIANT");
}

// ---------------------------------------------------------------------------------------------
// The fixture: a log written by an earlier build
// ---------------------------------------------------------------------------------------------

/// The fixture of this build's payload format, relative to the package root.
const FIXTURE: &str = "tests/data/log-fixture-v2";
/// The node id the fixture's node ran with (its membership names it).
const FIXTURE_NODE_ID: &str = "fixture";

/// The queries whose answers the fixture records, in `expected.txt`.
const FIXTURE_QUERIES: &[&str] = &[
    // Not the node's own state table: its layout is not the log's format.
    "SELECT name, sql FROM sqlite_schema WHERE name NOT LIKE '_raftlite%' ORDER BY name",
    "SELECT id, how, typeof(v), quote(v) FROM vals ORDER BY id",
    "SELECT id, r, at, hex(b) FROM stamps ORDER BY id",
    "SELECT count(*), sum(n), min(n), max(n) FROM burst",
];

/// The variants of [`EVERY_VARIANT`] that the fixture's log does not hold (the run in
/// [`write_log_fixture`] makes all the others). No build proposes `StrongQuery` any more, and
/// a node snapshots its database and purges the log up to a load entry as soon as it applies
/// one, so no restart replays a load. Their bytes are pinned above.
const NOT_IN_FIXTURE: &[&str] = &[
    "Command::StrongQuery",
    "Command::Load",
    "Command::LoadSql",
    // Newer than the fixture (issue #28's -auto-vacuum-int and -cdc-config).
    "Command::Vacuum",
    "Command::CdcHighWatermark",
    "LoadKind::Sqlite",
    "LoadKind::Sql",
    "SqlLoad.built: None",
    "SqlLoad.built: Some",
];

/// What the fixture's log must hold.
fn fixture_variants() -> impl Iterator<Item = &'static str> {
    EVERY_VARIANT
        .iter()
        .copied()
        .filter(|v| !NOT_IN_FIXTURE.contains(v))
}

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// Copies a directory tree (the fixture is a few files).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for item in std::fs::read_dir(from).expect("read dir") {
        let item = item.expect("dir entry");
        let dest = to.join(item.file_name());
        if item.file_type().expect("file type").is_dir() {
            copy_tree(&item.path(), &dest);
        } else {
            std::fs::copy(item.path(), &dest).expect("copy file");
        }
    }
}

/// `(query, answer)` pairs from an `expected.txt`: `> QUERY` lines, each followed by the
/// answer's line; `#` lines are comments.
fn read_expected(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("read expected answers");
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let mut pairs = Vec::new();
    while let Some(line) = lines.next() {
        let query = line.strip_prefix("> ").expect("a `> QUERY` line");
        let answer = lines.next().expect("an answer after each query");
        pairs.push((query.to_string(), answer.to_string()));
    }
    pairs
}

/// Every entry of the log in `raft_dir`, decoded as the node decodes it. Opening the engine
/// runs its recovery, so only ever on a copy.
fn read_log(raft_dir: &Path) -> Vec<Entry> {
    let engine = LogEngine::open(raft_dir, LogOptions::default()).expect("open the log");
    let bounds = engine.bounds();
    let (Some(first), Some(last)) = (bounds.first_index, bounds.last_index) else {
        return Vec::new();
    };
    engine
        .read(first..last + 1)
        .expect("read the log")
        .iter()
        .map(|record| {
            assert_eq!(record.kind, ENTRY_KIND_BINCODE, "record {}", record.index);
            decode_entry_bytes(&record.data).unwrap_or_else(|e| {
                panic!(
                    "the fixture's entry {} no longer decodes ({e}): {FORMAT_CHANGED}",
                    record.index
                )
            })
        })
        .collect()
}

/// Today's build starts on the log an earlier build wrote, replays it from the first entry
/// (the fixture holds no database file) and serves exactly the rows that build served.
#[test]
fn a_log_written_by_an_earlier_build_replays_to_the_same_rows() {
    let fixture = fixture_dir();
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    copy_tree(&fixture.join("data"), &data);
    assert!(
        !data.join("db.sqlite").exists() && !data.join("snapshot-meta.json").exists(),
        "the fixture must hold no database and no snapshot: its rows must come from the log"
    );
    let node = Node::start_in(&data, &["-node-id", FIXTURE_NODE_ID]);
    let expected = read_expected(&fixture.join("expected.txt"));
    assert_eq!(
        expected.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>(),
        FIXTURE_QUERIES,
        "expected.txt answers the fixture's queries"
    );
    for (query, answer) in &expected {
        let now = node.query_at(query, "strong");
        assert_eq!(
            &now,
            answer,
            "the fixture's log replays to other rows for `{query}`: {FORMAT_CHANGED}\n\
             (If the rows are the same and only the JSON around them changed, the log is not \
             at fault: edit expected.txt, never the log.)\nnode log:\n{}",
            node.log()
        );
    }
}

/// The fixture's log holds what it is meant to guard: entries of each kind its run made.
#[test]
fn the_fixture_log_holds_each_kind_its_run_wrote() {
    let temp = tempfile::tempdir().expect("temp dir");
    copy_tree(&fixture_dir().join("data/raft"), temp.path());
    let entries = read_log(temp.path());
    assert_eq!(
        entries.first().map(|e| e.log_id.index),
        Some(0),
        "the fixture's log starts at its first entry (nothing purged)"
    );
    let held: BTreeSet<&str> = entries.iter().flat_map(variants_in).collect();
    let missing: Vec<_> = fixture_variants().filter(|v| !held.contains(v)).collect();
    assert!(
        missing.is_empty(),
        "the fixture's log holds no {missing:?}: {FORMAT_CHANGED}"
    );
}

/// Writes a new fixture with a real `raftlited` run: run it once, with the build that defines
/// a new payload format, into a directory that does not exist yet:
///
/// ```sh
/// RAFTLITE_WRITE_LOG_FIXTURE=tests/data/log-fixture-vN \
///   cargo nextest run --test log_payload --run-ignored only write_log_fixture
/// ```
///
/// An existing fixture is never rewritten: it stands for the logs its build wrote, which
/// every later build must read.
#[test]
#[ignore = "writes a new fixture into the source tree; see docs/log-format.md, \"Compatibility\""]
fn write_log_fixture() {
    let dest = std::env::var_os("RAFTLITE_WRITE_LOG_FIXTURE")
        .expect("set RAFTLITE_WRITE_LOG_FIXTURE to a directory that does not exist yet");
    let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join(dest);
    assert!(
        !dest.exists(),
        "{} exists: a fixture is written once, by the build whose format it pins",
        dest.display()
    );
    // No snapshot: every entry stays in the log.
    let mut node = Node::start(&["-node-id", FIXTURE_NODE_ID, "-raft-snap", "1000000"]);

    // A plain write: no parameters.
    node.execute(
        r#"["CREATE TABLE vals(id INTEGER PRIMARY KEY, how TEXT NOT NULL, v)",
            "CREATE TABLE stamps(id INTEGER PRIMARY KEY, r INTEGER, at TEXT, b BLOB)",
            "CREATE TABLE burst(n INTEGER NOT NULL)"]"#,
    );
    // Positional parameters of every value kind (JSON null, integers, a float, text, an
    // array of bytes for a BLOB, booleans), and an integer past i64, which is a REAL.
    node.execute(
        r#"[["INSERT INTO vals(how, v) VALUES(?, ?)", "positional null", null],
            ["INSERT INTO vals(how, v) VALUES(?, ?)", "positional integer", -9007199254740993],
            ["INSERT INTO vals(how, v) VALUES(?, ?)", "positional real", 2.5],
            ["INSERT INTO vals(how, v) VALUES(?, ?)", "positional big integer", 18446744073709551615],
            ["INSERT INTO vals(how, v) VALUES(?, ?)", "positional text", "h\u00e9llo"],
            ["INSERT INTO vals(how, v) VALUES(?, ?)", "positional blob", [0, 1, 254, 255]],
            ["INSERT INTO vals(how, v) VALUES(?, ?)", "positional true", true],
            ["INSERT INTO vals(how, v) VALUES(?5, ?3)", 0, 0, false, 0, "positional numbered false"]]"#,
    );
    // Named parameters of every value kind, with each prefix.
    node.execute(
        r#"[["INSERT INTO vals(how, v) VALUES(:how, :v)", {"how": "named null", "v": null}],
            ["INSERT INTO vals(how, v) VALUES(@how, @v)", {"how": "named integer", "v": 42}],
            ["INSERT INTO vals(how, v) VALUES($how, $v)", {"how": "named real", "v": -0.125}],
            ["INSERT INTO vals(how, v) VALUES(:how, :v)", {"how": "named text", "v": "w\u00f6rld"}],
            ["INSERT INTO vals(how, v) VALUES(:how, :v)", {"how": "named blob", "v": [7, 8, 9]}],
            ["INSERT INTO vals(how, v) VALUES(:how, :v)", {"how": "named bool", "v": true}]]"#,
    );
    // A transaction of several statements, and one whose error undoes it all.
    let answer = node.post(
        "/db/execute?transaction",
        r#"["INSERT INTO vals(how, v) VALUES('transaction 1', 1)",
            "INSERT INTO vals(how, v) VALUES('transaction 2', 2)",
            "UPDATE vals SET v = v * 10 WHERE how LIKE 'transaction %'"]"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = node.post(
        "/db/execute?transaction",
        r#"["INSERT INTO vals(how, v) VALUES('undone', 1)", "INSERT INTO nowhere VALUES(1)"]"#,
    );
    assert!(answer.body.contains("no such table"), "{}", answer.body);
    // The entry's clock, seed and budget (`db_timeout` lowers it): replayed, `random()`,
    // `'now'` and `randomblob()` give the same values again.
    node.execute(
        r#"["INSERT INTO stamps(r, at, b) VALUES(random(), strftime('%Y-%m-%d %H:%M:%f', 'now'), randomblob(8))"]"#,
    );
    let answer = node.post(
        "/db/execute?db_timeout=2s&qualify_columns",
        r#"["INSERT INTO stamps(r, at, b) VALUES(random(), strftime('%Y-%m-%d %H:%M:%f', 'now'), randomblob(8)) RETURNING id"]"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    // `/db/request` with a write: every statement returns rows.
    let answer = node.post(
        "/db/request",
        r#"["INSERT INTO vals(how, v) VALUES('request', 3)", "SELECT count(*) FROM vals"]"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A queued write, waited for.
    let answer = node.post(
        "/db/execute?queue&wait",
        r#"[["INSERT INTO vals(how, v) VALUES(?, ?)", "queued", 4]]"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Concurrent writes share entries (`ExecuteBatch`): bursts, until one was batched.
    let batched = || {
        node.get("/debug/vars").json()["store"]["batched_writes"]
            .as_u64()
            .expect("store.batched_writes in /debug/vars")
    };
    let mut next = 0u64;
    for _ in 0..10 {
        if batched() > 0 {
            break;
        }
        let url = node.url("/db/execute");
        let start = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for n in next..next + 16 {
                let (url, start) = (&url, &start);
                s.spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    start.wait();
                    let answer = client
                        .post(url)
                        .header("Content-Type", "application/json")
                        .body(format!(r#"[["INSERT INTO burst(n) VALUES(?)", {n}]]"#))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .expect("burst write");
                    assert_eq!(answer.status().as_u16(), 200);
                });
            }
        });
        next += 16;
    }
    assert!(batched() > 0, "no burst was batched");

    let answers: Vec<(String, String)> = FIXTURE_QUERIES
        .iter()
        .map(|q| (q.to_string(), node.query_at(q, "strong")))
        .collect();
    assert!(node.stop().success(), "clean stop:\n{}", node.log());

    let raft_dir = node.data_dir.join("raft");
    let scratch = tempfile::tempdir().expect("temp dir");
    copy_tree(&raft_dir, scratch.path());
    let held: BTreeSet<&str> = read_log(scratch.path())
        .iter()
        .flat_map(variants_in)
        .collect();
    for variant in fixture_variants() {
        assert!(held.contains(variant), "the run wrote no {variant}");
    }
    copy_tree(&raft_dir, &dest.join("data/raft"));
    let mut text = String::from(
        "# What the node that wrote this log answered, at level=strong, before it stopped.\n",
    );
    for (query, answer) in answers {
        text.push_str(&format!("> {query}\n{answer}\n"));
    }
    std::fs::write(dest.join("expected.txt"), text).expect("write expected.txt");
}
