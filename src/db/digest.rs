//! A digest of a database's logical content, to detect replicas that diverged.
//!
//! What it covers: the values the header stores for users (`user_version`,
//! `application_id`), the schema (`sqlite_schema`'s type, name, table and SQL, in name order)
//! and every row of every ordinary table, shadow tables of virtual tables, `sqlite_sequence` and
//! `sqlite_stat*` included, in key order (rowid, or every column for WITHOUT ROWID tables).
//! Each value is hashed with its storage class and length, so `1`, `1.0`, `'1'` and `x'31'`
//! differ. What it leaves out: the state table (its log id is per entry, not per content), the
//! page layout (two files with the same content have the same digest), and virtual tables
//! themselves (their content is in their shadow tables).
//!
//! The caller runs it inside one read transaction, so the digest is of one snapshot, and reads
//! the applied index in the same transaction. A read transaction in WAL mode never blocks the
//! writer. The hash is 128-bit FNV-1a: good at telling different contents apart by accident,
//! not meant to resist someone crafting a collision.

use raftlite_ffi::{Connection, ValueRef};

/// The digest of one database snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContentDigest {
    /// 32 hex digits.
    pub digest: String,
    pub tables: u64,
    pub rows: u64,
}

struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u128::from(x);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn tagged(&mut self, tag: u8, b: &[u8]) {
        self.bytes(&[tag]);
        self.bytes(&(b.len() as u64).to_le_bytes());
        self.bytes(b);
    }

    fn value(&mut self, v: ValueRef<'_>) {
        match v {
            ValueRef::Null => self.bytes(&[0]),
            ValueRef::Integer(i) => self.tagged(1, &i.to_le_bytes()),
            ValueRef::Real(r) => self.tagged(2, &r.to_bits().to_le_bytes()),
            ValueRef::Text(t) => self.tagged(3, t),
            ValueRef::Blob(b) => self.tagged(4, b),
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Hashes the content visible to `conn`'s current (read) transaction, leaving out the table
/// named `exclude`.
pub fn content_digest(conn: &Connection, exclude: &str) -> raftlite_ffi::Result<ContentDigest> {
    let mut h = Fnv128(Fnv128::OFFSET);
    // Writes set them (`PRAGMA user_version=N`) and every replica must agree on them.
    for pragma in ["PRAGMA main.user_version", "PRAGMA main.application_id"] {
        h.tagged(7, &conn.query_i64(pragma)?.unwrap_or(0).to_le_bytes());
    }
    let mut tables = Vec::new();
    {
        let mut schema = conn.prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema \
             WHERE name <> ?1 AND tbl_name <> ?1 ORDER BY type, name",
        )?;
        schema.bind_text(1, exclude)?;
        while schema.step()?.is_row() {
            for i in 0..4 {
                h.value(schema.column_value(i));
            }
            let sql = String::from_utf8_lossy(schema.column_text(3)).to_ascii_uppercase();
            if schema.column_text(0) == b"table" && !sql.starts_with("CREATE VIRTUAL") {
                let without_rowid = sql.contains("WITHOUT") && sql.contains("ROWID");
                tables.push((
                    String::from_utf8_lossy(schema.column_text(1)).into_owned(),
                    without_rowid,
                ));
            }
        }
    }
    tables.sort();
    let mut rows = 0u64;
    for (name, without_rowid) in &tables {
        h.tagged(5, name.as_bytes());
        let q = quote_ident(name);
        // A WITHOUT ROWID table may also be a rowid table whose SQL merely mentions the words;
        // asking for its rowid then fails, and the ordering by every column is as good.
        let sql = if *without_rowid {
            None
        } else {
            Some(format!("SELECT _rowid_, * FROM {q} ORDER BY _rowid_"))
        };
        let mut stmt = match sql.map(|s| conn.prepare(&s)) {
            Some(Ok(s)) => s,
            _ => {
                let n = conn.prepare(&format!("SELECT * FROM {q}"))?.column_count();
                let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
                conn.prepare(&format!("SELECT * FROM {q} ORDER BY {}", order.join(",")))?
            }
        };
        let n = stmt.column_count();
        while stmt.step()?.is_row() {
            rows += 1;
            h.bytes(&[6]);
            for i in 0..n {
                h.value(stmt.column_value(i));
            }
        }
    }
    Ok(ContentDigest {
        digest: format!("{:032x}", h.0),
        tables: tables.len() as u64,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite_ffi::OpenFlags;

    fn db(sql: &str) -> Connection {
        let c = Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
        c.execute_batch(sql).unwrap();
        c
    }

    #[test]
    fn same_content_same_digest_whatever_the_history() {
        let a = db("CREATE TABLE t(a, b); INSERT INTO t VALUES(1,'x'),(2,'y');\
                    CREATE TABLE _raftlite_state(id); INSERT INTO _raftlite_state VALUES(1)");
        let b = db(
            "CREATE TABLE t(a, b); INSERT INTO t VALUES(1,'x'),(9,'z'),(2,'y');\
                    DELETE FROM t WHERE a = 9; UPDATE t SET a = 2 WHERE a = 2;\
                    CREATE TABLE _raftlite_state(id); INSERT INTO _raftlite_state VALUES(7)",
        );
        // Rowids differ (3 vs 2 for 'y'), so the digests do too; with the same rowids, same.
        let c = db("CREATE TABLE t(a, b); INSERT INTO t VALUES(1,'x'); INSERT INTO t(rowid,a,b) VALUES(2,2,'y');\
                    CREATE TABLE _raftlite_state(id)");
        let d = |c: &Connection| content_digest(c, "_raftlite_state").unwrap();
        assert_eq!(d(&a), d(&c));
        assert_ne!(d(&a), d(&b));
        assert_eq!(d(&a).rows, 2);
        assert_eq!(d(&a).tables, 1);
    }

    #[test]
    fn types_schema_and_without_rowid_tables_count() {
        let d = |sql: &str| content_digest(&db(sql), "_raftlite_state").unwrap().digest;
        let base = d("CREATE TABLE t(a); INSERT INTO t VALUES(1)");
        assert_ne!(base, d("CREATE TABLE t(a); INSERT INTO t VALUES(1.0)"));
        assert_ne!(base, d("CREATE TABLE t(a); INSERT INTO t VALUES('1')"));
        assert_ne!(base, d("CREATE TABLE t(a); INSERT INTO t VALUES(x'01')"));
        assert_ne!(
            base,
            d("CREATE TABLE t(a); INSERT INTO t VALUES(1); CREATE INDEX i ON t(a)")
        );
        let w1 = d(
            "CREATE TABLE w(k PRIMARY KEY, v) WITHOUT ROWID; INSERT INTO w VALUES(2,'b'),(1,'a')",
        );
        let w2 = d(
            "CREATE TABLE w(k PRIMARY KEY, v) WITHOUT ROWID; INSERT INTO w VALUES(1,'a'),(2,'b')",
        );
        assert_eq!(w1, w2);
        assert_ne!(
            base,
            d("CREATE TABLE t(a); INSERT INTO t VALUES(1); PRAGMA user_version=1")
        );
        assert_ne!(
            base,
            d("CREATE TABLE t(a); INSERT INTO t VALUES(1); PRAGMA application_id=1")
        );
    }
}
