//! Server-side tests for incompatibilities that real rqlite clients exposed (tests/clients/).
//! Each test names the client and the call that showed the problem.

mod common;

use common::{wait_until, Cluster, Node};
use std::time::Duration;

/// SQLAlchemy's SQLite reflection (through sqlalchemy-rqlite and pyrqlite) reads foreign keys
/// and unique constraints with `PRAGMA foreign_key_list` / `PRAGMA index_list` on
/// `/db/query`. Those PRAGMAs look tables up in the connection's cached schema without
/// checking it against the file, so a pooled read connection that had loaded the schema
/// before a `CREATE TABLE` answered with no rows, as if the table had no foreign keys.
#[test]
fn schema_pragmas_on_the_read_path_see_tables_created_after_the_reader_opened() {
    let node = Node::start(&[]);
    // Open a reader and make it load the (empty) schema.
    node.query("SELECT count(*) FROM sqlite_master");
    node.query("PRAGMA foreign_key_list(b)");
    node.execute(
        r#"["CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT UNIQUE)",
            "CREATE TABLE b (id INTEGER PRIMARY KEY, aid INTEGER REFERENCES a(id))"]"#,
    );
    assert_eq!(
        node.query("PRAGMA foreign_key_list(b)"),
        r#"{"results":[{"columns":["id","seq","table","from","to","on_update","on_delete","match"],"types":["integer","integer","text","text","text","text","text","text"],"values":[[0,0,"a","aid","id","NO ACTION","NO ACTION","NONE"]]}]}"#
    );
    assert_eq!(
        node.query(r#"PRAGMA main.index_list("a")"#),
        r#"{"results":[{"columns":["seq","name","unique","origin","partial"],"types":["integer","text","integer","text","integer"],"values":[[0,"sqlite_autoindex_a_1",1,"u",0]]}]}"#
    );
    // POST /db/query and /db/request take the same read path.
    let a = node.post("/db/query", r#"["PRAGMA index_list(a)"]"#);
    assert!(a.body.contains("sqlite_autoindex_a_1"), "{}", a.body);
    let a = node.post("/db/request", r#"["PRAGMA foreign_key_list(b)"]"#);
    assert!(a.body.contains(r#"[0,0,"a","aid","id""#), "{}", a.body);
}

/// The same on a follower answering `level=none` from its own readers after the table
/// arrived through replication.
#[test]
fn schema_pragmas_on_a_follower_see_replicated_tables() {
    let cluster = Cluster::start(2, &[]);
    let follower = &cluster.nodes[cluster.followers()[0]];
    let leader = &cluster.nodes[cluster.leader()];
    follower.get("/db/query?q=PRAGMA%20foreign_key_list(b)&level=none");
    leader.execute(
        r#"["CREATE TABLE a (id INTEGER PRIMARY KEY)",
            "CREATE TABLE b (id INTEGER PRIMARY KEY, aid INTEGER REFERENCES a(id))"]"#,
    );
    let ok = wait_until(Duration::from_secs(10), || {
        follower
            .get("/db/query?q=PRAGMA%20foreign_key_list(b)&level=none")
            .body
            .contains(r#"[0,0,"a","aid","id""#)
    });
    assert!(ok, "the follower never showed b's foreign key");
}
